"""Object masks from the model's own attention, the published way (sooyeon-go/eye_for_an_eye, utils/segmentation.py,
the self-segmentation of Prompt Mixing).

Self-attention rows (heads averaged) are clustered into segments with k-means; each segment is scored against the
cross-attention map of every noun of the prompt (the noun's word index + 1, the start token, as published; maps
upsampled 2x to the self-attention grid and normalised per noun as (map - |min|) / max). A segment belongs to the
object when its best noun is the object noun and its best score exceeds `threshold` x the mean of the best scores
of the other segments (the single highest best score left out). Plain torch; deterministic (seeded k-means++,
Lloyd iterations in float64).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

import torch

EXCLUDED_NOUNS = ("photo", "image", "picture")  # never nouns of the prompt, as published


def prompt_words(prompt: str) -> list[str]:
    """Words and punctuation in order (close to nltk's word_tokenize for ordinary prompts)."""
    return re.findall(r"\w+|'\w+|[^\w\s]", prompt)


def noun_columns(prompt: str, object_noun: str, other_nouns: tuple[str, ...] = ()) -> list[tuple[int, str]]:
    """(cross-attention column, noun) for every occurrence of the nouns in the prompt; column = word index + 1."""
    words = prompt_words(prompt)
    if not words:
        raise ValueError("prompt: it is empty; give the text the positive conditioning was encoded from (e.g. 'a photo of a bird')")
    wanted = {}
    for name, noun in [("object_noun", object_noun)] + [("other_nouns", n) for n in other_nouns]:
        noun = noun.strip()
        if not noun or len(prompt_words(noun)) != 1:
            raise ValueError(f"{name}: got {noun!r}; give one word of the prompt (a noun)")
        if noun.lower() in EXCLUDED_NOUNS:
            raise ValueError(f"{name}: '{noun}' is never a noun for the published segmentation (photo, image, picture are excluded): remove it")
        if not any(w.lower() == noun.lower() for w in words):
            raise ValueError(f"{name}: '{noun}' is not a word of the prompt '{prompt}': give a noun that the prompt contains")
        wanted[noun.lower()] = noun
    return [(i + 1, word.lower()) for i, word in enumerate(words) if word.lower() in wanted]


def kmeans(
    x: torch.Tensor, k: int, seed: int = 1, n_init: int = 10, max_iter: int = 300, init: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lloyd's k-means of x [N, D]: (labels [N] long, centres [k, D], the start it came from [k, D]). Best inertia
    of `n_init` seeded k-means++ starts, or one run from `init`. An emptied cluster takes the farthest point."""
    data = x.double()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    starts = [init.double().to(data.device)] if init is not None else [_kmeans_plus_plus(data, k, generator) for _ in range(n_init)]
    best = None
    for start in starts:
        labels, centres, inertia = _lloyd(data, start.clone(), max_iter)
        if best is None or inertia < best[2]:
            best = (labels, centres, inertia, start)
    return best[0], best[1].to(x.dtype), best[3].to(x.dtype)


def _kmeans_plus_plus(data: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    n = data.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centres = [data[first]]
    closest = ((data - data[first]) ** 2).sum(dim=1)
    for _ in range(1, k):
        weights = closest.cpu() if float(closest.sum()) > 0 else torch.ones(n, dtype=torch.float64)
        pick = int(torch.multinomial(weights, 1, generator=generator))
        centres.append(data[pick])
        closest = torch.minimum(closest, ((data - data[pick]) ** 2).sum(dim=1))
    return torch.stack(centres)


def _lloyd(data: torch.Tensor, centres: torch.Tensor, max_iter: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    labels = None
    for _ in range(max_iter):
        distances = torch.cdist(data, centres) ** 2
        new = distances.argmin(dim=1)
        if labels is not None and torch.equal(new, labels):
            break
        labels = new
        for c in range(centres.shape[0]):
            members = labels == c
            if bool(members.any()):
                centres[c] = data[members].mean(dim=0)
            else:
                far = int(distances.gather(1, labels[:, None]).squeeze(1).argmax())
                centres[c] = data[far]
    distances = torch.cdist(data, centres) ** 2
    labels = distances.argmin(dim=1)
    return labels, centres, float(distances.gather(1, labels[:, None]).sum())


@dataclass(frozen=True)
class Segmentation:
    labels: torch.Tensor  # [res, res] long, segment per self-attention token
    kept: tuple[int, ...]  # segments labelled as the object
    scores: torch.Tensor  # [segments] best noun score per segment
    mask: torch.Tensor  # [res, res] float, 1 on kept segments


def label_segments(
    labels: torch.Tensor, cross: torch.Tensor, nouns: list[tuple[int, str]], object_noun: str, segments: int, threshold: float
) -> Segmentation:
    """The published cluster2noun + create_mask. labels [res, res]; cross [res/2 * res/2, tokens], heads averaged."""
    res = labels.shape[0]
    cross_res = int(round(cross.shape[0] ** 0.5))
    if cross_res * 2 != res:
        raise ValueError(f"cross-attention grid {cross_res}x{cross_res} is not half the self-attention grid {res}x{res}")
    columns = [column for column, _ in nouns]
    maps = cross.double().reshape(cross_res, cross_res, -1)[:, :, columns]
    maps = maps.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1)  # [res, res, nouns]
    maps = (maps - maps.amin(dim=(0, 1)).abs()) / maps.amax(dim=(0, 1))
    per_noun = torch.stack([
        (maps * (labels == c)[..., None]).sum(dim=(0, 1)) / (labels == c).sum() for c in range(segments)
    ])  # [segments, nouns]
    best, which = per_noun.max(dim=1)
    others = best.tolist()
    others.remove(max(others))
    mean_score = sum(others) / len(others)
    kept = tuple(c for c in range(segments) if float(best[c]) > threshold * mean_score and nouns[int(which[c])][1] == object_noun.lower())
    mask = torch.zeros(labels.shape, dtype=torch.float32)
    for c in kept:
        mask[labels == c] = 1.0
    return Segmentation(labels, kept, best.float(), mask)


def segment_object(
    self_attention: torch.Tensor,
    cross_attention: torch.Tensor,
    nouns: list[tuple[int, str]],
    object_noun: str,
    segments: int = 5,
    threshold: float = 1.4,
    seed: int = 1,
    init: Optional[torch.Tensor] = None,
) -> Segmentation:
    """self_attention [T, T] (heads averaged, T = res * res), cross_attention [T / 4, tokens] (heads averaged)."""
    res = int(round(self_attention.shape[0] ** 0.5))
    labels, _, _ = kmeans(self_attention, segments, seed=seed, init=init)
    return label_segments(labels.reshape(res, res).cpu(), cross_attention.cpu(), nouns, object_noun, segments, threshold)

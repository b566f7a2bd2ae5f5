"""PCK (percentage of correct keypoints) for dense-feature part correspondence (pure torch).

Protocol: for each part of a target creature, take the feature token under the part's centre,
find the cosine-nearest token of the reference creature, and map that token's centre back to
pixels. The match is correct (PCK@alpha) if it lies within alpha * image_size pixels of the
reference's centre of the same part. Part accuracy: the matched pixel lies inside the
reference's mask of the same part (when masks are given), otherwise the nearest reference part
centre to the matched pixel is the same part.

Pixel convention (as quality.creatures): points are (x, y) pixels; pixel j spans [j, j+1).
Token (r, c) of an (h, w) grid covers x in [c, c+1) * image_size / w and y likewise; its centre
is ((c + 0.5) * image_size / w, (r + 0.5) * image_size / h). Features are [N, T, C] with tokens
in row-major order (T = h * w), as a ComfyUI attention patch sees them.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def token_index(points: torch.Tensor, grid, image_size: int = 64) -> torch.Tensor:
    """[..., 2] (x, y) pixels -> [...] row-major token index on an (h, w) grid."""
    h, w = grid
    col = (points[..., 0] * w / image_size).floor().long().clamp(0, w - 1)
    row = (points[..., 1] * h / image_size).floor().long().clamp(0, h - 1)
    return row * w + col


def token_centres(grid, image_size: int = 64) -> torch.Tensor:
    """[T, 2] (x, y) pixel centres of an (h, w) grid's tokens, row-major."""
    h, w = grid
    ys = (torch.arange(h, dtype=torch.float32) + 0.5) * image_size / h
    xs = (torch.arange(w, dtype=torch.float32) + 0.5) * image_size / w
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)


def nearest_tokens(target_features, reference_features, query_index):
    """For queries [N, K] (token indices into target) -> (best reference token [N, K], cosine [N, K])."""
    t = F.normalize(target_features.float(), dim=-1)
    r = F.normalize(reference_features.float(), dim=-1)
    q = torch.gather(t, 1, query_index[..., None].expand(-1, -1, t.shape[-1]))  # [N, K, C]
    sim = torch.einsum("nkc,ntc->nkt", q, r)
    best, idx = sim.max(-1)
    return idx, best


def score(matched: torch.Tensor, reference_centres: torch.Tensor, image_size: int = 64, alpha: float = 0.1,
          reference_masks: Optional[torch.Tensor] = None) -> dict:
    """Score matched pixels [N, K, 2] against the reference's part centres [N, K, 2] (and masks [N, K, H, W])."""
    n, k, _ = matched.shape
    dist = (matched - reference_centres).norm(dim=-1)
    correct = dist <= alpha * image_size
    if reference_masks is not None:
        size = reference_masks.shape[-1]
        px = matched[..., 0].floor().long().clamp(0, size - 1)
        py = matched[..., 1].floor().long().clamp(0, size - 1)
        parts = torch.arange(k)[None].expand(n, k)
        inside = reference_masks[torch.arange(n)[:, None].expand(n, k), parts, py, px]
    else:
        d = (matched[:, :, None, :] - reference_centres[:, None, :, :]).norm(dim=-1)  # [N, K(query), K(part)]
        inside = d.argmin(-1) == torch.arange(k)[None]
    return {
        "pck": correct.float().mean().item(),
        "part_accuracy": inside.float().mean().item(),
        "pck_per_part": correct.float().mean(0).tolist(),
        "correct": correct,
        "part_correct": inside,
        "matched": matched,
    }


def pck(target_centres: torch.Tensor, reference_centres: torch.Tensor, target_features: torch.Tensor,
        reference_features: torch.Tensor, grid, image_size: int = 64, alpha: float = 0.1,
        reference_masks: Optional[torch.Tensor] = None) -> dict:
    """PCK@alpha and part accuracy of nearest-neighbour matching of target part centres.

    target_centres, reference_centres: [N, K, 2] (x, y) pixels (K = 4 parts, same order);
    target_features, reference_features: [N, T, C] with T = h * w tokens of `grid` = (h, w);
    reference_masks: optional [N, K, H, W] bool visible part masks of the references.
    Returns dict(pck, part_accuracy, pck_per_part [K], correct [N, K], part_correct [N, K], matched [N, K, 2],
    similarity [N, K]).
    """
    query = token_index(target_centres, grid, image_size)
    idx, sim = nearest_tokens(target_features, reference_features, query)
    matched = token_centres(grid, image_size)[idx]  # [N, K, 2]
    out = score(matched, reference_centres, image_size, alpha, reference_masks)
    out["similarity"] = sim
    return out

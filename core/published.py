"""The rules of the authors' published code where they differ from the paper's text.

Read from sooyeon-go/eye_for_an_eye (generation stage) and restated here; see
README.md "Faithfulness" for every difference and the setting that removes it.
"""

from __future__ import annotations

import enum
import math
from typing import Optional

import torch
import torch.nn.functional as F

ADAIN_EPS = 1e-5  # added to the (unbiased) variance, as published


class Behaviour(enum.Enum):
    """Which rules the transfer follows."""

    PAPER = "paper"
    PUBLISHED = "published code"


def lagged_step(k: int) -> int:
    """The generation step the published attention processors believe they are at during step k.

    Their counter is set by the per-step callback, i.e. after each step: step k sees k - 1, step 0 sees 0.
    """
    return max(k - 1, 0)


def soft_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float [B, 1, H, W] -> float [B, 1, h, w], bilinear without antialiasing (the published resize)."""
    return F.interpolate(mask.float(), size=tuple(size), mode="bilinear", align_corners=False)


def soft_token_weight(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """float [B, 1, H, W] -> float [B, h * w] in row-major token order."""
    return soft_mask(mask, grid).flatten(1)


def published_nearest_index(
    own: torch.Tensor,
    reference: torch.Tensor,
    own_weight: Optional[torch.Tensor] = None,
    reference_weight: Optional[torch.Tensor] = None,
    chunk_elements: int = 2**26,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest reference token by cosine after multiplying soft masks into both sides.

    own [B, Tq, C], reference [B or 1, Tr, C], weights [B or 1, T] (soft, 0..1) or None.
    A masked-out reference token is a zero vector (cosine 0: it can still win where every
    allowed similarity is negative); a token of `own` is rearranged wherever its masked
    features are not all zero. Ties go to the first token, as numpy's argmax does.
    Returns (index [B, Tq] long, rearrange [B, Tq] bool).
    """
    q = own.float() if own_weight is None else own.float() * own_weight[..., None].to(own.device)
    r = reference.float() if reference_weight is None else reference.float() * reference_weight[..., None].to(own.device)
    rearrange = q.ne(0).any(dim=-1)
    q = F.normalize(q, dim=-1)
    r = F.normalize(r, dim=-1).expand(q.shape[0], -1, -1)
    rows = max(1, chunk_elements // max(1, r.shape[0] * r.shape[1]))
    index = torch.cat([torch.bmm(q[:, b : b + rows], r.transpose(1, 2)).argmax(dim=-1) for b in range(0, q.shape[1], rows)], dim=1)
    return index, rearrange


def _stats_where_one(x: torch.Tensor, mask: Optional[torch.Tensor], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of x [C, H, W] over pixels whose mask [1, H, W] is exactly 1 (unbiased variance)."""
    flat = x.reshape(x.shape[0], -1)
    if mask is not None:
        inside = mask.reshape(-1) == 1
        if not bool(inside.any()):
            raise ValueError(
                f"{name}: with behaviour 'published code' AdaIN takes its statistics where the mask, resized to the "
                "latent, is exactly 1, and no latent pixel is: draw a larger mask"
            )
        flat = flat[:, inside]
    return flat.mean(dim=1)[:, None, None], (flat.var(dim=1) + ADAIN_EPS).sqrt()[:, None, None]


def published_masked_adain(
    x: torch.Tensor,
    style: torch.Tensor,
    x_mask: Optional[torch.Tensor] = None,
    style_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The published latent AdaIN: x [B, C, H, W] towards style [B or 1, C, h, w].

    Masks are soft float [B or 1, 1, H, W] at each latent's size. Statistics over pixels whose
    mask is exactly 1, unbiased variance + 1e-5; blend x * (1 - mask) + adain * mask.
    Without masks: plain AdaIN over the whole latent with the same statistics.
    """
    out = []
    for b in range(x.shape[0]):
        s = style[b if style.shape[0] > 1 else 0].to(x.dtype)
        xm = None if x_mask is None else x_mask[b if x_mask.shape[0] > 1 else 0]
        sm = None if style_mask is None else style_mask[b if style_mask.shape[0] > 1 else 0]
        mean, std = _stats_where_one(x[b], xm, "target_mask")
        style_mean, style_std = _stats_where_one(s, sm, "reference_mask")
        moved = (x[b] - mean) / std * style_std + style_mean
        out.append(moved if xm is None else x[b] * (1 - xm.to(x.dtype)) + moved * xm.to(x.dtype))
    return torch.stack(out)


def alpha_cumprod_sigma_scale(last_sigma: float) -> float:
    """sqrt(alpha_cumprod) of the training step whose sigma is `last_sigma` (ComfyUI's sigma_min)."""
    return 1.0 / math.sqrt(1.0 + last_sigma**2)


def published_last_step(sigmas: list[float], last_sigma: float) -> list[float]:
    """The schedule the published sampler walks: its last step lands on alpha_cumprod[0] (sigma_min), not on 0.

    The latent it lands on is in the published (diffusers) scale: multiply it by
    alpha_cumprod_sigma_scale(last_sigma) after that step.
    """
    if sigmas[-1] != 0.0:
        return list(sigmas)
    return list(sigmas[:-1]) + [float(last_sigma)]

"""Image-space masks brought to token grids and latent grids."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def as_mask_batch(mask: torch.Tensor, name: str) -> torch.Tensor:
    """A ComfyUI MASK ([H, W] or [B, H, W], values 0..1) as float [B, 1, H, W]; refuses empty masks."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"{name} must be a MASK of shape [H, W] or [B, H, W], got shape {tuple(mask.shape)}")
    if not bool((mask > 0.5).flatten(1).any(dim=1).all()):
        raise ValueError(f"{name} is empty (no pixel above 0.5): draw the object or disconnect the mask")
    return mask[:, None].float()


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """float [B, 1, H, W] -> bool [B, 1, h, w] by area coverage >= 0.5 (any coverage if that leaves nothing)."""
    coverage = F.interpolate(mask.float(), size=size, mode="area")
    inside = coverage >= 0.5
    empty = ~inside.flatten(1).any(dim=1)
    if bool(empty.any()):
        inside[empty] = coverage[empty] > 0
    return inside


def token_mask(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """float [B, 1, H, W] -> bool [B, h * w] in the row-major token order of a (h, w) grid."""
    return resize_mask(mask, grid).flatten(1)

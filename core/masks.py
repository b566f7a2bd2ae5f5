"""Image-space masks brought to token grids and latent grids."""

from __future__ import annotations

import torch
import torch.nn.functional as F


MASK_TOLERANCE = 0.05  # a bicubic resize overshoots 0..1 a little: clamped


def as_mask_batch(mask: torch.Tensor, name: str) -> torch.Tensor:
    """A ComfyUI MASK ([H, W] or [B, H, W], values 0..1) as float [B, 1, H, W]; refuses empty masks and values
    outside 0..1 (beyond a resize's overshoot, which is clamped)."""
    if mask.ndim == 2:
        mask = mask[None]
    if mask.ndim != 3:
        raise ValueError(f"{name} must be a MASK of shape [H, W] or [B, H, W], got shape {tuple(mask.shape)}")
    if mask.numel() == 0:
        raise ValueError(f"{name} is empty (a {tuple(mask.shape)} mask): draw the object or disconnect the mask")
    low, high = float(mask.min()), float(mask.max())
    if not (-MASK_TOLERANCE <= low and high <= 1 + MASK_TOLERANCE):  # also refuses NaN
        raise ValueError(
            f"{name}: its values range from {low:g} to {high:g}, but a MASK holds values from 0 (outside the object) "
            "to 1 (inside): give a mask in 0..1 (e.g. Solid Mask value 1.0, or clamp it)"
        )
    if not bool((mask > 0.5).flatten(1).any(dim=1).all()):
        raise ValueError(f"{name} is empty (no pixel above 0.5): draw the object or disconnect the mask")
    return mask[:, None].float().clamp(0, 1)


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

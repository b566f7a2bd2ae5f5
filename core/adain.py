"""Masked AdaIN: per-channel statistics of one latent region moved to another's."""

from __future__ import annotations

from typing import Optional

import torch

EPS = 1e-5


def _masked_stats(x: torch.Tensor, mask: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample, per-channel mean and std of x [B, C, H, W] inside mask [B, 1, H, W] (bool)."""
    if mask is None:
        mask = torch.ones_like(x[:, :1], dtype=torch.bool)
    weight = mask.to(x.dtype).expand_as(x)
    count = weight.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (x * weight).sum(dim=(2, 3), keepdim=True) / count
    var = (((x - mean) ** 2) * weight).sum(dim=(2, 3), keepdim=True) / count
    return mean, (var + EPS).sqrt()


def masked_adain(
    x: torch.Tensor,
    style: torch.Tensor,
    x_mask: Optional[torch.Tensor] = None,
    style_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """x [B, C, H, W] with its statistics inside x_mask set to style's [B or 1, C, h, w] inside style_mask.

    Masks are bool [B or 1, 1, H, W] at each latent's own size; outside x_mask x is unchanged.
    """
    mean, std = _masked_stats(x, x_mask)
    style_mean, style_std = _masked_stats(style.to(x.dtype), style_mask)
    moved = (x - mean) / std * style_std + style_mean
    if x_mask is None:
        return moved
    return torch.where(x_mask.expand_as(x), moved, x)

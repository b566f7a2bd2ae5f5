"""The late-sampling AdaIN of the result latent towards the reference's trajectory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .adain import masked_adain
from .inversion import Inversion
from .masks import resize_mask


@dataclass(frozen=True)
class LatentAdain:
    """After generation step i >= start, match the result's statistics (inside target_mask)
    to the reference latent at the same point of its trajectory (inside reference_mask)."""

    reference: Inversion
    start: int = 49  # a negative start turns it off
    target_mask: Optional[torch.Tensor] = None  # float [B, 1, H, W], image space
    reference_mask: Optional[torch.Tensor] = None

    def active(self, step: int) -> bool:
        return 0 <= self.start <= step

    def __call__(self, step: int, x: torch.Tensor) -> torch.Tensor:
        if not self.active(step):
            return x
        style = self.reference.trajectory(step + 1).to(x.device, x.dtype)
        x_mask = None if self.target_mask is None else resize_mask(self.target_mask, x.shape[-2:]).to(x.device)
        style_mask = None if self.reference_mask is None else resize_mask(self.reference_mask, style.shape[-2:]).to(x.device)
        return masked_adain(x, style, x_mask, style_mask)

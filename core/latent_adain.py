"""The late-sampling AdaIN of the result latent towards each reference's trajectory."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .adain import masked_adain
from .attention_patch import TransferObject
from .masks import resize_mask


@dataclass(frozen=True)
class LatentAdain:
    """After generation step i >= start, match the result's statistics inside each object's
    target mask to its reference latent at the same point of its trajectory (inside its reference mask)."""

    objects: tuple[TransferObject, ...]
    start: int = 49  # a negative start turns it off

    def active(self, step: int) -> bool:
        return 0 <= self.start <= step

    def __call__(self, step: int, x: torch.Tensor) -> torch.Tensor:
        if not self.active(step):
            return x
        for obj in self.objects:
            style = obj.reference.trajectory(step + 1).to(x.device, x.dtype)
            x_mask = None if obj.target_mask is None else resize_mask(obj.target_mask, x.shape[-2:]).to(x.device)
            style_mask = None if obj.reference_mask is None else resize_mask(obj.reference_mask, style.shape[-2:]).to(x.device)
            x = masked_adain(x, style, x_mask, style_mask)
        return x

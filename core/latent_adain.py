"""The late-sampling AdaIN of the result latent towards each reference's trajectory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from .adain import masked_adain
from .attention_patch import TransferObject
from .masks import resize_mask
from .published import published_masked_adain, soft_mask


@dataclass(frozen=True)
class LatentAdain:
    """After generation step i >= start, match the result's statistics inside each object's
    target mask to its reference latent at the same point of its trajectory (inside its reference mask).

    `published` switches to the published statistics and blend (see core.published).
    """

    objects: tuple[TransferObject, ...]
    start: int = 49  # a negative start turns it off
    published: bool = False

    def active(self, step: int) -> bool:
        return 0 <= self.start <= step

    def __call__(self, step: int, x: torch.Tensor, styles: Optional[Sequence[Optional[torch.Tensor]]] = None) -> torch.Tensor:
        """`styles[j]`, when given and not None, is object j's live reference latent after this step."""
        if not self.active(step):
            return x
        for j, obj in enumerate(self.objects):
            live = None if styles is None else styles[j]
            style = (obj.reference.trajectory(step + 1) if live is None else live).to(x.device, x.dtype)
            if self.published:
                x_mask = None if obj.target_mask is None else soft_mask(obj.target_mask, x.shape[-2:]).to(x.device)
                style_mask = None if obj.reference_mask is None else soft_mask(obj.reference_mask, style.shape[-2:]).to(x.device)
                x = published_masked_adain(x, style, x_mask, style_mask)
                continue
            x_mask = None if obj.target_mask is None else resize_mask(obj.target_mask, x.shape[-2:]).to(x.device)
            style_mask = None if obj.reference_mask is None else resize_mask(obj.reference_mask, style.shape[-2:]).to(x.device)
            x = masked_adain(x, style, x_mask, style_mask)
        return x

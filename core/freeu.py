"""FreeU as the authors' UNet applies it (sooyeon-go/eye_for_an_eye, models/unet_2d_condition.py).

Their FreeUUNet2DConditionModel acts once per decoder stage, on the backbone, right before each up block
(before the backbone meets that stage's skip connections):

- backbone with 4 * model_channels channels (1280 in SD1.5): its first half of channels times b1 (1.2),
  then the whole backbone Fourier-filtered with threshold 1 and scale s1 (0.9);
- backbone with 2 * model_channels channels (640): first half times b2 (1.4), filtered with scale s2 (0.2).

The skip connections are left alone. ComfyUI's FreeU node (comfy_extras/nodes_freelunch.py) uses the same
four numbers differently: it scales the backbone at *every* output block of those widths and filters the
*skip* connection (the FreeU paper's rule). Plain torch; the node layer decides which blocks start a stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

PUBLISHED = {"b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2}  # the numbers hard-coded in their UNet (SD1.5)


def fourier_filter(x: torch.Tensor, threshold: int, scale: float) -> torch.Tensor:
    """Their Fourier_filter: scale the (2 * threshold)^2 lowest centred frequencies of x [B, C, H, W] by `scale`.

    Computed in float32 (the published pipeline runs in fp32) and returned in x's dtype.
    """
    x_freq = torch.fft.fftn(x.float(), dim=(-2, -1))
    x_freq = torch.fft.fftshift(x_freq, dim=(-2, -1))
    height, width = x_freq.shape[-2:]
    mask = torch.ones(x_freq.shape, device=x.device)
    crow, ccol = height // 2, width // 2
    mask[..., crow - threshold : crow + threshold, ccol - threshold : ccol + threshold] = scale
    x_freq = torch.fft.ifftshift(x_freq * mask, dim=(-2, -1))
    return torch.fft.ifftn(x_freq, dim=(-2, -1)).real.to(x.dtype)


@dataclass(frozen=True)
class PublishedFreeU:
    """Which decoder blocks start a stage and the (backbone scale, filter scale) per backbone width."""

    stage_starts: frozenset  # output-block indices whose backbone input starts a decoder stage
    scales: tuple  # ((channels, backbone scale, filter scale), ...), checked in order as published

    @classmethod
    def for_unet(cls, stage_starts, model_channels: int, b1: float, b2: float, s1: float, s2: float) -> "PublishedFreeU":
        return cls(frozenset(stage_starts), ((4 * model_channels, b1, s1), (2 * model_channels, b2, s2)))

    def scale_for(self, channels: int) -> Optional[tuple[float, float]]:
        for width, backbone, skip in self.scales:
            if channels == width:
                return backbone, skip
        return None

    def backbone(self, h: torch.Tensor, block: int) -> torch.Tensor:
        """h [B, C, H, W], the backbone entering output block `block`: changed only where a stage starts."""
        if block not in self.stage_starts:
            return h
        scale = self.scale_for(int(h.shape[1]))
        if scale is None:
            return h
        backbone_scale, filter_scale = scale
        half = h.shape[1] // 2
        h = torch.cat([h[:, :half] * backbone_scale, h[:, half:]], dim=1)
        return fourier_filter(h, threshold=1, scale=filter_scale)

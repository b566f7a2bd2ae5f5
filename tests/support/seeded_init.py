"""Seeded weights for models ComfyUI builds uninitialised (tiny test models, the creature model)."""

from __future__ import annotations

import torch


def seeded_init_(module: torch.nn.Module, generator: torch.Generator) -> None:
    """In place: biases 0, 1-D weights (norms) 1, others normal / sqrt(fan_in); 0-d parameters keep their value."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim == 0:
                continue
            if name.endswith("bias"):
                param.zero_()
            elif param.ndim == 1:
                param.fill_(1.0)
            else:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=generator, dtype=torch.float32) / fan_in**0.5)

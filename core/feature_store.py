"""The recorded features one transfer reads, placed where reading them is cheapest.

Only what the schedule reads is kept: each reference's rows at the steps that
rearrange, the target's rows at the structure-refresh steps. `placement` says
where they live during a sampling run:

- resident: copied once to the compute device when sampling starts, freed when it ends;
- streamed: left in host memory; each step's tensors go to the device through a
  pinned staging copy, and the next step's are sent ahead (asynchronously) as soon
  as the current model call has been queued;
- on the CPU both are the host tensors themselves (no copy).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable

import torch

Key = tuple[Hashable, tuple]  # (source, layer)


def _send(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """tensor on `device`; from host memory to a CUDA device without blocking the host."""
    if tensor.device == device:
        return tensor
    if device.type != "cuda" or tensor.device.type != "cpu":
        return tensor.to(device)
    if not tensor.is_pinned():
        # PyTorch's pinned-memory pool keeps this block until the copy below has finished.
        staging = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
        staging.copy_(tensor)
        tensor = staging
    return tensor.to(device, non_blocking=True)


@dataclass
class FeatureStore:
    """by_step[step][(source, layer)] -> a host tensor [B, tokens, channels] (views into the banks)."""

    by_step: dict[int, dict[Key, torch.Tensor]]
    device: torch.device = torch.device("cpu")
    resident: bool = False
    placed: bool = False  # inside a sampling run, after its first model call
    _placed: dict = field(default_factory=dict)  # step -> {key: tensor on device}

    @property
    def steps(self) -> list[int]:
        return sorted(self.by_step)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for row in self.by_step.values() for t in row.values())

    def place(self, device: torch.device, resident: bool) -> None:
        """Start a sampling run on `device`; resident copies everything there now."""
        self.release()
        self.device, self.resident, self.placed = device, resident, True
        if resident:
            for step in self.steps:
                self._placed[step] = {key: _send(t, device) for key, t in self.by_step[step].items()}

    def release(self) -> None:
        self._placed = {}
        self.device, self.resident, self.placed = torch.device("cpu"), False, False

    def at_step(self, step: int) -> dict[Key, torch.Tensor]:
        """Every tensor of `step` on the device (empty when the schedule reads nothing there)."""
        if step not in self.by_step:
            return {}
        if step not in self._placed:
            self._placed[step] = {key: _send(t, self.device) for key, t in self.by_step[step].items()}
        if not self.resident:
            for old in [s for s in self._placed if s != step and s != self._next(step)]:
                del self._placed[old]
        return self._placed[step]

    def send_ahead(self, step: int) -> None:
        """Queue the copies of the step after `step` (streamed placement only)."""
        following = self._next(step)
        if not self.resident and following is not None and following not in self._placed:
            self._placed[following] = {key: _send(t, self.device) for key, t in self.by_step[following].items()}

    def _next(self, step: int):
        later = [s for s in self.by_step if s > step]
        return min(later) if later else None

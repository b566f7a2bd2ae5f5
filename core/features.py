"""Self-attention input features recorded per step and layer.

A layer is named the way ComfyUI names attention blocks:
(block kind, block number, transformer index inside the block), e.g. ("output", 6, 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

LayerKey = tuple[str, int, int]


@dataclass(frozen=True)
class FeatureBank:
    """features[layer]: [steps, B, tokens, channels]; grids[layer]: the token grid (h, w).

    Row k of every tensor belongs to absolute schedule step `first_step + k`.
    """

    features: dict[LayerKey, torch.Tensor]
    grids: dict[LayerKey, tuple[int, int]]
    first_step: int

    @property
    def layers(self) -> list[LayerKey]:
        return list(self.features)

    def at(self, layer: LayerKey, step: int) -> torch.Tensor:
        """[B, tokens, channels] recorded at absolute schedule step `step`."""
        return self.features[layer][step - self.first_step]

    def has_step(self, step: int) -> bool:
        count = next(iter(self.features.values())).shape[0] if self.features else 0
        return 0 <= step - self.first_step < count


@dataclass
class FeatureRecorder:
    """Collects one tensor per (layer, step); knows the step it is at from the caller."""

    layers: frozenset
    storage_device: torch.device
    storage_dtype: Optional[torch.dtype] = None  # None: the dtype the model computes in (fp32 models keep fp32)
    step: Optional[int] = None
    _rows: dict = field(default_factory=dict)
    _grids: dict = field(default_factory=dict)

    def wants(self, layer: LayerKey) -> bool:
        return self.step is not None and layer in self.layers

    def capture(self, layer: LayerKey, grid: tuple[int, int], tokens: torch.Tensor) -> None:
        self._grids[layer] = grid
        stored = tokens.detach().to(self.storage_device, self.storage_dtype or tokens.dtype)
        self._rows.setdefault(layer, {})[self.step] = stored

    def bank(self, first_step: int, last_step: int) -> FeatureBank:
        expected = list(range(first_step, last_step + 1))
        features = {}
        for layer, by_step in self._rows.items():
            missing = [s for s in expected if s not in by_step]
            if missing:
                raise RuntimeError(f"E4E: no features were recorded for layer {layer} at steps {missing[:5]}")
            features[layer] = torch.stack([by_step[s] for s in expected])
        if set(features) != set(self.layers):
            missing_layers = sorted(set(self.layers) - set(features))
            raise RuntimeError(f"E4E: the model never ran self-attention layers {missing_layers}")
        return FeatureBank(features, dict(self._grids), first_step)

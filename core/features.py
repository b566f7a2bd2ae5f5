"""Self-attention input features recorded per step and layer.

A layer is named the way ComfyUI names attention blocks:
(block kind, block number, transformer index inside the block), e.g. ("output", 6, 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Optional

import torch

LayerKey = tuple[str, int, int]


@dataclass(frozen=True)
class FeatureBank:
    """features[layer]: [rows, B, tokens, channels]; grids[layer]: the token grid (h, w).

    Row k of every tensor belongs to absolute schedule step `steps[k]`.
    """

    features: dict[LayerKey, torch.Tensor]
    grids: dict[LayerKey, tuple[int, int]]
    steps: tuple[int, ...]

    @classmethod
    def contiguous(cls, features, grids, first_step: int) -> "FeatureBank":
        """A bank whose rows are the consecutive steps first_step, first_step + 1, ..."""
        rows = next(iter(features.values())).shape[0] if features else 0
        return cls(features, grids, tuple(range(first_step, first_step + rows)))

    @property
    def layers(self) -> list[LayerKey]:
        return list(self.features)

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.features.values())

    def bytes_per_step(self) -> int:
        return self.nbytes // max(1, len(self.steps))

    def has_step(self, step: int) -> bool:
        return step in self.steps

    def at(self, layer: LayerKey, step: int) -> torch.Tensor:
        """[B, tokens, channels] recorded at absolute schedule step `step` (a view, no copy)."""
        if step not in self.steps:
            raise ValueError(f"E4E: no features were kept for schedule step {step} (kept: {_ranges(self.steps)})")
        return self.features[layer][self.steps.index(step)]

    def only_steps(self, steps: Iterable[int]) -> "FeatureBank":
        """A bank with the rows of `steps` only (copied, so the rest can be freed)."""
        keep = sorted(set(steps))
        missing = [s for s in keep if s not in self.steps]
        if missing:
            raise ValueError(f"E4E: no features were kept for schedule steps {missing[:5]}")
        rows = torch.tensor([self.steps.index(s) for s in keep], dtype=torch.long)
        features = {k: t.index_select(0, rows.to(t.device)) for k, t in self.features.items()}
        return FeatureBank(features, dict(self.grids), tuple(keep))


def _ranges(steps: tuple[int, ...]) -> str:
    if not steps:
        return "none"
    if list(steps) == list(range(steps[0], steps[-1] + 1)):
        return f"{steps[0]}..{steps[-1]}"
    return ", ".join(map(str, steps[:8])) + (" ..." if len(steps) > 8 else "")


@dataclass
class FeatureRecorder:
    """Collects one tensor per (layer, step); knows the step it is at from the caller.

    ComfyUI may run one step's conditional chunks in one model call or in several (memory splits), and a
    step may carry several positive conditionings (Conditioning Combine): the features of a step are the
    mean over every conditional chunk that ran at it (one chunk: kept exactly as computed).
    `storage_dtype` None keeps the dtype the model computed them in (fp32 models keep fp32).
    """

    layers: frozenset
    storage_device: torch.device
    storage_dtype: Optional[torch.dtype] = None  # None: the dtype the model computes in (fp32 models keep fp32)
    step: Optional[int] = None
    _rows: dict = field(default_factory=dict)  # layer -> step -> tensor (a float32 sum once a second chunk arrived)
    _counts: dict = field(default_factory=dict)  # (layer, step) -> chunks captured
    _dtypes: dict = field(default_factory=dict)  # layer -> the dtype its features are kept in
    _grids: dict = field(default_factory=dict)

    def wants(self, layer: LayerKey) -> bool:
        return self.step is not None and layer in self.layers

    def capture(self, layer: LayerKey, grid: tuple[int, int], chunks: list[torch.Tensor]) -> None:
        """The conditional chunks [B, tokens, channels] of one model call at one layer."""
        known = self._grids.setdefault(layer, grid)
        if known != grid:
            raise ValueError(
                f"positive: layer {layer} ran on a {grid[0]}x{grid[1]} token grid after {known[0]}x{known[1]}: an area "
                "conditioning (Conditioning Set Area, or a mask with set_cond_area 'mask bounds') crops the latent; "
                "Eye-for-an-eye needs conditionings that cover the whole image (use Conditioning Set Mask)"
            )
        by_step, key = self._rows.setdefault(layer, {}), (layer, self.step)
        for tokens in chunks:
            count = self._counts.get(key, 0)
            if count == 0:
                dtype = self._dtypes.setdefault(layer, self.storage_dtype or tokens.dtype)
                by_step[self.step] = tokens.detach().to(self.storage_device, dtype, copy=True)
            else:
                by_step[self.step] = by_step[self.step].float() + tokens.detach().to(self.storage_device, torch.float32)
            self._counts[key] = count + 1

    def _mean(self, layer: LayerKey, step: int) -> torch.Tensor:
        stored, count = self._rows[layer].pop(step), self._counts.pop((layer, step))
        return stored if count == 1 else (stored / count).to(self._dtypes[layer])

    def bank(self, first_step: int, last_step: int) -> FeatureBank:
        expected = list(range(first_step, last_step + 1))
        features = {}
        for layer, by_step in self._rows.items():
            missing = [s for s in expected if s not in by_step]
            if missing:
                raise ValueError(
                    f"positive: no positive conditioning ran at schedule steps {missing[:5]} (a timestep range, e.g. "
                    "Conditioning Set Timestep Range, leaves steps out): the inversion needs one at every step"
                )
            first = by_step[expected[0]]
            stacked = first.new_empty((len(expected), *first.shape), dtype=self._dtypes[layer])
            for k, s in enumerate(expected):
                stacked[k] = self._mean(layer, s)  # each step's copy is freed once stacked: peak is the bank plus one step
            features[layer] = stacked
        if set(features) != set(self.layers):
            missing_layers = sorted(set(self.layers) - set(features))
            raise RuntimeError(f"E4E: the model never ran self-attention layers {missing_layers}")
        return FeatureBank(features, dict(self._grids), tuple(expected))

"""Feature source "live branches" and the behaviour preset, as an attn1 patch.

Live branches: the sampler denoises the reference(s) and the target alongside the
result in one batch, [result rows, reference rows (per object), target rows], each
row group replaying its own inversion's noise maps from its own inverted latent at
the skip, with the sampling guidance. The patch reads their self-attention inputs
at every step from those rows, so no feature bank is needed and the extra memory
does not grow with the number of steps.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch

from .attention_patch import COND, KEYS_VALUES_NEED_ONE_SAME_SIZE, EyeForEyePatch, Injection, check_token_grid, check_whole_latent, layer_of
from .feature_store import FeatureStore
from .matching import nearest_reference_index, rearrange_like
from .published import Behaviour, lagged_step, published_nearest_index, soft_token_weight
from .schedule import Phase

UNCOND = 1  # ComfyUI's marker of an unconditional chunk in cond_or_uncond


class FeatureSource(enum.Enum):
    RECORDED = "recorded at inversion"
    LIVE = "live branches"


@dataclass(frozen=True)
class BranchLayout:
    """Rows of one guidance chunk: the result, each object's reference, the target."""

    result: int
    references: tuple[int, ...]
    target: int

    @property
    def rows(self) -> int:
        return self.result + sum(self.references) + self.target

    def result_rows(self, base: int = 0) -> slice:
        return slice(base, base + self.result)

    def reference_rows(self, j: int, base: int = 0) -> slice:
        start = base + self.result + sum(self.references[:j])
        return slice(start, start + self.references[j])

    def target_rows(self, base: int = 0) -> slice:
        start = base + self.result + sum(self.references)
        return slice(start, start + self.target)


class StackedNoise:
    """noise[i]: the noise maps of every branch at step i, stacked like the batch (built per step, not stored)."""

    def __init__(self, result: torch.Tensor, references: Sequence[torch.Tensor], target: torch.Tensor):
        self.parts = [result, *references, target]

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.cat([part[i] for part in self.parts])


@dataclass
class FaithfulPatch(EyeForEyePatch):
    """EyeForEyePatch with a choice of feature source and of rules (paper / published code).

    With RECORDED + PAPER the plain EyeForEyePatch is used instead (today's path).
    """

    source: FeatureSource = FeatureSource.RECORDED
    behaviour: Behaviour = Behaviour.PAPER
    live_layers: frozenset = frozenset()  # the layers read live (LIVE only)
    last_sigma: float = 0.0  # the model's sigma_min: where the published last step lands
    _call: tuple = field(default=(None, None), repr=False)  # (the sigmas tensor of the model call, its phase and step)

    def __post_init__(self):
        if self.source is FeatureSource.LIVE:
            self.store = FeatureStore({})  # live branches read no recorded features (the inversions may have none)
        else:
            super().__post_init__()

    def __deepcopy__(self, memo):
        return self

    def phase_of_call(self, sigmas: torch.Tensor) -> tuple[Phase, Optional[int]]:
        """The phase for this model call: its sigma is read (one device sync) at the call's first layer only.

        ComfyUI hands every layer of one model call the same `sigmas` tensor; holding it keeps its identity unique.
        """
        seen, phase = self._call
        if seen is not sigmas:
            phase = self.phase_at(float(sigmas.flatten()[0]))
            self._call = (sigmas, phase)
        return phase

    @property
    def layout(self) -> BranchLayout:
        batch = self.target.latents.shape[1]
        return BranchLayout(batch, tuple(obj.reference.latents.shape[1] for obj in self.objects), batch)

    def start(self, result: torch.Tensor) -> torch.Tensor:
        """The stacked first latent: result, references and target, each at its inverted latent at the skip."""
        parts = [result] + [obj.reference.latents[0] for obj in self.objects] + [self.target.latents[0]]
        return torch.cat([p.to(result.device, result.dtype) for p in parts])

    def noise(self) -> StackedNoise:
        return StackedNoise(self.target.noise_maps, [obj.reference.noise_maps for obj in self.objects], self.target.noise_maps)

    def phase_at(self, sigma: float) -> tuple[Phase, Optional[int]]:
        step = self.target.step_of_sigma(sigma)
        if step is None or step < self.target.skip:
            return Phase.OFF, None
        k = step - self.target.skip
        if self.behaviour is Behaviour.PUBLISHED:
            k = lagged_step(k)
        return self.schedule.phase(k, self.target.generation_steps), step

    def _soft_tokens(self, obj_index: int, which: str, grid, device) -> Optional[torch.Tensor]:
        obj = self.objects[obj_index]
        mask = obj.target_mask if which == "target" else obj.reference_mask
        if mask is None:
            return None
        return self._cached(("soft", obj_index, which, grid, device), lambda: soft_token_weight(mask, grid).to(device))

    def _layer_grid(self, layer, extra_options) -> Optional[tuple[int, int]]:
        if self.source is FeatureSource.LIVE:
            if layer not in self.live_layers:
                return None
            shape = extra_options["activations_shape"]
            return int(shape[2]), int(shape[3])
        return self.target.features.grids.get(layer)

    def _rearranged(self, own, references, ref_grids, grid):
        """own [B, T, C] with each object's region rearranged from its reference [B or 1, Tr, C]."""
        batch = own.shape[0]
        out = own
        for i, obj in enumerate(self.objects):
            reference = references[i].to(own.device)
            if reference.shape[0] not in (1, batch):
                raise ValueError(f"reference_inversion has a batch of {reference.shape[0]} but the sampled latent has {batch}")
            reference = reference.expand(batch, -1, -1)
            ref_grid = ref_grids[i]
            if obj.correspondence is not None:
                index, valid = self._fixed_index(i, grid, ref_grid, own.device)
                inside = self._mask_tokens(i, "target", grid, own.device)
                inside = valid.expand(batch, -1) if inside is None else inside.expand(batch, -1) & valid.expand(batch, -1)
                index = index.expand(batch, -1)
            elif self.behaviour is Behaviour.PUBLISHED:
                index, inside = published_nearest_index(
                    own, reference, self._soft_tokens(i, "target", grid, own.device), self._soft_tokens(i, "reference", ref_grid, own.device)
                )
            else:
                index, _ = nearest_reference_index(own, reference, self._mask_tokens(i, "reference", ref_grid, own.device))
                inside = self._mask_tokens(i, "target", grid, own.device)
                inside = None if inside is None else inside.expand(batch, -1)
            out = rearrange_like(out, reference, index, inside)
        return out

    def _features(self, n, chunk_base, layer, step):
        """(result, references, reference grids, target) features of one chunk."""
        if self.source is FeatureSource.LIVE:
            layout = self.layout
            refs = [n[layout.reference_rows(j, chunk_base)] for j in range(len(self.objects))]
            return n[layout.result_rows(chunk_base)], refs, None, n[layout.target_rows(chunk_base)]
        refs = [obj.reference.features.at(layer, step) for obj in self.objects]
        grids = [obj.reference.features.grids[layer] for obj in self.objects]
        return None, refs, grids, self.target.features.at(layer, step)

    def __call__(self, n, context, value, extra_options):
        layer = layer_of(extra_options)
        grid = self._layer_grid(layer, extra_options) if layer is not None else None
        if grid is None:
            return n, context, value
        chunks = extra_options.get("cond_or_uncond") or [COND]
        size = n.shape[0] // len(chunks)
        live = self.source is FeatureSource.LIVE
        if live and size != self.layout.rows:
            raise ValueError(
                "model: Apply Eye-for-an-eye with feature source 'live branches' must be sampled with the Eye-for-an-eye "
                f"KSampler or the Replay Pieces SAMPLER (expected {self.layout.rows} rows per guidance chunk, got {size})"
            )
        phase, step = self.phase_of_call(extra_options["sigmas"])
        if phase is Phase.OFF:
            return n, context, value
        check_whole_latent(tuple(self.target.latents.shape[-2:]), extra_options)
        check_token_grid(n, grid, layer, extra_options)
        new = n.clone()
        for c, kind in enumerate(chunks):
            base = c * size
            rows = self.layout.result_rows(base) if live else slice(base, base + size)
            own = n[rows]
            _, refs, ref_grids, target = self._features(n, base, layer, step)
            ref_grids = ref_grids or [grid] * len(self.objects)
            if phase is Phase.REFRESH:
                refresh_kind = UNCOND if self.behaviour is Behaviour.PUBLISHED else COND  # published: uncond result <- uncond target
                if kind == refresh_kind:
                    new[rows] = target.to(own.device, own.dtype).expand_as(own)
                continue
            if kind != COND:
                continue
            if self.injection is Injection.KEYS_VALUES:
                if len(self.objects) != 1 or ref_grids[0] != grid:
                    raise ValueError(KEYS_VALUES_NEED_ONE_SAME_SIZE)
                new[rows] = refs[0].to(own.device, own.dtype).expand_as(own)
            else:
                new[rows] = self._rearranged(own, refs, ref_grids, grid)
        if self.injection is Injection.FEATURES:
            return new, new, new
        if self.injection is Injection.VALUES:
            return n, context, new
        return n, new, new


def transfer_patch(model_options: Optional[dict]) -> Optional[EyeForEyePatch]:
    """The Eye-for-an-eye patch registered in these model_options, if any."""
    patches = ((model_options or {}).get("transformer_options") or {}).get("patches") or {}
    mine = [p for p in patches.get("attn1_patch", []) if isinstance(p, EyeForEyePatch)]
    return mine[-1] if mine else None


def live_patch(model_options: Optional[dict]) -> Optional[FaithfulPatch]:
    patch = transfer_patch(model_options)
    return patch if isinstance(patch, FaithfulPatch) and patch.source is FeatureSource.LIVE else None

"""The Eye-for-an-eye self-attention patch: rearranged reference features enter attention.

An instance is registered as an `attn1_patch` and called as
patch(n, context, value, extra_options) with the normalised hidden states that
enter self-attention. It reads these keys of `extra_options` (all set by the
UNet): "block", "block_index", "cond_or_uncond", "activations_shape", and CALL_KEY (the
step and its features, set once per model call by a wrapper) or, without that, "sigmas".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Optional

import torch

from .feature_store import FeatureStore
from .features import FeatureRecorder, LayerKey
from .inversion import Inversion
from .masks import token_mask
from .correspondence import Correspondence, resample
from .matching import nearest_reference_index, rearrange_like
from .schedule import Phase, TransferSchedule

COND = 0  # ComfyUI's marker of a conditional chunk in cond_or_uncond
CALL_KEY = "e4e_call"  # transformer_options key of the CallState a model-call wrapper sets


KEYS_VALUES_NEED_ONE_SAME_SIZE = (
    "mode: key/value injection needs one reference_inversion of the target's size: use another mode, or one "
    "reference image of the target's size"
)


class Injection(enum.Enum):
    """What of the result's self-attention is taken from elsewhere."""

    FEATURES = "rearrange features (q, k, v)"  # the method
    VALUES = "rearrange values only"  # the paper's V-injection ablation
    KEYS_VALUES = "reference keys and values, no rearrangement"  # cross-image attention baseline


def layer_of(extra_options: dict) -> Optional[LayerKey]:
    block = extra_options.get("block")
    if block is None:
        return None
    return (block[0], int(block[1]), int(extra_options.get("block_index", 0)))


def cond_rows(extra_options: dict, batch: int) -> list[slice]:
    """Row ranges of the conditional chunks in a batch of `batch` rows."""
    chunks = extra_options.get("cond_or_uncond") or [COND]
    size = batch // len(chunks)
    return [slice(i * size, (i + 1) * size) for i, kind in enumerate(chunks) if kind == COND]


def check_token_grid(n: torch.Tensor, grid: tuple[int, int], layer: LayerKey, extra_options: dict) -> None:
    """Refuse a model call whose tokens are not the inverted image's grid at this layer."""
    if n.shape[1] != grid[0] * grid[1]:
        shape = extra_options.get("activations_shape")
        seen = f"{int(shape[2])}x{int(shape[3])}" if shape is not None else f"{n.shape[1]} tokens"
        refuse_other_grid(f"layer {layer} ran on {seen}", f"{grid[0]}x{grid[1]} there")


def check_whole_latent(latent_hw: tuple[int, int], extra_options: dict) -> None:
    """Refuse a model call on a part of the latent (the UNet's input is the call's latent region)."""
    shape = extra_options.get("original_shape")
    if shape is not None and tuple(int(v) for v in shape[-2:]) != tuple(latent_hw):
        refuse_other_grid(f"the model ran on a {int(shape[-1])}x{int(shape[-2])} latent region",
                          f"{latent_hw[1]}x{latent_hw[0]} latent")


def refuse_other_grid(seen: str, expected: str) -> None:
    raise ValueError(
        f"positive/latent: {seen} but the inverted image is {expected}: sample the latent that was inverted, with "
        "conditionings that cover the whole image (an area conditioning, Conditioning Set Area or set_cond_area "
        "'mask bounds', crops the latent; use Conditioning Set Mask)"
    )


def _match_batch(bank_rows: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    if bank_rows.shape[0] in (1, batch):
        return bank_rows.expand(batch, -1, -1)
    raise ValueError(f"{name} has a batch of {bank_rows.shape[0]} but the sampled latent has {batch}")


@dataclass(frozen=True)
class TransferObject:
    """One appearance source: a reference, optionally restricted to regions, optionally with a fixed correspondence."""

    reference: Inversion
    target_mask: Optional[torch.Tensor] = None  # float [B, 1, H, W], image space
    reference_mask: Optional[torch.Tensor] = None
    correspondence: Optional[Correspondence] = None  # used instead of per-step matching


@dataclass(frozen=True)
class CallState:
    """Worked out once per model call: the schedule phase, the step, and that step's features on the device."""

    owner: object
    phase: Phase
    step: Optional[int]
    tensors: dict


def source_key(inversion: Inversion) -> int:
    return id(inversion.features)


def features_read(target: Inversion, objects, schedule: TransferSchedule) -> dict:
    """step -> {(source, layer): host tensor}: only what the schedule reads (references where it
    rearranges, the target where it refreshes; nothing outside the window)."""
    total, skip = target.generation_steps, target.skip
    wanted: dict = {}
    for phase, sources in ((Phase.REFRESH, [target]), (Phase.REARRANGE, [obj.reference for obj in objects])):
        for g in schedule.steps_in(phase, total):
            row = wanted.setdefault(skip + g, {})
            for inv in sources:
                for layer in target.features.layers:
                    row[(source_key(inv), layer)] = inv.features.at(layer, skip + g)
    return wanted


@dataclass
class EyeForEyePatch:
    """Each object's target-mask tokens take the features of their nearest reference tokens
    (later objects win where target masks overlap); tokens outside every target mask keep their own."""

    target: Inversion
    objects: tuple[TransferObject, ...]
    schedule: TransferSchedule
    injection: Injection = Injection.FEATURES
    _cache: dict = field(default_factory=dict, repr=False)
    store: FeatureStore = field(init=False, repr=False)

    def __post_init__(self):
        self.store = FeatureStore(features_read(self.target, self.objects, self.schedule))

    def __deepcopy__(self, memo):
        # ModelPatcher.clone() deep-copies model_options; the inversions are read-only, share them.
        return self

    @property
    def layers(self) -> list[LayerKey]:
        return self.target.features.layers

    def phase_at(self, sigma: float) -> tuple[Phase, Optional[int]]:
        """The schedule phase at this sigma and the absolute step it is, or OFF for foreign sigmas."""
        step = self.target.step_of_sigma(sigma)
        if step is None or step < self.target.skip:
            return Phase.OFF, None
        return self.schedule.phase(step - self.target.skip, self.target.generation_steps), step

    def begin_call(self, sigma: float) -> CallState:
        """One sigma read per model call: the phase, the step and its features (sent to the device)."""
        phase, step = self.phase_at(sigma)
        return CallState(self, phase, step, {} if phase is Phase.OFF else self.store.at_step(step))

    def end_call(self, state: CallState) -> None:
        """The model call is queued: send the next step's features ahead."""
        if state.step is not None:
            self.store.send_ahead(state.step)

    def _read(self, inversion: Inversion, layer: LayerKey, step: int, tensors: dict, device) -> torch.Tensor:
        found = tensors.get((source_key(inversion), layer))
        return (found if found is not None else inversion.features.at(layer, step)).to(device)

    def _cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _mask_tokens(self, obj_index: int, which: str, grid: tuple[int, int], device) -> Optional[torch.Tensor]:
        obj = self.objects[obj_index]
        mask = obj.target_mask if which == "target" else obj.reference_mask
        if mask is None:
            return None
        return self._cached(("mask", obj_index, which, grid, device), lambda: token_mask(mask, grid).to(device))

    def _fixed_index(self, obj_index: int, grid, ref_grid, device):
        corr = self.objects[obj_index].correspondence
        return self._cached(
            ("corr", obj_index, grid, ref_grid, device),
            lambda: tuple(t.to(device) for t in resample(corr, grid, ref_grid)),
        )

    def replacement(self, own: torch.Tensor, layer: LayerKey, grid: tuple[int, int], phase: Phase, step: int, tensors: Optional[dict] = None) -> torch.Tensor:
        """New features for the result's conditional rows `own` [B, T, C] at one layer and step."""
        batch, tensors = own.shape[0], tensors or {}
        if phase is Phase.REFRESH:
            target = self._read(self.target, layer, step, tensors, own.device).to(own.dtype)
            return _match_batch(target, batch, "target_inversion").clone()
        if self.injection is Injection.KEYS_VALUES:
            return self._reference_tokens(layer, step, grid, own, tensors)
        out = own
        for i, obj in enumerate(self.objects):
            reference = _match_batch(self._read(obj.reference, layer, step, tensors, own.device), batch, "reference_inversion")
            ref_grid = obj.reference.features.grids[layer]
            inside = self._mask_tokens(i, "target", grid, own.device)
            inside = torch.ones(batch, own.shape[1], dtype=torch.bool, device=own.device) if inside is None else inside.expand(batch, -1)
            if obj.correspondence is None:
                index, _ = nearest_reference_index(own, reference, self._mask_tokens(i, "reference", ref_grid, own.device))
            else:
                index, valid = self._fixed_index(i, grid, ref_grid, own.device)
                inside = inside & valid.expand(batch, -1)
                index = index.expand(batch, -1)
            out = rearrange_like(out, reference, index, inside)
        return out

    def _reference_tokens(self, layer, step, grid, own, tensors):
        """The references' own tokens, unrearranged (one object, same grid as the target)."""
        if len(self.objects) != 1 or self.objects[0].reference.features.grids[layer] != grid:
            raise ValueError(KEYS_VALUES_NEED_ONE_SAME_SIZE)
        reference = self._read(self.objects[0].reference, layer, step, tensors, own.device).to(own.dtype)
        return _match_batch(reference, own.shape[0], "reference_inversion")

    def __call__(self, n, context, value, extra_options):
        layer = layer_of(extra_options)
        if layer not in self.target.features.grids:
            return n, context, value
        state = extra_options.get(CALL_KEY)
        if state is None or state.owner is not self:  # called outside a model-call wrapper: read the sigma here
            state = self.begin_call(float(extra_options["sigmas"].flatten()[0]))
        phase, step = state.phase, state.step
        if phase is Phase.OFF:
            return n, context, value
        grid = self.target.features.grids[layer]
        check_token_grid(n, grid, layer, extra_options)
        new = n.clone()
        for rows in cond_rows(extra_options, n.shape[0]):
            new[rows] = self.replacement(n[rows], layer, grid, phase, step, state.tensors)
        if self.injection is Injection.FEATURES:
            return new, new, new
        if self.injection is Injection.VALUES:
            return n, context, new
        return n, new, new


@dataclass
class RecordingPatch:
    """An attn1 patch that hands the conditional chunks of chosen layers to a FeatureRecorder (which averages
    several positive conditionings; calls without a conditional chunk record nothing)."""

    recorder: FeatureRecorder

    def __deepcopy__(self, memo):
        return self

    def __call__(self, n, context, value, extra_options):
        layer = layer_of(extra_options)
        if self.recorder.wants(layer):
            rows = cond_rows(extra_options, n.shape[0])  # none in a call ComfyUI gave the uncond branch alone
            if rows:
                shape = extra_options["activations_shape"]
                self.recorder.capture(layer, (int(shape[2]), int(shape[3])), [n[r] for r in rows])
        return n, context, value

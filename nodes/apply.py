"""E4E_ApplyEyeForEye (+ multi-object variant): registers the rearrangement attn1 patch on a MODEL clone."""

from __future__ import annotations

from ..core.attention_patch import KEYS_VALUES_NEED_ONE_SAME_SIZE, EyeForEyePatch, Injection, TransferObject
from ..core.inversion import Inversion, check_compatible
from ..core.live_branches import FaithfulPatch, FeatureSource
from ..core.published import Behaviour
from ..core.schedule import Phase, TransferSchedule
from . import bank_placement
from .api import CATEGORY, Correspondence, Inversion as InversionType, Objects, io
from .model_info import check_same_model, check_supported, decoder_attention_layers, finest_decoder_layers
from .objects import check_object_fits, object_label, transfer_object
from .validation import is_number, refuse, verdict, widget_problems, window_problems

MODES = [mode.value for mode in Injection]
SOURCES = [source.value for source in FeatureSource]
BEHAVIOURS = [behaviour.value for behaviour in Behaviour]


def inversion_inputs(target: Inversion, objects) -> list[tuple[str, Inversion]]:
    """(input name, inversion) of the target and every object's reference, as the user knows them."""
    names = [("target_inversion", target)]
    for k, obj in enumerate(objects):
        names.append((f"{object_label(k, len(objects))}reference_inversion", obj.reference))
    return names


def _check_features(target: Inversion, objects, source: FeatureSource) -> None:
    """The features the source reads exist: references of the target's size (live), recorded features (recorded)."""
    if source is FeatureSource.LIVE:
        for obj in objects:
            if obj.reference.latents.shape[2:] != target.latents.shape[2:]:
                raise ValueError(
                    "feature_source: live branches denoise the reference in the target's batch, so every reference "
                    f"latent must have the target's size ({tuple(target.latents.shape[2:])}); got "
                    f"{tuple(obj.reference.latents.shape[2:])}: use 'recorded at inversion' or resize the reference"
                )
    else:
        unrecorded = [name for name, inv in inversion_inputs(target, objects) if not inv.features.layers]
        if unrecorded:
            raise ValueError(
                f"feature_source: {' and '.join(unrecorded)} {'was' if len(unrecorded) == 1 else 'were'} inverted with "
                "record_features off, so there are no recorded features to read: turn record_features on in "
                "that Invert node, or use feature_source 'live branches' (which needs none)"
            )


def transfer_schedule(start, end, refresh_every, refresh_until, behaviour) -> TransferSchedule:
    """The schedule with the behaviour's refresh rule (published: step % refresh_every == 0)."""
    published = behaviour == Behaviour.PUBLISHED.value
    return TransferSchedule(start=start, end=end, refresh_every=refresh_every, refresh_until=refresh_until,
                            refresh_counted_from=0 if published else None)


def published_refresh_problems(start, end, refresh_every, refresh_until, mode, feature_source, behaviour) -> list[str]:
    """At /prompt: a structure refresh under 'published code' where the published code has none to give."""
    if behaviour != Behaviour.PUBLISHED.value or not all(is_number(v) for v in (start, end, refresh_every, refresh_until)):
        return []
    schedule = transfer_schedule(start, end, refresh_every, refresh_until, behaviour)
    if refresh_every < 0 or not schedule.steps_in(Phase.REFRESH, max(refresh_until, 0)):
        return []
    if mode == Injection.VALUES.value:
        return [
            f"refresh_every: got {refresh_every}, but the published V-injection path ('values only' + 'published code') "
            "has no structure refresh: set refresh_every 0, or behaviour 'paper' for the pack's refresh of the values"
        ]
    if (feature_source or SOURCES[0]) == FeatureSource.RECORDED.value:
        return [
            "behaviour: the published structure refresh writes the unconditional result row from the target's "
            "unconditional features, which an inversion does not record: use feature_source 'live branches' "
            "(or refresh_every 0)"
        ]
    return []


def apply_eye_for_eye(
    model,
    target: Inversion,
    objects: tuple[TransferObject, ...],
    schedule: TransferSchedule,
    injection: Injection,
    source: FeatureSource = FeatureSource.RECORDED,
    behaviour: Behaviour = Behaviour.PAPER,
):
    check_supported(model)
    if not objects:
        raise ValueError("objects: connect at least one Transfer Object")
    check_same_model(model, target, "target_inversion")
    for k, obj in enumerate(objects):
        label = object_label(k, len(objects))
        check_same_model(model, obj.reference, f"{label}reference_inversion")
        check_compatible(obj.reference, target)
        check_object_fits(obj, target, label)
        corr = obj.correspondence
        if corr is not None and corr.index.shape[0] not in (1, target.latents.shape[1]):
            raise ValueError(f"correspondence has a batch of {corr.index.shape[0]} but target_inversion has {target.latents.shape[1]}")
    if schedule.is_empty(target.generation_steps):
        raise ValueError(
            f"start/end: the window from generation step {schedule.start} to {'the end' if schedule.end < 0 else schedule.end} "
            f"holds none of the inversions' {target.generation_steps} generation steps (steps - skip), so nothing would "
            f"change: choose a start below {target.generation_steps}"
        )
    known = {layer.key for layer in decoder_attention_layers(model)}
    if not set(target.features.layers) <= known:
        raise ValueError("model does not have the attention layers the inversions recorded: invert with this MODEL")
    patched = model.clone()
    patches = patched.model_options["transformer_options"].setdefault("patches", {})
    # Applying again replaces the earlier transfer instead of stacking it (several objects go in one patch).
    patches["attn1_patch"] = [p for p in patches.get("attn1_patch", []) if not isinstance(p, EyeForEyePatch)]
    if injection is Injection.KEYS_VALUES and (len(objects) != 1 or objects[0].reference.latents.shape[-2:] != target.latents.shape[-2:]):
        raise ValueError(KEYS_VALUES_NEED_ONE_SAME_SIZE)
    _check_features(target, objects, source)
    if source is FeatureSource.RECORDED and behaviour is Behaviour.PAPER:
        patch = EyeForEyePatch(target, tuple(objects), schedule, injection)  # today's path, unchanged
        patched.set_model_attn1_patch(patch)
        bank_placement.register(patched, patch)  # scheduled rows on the GPU or streamed; one sigma read a call
        return patched
    patch = FaithfulPatch(
        target, tuple(objects), schedule, injection, source=source, behaviour=behaviour,
        live_layers=frozenset(finest_decoder_layers(model)),
        last_sigma=float(model.get_model_object("model_sampling").sigma_min),
    )
    patched.set_model_attn1_patch(patch)
    bank_placement.unregister(patched)  # an earlier recorded transfer's wrappers must not serve this patch
    return patched


def _schedule_inputs():
    return [
        io.Int.Input("start", default=10, min=0, max=1000, tooltip="First generation step (after the skip) with rearrangement (published: 10)."),
        io.Int.Input("end", default=-1, min=-1, max=1000, tooltip="Generation step where it stops (exclusive); -1 runs to the end."),
        io.Int.Input("refresh_every", default=5, min=0, max=1000, tooltip="Every n-th step from start uses the target's own features (structure refresh); 0 turns it off."),
        io.Int.Input("refresh_until", default=40, min=0, max=1000, tooltip="No structure refresh from this generation step on (published: 40)."),
        io.Combo.Input("mode", options=MODES, default=MODES[0], tooltip="Values only is the paper's V-injection ablation; keys and values without rearrangement is the cross-image attention baseline."),
    ]


def _faithful_inputs():
    return [
        io.Combo.Input(
            "feature_source", options=SOURCES, default=SOURCES[0], optional=True,
            tooltip=(
                "Where the reference and target features come from. 'recorded at inversion' (fast): the features the "
                "Invert nodes recorded. 'live branches' (as published): the sampler denoises the reference(s) and the "
                "target alongside the result, at the sampling guidance, and their features are read at every step; "
                "no stored features are needed and memory does not grow with steps, but each step costs up to three "
                "times as much. The two agree when sampling cfg equals inversion cfg. Live needs the Eye-for-an-eye "
                "KSampler or Replay Pieces SAMPLER and references of the target's size."
            ),
        ),
        io.Combo.Input(
            "behaviour", options=BEHAVIOURS, default=BEHAVIOURS[0], optional=True,
            tooltip=(
                "'paper': the rules as the paper describes them. 'published code': what the authors' code does: the "
                "step counter runs one step behind (rearrangement and refresh start a step late); on refresh steps "
                "the unconditional result takes the unconditional target's features and the conditional result keeps "
                "its own; soft (bilinear) masks multiplied into the features, masked-out reference tokens as zero "
                "vectors, every target token with a non-zero mask rearranged; AdaIN statistics where the resized "
                "mask is exactly 1 (unbiased variance) with a soft blend; the last step lands on alpha_cumprod[0] "
                "instead of sigma 0. With a refresh it needs feature_source 'live branches'."
            ),
        ),
    ]


def _schedule(cls, start, end, refresh_every, refresh_until, mode, feature_source=None, behaviour=None) -> TransferSchedule:
    refuse(_schedule_problems(cls, start, end, refresh_every, refresh_until, mode, feature_source, behaviour))
    return transfer_schedule(start, end, refresh_every, refresh_until, behaviour or BEHAVIOURS[0])


def _schedule_problems(cls, start, end, refresh_every, refresh_until, mode, feature_source=None, behaviour=None) -> list[str]:
    return widget_problems(cls, start=start, end=end, refresh_every=refresh_every, refresh_until=refresh_until, mode=mode,
                           feature_source=feature_source, behaviour=behaviour) + window_problems(start, end) + \
        published_refresh_problems(start, end, refresh_every, refresh_until, mode, feature_source, behaviour)


class ApplyEyeForEye(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4E_ApplyEyeForEye",
            display_name="Apply Eye-for-an-eye",
            category=CATEGORY,
            description=(
                "Patches the MODEL so that, in the decoder's finest self-attention layers, every result token takes "
                "the features of its semantically nearest reference token (cosine nearest neighbour, recomputed each "
                "step, or a fixed correspondence). Only the conditional branch is changed; the uncond branch and "
                "every other layer run as usual."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model the inversions were made with."),
                InversionType.Input("reference_inversion", tooltip="The appearance image."),
                InversionType.Input("target_inversion", tooltip="The structure image."),
            ]
            + _schedule_inputs()
            + [
                io.Mask.Input("target_mask", optional=True, tooltip="Only target tokens inside this mask are rearranged. The target image's mask (any resolution with its framing; 1 or one per image)."),
                io.Mask.Input("reference_mask", optional=True, tooltip="Only reference tokens inside this mask can be chosen. The reference image's mask (any resolution with its framing)."),
                Correspondence.Input("correspondence", optional=True, tooltip="A fixed correspondence (from Semantic Match) used at every step instead of per-step matching. Compute it from the same two latents that were inverted; its features may come from another model or resolution (it is resampled to the transfer's grids)."),
            ]
            + _faithful_inputs(),
            outputs=[io.Model.Output("patched_model", display_name="model", tooltip="A patched clone; the input MODEL is left as it was. Sample with it in KSampler (Eye-for-an-eye).")],
        )

    @classmethod
    def execute(cls, model, reference_inversion, target_inversion, start, end, refresh_every, refresh_until, mode, target_mask=None, reference_mask=None, correspondence=None,
                feature_source=SOURCES[0], behaviour=BEHAVIOURS[0]) -> io.NodeOutput:
        schedule = _schedule(cls, start, end, refresh_every, refresh_until, mode, feature_source, behaviour)
        obj = transfer_object(reference_inversion, target_mask, reference_mask, correspondence, target=target_inversion)
        return io.NodeOutput(apply_eye_for_eye(model, target_inversion, (obj,), schedule, Injection(mode), FeatureSource(feature_source), Behaviour(behaviour)))

    @classmethod
    def validate_inputs(cls, start=None, end=None, refresh_every=None, refresh_until=None, mode=None, feature_source=None, behaviour=None):
        return verdict(_schedule_problems(cls, start, end, refresh_every, refresh_until, mode, feature_source, behaviour))


class ApplyEyeForEyeObjects(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4E_ApplyEyeForEyeObjects",
            display_name="Apply Eye-for-an-eye (multi-object)",
            category=CATEGORY,
            description=(
                "Multi-object transfer: each object's target region takes its appearance from its own reference "
                "region; the rest of the target is untouched."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model the inversions were made with."),
                InversionType.Input("target_inversion", tooltip="The structure image."),
                Objects.Input("objects", tooltip="From chained Transfer Object nodes."),
            ]
            + _schedule_inputs()
            + _faithful_inputs(),
            outputs=[io.Model.Output("patched_model", display_name="model", tooltip="A patched clone; the input MODEL is left as it was. Sample with it in KSampler (Eye-for-an-eye).")],
        )

    @classmethod
    def execute(cls, model, target_inversion, objects, start, end, refresh_every, refresh_until, mode,
                feature_source=SOURCES[0], behaviour=BEHAVIOURS[0]) -> io.NodeOutput:
        schedule = _schedule(cls, start, end, refresh_every, refresh_until, mode, feature_source, behaviour)
        return io.NodeOutput(apply_eye_for_eye(model, target_inversion, tuple(objects), schedule, Injection(mode), FeatureSource(feature_source), Behaviour(behaviour)))

    @classmethod
    def validate_inputs(cls, start=None, end=None, refresh_every=None, refresh_until=None, mode=None, feature_source=None, behaviour=None):
        return verdict(_schedule_problems(cls, start, end, refresh_every, refresh_until, mode, feature_source, behaviour))

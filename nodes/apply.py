"""E4E_ApplyEyeForEye: registers the feature-rearrangement attn1 patch on a MODEL clone."""

from __future__ import annotations

from ..core.attention_patch import EyeForEyePatch
from ..core.inversion import Inversion, check_compatible
from ..core.masks import as_mask_batch
from ..core.schedule import TransferSchedule
from .api import CATEGORY, Inversion as InversionType, io
from .model_info import check_supported, decoder_attention_layers, model_family

MODES = ["rearrange features (q, k, v)", "rearrange values only"]


def apply_eye_for_eye(model, reference: Inversion, target: Inversion, schedule: TransferSchedule, values_only: bool, target_mask=None, reference_mask=None):
    check_supported(model)
    check_compatible(reference, target)
    if model_family(model) != target.model_family:
        raise ValueError(f"model is {model_family(model)} but the inversions were made with {target.model_family}: use the same MODEL")
    known = {layer.key for layer in decoder_attention_layers(model)}
    if not set(target.features.layers) <= known:
        raise ValueError("model does not have the attention layers the inversions recorded: invert with this MODEL")
    patch = EyeForEyePatch(
        reference=reference,
        target=target,
        schedule=schedule,
        values_only=values_only,
        target_mask=None if target_mask is None else as_mask_batch(target_mask, "target_mask"),
        reference_mask=None if reference_mask is None else as_mask_batch(reference_mask, "reference_mask"),
    )
    patched = model.clone()
    patches = patched.model_options["transformer_options"].setdefault("patches", {})
    # Applying the node twice replaces the earlier transfer instead of stacking it.
    patches["attn1_patch"] = [p for p in patches.get("attn1_patch", []) if not isinstance(p, EyeForEyePatch)]
    patched.set_model_attn1_patch(patch)
    return patched


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
                "step). Only the conditional branch is changed; the uncond branch and every other layer run as usual."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model the inversions were made with."),
                InversionType.Input("reference_inversion", tooltip="The appearance image."),
                InversionType.Input("target_inversion", tooltip="The structure image."),
                io.Int.Input("start", default=10, min=0, max=1000, tooltip="First generation step (after the skip) with rearrangement (published: 10)."),
                io.Int.Input("end", default=-1, min=-1, max=1000, tooltip="Generation step where it stops (exclusive); -1 runs to the end."),
                io.Int.Input("refresh_every", default=5, min=0, max=1000, tooltip="Every n-th step from start uses the target's own features (structure refresh); 0 turns it off."),
                io.Int.Input("refresh_until", default=40, min=0, max=1000, tooltip="No structure refresh from this generation step on (published: 40)."),
                io.Combo.Input("mode", options=MODES, default=MODES[0], tooltip="Values only is the paper's V-injection ablation."),
                io.Mask.Input("target_mask", optional=True, tooltip="Only target tokens inside this mask are rearranged."),
                io.Mask.Input("reference_mask", optional=True, tooltip="Only reference tokens inside this mask can be chosen."),
            ],
            outputs=[io.Model.Output(tooltip="A patched clone; the input MODEL is left as it was.")],
        )

    @classmethod
    def execute(cls, model, reference_inversion, target_inversion, start, end, refresh_every, refresh_until, mode, target_mask=None, reference_mask=None) -> io.NodeOutput:
        schedule = TransferSchedule(start=start, end=end, refresh_every=refresh_every, refresh_until=refresh_until)
        patched = apply_eye_for_eye(
            model, reference_inversion, target_inversion, schedule, mode == MODES[1], target_mask, reference_mask
        )
        return io.NodeOutput(patched)

"""E4E_FreeUPublished: the authors' FreeU (backbone filtered once per decoder stage) as an output-block patch."""

from __future__ import annotations

import logging

import comfy.supported_models
from comfy.ldm.modules.diffusionmodules.openaimodel import Upsample

from ..core.freeu import PUBLISHED, PublishedFreeU
from .api import CATEGORY, io
from .model_info import UnsupportedModelError, model_family
from .validation import refuse, verdict, widget_problems

log = logging.getLogger(__name__)

# UNets with the SD layout the published stage rule reads (decoder stages of 2x / 4x model_channels).
FAMILIES = (comfy.supported_models.SD15, comfy.supported_models.SD20, comfy.supported_models.SDXL)
MARK = "e4e_freeu_published"  # attribute carried by the registered patch function
COMFY_FREEU = ("FreeU.patch.", "FreeU_V2.patch.")


def stage_starts(diffusion_model) -> list[int]:
    """Output blocks whose backbone input starts a decoder stage: the first, and each one after an Upsample."""
    starts = [0]
    for i, block in enumerate(diffusion_model.output_blocks[:-1]):
        if any(isinstance(m, Upsample) for m in block):
            starts.append(i + 1)
    return starts


def check_freeu_family(model, input_name: str = "model") -> None:
    config = model.model.model_config
    if not isinstance(config, FAMILIES) or not hasattr(model.get_model_object("diffusion_model"), "output_blocks"):
        raise UnsupportedModelError(
            f"{input_name}: the MODEL is a {model_family(model)} model; the published FreeU acts on the decoder stages of "
            "an SD1.x / SD2.x / SDXL UNet (backbones of 4x and 2x model_channels before each up block), which this "
            "family does not have: load one of those, or leave this node out"
        )


def published_freeu(model, b1: float, b2: float, s1: float, s2: float):
    """A clone of `model` with the published FreeU as an output_block_patch (an earlier one is replaced)."""
    check_freeu_family(model)
    unet = model.get_model_object("diffusion_model")
    rule = PublishedFreeU.for_unet(stage_starts(unet), int(model.model.model_config.unet_config["model_channels"]), b1, b2, s1, s2)
    patched = model.clone()
    patches = patched.model_options["transformer_options"].setdefault("patches", {})
    existing = patches.get("output_block_patch", [])
    if any(getattr(p, "__qualname__", "").startswith(COMFY_FREEU) for p in existing):
        raise ValueError(
            "model: it already carries ComfyUI's FreeU node, which would scale the backbone a second time and filter "
            "the skip: connect the model from before that FreeU node (or leave this one out)"
        )
    same = [p for p in existing if getattr(p, MARK, None) == rule]
    if same:
        return patched  # applying the same numbers again changes nothing (and keeps the model's fingerprint)
    patches["output_block_patch"] = [p for p in existing if getattr(p, MARK, None) is None]

    def output_block_patch(h, hsp, transformer_options):
        return rule.backbone(h, int(transformer_options["block"][1])), hsp

    setattr(output_block_patch, MARK, rule)
    patched.set_model_output_block_patch(output_block_patch)
    return patched


class FreeUPublished(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4E_FreeUPublished",
            display_name="FreeU (as published, Eye-for-an-eye)",
            category=CATEGORY,
            description=(
                "FreeU the way the Eye-for-an-eye authors' UNet applies it: once per decoder stage, on the backbone "
                "right before the stage's first block, the first half of the channels is scaled (b1 where the backbone "
                "has 4x model_channels channels, b2 where it has 2x) and the whole backbone is Fourier-filtered (its "
                "lowest frequencies times s1 / s2). Skip connections are left alone. ComfyUI's FreeU node scales "
                "every such output block and filters the skip instead. Put it before the Invert nodes (the inversions "
                "and the transfer must see the same model); it composes with LoRA and Apply Eye-for-an-eye."
            ),
            inputs=[
                io.Model.Input("model", tooltip="An SD1.x, SD2.x or SDXL model (LoRA may be applied before or after)."),
                io.Float.Input("b1", default=PUBLISHED["b1"], min=0.0, max=10.0, step=0.01, tooltip="Backbone scale at the 4x model_channels stages (published: 1.2)."),
                io.Float.Input("b2", default=PUBLISHED["b2"], min=0.0, max=10.0, step=0.01, tooltip="Backbone scale at the 2x model_channels stage (published: 1.4)."),
                io.Float.Input("s1", default=PUBLISHED["s1"], min=0.0, max=10.0, step=0.01, tooltip="Low-frequency scale of the 4x stages' backbone (published: 0.9)."),
                io.Float.Input("s2", default=PUBLISHED["s2"], min=0.0, max=10.0, step=0.01, tooltip="Low-frequency scale of the 2x stage's backbone (published: 0.2)."),
            ],
            outputs=[io.Model.Output("patched_model", display_name="model", tooltip="A patched clone; the input MODEL is left as it was.")],
        )

    @classmethod
    def validate_inputs(cls, b1=None, b2=None, s1=None, s2=None):
        return verdict(widget_problems(cls, b1=b1, b2=b2, s1=s1, s2=s2))

    @classmethod
    def execute(cls, model, b1, b2, s1, s2) -> io.NodeOutput:
        refuse(widget_problems(cls, b1=b1, b2=b2, s1=s1, s2=s2))
        return io.NodeOutput(published_freeu(model, b1, b2, s1, s2))

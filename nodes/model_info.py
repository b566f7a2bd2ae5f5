"""What the pack needs to know about a loaded MODEL: family, sampling, decoder attention layers."""

from __future__ import annotations

from dataclasses import dataclass

import types

import comfy.model_sampling
import comfy.supported_models
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import Upsample

from ..core.features import LayerKey

# UNet families whose decoder self-attention the transfer patches (subclasses such as SSD1B count too).
SUPPORTED_FAMILIES = (
    comfy.supported_models.SD15,
    comfy.supported_models.SD20,
    comfy.supported_models.SDXL,
    comfy.supported_models.SDXLRefiner,
)
SUPPORTED_TEXT = "SD1.x, SD2.x (eps or v prediction) and SDXL UNets"


class UnsupportedModelError(ValueError):
    """The MODEL is not a UNet diffusion model with x = x0 + sigma * eps sampling."""


@dataclass(frozen=True)
class DecoderLayer:
    key: LayerKey  # ("output", block, transformer index inside the block)
    downscale: int  # token grid = latent size / downscale


def image_downscale(model) -> int:
    """Image pixels per latent cell: 8 for SD VAEs; latent formats may say otherwise."""
    return int(getattr(model.model.latent_format, "spacial_downscale_ratio", 8))


def model_family(model) -> str:
    return type(model.model.model_config).__name__


def check_supported(model, input_name: str = "model") -> None:
    config = model.model.model_config
    if not isinstance(config, SUPPORTED_FAMILIES):
        raise UnsupportedModelError(
            f"{input_name}: the MODEL is a {model_family(model)} model, which Eye-for-an-eye does not support; "
            f"it supports {SUPPORTED_TEXT}: load one of those"
        )
    sampling = model.get_model_object("model_sampling")
    epsilon_like = isinstance(sampling, comfy.model_sampling.EPS) and not isinstance(sampling, comfy.model_sampling.X0)
    if not epsilon_like:
        raise UnsupportedModelError(
            f"{input_name}: {model_family(model)} uses {type(sampling).__name__} sampling; Eye-for-an-eye needs an "
            "eps- or v-prediction UNet model (SD1.x, SD2.x, SDXL)"
        )
    if not hasattr(model.get_model_object("diffusion_model"), "output_blocks"):
        raise UnsupportedModelError(
            f"{input_name}: {model_family(model)} has no UNet decoder; Eye-for-an-eye needs SD1.x, SD2.x or SDXL"
        )


def decoder_attention_layers(model) -> list[DecoderLayer]:
    """Every decoder self-attention layer of the loaded UNet, read from its modules."""
    blocks = model.get_model_object("diffusion_model").output_blocks
    upsamples_after = [0] * len(blocks)
    remaining = sum(isinstance(m, Upsample) for block in blocks for m in block)
    for i, block in enumerate(blocks):
        upsamples_after[i] = remaining  # an Upsample inside block i acts after its transformer
        remaining -= sum(isinstance(m, Upsample) for m in block)
    layers = []
    for i, block in enumerate(blocks):
        for module in block:
            if isinstance(module, SpatialTransformer):
                for j in range(len(module.transformer_blocks)):
                    layers.append(DecoderLayer(("output", i, j), 2 ** upsamples_after[i]))
    return layers


def finest_decoder_layers(model, resolutions: int = 2) -> list[LayerKey]:
    """Decoder self-attention layers at the `resolutions` finest token grids (the paper's choice is 2)."""
    layers = decoder_attention_layers(model)
    scales = sorted({layer.downscale for layer in layers})[:resolutions]
    if not scales:
        raise UnsupportedModelError(f"model: {model_family(model)} has no self-attention in its UNet decoder")
    return [layer.key for layer in layers if layer.downscale in scales]


def unet_downscale(model) -> int:
    """Latent cells per token at the UNet's coarsest level (2 ** number of decoder upsamples)."""
    blocks = model.get_model_object("diffusion_model").output_blocks
    return 2 ** sum(isinstance(m, Upsample) for block in blocks for m in block)


def _function_name(fn) -> str | None:
    """A plain function or method (the closures FreeU, SAG, PAG ... register) by name and identity; None for
    other callables: ModelPatcher.clone() deep-copies those, so their identity cannot be followed."""
    if isinstance(fn, (types.FunctionType, types.MethodType)):
        return f"{fn.__qualname__}@{id(fn):x}"
    return None


def _names(fns) -> list[str]:
    return [name for name in map(_function_name, fns) if name is not None]


def model_fingerprint(model) -> str:
    """A cheap, readable identity of a MODEL as ComfyUI's ModelPatcher sees it.

    It detects: another loaded model (a different BaseModel object: another checkpoint, or the same file loaded
    by another loader node), another set of weight patches (LoRA and the like: ModelPatcher.patches_uuid changes
    on every add_patches, so two LoRA loader nodes count as different even with the same file), object patches
    (e.g. a replaced model_sampling), and the plain functions registered in model_options (FreeU's output-block
    patch, attention patches and replacements, cfg functions, model wrappers) by name and identity.
    It does not see weight values (cost), hooks, ModelPatcher wrappers/callbacks, or patches that are callable
    objects rather than functions (Eye-for-an-eye's own, observers): those may differ between Invert and Apply.
    """
    parts = [f"{model_family(model)} weights@{id(model.model):x}"]
    if model.patches:
        parts.append(f"{len(model.patches)} patched weights (patch set {str(model.patches_uuid)[:8]})")
    for key in sorted(model.object_patches):
        parts.append(f"object {key}: {type(model.object_patches[key]).__qualname__}@{id(model.object_patches[key]):x}")
    transformer = model.model_options.get("transformer_options", {})
    for name, fns in sorted(transformer.get("patches", {}).items()):
        if _names(fns):
            parts.append(f"{name}: {', '.join(_names(fns))}")
    for name, by_block in sorted(transformer.get("patches_replace", {}).items()):
        for block, fn in sorted(by_block.items(), key=repr):
            if _names([fn]):
                parts.append(f"{name} {block}: {_names([fn])[0]}")
    for key, value in sorted(model.model_options.items()):
        values = value if isinstance(value, (list, tuple)) else [value]
        if key != "transformer_options" and _names(values):
            parts.append(f"{key}: {', '.join(_names(values))}")
    return "; ".join(parts)


def check_same_model(model, inversion, inversion_name: str, input_name: str = "model") -> None:
    """Refuse an inversion made by another model (family, weights or patches)."""
    if model_family(model) != inversion.model_family:
        raise ValueError(
            f"{input_name} is a {model_family(model)} model but {inversion_name} was made with a "
            f"{inversion.model_family} model: connect the MODEL the Invert node got (invert with this MODEL)"
        )
    mine = model_fingerprint(model)
    if inversion.made_by and mine != inversion.made_by:
        raise ValueError(
            f"{input_name} [{mine}] is not the model {inversion_name} was made with [{inversion.made_by}]: "
            "connect the same MODEL output to the Invert nodes and here (apply LoRA / FreeU before Invert), "
            "or invert with this MODEL"
        )

"""What the pack needs to know about a loaded MODEL: family, sampling, decoder attention layers."""

from __future__ import annotations

from dataclasses import dataclass

import comfy.model_sampling
from comfy.ldm.modules.attention import SpatialTransformer
from comfy.ldm.modules.diffusionmodules.openaimodel import Upsample

from ..core.features import LayerKey


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

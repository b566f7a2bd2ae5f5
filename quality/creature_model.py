"""The tiny creature diffusion model as ComfyUI sees it (ComfyUI is imported lazily, inside functions).

The model is an unconditional epsilon-prediction DDPM (v-prediction when its record says "prediction": "v") in
ComfyUI's own SD1.5-style UNetModel,
trained by quality/train_creatures.py on quality/creatures.py images and shipped as
tests/assets/creatures_unet.safetensors (fp16 weights of `model.diffusion_model`, ComfyUI key
names without prefix) + tests/assets/creatures_unet.json (training record).

"Latent" space = pixel space, rearranged losslessly: a 64x64 RGB image in 0..1 is scaled to
[-1, 1] and space-to-depth'ed (pixel_unshuffle by 4) to [48, 16, 16]; `decode` is the exact
inverse. The latent format has 48 channels and scale_factor 1.0. A latent cell is 4x4 pixels, so the
finest token grid (16x16) plays the part of SD1.5's 64x64 latent grid.

Noise schedule: DDPM linear betas linspace(1e-4, 0.02, 1000). NOTE: ComfyUI's
beta_schedule "linear" is NOT this (it is linspace(sqrt(1e-4), sqrt(0.02))**2, the SD
"scaled linear"); ComfyUI's name for the plain linear schedule is "sqrt_linear", which is what
SAMPLING_SETTINGS uses. `training_alphas_cumprod()` is the schedule used in training.

Conditioning: the model is unconditional; its cross-attention sees a constant all-zeros context
[B, 1, CONTEXT_DIM]. In ComfyUI the conditioning is `[[torch.zeros(1, 1, CONTEXT_DIM), {}]]`
(`empty_conditioning()`), for positive and negative alike.

    patcher = load_model_patcher("tests/assets/creatures_unet.safetensors")   # after ComfyUI is booted
    latent = {"samples": encode(images)}                                     # [B,48,16,16]
    images = decode_images(samples)                                          # 0..1, clamped
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
ASSET = REPO / "tests" / "assets" / "creatures_unet.safetensors"

IMAGE_SIZE = 64
DOWNSCALE = 4  # image pixels per latent cell (SD's VAEs: 8)
LATENT_CHANNELS = 3 * DOWNSCALE * DOWNSCALE
LATENT_SIZE = IMAGE_SIZE // DOWNSCALE
CONTEXT_DIM = 8
NUM_TIMESTEPS = 1000
LINEAR_START = 1e-4
LINEAR_END = 2e-2
# ComfyUI's "sqrt_linear" == betas linspace(linear_start, linear_end) (plain DDPM linear).
SAMPLING_SETTINGS = {"beta_schedule": "sqrt_linear", "linear_start": LINEAR_START, "linear_end": LINEAR_END}

# UNetModel keyword arguments (ComfyUI's form, as comfy.model_detection would produce them), laid out
# like SD1.5 where the transfer acts: self-attention at every level but the coarsest, and an SD
# transformer block (self-attention, cross-attention to the empty context, feed-forward) after every
# res block there, three at the finest decoder level as in SD1.5.
# Levels: 16x16 tokens (64 ch, 2 res blocks + attention), 8x8 (128 ch, 2 res blocks + attention),
# 4x4 (128 ch, 1 res block, no attention); middle: res, attention, res at 4x4.
# Input blocks:  0 conv_in | 1,2 res+attn@16 | 3 down | 4,5 res+attn@8 | 6 down | 7 res@4
# Output blocks: 0,1 res@4 (1 upsamples) | 2,3,4 res+attn@8 (4 upsamples) | 5,6,7 res+attn@16
# (UNetModel's final conv takes model_channels inputs, so channel_mult must start at 1; GroupNorm(32)
# needs every width, and every decoder concat width, to be a multiple of 32.)
UNET_CONFIG = {
    "use_checkpoint": False,
    "image_size": LATENT_SIZE,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "model_channels": 64,
    "num_res_blocks": [2, 2, 1],
    "channel_mult": [1, 2, 2],
    "transformer_depth": [1, 1, 1, 1, 0],  # one entry per input res block, in order
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 0, 0],  # per output block, level 0 first (UNetModel pops from the end)
    "transformer_depth_middle": 1,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "use_linear_in_transformer": False,
    "context_dim": CONTEXT_DIM,
    "num_heads": -1,
    "num_head_channels": 32,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
    "dtype": torch.float32,
}
# Probe candidates (`python quality/diagnostics.py layouts`): same latent and widths, attention placed differently.
LAYOUTS = {
    "sd-like": UNET_CONFIG,
    # no self-attention at the finest level (the earlier creature model's choice): 8x8 and 4x4 only
    "coarse-attention": {**UNET_CONFIG, "transformer_depth": [0, 0, 1, 1, 1],
                         "transformer_depth_output": [0, 0, 0, 1, 1, 1, 1, 1]},
    # one res block per level: two transformer blocks at the finest decoder level instead of three
    "sd-like-shallow": {**UNET_CONFIG, "num_res_blocks": [1, 1, 1], "transformer_depth": [1, 1, 0],
                        "transformer_depth_output": [1, 1, 1, 1, 0, 0]},
}
# Decoder self-attention layers of the default layout: extra_options["block"] of the attn1 patch -> grid side.
DECODER_ATTENTION = {("output", 2): 8, ("output", 3): 8, ("output", 4): 8, ("output", 5): 16, ("output", 6): 16, ("output", 7): 16}
ENCODER_ATTENTION = {("input", 1): 16, ("input", 2): 16, ("input", 4): 8, ("input", 5): 8}
MIDDLE_ATTENTION = {("middle", 0): 4}


def encode(images: torch.Tensor) -> torch.Tensor:
    """[B,3,64,64] in 0..1 -> [B,48,16,16] in [-1,1] (lossless space-to-depth)."""
    return F.pixel_unshuffle(images * 2.0 - 1.0, DOWNSCALE)


def decode(latents: torch.Tensor) -> torch.Tensor:
    """Exact inverse of `encode` (no clamping): [B,48,16,16] -> [B,3,64,64]."""
    return (F.pixel_shuffle(latents, DOWNSCALE) + 1.0) * 0.5


def decode_images(latents: torch.Tensor) -> torch.Tensor:
    """`decode` clamped to 0..1, for display."""
    return decode(latents).clamp(0.0, 1.0)


def empty_conditioning(batch: int = 1) -> list:
    """ComfyUI CONDITIONING for this unconditional model (use it as positive and negative)."""
    return [[torch.zeros(batch, 1, CONTEXT_DIM), {}]]


def empty_context(batch: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The context tensor the UNet was trained with."""
    return torch.zeros(batch, 1, CONTEXT_DIM, dtype=dtype, device=device)


def training_alphas_cumprod() -> torch.Tensor:
    """[1000] float64 alphas_cumprod of the DDPM linear schedule used in training."""
    betas = torch.linspace(LINEAR_START, LINEAR_END, NUM_TIMESTEPS, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0)


def _classes():
    import comfy.latent_formats
    import comfy.supported_models

    class CreatureLatent(comfy.latent_formats.LatentFormat):
        latent_channels = LATENT_CHANNELS
        scale_factor = 1.0
        spacial_downscale_ratio = DOWNSCALE

    # An SD1.x-family UNet (openaimodel, SD's transformer blocks) with its own latent, so the pack treats it as one.
    class CreatureModel(comfy.supported_models.SD15):
        unet_config = {}
        unet_extra_config = {}
        latent_format = CreatureLatent
        sampling_settings = dict(SAMPLING_SETTINGS)
        supported_inference_dtypes = [torch.float32]
        memory_usage_factor = 1.0

    return CreatureModel


def build_base_model(device=None, unet_config: dict | None = None, prediction: str = "eps"):
    """A comfy.model_base.BaseModel (eps or v prediction) with this UNet (default: UNET_CONFIG), weights uninitialised."""
    import comfy.model_base

    config = _classes()(dict(unet_config or UNET_CONFIG))
    model_type = {"eps": comfy.model_base.ModelType.EPS, "v": comfy.model_base.ModelType.V_PREDICTION}[prediction]
    return comfy.model_base.BaseModel(config, model_type=model_type, device=device or torch.device("cpu"))


def asset_record(asset_path=ASSET) -> dict:
    """The training record beside an asset (its .json), or {} when there is none."""
    record = Path(asset_path).with_suffix(".json")
    return json.loads(record.read_text()) if record.is_file() else {}


def asset_unet_config(asset_path=ASSET) -> dict:
    """The UNet config recorded beside an asset, else UNET_CONFIG."""
    config = asset_record(asset_path).get("unet_config", UNET_CONFIG)
    return {**config, "dtype": torch.float32}


def load_model_patcher(asset_path=ASSET):
    """ComfyUI ModelPatcher around the trained model (float32 weights from the fp16 asset)."""
    import comfy.model_management
    import comfy.model_patcher
    import safetensors.torch

    prediction = asset_record(asset_path).get("prediction", "eps")
    model = build_base_model(torch.device("cpu"), asset_unet_config(asset_path), prediction)
    state = safetensors.torch.load_file(str(asset_path))
    state = {k: v.float() for k, v in state.items()}
    model.diffusion_model.load_state_dict(state, strict=True)
    model.diffusion_model.float().eval()
    return comfy.model_patcher.ModelPatcher(
        model, load_device=comfy.model_management.get_torch_device(), offload_device=torch.device("cpu")
    )

"""The tiny creature diffusion model as ComfyUI sees it (ComfyUI is imported lazily, inside functions).

The model is an unconditional epsilon-prediction DDPM in ComfyUI's own SD1.5-style UNetModel,
trained by quality/train_creatures.py on quality/creatures.py images and shipped as
tests/assets/creatures_unet.safetensors (fp16 weights of `model.diffusion_model`, ComfyUI key
names without prefix) + tests/assets/creatures_unet.json (training record).

"Latent" space = pixel space, rearranged losslessly: a 64x64 RGB image in 0..1 is scaled to
[-1, 1] and space-to-depth'ed (pixel_unshuffle by 2) to [12, 32, 32]; `decode` is the exact
inverse. The latent format has 12 channels and scale_factor 1.0.

Noise schedule: DDPM linear betas linspace(1e-4, 0.02, 1000). NOTE: ComfyUI's
beta_schedule "linear" is NOT this (it is linspace(sqrt(1e-4), sqrt(0.02))**2, the SD
"scaled linear"); ComfyUI's name for the plain linear schedule is "sqrt_linear", which is what
SAMPLING_SETTINGS uses. `training_alphas_cumprod()` is the schedule used in training.

Conditioning: the model is unconditional; its cross-attention sees a constant all-zeros context
[B, 1, CONTEXT_DIM]. In ComfyUI the conditioning is `[[torch.zeros(1, 1, CONTEXT_DIM), {}]]`
(`empty_conditioning()`), for positive and negative alike.

    patcher = load_model_patcher("tests/assets/creatures_unet.safetensors")   # after ComfyUI is booted
    latent = {"samples": encode(images)}                                     # [B,12,32,32]
    images = decode_images(samples)                                          # 0..1, clamped
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
ASSET = REPO / "tests" / "assets" / "creatures_unet.safetensors"

IMAGE_SIZE = 64
LATENT_CHANNELS = 12
LATENT_SIZE = 32
CONTEXT_DIM = 8
NUM_TIMESTEPS = 1000
LINEAR_START = 1e-4
LINEAR_END = 2e-2
# ComfyUI's "sqrt_linear" == betas linspace(linear_start, linear_end) (plain DDPM linear).
SAMPLING_SETTINGS = {"beta_schedule": "sqrt_linear", "linear_start": LINEAR_START, "linear_end": LINEAR_END}

# UNetModel keyword arguments (ComfyUI's form, as comfy.model_detection would produce them).
# Levels: 32x32 (32 ch, no attention), 16x16 (96 ch, 2 res blocks + attention), 8x8 (128 ch + attention).
# (UNetModel's final conv takes model_channels inputs, so channel_mult must start at 1; GroupNorm(32)
# needs every width, and every decoder concat width, to be a multiple of 32.)
# Input blocks:  0 conv_in | 1 res@32 | 2 down | 3,4 res+attn@16 | 5 down | 6 res+attn@8
# Middle: res, attn@8, res
# Output blocks: 0,1 res+attn@8 (1 ends with upsample) | 2,3,4 res+attn@16 (4 upsamples) | 5,6 res@32
UNET_CONFIG = {
    "use_checkpoint": False,
    "image_size": LATENT_SIZE,
    "in_channels": LATENT_CHANNELS,
    "out_channels": LATENT_CHANNELS,
    "model_channels": 32,
    "num_res_blocks": [1, 2, 1],
    "channel_mult": [1, 3, 4],
    "transformer_depth": [0, 1, 1, 1],  # one entry per input res block, in order
    "transformer_depth_output": [0, 0, 1, 1, 1, 1, 1],  # per output block, level 0 first (UNetModel pops from the end)
    "transformer_depth_middle": 1,
    "use_spatial_transformer": True,
    "legacy": False,
    "adm_in_channels": None,
    "use_linear_in_transformer": False,
    "context_dim": CONTEXT_DIM,
    "num_heads": -1,
    "num_head_channels": 16,
    "use_temporal_attention": False,
    "use_temporal_resblock": False,
    "dtype": torch.float32,
}
# Decoder self-attention layers: extra_options["block"] of the attn1 patch -> grid side.
DECODER_ATTENTION = {("output", 0): 8, ("output", 1): 8, ("output", 2): 16, ("output", 3): 16, ("output", 4): 16}
ENCODER_ATTENTION = {("input", 3): 16, ("input", 4): 16, ("input", 6): 8}
MIDDLE_ATTENTION = {("middle", 0): 8}


def encode(images: torch.Tensor) -> torch.Tensor:
    """[B,3,64,64] in 0..1 -> [B,12,32,32] in [-1,1] (lossless space-to-depth)."""
    return F.pixel_unshuffle(images * 2.0 - 1.0, 2)


def decode(latents: torch.Tensor) -> torch.Tensor:
    """Exact inverse of `encode` (no clamping): [B,12,32,32] -> [B,3,64,64]."""
    return (F.pixel_shuffle(latents, 2) + 1.0) * 0.5


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
    import comfy.supported_models_base

    class CreatureLatent(comfy.latent_formats.LatentFormat):
        latent_channels = LATENT_CHANNELS
        scale_factor = 1.0
        spacial_downscale_ratio = 2  # image pixels per latent cell (SD's VAEs: 8)

    class CreatureModel(comfy.supported_models_base.BASE):
        unet_config = dict(UNET_CONFIG)
        unet_extra_config = {}
        latent_format = CreatureLatent
        sampling_settings = dict(SAMPLING_SETTINGS)
        supported_inference_dtypes = [torch.float32]
        memory_usage_factor = 1.0

    return CreatureModel


def build_base_model(device=None):
    """A comfy.model_base.BaseModel (EPS) with this UNet, weights uninitialised."""
    import comfy.model_base

    config = _classes()(UNET_CONFIG)
    return comfy.model_base.BaseModel(config, model_type=comfy.model_base.ModelType.EPS, device=device or torch.device("cpu"))


def load_model_patcher(asset_path=ASSET):
    """ComfyUI ModelPatcher around the trained model (float32 weights from the fp16 asset)."""
    import comfy.model_management
    import comfy.model_patcher
    import safetensors.torch

    model = build_base_model(torch.device("cpu"))
    state = safetensors.torch.load_file(str(asset_path))
    state = {k: v.float() for k, v in state.items()}
    model.diffusion_model.load_state_dict(state, strict=True)
    model.diffusion_model.float().eval()
    return comfy.model_patcher.ModelPatcher(
        model, load_device=comfy.model_management.get_torch_device(), offload_device=torch.device("cpu")
    )

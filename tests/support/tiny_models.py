"""Tiny real ComfyUI models with seeded random weights (no downloads)."""

from __future__ import annotations

import torch
from seeded_init import seeded_init_


def _levels_config(channel_mult, context_dim, model_channels):
    levels = len(channel_mult)
    return {
        "use_checkpoint": False,
        "image_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "model_channels": model_channels,
        "num_res_blocks": [1] * levels,
        "channel_mult": list(channel_mult),
        "transformer_depth": [1] * levels,
        "transformer_depth_output": [1] * (2 * levels),
        "transformer_depth_middle": 1,
        "use_spatial_transformer": True,
        "legacy": False,
        "adm_in_channels": None,
        "use_linear_in_transformer": False,
        "context_dim": context_dim,
        "num_heads": -1,
        "num_head_channels": 8,
        "use_temporal_attention": False,
        "use_temporal_resblock": False,
        "dtype": torch.float32,
    }


def initialise(module: torch.nn.Module, seed: int) -> None:
    """ComfyUI leaves weights uninitialised: fill them from a seeded generator."""
    seeded_init_(module, torch.Generator().manual_seed(seed))


def tiny_sd15(seed: int = 0, channel_mult=(1, 2, 4), model_channels: int = 32, context_dim: int = 64, prediction: str = "eps"):
    """A ModelPatcher around a real SD1.5-family BaseModel with a small UNet (attention at every level)."""
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    class TinySD15(comfy.supported_models.SD15):
        unet_extra_config = {}

    config = TinySD15(_levels_config(channel_mult, context_dim, model_channels))
    model_type = comfy.model_base.ModelType.V_PREDICTION if prediction == "v" else comfy.model_base.ModelType.EPS
    model = comfy.model_base.BaseModel(config, model_type=model_type, device=torch.device("cpu"))
    initialise(model.diffusion_model, seed)
    with torch.no_grad():
        # A trained UNet's prediction is smooth in its input (SD zero-initialises this layer); a full-scale
        # random output layer makes the network chaotic enough to amplify float32 rounding 10x over 100 steps.
        model.diffusion_model.out[2].weight.mul_(0.2)
    return comfy.model_patcher.ModelPatcher(
        model, load_device=comfy.model_management.get_torch_device(), offload_device=torch.device("cpu")
    )


def tiny_sdxl(seed: int = 0):
    """A real SDXL-family BaseModel: no attention at the finest level, two transformers per block at the coarsest."""
    import comfy.model_base
    import comfy.model_management
    import comfy.model_patcher
    import comfy.supported_models

    class TinySDXL(comfy.supported_models.SDXL):
        unet_extra_config = {}

    unet = _levels_config((1, 2, 4), 64, 32)
    unet.update(
        transformer_depth=[0, 1, 2], transformer_depth_output=[0, 0, 1, 1, 2, 2], transformer_depth_middle=2,
        adm_in_channels=2816, num_classes="sequential", use_linear_in_transformer=True,
    )
    config = TinySDXL(unet)
    model = comfy.model_base.SDXL(config, model_type=comfy.model_base.ModelType.EPS, device=torch.device("cpu"))
    initialise(model.diffusion_model, seed)
    with torch.no_grad():
        model.diffusion_model.out[2].weight.mul_(0.2)
    return comfy.model_patcher.ModelPatcher(
        model, load_device=comfy.model_management.get_torch_device(), offload_device=torch.device("cpu")
    )


def conditioning(seed: int, context_dim: int = 64, tokens: int = 77, pooled: bool = False):
    """CONDITIONING with random embeddings; `pooled` adds the pooled output SDXL models need."""
    generator = torch.Generator().manual_seed(seed)
    extra = {"pooled_output": torch.randn(1, 1280, generator=generator)} if pooled else {}
    return [[torch.randn(1, tokens, context_dim, generator=generator), extra]]


def latent(seed: int, size: int = 16, batch: int = 1) -> dict:
    """A LATENT as VAEEncode would give it (raw, before the latent format's scaling)."""
    generator = torch.Generator().manual_seed(seed)
    return {"samples": torch.randn(batch, 4, size, size, generator=generator) * 5.0}

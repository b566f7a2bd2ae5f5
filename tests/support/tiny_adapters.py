"""A tiny random LoRA and ControlNet for the tiny SD1.5 checkpoint (tests/support/tiny_checkpoint.py), for the stock
LoraLoaderModelOnly and ControlNetLoader.

No weights are downloaded: both are built from the tiny checkpoint's own UNet config with ComfyUI's classes
and filled from a seeded generator.

- LoRA: rank 4 on every self- and cross-attention projection (to_q, to_k, to_v, to_out.0) of the UNet, in the
  `lora_unet_...` key format (lora_down / lora_up / alpha), fp16.
- ControlNet: the ldm `control_model.*` layout ComfyUI detects as SD1.5 (model_channels 320, context_dim 768,
  the tiny UNet's two levels), hint input of 3 channels, fp16. The zero convolutions a real ControlNet starts
  from are small random ones here, so the guidance changes pixels without blowing up sampling.

    python tests/support/tiny_adapters.py --models-dir .e4e/base/models [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))  # comfy_host
from seeded_init import seeded_init_  # noqa: E402
from tiny_checkpoint import ensure_comfy, unet_config, write_seeded_safetensors  # noqa: E402

LORA_NAME = "e4e_tiny_sd15_lora.safetensors"
CONTROLNET_NAME = "e4e_tiny_sd15_controlnet.safetensors"
LORA_RANK = 4
LORA_TARGETS = re.compile(r"^lora_unet_.*_attn[12]_to_(q|k|v|out_0)$")


def build_lora_state_dict(seed: int = 0) -> dict:
    """lora_unet_<layer>.lora_down.weight / .lora_up.weight / .alpha for every attention projection."""
    ensure_comfy()
    import comfy.lora
    import comfy.model_base
    import comfy.supported_models
    import torch

    generator = torch.Generator().manual_seed(seed)
    unet = comfy.model_base.BaseModel(comfy.supported_models.SD15(unet_config()), device=torch.device("meta"))
    shapes = {k: v.shape for k, v in unet.state_dict().items()}
    state = {}
    for key, weight_key in sorted(comfy.lora.model_lora_keys_unet(unet, {}).items()):
        if not LORA_TARGETS.match(key):
            continue
        out_features, in_features = shapes[weight_key]
        down = torch.randn(LORA_RANK, in_features, generator=generator) / in_features**0.5
        up = torch.randn(out_features, LORA_RANK, generator=generator) / LORA_RANK**0.5
        state[f"{key}.lora_down.weight"] = down.half()
        state[f"{key}.lora_up.weight"] = up.half()
        state[f"{key}.alpha"] = torch.tensor(float(LORA_RANK)).half()
    if not state:
        raise RuntimeError("no attention projections found for the tiny LoRA")
    return state


def build_controlnet_state_dict(seed: int = 0) -> dict:
    """control_model.* of an SD1.5-shaped ControlNet matching the tiny UNet (3-channel hint)."""
    ensure_comfy()
    import comfy.cldm.cldm
    import comfy.ops
    import comfy.supported_models
    import torch

    generator = torch.Generator().manual_seed(seed)
    config = dict(comfy.supported_models.SD15(unet_config()).unet_config)
    config.pop("out_channels")
    config.update(hint_channels=3, operations=comfy.ops.disable_weight_init, device=torch.device("cpu"))
    control = comfy.cldm.cldm.ControlNet(**config)
    seeded_init_(control, generator)
    with torch.no_grad():  # a real ControlNet's zero convs start at zero: keep the random ones small
        for conv in [*control.zero_convs, control.middle_block_out]:
            conv[0].weight.mul_(0.5)
    return {f"control_model.{k}": v.detach().half().contiguous() for k, v in control.state_dict().items()}


def write_tiny_lora(path: Path, seed: int = 0) -> Path:
    """Write the seeded tiny LoRA to `path`; an existing file is kept as is."""
    return write_seeded_safetensors(path, build_lora_state_dict, seed, "LoRA")


def write_tiny_controlnet(path: Path, seed: int = 0) -> Path:
    """Write the seeded tiny ControlNet to `path`; an existing file is kept as is."""
    return write_seeded_safetensors(path, build_controlnet_state_dict, seed, "ControlNet")


def write_tiny_adapters(models_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """Both files into a ComfyUI models folder: loras/LORA_NAME and controlnet/CONTROLNET_NAME."""
    models_dir = Path(models_dir)
    return (write_tiny_lora(models_dir / "loras" / LORA_NAME, seed),
            write_tiny_controlnet(models_dir / "controlnet" / CONTROLNET_NAME, seed))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True, help="a ComfyUI models folder")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    start = time.perf_counter()
    for path in write_tiny_adapters(args.models_dir, args.seed):
        print(f"{path} ({path.stat().st_size / 2**20:.1f} MB)")
    print(f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()

"""Tiny random-weight SD2.x, SDXL and SD3 diffusion models (and their VAEs / text encoders) for the stock loaders.

Like tests/support/tiny_checkpoint.py (whose helpers this reuses), nothing is downloaded: ComfyUI's own classes are
built and filled from a seeded generator, so the key names are exactly what its loaders detect.

- SD2.x UNet (models/diffusion_models, stock UNETLoader): model_channels 320, context_dim 1024, linear
  projections in the transformers, 64-channel heads, two levels. ComfyUI detects SD20; its automatic
  v-prediction test needs output_blocks.11, which two levels lack, so it loads as eps: graphs make it
  v-prediction with the stock ModelSamplingDiscrete node.
- SDXL UNet (stock UNETLoader): the keys SDXL detection compares (model_channels 320, transformer_depth
  [0, 0, 2, 2, 10, 10], context_dim 2048, adm_in_channels 2816, linear projections) with channel_mult
  [1, 1, 1] and one transformer per decoder block: about 80 M parameters.
- SD3 MMDiT (stock UNETLoader): depth 2 (hidden size 128): a family the pack does not support.
- TAESD-shaped VAE files for the stock VAELoader's "taesd" and "taesdxl" entries (models/vae_approx).
- SDXL text encoders for the stock DualCLIPLoader (type sdxl): full-size CLIP-L and CLIP-G (their sizes are
  fixed by ComfyUI's json configs), fp16, about 1.6 GB together. SD2 graphs need no text encoder: the stock
  LotusConditioning node gives a [1, 77, 1024] SD2-shaped conditioning.

    python tests/support/tiny_families.py --base NAME    # writes everything into .e4e/NAME/models
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))  # comfy_host
from comfy_host import base_directory  # noqa: E402
from seeded_init import seeded_init_  # noqa: E402
from tiny_checkpoint import ensure_comfy, build_taesd, save_safetensors, seeded_unet, unet_config  # noqa: E402

log = logging.getLogger(__name__)

UNET_FILES = {"SD20": "e4e_tiny_sd20.safetensors", "SDXL": "e4e_tiny_sdxl.safetensors", "SD3": "e4e_tiny_sd3.safetensors"}
CLIP_L_FILE, CLIP_G_FILE = "e4e_tiny_clip_l.safetensors", "e4e_tiny_clip_g.safetensors"


def family_config(family: str):
    """The comfy.supported_models config of a tiny model, as ComfyUI's detection produces it from the file."""
    ensure_comfy()
    import comfy.supported_models as models

    if family == "SD20":
        return models.SD20(unet_config(use_linear_in_transformer=True, context_dim=1024))
    if family == "SDXL":
        return models.SDXL(unet_config(
            num_res_blocks=[2, 2, 2], channel_mult=[1, 1, 1], transformer_depth=[0, 0, 2, 2, 10, 10],
            transformer_depth_output=[0, 0, 0, 1, 1, 1, 1, 1, 1], use_linear_in_transformer=True,
            context_dim=2048, adm_in_channels=2816, num_classes="sequential"))
    if family == "SD3":
        import torch

        return models.SD3({
            "in_channels": 16, "out_channels": 16, "patch_size": 2, "depth": 2, "input_size": None,
            "adm_in_channels": 2048, "pos_embed_scaling_factor": None, "num_patches": 1024, "pos_embed_max_size": 32,
            "context_embedder_config": {"target": "torch.nn.Linear", "params": {"in_features": 4096, "out_features": 128}},
            "x_block_self_attn_layers": [], "dtype": torch.float32,
        })
    raise ValueError(f"family: {family!r} is not one of {sorted(UNET_FILES)}")


def write_tiny_unet(models_dir: Path, family: str, seed: int = 0) -> Path:
    """models_dir/diffusion_models/UNET_FILES[family]; an existing file is kept."""
    import torch

    path = Path(models_dir) / "diffusion_models" / UNET_FILES[family]
    if not path.exists():
        model = seeded_unet(family_config(family), torch.Generator().manual_seed(seed))
        save_safetensors(model.diffusion_model.state_dict(), path, {"e4e_tiny_seed": str(seed)})
    return path


TAESD_SCALES = {"taesd": 0.18215, "taesdxl": 0.13025}  # the latent scale VAELoader gives each name


def write_taesd_files(models_dir: Path, seed: int = 0) -> list[Path]:
    """vae_approx/taesd_{encoder,decoder} and taesdxl_{encoder,decoder}: the stock VAELoader lists "taesd" and
    "taesdxl" once both halves exist. It divides encoder outputs by the name's latent scale and multiplies
    decoder inputs by it; the files fold that scale into the seeded TAESD's last encoder and first decoder conv.
    They also take gains the tiny checkpoint's TAESD lacks: x5 on the encoder's output (latents of std ~0.8
    instead of 0.16, nearer SD's) and x10 on the decoder's (a decoded image of std ~0.15, not ~0.003, so a
    blank result is told apart from a real one)."""
    import torch

    paths = []
    for name, scale in TAESD_SCALES.items():
        taesd = build_taesd(torch.Generator().manual_seed(seed))
        with torch.no_grad():
            taesd.taesd_encoder[-1].weight.mul_(5.0 * scale)
            taesd.taesd_decoder[1].weight.div_(scale)  # [0] is the input Clamp (tanh(x / 3) * 3)
            taesd.taesd_decoder[-1].weight.mul_(10.0)
        for half in ("encoder", "decoder"):
            path = Path(models_dir) / "vae_approx" / f"{name}_{half}.safetensors"
            if not path.exists():
                save_safetensors(getattr(taesd, f"taesd_{half}").state_dict(), path, {"e4e_tiny_seed": str(seed)})
            paths.append(path)
    return paths


def write_sdxl_text_encoders(models_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """text_encoders/CLIP_L_FILE and CLIP_G_FILE (fp16, transformers key names) for DualCLIPLoader type sdxl."""
    paths = tuple(Path(models_dir) / "text_encoders" / name for name in (CLIP_L_FILE, CLIP_G_FILE))
    if all(p.exists() for p in paths):
        return paths
    ensure_comfy()
    import comfy.sdxl_clip
    import torch

    clip = comfy.sdxl_clip.SDXLClipModel(device="cpu", dtype=torch.float16)
    seeded_init_(clip, torch.Generator().manual_seed(seed))
    state = clip.state_dict()
    for path, prefix in zip(paths, ("clip_l.transformer.", "clip_g.transformer.")):
        part = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        save_safetensors(part, path, {"e4e_tiny_seed": str(seed)})
    return paths


def write_all(models_dir: Path, seed: int = 0) -> list[Path]:
    paths = [write_tiny_unet(models_dir, family, seed) for family in UNET_FILES]
    return paths + write_taesd_files(models_dir, seed) + list(write_sdxl_text_encoders(models_dir, seed))


def detected_family(path: Path) -> str:
    """The supported_models class ComfyUI's detection picks for a diffusion-model file (what UNETLoader does)."""
    ensure_comfy()
    import comfy.model_detection
    import comfy.utils

    state = comfy.utils.load_torch_file(str(path))
    config = comfy.model_detection.model_config_from_unet(state, "")
    return type(config).__name__ if config is not None else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="base", help="base directory name under .e4e/")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for path in write_all(base_directory(args.base) / "models", args.seed):
        print(path, f"{path.stat().st_size / 2**20:.0f} MB")


if __name__ == "__main__":
    main()

"""A tiny random-weight SD1.5 checkpoint that ComfyUI's stock CheckpointLoaderSimple loads, plus demo images.

No weights are downloaded: the models are built in-process with ComfyUI's own classes (so the key names are
exactly the ones its loader expects) and filled from a seeded generator.

- UNet: model_channels 320 and context_dim 768 (what SD1.5 detection needs), two levels (channel_mult [1, 1]),
  one res block per level, transformer depth 1 at both levels and in the middle block, so the decoder has
  self-attention at two resolutions (output blocks 0-1 at 1/2 and 2-3 at full latent resolution).
- CLIP: the full-size SD1 CLIP-L text model (123.7 M parameters), fp16.
- VAE: TAESD-shaped (keys under first_stage_model.taesd_*).

    python tests/support/tiny_checkpoint.py --out .e4e/base/models/checkpoints/e4e_tiny_sd15.safetensors [--seed 0]
        [--verify BASE_NAME] [--demo-images DIR]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))  # comfy_host
from comfy_host import base_directory, boot_in_process  # noqa: E402
from seeded_init import seeded_init_  # noqa: E402

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "e4e_tiny_sd15.safetensors"
DEMO_FILES = ("e4e_target.png", "e4e_reference.png", "e4e_target_mask.png", "e4e_reference_mask.png")
TWO_OBJECT_FILES = (
    "e4e_two_birds.png", "e4e_two_birds_left_mask.png", "e4e_two_birds_right_mask.png",
    "e4e_green_bird.png", "e4e_green_bird_mask.png",
)


def unet_config(**overrides) -> dict:
    """The UNet's config, in the form ComfyUI's model detection produces for this checkpoint (other tiny UNets
    in tests/support/tiny_families.py change some keys through `overrides`)."""
    import torch

    config = {
        "use_checkpoint": False,
        "image_size": 32,
        "in_channels": 4,
        "out_channels": 4,
        "model_channels": 320,
        "num_res_blocks": [1, 1],
        "channel_mult": [1, 1],
        "transformer_depth": [1, 1],
        "transformer_depth_output": [1, 1, 1, 1],
        "transformer_depth_middle": 1,
        "use_spatial_transformer": True,
        "legacy": False,
        "adm_in_channels": None,
        "use_linear_in_transformer": False,
        "context_dim": 768,
        "use_temporal_attention": False,
        "use_temporal_resblock": False,
        "dtype": torch.float32,
    }
    config.update(overrides)
    return config


def ensure_comfy() -> None:
    """Import ComfyUI in-process (with --cpu) unless something in this process already did."""
    if "comfy.model_management" not in sys.modules:
        boot_in_process(base_directory())


def build_taesd(generator):
    """A seeded TAESD (ComfyUI's class, 4 latent channels): the tiny models' VAE."""
    import comfy.taesd.taesd
    import torch

    taesd = comfy.taesd.taesd.TAESD()
    seeded_init_(taesd, generator)
    with torch.no_grad():  # random ReLU stacks amplify: bring the decoder's output near the [-1, 1] range
        taesd.taesd_decoder[-1].weight.mul_(0.1)
        taesd.taesd_encoder[-1].weight.mul_(0.5)
    return taesd


def seeded_unet(config, generator):
    """ComfyUI's BaseModel (or the family's subclass) for a supported_models config, seeded, fp16 weights."""
    import torch

    model = config.get_model({}, device=torch.device("cpu"))
    seeded_init_(model.diffusion_model, generator)
    if isinstance(getattr(model.diffusion_model, "out", None), torch.nn.Sequential):  # UNets
        with torch.no_grad():
            model.diffusion_model.out[2].weight.mul_(0.2)  # SD zero-initialises this layer: keep sampling calm
    model.diffusion_model.half()
    return model


def save_safetensors(state: dict, path: Path, metadata: dict) -> Path:
    """Write `state` atomically (through a .partial file); logs size and time."""
    from safetensors.torch import save_file

    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(partial), metadata=metadata)
    partial.replace(path)
    log.info("wrote %s (%.0f MB) in %.1f s", path, path.stat().st_size / 2**20, time.perf_counter() - start)
    return path


def build_state_dict(seed: int = 0) -> dict:
    """The full checkpoint state dict (model.diffusion_model.*, cond_stage_model.*, first_stage_model.*)."""
    ensure_comfy()
    import comfy.sd1_clip
    import comfy.supported_models
    import torch

    generator = torch.Generator().manual_seed(seed)
    # SD15 adds num_heads 8 (40-channel heads), as on loading
    unet = seeded_unet(comfy.supported_models.SD15(unet_config()), generator)

    clip = comfy.sd1_clip.SD1ClipModel(device="cpu", dtype=torch.float32)
    seeded_init_(clip, generator)
    clip_sd = {k: v.half() for k, v in clip.state_dict().items()}

    state = unet.state_dict_for_saving(clip_state_dict=clip_sd, vae_state_dict=build_taesd(generator).state_dict())
    return {k: v.detach().contiguous() for k, v in state.items()}


def write_seeded_safetensors(path: Path, build, seed: int, what: str) -> Path:
    """Write `build(seed)` (a state dict) to `path` atomically, unless the file exists (then it is kept as is)."""
    path = Path(path)
    if path.exists():
        log.info("tiny %s already at %s", what, path)
        return path
    return save_safetensors(build(seed), path, {"e4e_tiny_sd15_seed": str(seed)})


def write_tiny_sd15_checkpoint(path: Path, seed: int = 0) -> Path:
    """Write the seeded tiny SD1.5 checkpoint to `path` (a .safetensors file); an existing file is kept as is."""
    return write_seeded_safetensors(path, build_state_dict, seed, "checkpoint")


def _bird(draw, size: int, cx: float, cy: float, scale: float, facing: int, wing_up: bool, body, head, wing) -> None:
    """Draw a simple bird: ellipse body, circle head, triangle wing, triangle beak and tail (coordinates in 0..1)."""
    s = size * scale

    def p(x: float, y: float) -> tuple[float, float]:
        return (size * cx + facing * x * s, size * cy + y * s)

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        (a, b), (c, d) = p(x0, y0), p(x1, y1)
        return [min(a, c), min(b, d), max(a, c), max(b, d)]

    draw.polygon([p(-0.30, 0.0), p(-0.55, -0.15), p(-0.55, 0.15)], fill=body)  # tail
    draw.ellipse(box(-0.35, -0.18, 0.25, 0.18), fill=body)  # body
    draw.ellipse(box(0.13, -0.34, 0.39, -0.08), fill=head)  # head
    draw.polygon([p(0.38, -0.25), p(0.53, -0.21), p(0.38, -0.17)], fill=wing)  # beak
    tip = p(-0.25, -0.55) if wing_up else p(-0.28, 0.12)
    draw.polygon([p(-0.12, -0.08), p(0.12, -0.08), tip], fill=wing)  # wing


def write_demo_images(input_dir: Path, size: int = 64) -> tuple[str, str, str, str]:
    """Write a synthetic target and reference bird (different colours, places, poses) and their masks.

    Masks are white object on black. Returns the file names inside input_dir:
    (target, reference, target_mask, reference_mask). Deterministic; existing files are overwritten.
    """
    from PIL import Image, ImageDraw

    input_dir = Path(input_dir)
    input_dir.mkdir(parents=True, exist_ok=True)
    scenes = (  # background, body, head, wing, (cx, cy, scale, facing, wing_up)
        ((200, 225, 245), (40, 70, 170), (30, 50, 130), (90, 140, 230), (0.48, 0.55, 0.75, 1, False)),
        ((225, 235, 190), (220, 110, 30), (180, 60, 20), (250, 200, 60), (0.58, 0.45, 0.65, -1, True)),
    )
    names = DEMO_FILES
    for i, (background, body, head, wing, pose) in enumerate(scenes):
        image = Image.new("RGB", (size, size), background)
        _bird(ImageDraw.Draw(image), size, *pose, body, head, wing)
        image.save(input_dir / names[i])
        mask = Image.new("L", (size, size), 0)
        _bird(ImageDraw.Draw(mask), size, *pose, 255, 255, 255)
        mask.save(input_dir / names[i + 2])
    log.info("wrote demo images %s to %s", names, input_dir)
    return names


def write_two_object_images(input_dir: Path, size: int = 64) -> tuple[str, ...]:
    """A target with two birds (and a mask for each) plus a third, green reference bird and its mask.

    Together with write_demo_images' orange reference this feeds the two-object example:
    left bird <- orange reference, right bird <- green reference. Returns TWO_OBJECT_FILES.
    """
    from PIL import Image, ImageDraw

    input_dir = Path(input_dir)
    input_dir.mkdir(parents=True, exist_ok=True)
    blue = ((40, 70, 170), (30, 50, 130), (90, 140, 230))
    purple = ((120, 50, 140), (80, 30, 100), (200, 150, 220))
    left, right = (0.27, 0.5, 0.42, 1, False), (0.74, 0.5, 0.42, -1, True)
    scene = Image.new("RGB", (size, size), (200, 225, 245))
    _bird(ImageDraw.Draw(scene), size, *left, *blue)
    _bird(ImageDraw.Draw(scene), size, *right, *purple)
    scene.save(input_dir / TWO_OBJECT_FILES[0])
    for pose, name in ((left, TWO_OBJECT_FILES[1]), (right, TWO_OBJECT_FILES[2])):
        mask = Image.new("L", (size, size), 0)
        _bird(ImageDraw.Draw(mask), size, *pose, 255, 255, 255)
        mask.save(input_dir / name)
    green_pose = (0.5, 0.5, 0.7, 1, True)
    green = Image.new("RGB", (size, size), (235, 225, 215))
    _bird(ImageDraw.Draw(green), size, *green_pose, (40, 150, 60), (20, 100, 40), (160, 220, 90))
    green.save(input_dir / TWO_OBJECT_FILES[3])
    mask = Image.new("L", (size, size), 0)
    _bird(ImageDraw.Draw(mask), size, *green_pose, 255, 255, 255)
    mask.save(input_dir / TWO_OBJECT_FILES[4])
    return TWO_OBJECT_FILES


def verify_checkpoint(path: Path, base_name: str = "base", size: int = 64, steps: int = 4) -> dict:
    """Load the checkpoint with the stock nodes and run encode -> VAEEncode -> KSampler -> VAEDecode in-process.

    Boots ComfyUI with base .e4e/BASE_NAME unless it is already running in this process, and links the
    checkpoint into the host's checkpoints folder. Returns timings (s) and output (shape, std); raises if any
    output is not finite.
    """
    import torch

    nodes = sys.modules.get("nodes") or boot_in_process(base_directory(base_name))
    import folder_paths

    path = Path(path).resolve()
    link = Path(folder_paths.get_folder_paths("checkpoints")[0]) / path.name
    if not link.exists():
        link.symlink_to(path)
    report = {}
    with torch.inference_mode():
        start = time.perf_counter()
        model, clip, vae = nodes.CheckpointLoaderSimple().load_checkpoint(path.name)
        report["load_s"] = time.perf_counter() - start
        start = time.perf_counter()
        positive = nodes.CLIPTextEncode().encode(clip, "a small bird")[0]
        negative = nodes.CLIPTextEncode().encode(clip, "")[0]
        report["encode_s"] = time.perf_counter() - start
        ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
        image = torch.stack([xs, ys, (xs + ys) / 2], dim=-1)[None]
        latent = nodes.VAEEncode().encode(vae, image)[0]
        start = time.perf_counter()
        sampler = nodes.KSampler()
        sampled = sampler.sample(model, 0, steps, 7.0, "euler", "normal", positive, negative, latent)[0]
        report["sample_s"] = time.perf_counter() - start
        decoded = nodes.VAEDecode().decode(vae, sampled)[0]
    checks = {"cond": positive[0][0], "latent": latent["samples"], "sampled": sampled["samples"], "decoded": decoded}
    for name, tensor in checks.items():
        if not torch.isfinite(tensor).all():
            raise RuntimeError(f"{name} is not finite")
        report[name] = (tuple(tensor.shape), round(tensor.float().std().item(), 4))
    report["model"] = type(model.model.model_config).__name__
    report["vae"] = type(vae.first_stage_model).__name__
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="checkpoint path (.safetensors)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--verify", metavar="BASE", help="load and sample it in-process with base .e4e/BASE")
    parser.add_argument("--demo-images", type=Path, metavar="DIR", help="also write the demo images to DIR")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    if args.verify:
        boot_in_process(base_directory(args.verify))
    start = time.perf_counter()
    path = write_tiny_sd15_checkpoint(args.out, args.seed)
    print(f"{path} ({path.stat().st_size / 2**20:.0f} MB, {time.perf_counter() - start:.1f} s)")
    if args.demo_images:
        print("demo images:", write_demo_images(args.demo_images))
    if args.verify:
        print("verified:", verify_checkpoint(path, args.verify))


if __name__ == "__main__":
    main()

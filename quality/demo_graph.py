"""`make demo` without a checkpoint: an appearance transfer on the creature model, through a real server.

The prompts use the pack's own nodes (Invert, Apply, KSampler, Extract Features, Semantic Match,
Visualize Correspondence) and the demo-only creature nodes (quality/comfy_nodes.py) in place of a
checkpoint loader, VAE and text encoder. The images are two creatures from quality/creatures.py
with different part colours, facing the same way, plus their foreground masks.

    write_creature_inputs(input_dir)  -> file names of target, reference and their masks
    transfer_prompt(**names), inspection_prompt(**names) -> API-format prompts
"""

from __future__ import annotations

from pathlib import Path

import torch

from .creatures import draw_creatures

# The benchmark's schedule (quality/benchmark.py Settings: the published one scaled to 50 steps).
STEPS, SKIP, START, REFRESH_EVERY, REFRESH_UNTIL, ADAIN_START, CFG = 50, 16, 5, 3, 20, 25, 2.5
PAIR_SEED = 31  # a pair whose parts all differ in colour clearly
NAMES = {"target": "creature_target.png", "reference": "creature_reference.png",
         "target_mask": "creature_target_mask.png", "reference_mask": "creature_reference_mask.png"}


def _save(array: torch.Tensor, path: Path) -> None:
    from PIL import Image

    pixels = (array.clamp(0, 1) * 255).round().byte()
    Image.fromarray(pixels.permute(1, 2, 0).numpy() if pixels.dim() == 3 else pixels.numpy()).save(path)


def write_creature_inputs(directory: Path, seed: int = PAIR_SEED) -> dict:
    """Target and reference creatures (64x64 PNG) and their foreground masks (white = creature)."""
    generator = torch.Generator().manual_seed(seed)
    target, reference = draw_creatures(1, generator, flip=False), draw_creatures(1, generator, flip=False)
    directory.mkdir(parents=True, exist_ok=True)
    _save(target.images[0], directory / NAMES["target"])
    _save(reference.images[0], directory / NAMES["reference"])
    _save(target.foreground[0].float(), directory / NAMES["target_mask"])
    _save(reference.foreground[0].float(), directory / NAMES["reference_mask"])
    return dict(NAMES)


def _link(node: str, slot: int = 0) -> list:
    return [node, slot]


def _loaders(names: dict) -> dict:
    return {
        "1": {"class_type": "E4EDemo_LoadCreatureModel", "inputs": {}, "_meta": {"title": "Creature model"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": names["target"]}, "_meta": {"title": "Target (structure)"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": names["reference"]}, "_meta": {"title": "Reference (appearance)"}},
        "4": {"class_type": "LoadImageMask", "inputs": {"image": names["target_mask"], "channel": "red"}, "_meta": {"title": "Target mask"}},
        "5": {"class_type": "LoadImageMask", "inputs": {"image": names["reference_mask"], "channel": "red"}, "_meta": {"title": "Reference mask"}},
        "6": {"class_type": "E4EDemo_CreatureImageToLatent", "inputs": {"image": _link("2")}},
        "7": {"class_type": "E4EDemo_CreatureImageToLatent", "inputs": {"image": _link("3")}},
    }


def transfer_prompt(names: dict = NAMES) -> dict:
    """Invert both creatures, rearrange the reference's features into the target's layout, sample, save."""
    # The model is unconditional (positive == negative), so inversion guidance 1 equals any other.
    invert = {"model": _link("1"), "positive": _link("1", 1), "negative": _link("1", 1), "steps": STEPS, "skip": SKIP,
              "cfg": 1.0, "scheduler": "ddim_uniform"}
    masks = {"target_mask": _link("4"), "reference_mask": _link("5")}
    return {
        **_loaders(names),
        "8": {"class_type": "E4E_Invert", "inputs": {**invert, "latent": _link("6"), "seed": 1}, "_meta": {"title": "Invert target"}},
        "9": {"class_type": "E4E_Invert", "inputs": {**invert, "latent": _link("7"), "seed": 2}, "_meta": {"title": "Invert reference"}},
        "10": {"class_type": "E4E_ApplyEyeForEye", "inputs": {
            "model": _link("1"), "reference_inversion": _link("9"), "target_inversion": _link("8"), "start": START, "end": -1,
            "refresh_every": REFRESH_EVERY, "refresh_until": REFRESH_UNTIL, "mode": "rearrange features (q, k, v)", **masks}},
        "11": {"class_type": "E4E_KSampler", "inputs": {
            "model": _link("10"), "positive": _link("1", 1), "negative": _link("1", 1), "target_inversion": _link("8"),
            "reference_inversion": _link("9"), "cfg": CFG, "adain_start": ADAIN_START, **masks}},
        "12": {"class_type": "E4EDemo_CreatureLatentToImage", "inputs": {"latent": _link("11")}},
        "13": {"class_type": "SaveImage", "inputs": {"images": _link("12"), "filename_prefix": "creature_transfer"}},
    }


def inspection_prompt(names: dict = NAMES, resolution: str = "1/8") -> dict:
    """DIFT features of both creatures -> semantic match inside the masks -> the three pictures."""
    extract = {"model": _link("1"), "positive": _link("1", 1), "resolution": resolution, "layer": "all",
               "timestep": 261, "ensemble": 8, "seed": 0, "step": 0}
    return {
        **_loaders(names),
        "8": {"class_type": "E4E_ExtractFeatures", "inputs": {**extract, "latent": _link("6")}},
        "9": {"class_type": "E4E_ExtractFeatures", "inputs": {**extract, "latent": _link("7")}},
        "10": {"class_type": "E4E_SemanticMatch", "inputs": {
            "target_features": _link("8"), "reference_features": _link("9"), "mutual": False, "min_similarity": -1.0,
            "target_mask": _link("4"), "reference_mask": _link("5")}},
        "11": {"class_type": "E4E_VisualizeCorrespondence", "inputs": {
            "correspondence": _link("10"), "target_image": _link("2"), "reference_image": _link("3"), "points_per_side": 8}},
        "12": {"class_type": "SaveImage", "inputs": {"images": _link("11", 0), "filename_prefix": "e4e_matches"}},
        "13": {"class_type": "SaveImage", "inputs": {"images": _link("11", 1), "filename_prefix": "e4e_warped_reference"}},
        "14": {"class_type": "SaveImage", "inputs": {"images": _link("11", 2), "filename_prefix": "e4e_confidence"}},
    }

"""Write every example workflow in workflows/ as a UI-format graph and an API-format prompt.

The graphs are defined here once; both files are generated from them with the node
definitions of the real host, so they cannot drift apart.  Run after changing a node:

    .venv/bin/python scripts/build_workflows.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from comfy_host import REPO  # noqa: E402

WORKFLOWS = REPO / "workflows"
from tiny_checkpoint import CHECKPOINT_NAME as DEFAULT_CKPT  # noqa: E402


def link(node_id: str, slot: int = 0) -> list:
    """An API-format connection to output `slot` of node `node_id`."""
    return [node_id, slot]


def transfer_graph(ckpt: str = DEFAULT_CKPT, target: str = "e4e_target.png", reference: str = "e4e_reference.png", prompt: str = "a photo of a bird"):
    """The published setup: FreeU, inversion of both images (100 steps, skip 32, cfg 3.5), transfer, cfg 2.5."""
    api = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "FreeU", "inputs": {"model": link("1"), "b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": link("1", 1)}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": link("1", 1)}},
        "5": {"class_type": "LoadImage", "inputs": {"image": target}},
        "6": {"class_type": "LoadImage", "inputs": {"image": reference}},
        "7": {"class_type": "VAEEncode", "inputs": {"pixels": link("5"), "vae": link("1", 2)}},
        "8": {"class_type": "VAEEncode", "inputs": {"pixels": link("6"), "vae": link("1", 2)}},
        "9": {"class_type": "E4E_Invert", "inputs": {"model": link("2"), "positive": link("3"), "negative": link("4"), "latent": link("7"), "steps": 100, "skip": 32, "cfg": 3.5, "seed": 0, "scheduler": "ddim_uniform"}},
        "10": {"class_type": "E4E_Invert", "inputs": {"model": link("2"), "positive": link("3"), "negative": link("4"), "latent": link("8"), "steps": 100, "skip": 32, "cfg": 3.5, "seed": 1, "scheduler": "ddim_uniform"}},
        "11": {"class_type": "E4E_ApplyEyeForEye", "inputs": {"model": link("2"), "reference_inversion": link("10"), "target_inversion": link("9"), "start": 10, "end": -1, "refresh_every": 5, "refresh_until": 40, "mode": "rearrange features (q, k, v)"}},
        "12": {"class_type": "E4E_KSampler", "inputs": {"model": link("11"), "positive": link("3"), "negative": link("4"), "target_inversion": link("9"), "reference_inversion": link("10"), "cfg": 2.5, "adain_start": 49}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": link("12"), "vae": link("1", 2)}},
        "14": {"class_type": "SaveImage", "inputs": {"images": link("13"), "filename_prefix": "eye_for_eye"}},
    }
    titles = {"5": "Target (structure)", "6": "Reference (appearance)", "9": "Invert target", "10": "Invert reference"}
    positions = {
        "1": (0, 0), "2": (360, 0), "3": (360, 200), "4": (360, 420), "5": (0, 600), "6": (0, 960),
        "7": (360, 640), "8": (360, 820), "9": (720, 0), "10": (720, 420), "11": (1080, 0), "12": (1440, 0),
        "13": (1800, 0), "14": (1800, 160),
    }
    return api, positions, titles


def inspection_graph(ckpt: str = DEFAULT_CKPT, target: str = "e4e_target.png", reference: str = "e4e_reference.png", prompt: str = "a photo of a bird"):
    """DIFT features of both images -> semantic match -> pictures of what matched what."""
    extract = {"positive": link("2"), "resolution": "1/16", "layer": "all", "timestep": 261, "ensemble": 8, "seed": 0, "step": 10}
    api = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": link("1", 1)}},
        "3": {"class_type": "LoadImage", "inputs": {"image": target}},
        "4": {"class_type": "LoadImage", "inputs": {"image": reference}},
        "5": {"class_type": "VAEEncode", "inputs": {"pixels": link("3"), "vae": link("1", 2)}},
        "6": {"class_type": "VAEEncode", "inputs": {"pixels": link("4"), "vae": link("1", 2)}},
        "7": {"class_type": "E4E_ExtractFeatures", "inputs": {"model": link("1"), "latent": link("5"), **extract}},
        "8": {"class_type": "E4E_ExtractFeatures", "inputs": {"model": link("1"), "latent": link("6"), **extract}},
        "9": {"class_type": "E4E_SemanticMatch", "inputs": {"target_features": link("7"), "reference_features": link("8"), "mutual": False, "min_similarity": -1.0}},
        "10": {"class_type": "E4E_VisualizeCorrespondence", "inputs": {"correspondence": link("9"), "target_image": link("3"), "reference_image": link("4"), "points_per_side": 8}},
        "11": {"class_type": "SaveImage", "inputs": {"images": link("10", 0), "filename_prefix": "e4e_matches"}},
        "12": {"class_type": "SaveImage", "inputs": {"images": link("10", 1), "filename_prefix": "e4e_warped_reference"}},
        "13": {"class_type": "SaveImage", "inputs": {"images": link("10", 2), "filename_prefix": "e4e_confidence"}},
    }
    titles = {"3": "Target (structure)", "4": "Reference (appearance)", "7": "Target features", "8": "Reference features"}
    positions = {
        "1": (0, 0), "2": (360, 0), "3": (0, 300), "4": (0, 660), "5": (360, 300), "6": (360, 480), "7": (720, 0),
        "8": (720, 420), "9": (1080, 0), "10": (1440, 0), "11": (1800, 0), "12": (1800, 320), "13": (1800, 640),
    }
    return api, positions, titles


def two_object_graph(ckpt: str = DEFAULT_CKPT, prompt: str = "a photo of two birds"):
    """Two birds in one target, each taking its appearance from its own reference bird."""
    invert = {"model": link("2"), "positive": link("3"), "negative": link("4"), "steps": 100, "skip": 32, "cfg": 3.5, "scheduler": "ddim_uniform"}
    api = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "FreeU", "inputs": {"model": link("1"), "b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": link("1", 1)}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": link("1", 1)}},
        "5": {"class_type": "LoadImage", "inputs": {"image": "e4e_two_birds.png"}},
        "6": {"class_type": "LoadImage", "inputs": {"image": "e4e_reference.png"}},
        "7": {"class_type": "LoadImage", "inputs": {"image": "e4e_green_bird.png"}},
        "8": {"class_type": "LoadImageMask", "inputs": {"image": "e4e_two_birds_left_mask.png", "channel": "red"}},
        "9": {"class_type": "LoadImageMask", "inputs": {"image": "e4e_two_birds_right_mask.png", "channel": "red"}},
        "10": {"class_type": "LoadImageMask", "inputs": {"image": "e4e_reference_mask.png", "channel": "red"}},
        "11": {"class_type": "LoadImageMask", "inputs": {"image": "e4e_green_bird_mask.png", "channel": "red"}},
        "12": {"class_type": "VAEEncode", "inputs": {"pixels": link("5"), "vae": link("1", 2)}},
        "13": {"class_type": "VAEEncode", "inputs": {"pixels": link("6"), "vae": link("1", 2)}},
        "14": {"class_type": "VAEEncode", "inputs": {"pixels": link("7"), "vae": link("1", 2)}},
        "15": {"class_type": "E4E_Invert", "inputs": {**invert, "latent": link("12"), "seed": 0}},
        "16": {"class_type": "E4E_Invert", "inputs": {**invert, "latent": link("13"), "seed": 1}},
        "17": {"class_type": "E4E_Invert", "inputs": {**invert, "latent": link("14"), "seed": 2}},
        "18": {"class_type": "E4E_TransferObject", "inputs": {"reference_inversion": link("16"), "target_mask": link("8"), "reference_mask": link("10")}},
        "19": {"class_type": "E4E_TransferObject", "inputs": {"reference_inversion": link("17"), "target_mask": link("9"), "reference_mask": link("11"), "objects": link("18")}},
        "20": {"class_type": "E4E_ApplyEyeForEyeObjects", "inputs": {"model": link("2"), "target_inversion": link("15"), "objects": link("19"), "start": 10, "end": -1, "refresh_every": 5, "refresh_until": 40, "mode": "rearrange features (q, k, v)"}},
        "21": {"class_type": "E4E_KSampler", "inputs": {"model": link("20"), "positive": link("3"), "negative": link("4"), "target_inversion": link("15"), "objects": link("19"), "cfg": 2.5, "adain_start": 49}},
        "22": {"class_type": "VAEDecode", "inputs": {"samples": link("21"), "vae": link("1", 2)}},
        "23": {"class_type": "SaveImage", "inputs": {"images": link("22"), "filename_prefix": "eye_for_eye_two_objects"}},
    }
    titles = {"5": "Target with two birds", "6": "Reference for the left bird", "7": "Reference for the right bird",
              "8": "Left bird mask", "9": "Right bird mask", "10": "Left reference mask", "11": "Right reference mask",
              "15": "Invert target", "16": "Invert left reference", "17": "Invert right reference"}
    positions = {
        "1": (0, 0), "2": (360, 0), "3": (360, 160), "4": (360, 380), "5": (0, 600), "6": (0, 960), "7": (0, 1320),
        "8": (360, 1100), "9": (360, 1220), "10": (360, 1340), "11": (360, 1460), "12": (360, 620), "13": (360, 780),
        "14": (360, 940), "15": (720, 0), "16": (720, 420), "17": (720, 840), "18": (1080, 600), "19": (1080, 840),
        "20": (1080, 0), "21": (1440, 0), "22": (1800, 0), "23": (1800, 160),
    }
    return api, positions, titles


GRAPHS = {
    "eye_for_eye_transfer": transfer_graph,
    "correspondence_inspection": inspection_graph,
    "two_object_transfer": two_object_graph,
}


def with_titles(api: dict, titles: dict) -> dict:
    return {k: ({**v, "_meta": {"title": titles[k]}} if k in titles else v) for k, v in api.items()}


def main() -> None:
    from comfy_host import load_host_with_pack
    from workflow_format import api_to_ui, host_definitions

    comfy_nodes, _ = load_host_with_pack("build-base")
    WORKFLOWS.mkdir(exist_ok=True)
    for name, build in GRAPHS.items():
        api, positions, titles = build()
        definitions = host_definitions(comfy_nodes.NODE_CLASS_MAPPINGS, {n["class_type"] for n in api.values()})
        ui = api_to_ui(api, definitions, positions, titles)
        (WORKFLOWS / f"{name}.json").write_text(json.dumps(ui, indent=2) + "\n")
        (WORKFLOWS / f"{name}.api.json").write_text(json.dumps(with_titles(api, titles), indent=2) + "\n")
        print(f"wrote workflows/{name}.json and workflows/{name}.api.json")


if __name__ == "__main__":
    main()

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
DEFAULT_CKPT = "e4e-tiny-sd15.safetensors"


def transfer_graph(ckpt: str = DEFAULT_CKPT, target: str = "e4e_target.png", reference: str = "e4e_reference.png", prompt: str = "a photo of a bird"):
    """The published setup: FreeU, inversion of both images (100 steps, skip 32, cfg 3.5), transfer, cfg 2.5."""
    def link(node_id, slot=0):
        return [node_id, slot]

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


GRAPHS = {"eye_for_eye_transfer": transfer_graph}


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

"""`make demo`: an appearance transfer in a headless ComfyUI server, then pictures of its correspondence.

    python scripts/demo.py                                    # the creature model shipped in tests/assets
    python scripts/demo.py --ckpt sd15.safetensors --target t.png --reference r.png [--prompt "a photo of a cat"]

Without a checkpoint it runs a transfer between two creatures on the tiny creature model trained
here (quality/demo_graph.py: the pack's nodes plus demo-only loader nodes for that model). With one,
it runs workflows/eye_for_eye_transfer.api.json and workflows/correspondence_inspection.api.json.
Writes output/eye_for_eye_demo.png (target | reference | result, side by side) and the inspection
pictures output/correspondence_matches.png, _warped_reference.png, _confidence.png.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from comfy_host import REPO, base_directory  # noqa: E402
from run_workflow import image_path, output_images, queue_prompt, start_server, wait_for  # noqa: E402

WORKFLOW = REPO / "workflows" / "api" / "eye_for_eye_transfer.api.json"
INSPECTION = REPO / "workflows" / "api" / "correspondence_inspection.api.json"
OUTPUT = REPO / "output"
BASE_NAME = "demo-base"


def nodes_of(prompt: dict, class_type: str) -> list[dict]:
    return [node for node in prompt.values() if node["class_type"] == class_type]


def configure(prompt: dict, ckpt: str, target: str, reference: str, prompt_text: str | None) -> dict:
    """The example workflow with our checkpoint, images and (optionally) prompt filled in."""
    (loader,) = nodes_of(prompt, "CheckpointLoaderSimple")
    loader["inputs"]["ckpt_name"] = ckpt
    titles = {node.get("_meta", {}).get("title"): node for node in nodes_of(prompt, "LoadImage")}
    titles["Target (structure)"]["inputs"]["image"] = target
    titles["Reference (appearance)"]["inputs"]["image"] = reference
    if prompt_text is not None:
        positive = [n for n in nodes_of(prompt, "CLIPTextEncode") if n["inputs"]["text"]][0]
        positive["inputs"]["text"] = prompt_text
    return prompt


def prepare_inputs(base: Path, args) -> tuple[str, str, str]:
    checkpoints, inputs = base / "models" / "checkpoints", base / "input"
    if args.target is None or args.reference is None:
        raise SystemExit("with CKPT, also give TARGET=image and REFERENCE=image")
    ckpt = Path(args.ckpt).resolve()
    link = checkpoints / ckpt.name
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(ckpt)
    for image in (args.target, args.reference):
        shutil.copy(image, inputs / Path(image).name)
    return ckpt.name, Path(args.target).name, Path(args.reference).name


def prompts(base: Path, args) -> tuple[dict, dict, list[Path]]:
    """(transfer prompt, inspection prompt, [target, reference] input paths) for this run."""
    if args.ckpt is None:
        from quality.demo_graph import inspection_prompt, transfer_prompt, write_creature_inputs

        print("No CKPT: transferring between two creatures on the tiny creature model shipped in tests/assets "
              "(trained here; see docs/quality.md). Give CKPT=... TARGET=... REFERENCE=... for Stable Diffusion.")
        names = write_creature_inputs(base / "input")
        inputs = [base / "input" / names["target"], base / "input" / names["reference"]]
        return transfer_prompt(names), inspection_prompt(names), inputs
    ckpt, target, reference = prepare_inputs(base, args)
    transfer = configure(json.loads(WORKFLOW.read_text()), ckpt, target, reference, args.prompt)
    inspection = configure(json.loads(INSPECTION.read_text()), ckpt, target, reference, args.prompt)
    return transfer, inspection, [base / "input" / target, base / "input" / reference]


def side_by_side(paths: list[Path], out: Path, height: int = 256) -> None:
    from PIL import Image

    images = [Image.open(p).convert("RGB") for p in paths]
    images = [im.resize((max(1, round(im.width * height / im.height)), height), Image.NEAREST) for im in images]
    canvas = Image.new("RGB", (sum(im.width for im in images) + 8 * (len(images) - 1), height), "white")
    x = 0
    for im in images:
        canvas.paste(im, (x, 0))
        x += im.width + 8
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="an SD1.5 checkpoint (.safetensors); omit for the creature-model demo")
    parser.add_argument("--target", help="structure image")
    parser.add_argument("--reference", help="appearance image")
    parser.add_argument("--prompt", help='e.g. "a photo of a cat" (default: the workflow\'s "a photo of a bird")')
    parser.add_argument("--timeout", type=float, default=3600.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    start = time.perf_counter()
    base = base_directory(BASE_NAME)
    prompt, inspection, inputs = prompts(base, args)
    extra_args = ["--gpu"] if args.ckpt and _has_gpu() else []
    with start_server(BASE_NAME, extra_args=extra_args + ([] if args.ckpt else ["--demo-nodes"])) as server:
        print(f"ComfyUI is up at {server.url}; running the transfer")
        history = wait_for(server.url, queue_prompt(server.url, prompt), timeout=args.timeout)
        result = image_path(server.base, output_images(history)[0])
        out = OUTPUT / "eye_for_eye_demo.png"
        side_by_side(inputs + [result], out)
        shutil.copy(result, OUTPUT / "eye_for_eye_result.png")
        print(f"wrote {out.relative_to(REPO)} (target | reference | result) in {time.perf_counter() - start:.0f} s")
        history = wait_for(server.url, queue_prompt(server.url, inspection), timeout=args.timeout)
        for image in output_images(history):
            if image[2] == "output":  # e4e_matches_00001_.png -> correspondence_matches.png
                name = "correspondence_" + image[0].removeprefix("e4e_").rsplit("_", 2)[0] + ".png"
                shutil.copy(image_path(server.base, image), OUTPUT / name)
        print(f"wrote the inspection pictures output/correspondence_*.png in {time.perf_counter() - start:.0f} s")


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


if __name__ == "__main__":
    main()

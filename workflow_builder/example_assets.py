"""The files a new user needs beside the workflows: example input images and masks, and template thumbnails.

    python workflow_builder/example_assets.py        # (re)writes example_inputs/*.png and workflows/*.jpg

- example_inputs/: the images and masks every shipped workflow names, drawn by tests/support/tiny_checkpoint.py's
  writers at 512x512 (SD1.5's size). Copy them into ComfyUI/input (or upload them in the Load Image nodes).
- workflows/<name>.jpg: the thumbnail ComfyUI's template browser requests beside each template
  (frontend 1.32.9 asks for `/api/workflow_templates/<pack>/<name>.jpg`).

Deterministic: running it again gives the same files, and a test checks the committed ones are in step.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # comfy_host
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))  # the example images' drawing
from comfy_host import REPO  # noqa: E402
from tiny_checkpoint import DEMO_FILES, TWO_OBJECT_FILES, write_demo_images, write_two_object_images  # noqa: E402

EXAMPLE_INPUTS = REPO / "example_inputs"
WORKFLOWS = REPO / "workflows"
EXAMPLE_SIZE = 512
THUMBNAIL_SIZE = (384, 216)

# What each template's thumbnail shows: (image file, caption), left to right.
THUMBNAILS = {
    "eye_for_eye_transfer": [(DEMO_FILES[0], "target: structure"), (DEMO_FILES[1], "reference: appearance")],
    "correspondence_inspection": [(DEMO_FILES[0], "target"), (DEMO_FILES[1], "reference")],
    "two_object_transfer": [(TWO_OBJECT_FILES[0], "target: two birds"), (DEMO_FILES[1], "left ref."), (TWO_OBJECT_FILES[3], "right ref.")],
    "composition_transfer": [(DEMO_FILES[0], "target: structure, edges"), (DEMO_FILES[1], "reference")],
    "as_published": [(DEMO_FILES[0], "target"), (DEMO_FILES[2], "target mask"), (DEMO_FILES[1], "reference"), (DEMO_FILES[3], "ref. mask")],
}
TITLES = {
    "eye_for_eye_transfer": "Eye-for-an-eye: appearance transfer",
    "correspondence_inspection": "Eye-for-an-eye: inspect the correspondence",
    "two_object_transfer": "Eye-for-an-eye: two objects, two references",
    "composition_transfer": "Eye-for-an-eye with LoRA, FreeU and ControlNet",
    "as_published": "Eye-for-an-eye as published: their FreeU, masks, live branches",
}


def write_example_inputs(folder: Path = EXAMPLE_INPUTS, size: int = EXAMPLE_SIZE) -> list[str]:
    """Every image and mask the shipped workflows load, written into `folder`; returns the file names."""
    return list(write_demo_images(folder, size)) + list(write_two_object_images(folder, size))


def thumbnail(name: str, inputs: Path = EXAMPLE_INPUTS):
    """A small picture of what template `name` works on: its input images with captions."""
    from PIL import Image, ImageDraw

    width, height = THUMBNAIL_SIZE
    canvas = Image.new("RGB", (width, height), (32, 34, 40))
    draw = ImageDraw.Draw(canvas)
    draw.text((10, 8), TITLES[name], fill=(235, 235, 235))
    items = THUMBNAILS[name]
    gap = 8
    side = min(150, (width - gap * (len(items) + 1)) // len(items))
    x = (width - len(items) * side - (len(items) - 1) * gap) // 2
    for file, caption in items:
        image = Image.open(inputs / file).convert("RGB").resize((side, side), Image.LANCZOS)
        canvas.paste(image, (x, 32))
        draw.text((x, 36 + side), caption, fill=(200, 200, 200))
        x += side + gap
    return canvas


def write_thumbnails(folder: Path = WORKFLOWS, inputs: Path = EXAMPLE_INPUTS) -> list[Path]:
    paths = []
    for name in THUMBNAILS:
        path = folder / f"{name}.jpg"
        thumbnail(name, inputs).save(path, "JPEG", quality=85, optimize=True)
        paths.append(path)
    return paths


def main() -> None:
    names = write_example_inputs()
    print(f"wrote {len(names)} example inputs to {EXAMPLE_INPUTS.relative_to(REPO)}/")
    for path in write_thumbnails():
        print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()

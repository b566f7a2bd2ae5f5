"""Write every example workflow: a UI-format template in workflows/ and its API-format twin in workflows/api/.

The graphs are defined here once; both files are generated from them with the node definitions of the real
host, so they cannot drift apart. The UI file adds what a person reading the graph needs: a group and a note per
stage (which knobs matter), titles, node sizes from what each node shows, a column layout in which nothing
overlaps, and the models it needs (what the frontend offers to download when they are missing: frontend 1.32.9
in a missing-models dialog, 1.58.1 in the Issues panel behind its warning). Run after changing a node:

    .venv/bin/python workflow_builder/build_workflows.py      # or: make workflows

ComfyUI lists every `*.json` directly inside a pack's workflows/ folder as a template and does not look into
subfolders, so the API prompts in workflows/api/ stay out of the template browser.

What the template browser shows of a pack's template is its file name and nothing else (ComfyUI 0.3.75's
GET /workflow_templates answers {pack: [file names]}, app/custom_node_manager.py; both frontends build each card
from the name alone: title = the name, description = the name with `_` and `-` as spaces, shown as the card's
second line by 1.32.9 and not at all by 1.58.1; workflowTemplatesStore.ts, useTemplateWorkflows.ts). The server
lists the folder in directory order (glob, unsorted) and the default sort of both frontends keeps it. So the file
names are one-line descriptions, numbered in the order to read them, and the pack's page extension
(web/eye_for_eye.js) sorts the page's list by number: the main transfer comes first. The API twins keep the short
names.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))  # comfy_host
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))  # the example images' drawing
from comfy_host import REPO  # noqa: E402

WORKFLOWS = REPO / "workflows"
API_WORKFLOWS = WORKFLOWS / "api"

# The checkpoint the templates name: one SD1.5 checkpoint, as in ComfyUI's own SD1.5 templates.
SD15_CHECKPOINT = "v1-5-pruned-emaonly-fp16.safetensors"
SD15_MODEL = {
    "name": SD15_CHECKPOINT,
    "url": "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly-fp16.safetensors",
    "directory": "checkpoints",
}

# The ControlNet the composition example names: ComfyUI's fp16 copy of ControlNet 1.1 canny for SD1.5.
SD15_CANNY_CONTROLNET = "control_v11p_sd15_canny_fp16.safetensors"
SD15_CANNY_MODEL = {
    "name": SD15_CANNY_CONTROLNET,
    "url": "https://huggingface.co/comfyanonymous/ControlNet-v1-1_fp16_safetensors/resolve/main/control_v11p_sd15_canny_fp16.safetensors",
    "directory": "controlnet",
}
# The LoRA is the user's own choice: a placeholder name, and the note says where the user's LoRA goes. It carries
# no `models` entry: the frontend's workflow schema requires a url in every entry (an entry without one raises
# "Invalid workflow against zod schema" on loading), and a placeholder has nothing to download.
SD15_LORA_PLACEHOLDER = "your_sd15_lora.safetensors"
PLACEHOLDERS = {SD15_LORA_PLACEHOLDER: "loras"}  # file name -> the models folder the note names

# The layout. A template opened from the browser is fitted to the window (both frontends: the nodes' bounding box
# at 0.75 of the canvas, DragAndScale.fitToBounds; 1.58.1 does it for every template, 1.32.9 when the file has no
# extra.ds), and the canvas draws node text only at a zoom of at least MinFontSizeForLOD / NODE_TEXT_SIZE = 8 / 14
# (LGraphCanvas.updateLowQualityThreshold). So every template is packed to fit a 1600x1000 window at FIT_GOAL or
# more: stages side by side (or stacked), each stage's note on top of its first column.
VIEWPORT = (1600, 1000)
FIT_ZOOM = 0.75
FIT_PADDING = 10  # createBounds
READABLE_SCALE = 8 / 14  # at devicePixelRatio 1
FIT_GOAL = 0.575  # the page's zoom is exactly fit_scale (it keeps the nodes' sizes): a margin above READABLE_SCALE
COLUMN_GAP = 20  # between columns of one stage
GROUP_GAP = 20  # between the groups of two stages
ROW_GAP = 10  # between nodes in a column (below the upper node, above the lower one's title bar)
GROUP_PADDING = 10
GROUP_TITLE = 40
GROUP_TITLE_CHAR = 13  # 24 px group titles
GROUP_TITLE_CHROME = 20
GROUP_COLOURS = ["#3f789e", "#8a5f3f", "#5f8a3f", "#7a3f8a", "#3f8a84"]

# Text the page draws, in canvas units at zoom 1, measured in both frontends and rounded up so that nothing is cut
# (the browser test checks it): widgets are 12 px Arial (1.32.9; Liberation Sans on Linux, the same metrics) or
# Inter (1.58.1), up to 6.3 px a character, drawn 90 px narrower than the node (BaseWidget.drawTruncatingText);
# titles 14 px, up to 7.2 px a character, drawn 60 px narrower than the node (LGraphNode.drawTitleText); socket
# names 14 px, up to 7.9 px a character plus 45 (LGraphNode.computeSize); notes a 10 px monospace textarea, 6 px a
# character and 11 px a line, 20 px narrower and 22 px shorter than the node, and never under 88 px.
WIDGET_CHAR = 6.4
WIDGET_CHROME = 95
TITLE_CHAR = 7.4
TITLE_CHROME = 65
SLOT_CHAR = 8.4  # socket names, 14 px: the longest input's and output's side by side
SLOT_CHROME = 45
NOTE_CHAR = 6.2
NOTE_LINE = 12
NOTE_CHROME = 36
NOTE_MIN_HEIGHT = 90

# Heights (canvas units) of nodes whose content is larger than their sockets and widgets suggest: text boxes, and
# image previews (once an image is loaded, or after a run for SaveImage, the page adds a preview widget at least
# 220 tall and grows a smaller node over the one below it); and the least width of a node.
TALL = {"CLIPTextEncode": 100, "LoadImage": 330, "LoadImageMask": 330, "SaveImage": 290}
MIN_WIDTH = 260


def link(node_id: str, slot: int = 0) -> list:
    """An API-format connection to output `slot` of node `node_id`."""
    return [node_id, slot]


@dataclass
class Example:
    """One example graph: the API prompt plus what the UI file adds."""

    api: dict
    titles: dict[str, str]
    stages: list[tuple[str, str, list[list[str]]]]  # (group title, note text, columns of node ids)
    models: dict[str, list[dict]] = field(default_factory=dict)  # node id -> frontend model metadata
    # Stages placed left to right; a list of several stage indices stacks those stages in one column of groups.
    stack: list[list[int]] | None = None

# What a user sees on opening a template whose files are missing, per frontend (measured in the page).
MISSING_FILES = (
    "When a file is missing, ComfyUI's frontend 1.32.9 shows a missing-models dialog with a download button; "
    "1.58.1 shows a warning (naming the missing file, or 'N issues found') whose 'View details' opens the Issues "
    "panel: missing models with download buttons, and input images not yet in ComfyUI/input."
)

LOAD_NOTE = (
    "Eye-for-an-eye keeps the STRUCTURE of the target and takes colours and textures from the REFERENCE, part by "
    "part.\n\nNeeds one SD1.5 checkpoint in models/checkpoints ({ckpt}). {missing} The example images "
    "ship with the pack in example_inputs/: copy them into ComfyUI/input or pick them with 'choose file to "
    "upload'.\n\nThe positive prompt names what both images show (\"a photo of a bird\"); the negative stays empty. "
    "Patch the model (FreeU, LoRA) before the Invert nodes and use that same model everywhere."
)
INVERT_NOTE = (
    "Inversion finds the noise maps that make the sampler retrace each image, and records the self-attention "
    "features the transfer needs.\n\nInvert every image with the SAME model, prompt, steps, skip and scheduler "
    "(the pack refuses inversions that do not match).\n\nKnobs: steps 100 / skip 32 are the published settings "
    "(fewer steps run faster but reconstruct less exactly); cfg 3.5. The seed only picks the noise draws; keep "
    "its control on 'fixed' so a re-run reuses the cached inversions."
)
TRANSFER_NOTE = (
    "Apply Eye-for-an-eye patches a clone of the model: from generation step 'start' on, every result token takes "
    "the features of its semantically nearest reference token (recomputed each step).\n\nKnobs: start (10; later "
    "keeps more of the target), refresh_every / refresh_until (the target's own features every n-th step keep its "
    "shape), mode ('values only' is the paper's ablation). Masks limit which parts are rearranged."
)
SAMPLE_NOTE = (
    "KSampler (Eye-for-an-eye) regenerates the target from its inversion with the patched model.\n\nKnobs: cfg 2.5 "
    "(1 keeps structure best; higher moves more appearance), adain_start 49 (from this step the latent takes the "
    "reference's colour statistics; -1 turns it off). Use the prompts the inversions were made with."
)


def transfer_graph(ckpt: str = SD15_CHECKPOINT, target: str = "e4e_target.png", reference: str = "e4e_reference.png", prompt: str = "a photo of a bird") -> Example:
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
        "9": {"class_type": "E4E_Invert", "inputs": {"model": link("2"), "positive": link("3"), "negative": link("4"), "latent": link("7"), "steps": 100, "skip": 32, "cfg": 3.5, "seed": 0, "scheduler": "ddim_uniform", "record_features": True}},
        "10": {"class_type": "E4E_Invert", "inputs": {"model": link("2"), "positive": link("3"), "negative": link("4"), "latent": link("8"), "steps": 100, "skip": 32, "cfg": 3.5, "seed": 1, "scheduler": "ddim_uniform", "record_features": True}},
        "11": {"class_type": "E4E_ApplyEyeForEye", "inputs": {"model": link("2"), "reference_inversion": link("10"), "target_inversion": link("9"), "start": 10, "end": -1, "refresh_every": 5, "refresh_until": 40, "mode": "rearrange features (q, k, v)", "feature_source": "recorded at inversion", "behaviour": "paper"}},
        "12": {"class_type": "E4E_KSampler", "inputs": {"model": link("11"), "positive": link("3"), "negative": link("4"), "target_inversion": link("9"), "reference_inversion": link("10"), "cfg": 2.5, "adain_start": 49}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": link("12"), "vae": link("1", 2)}},
        "14": {"class_type": "SaveImage", "inputs": {"images": link("13"), "filename_prefix": "eye_for_eye"}},
    }
    titles = {"1": "Load SD1.5 checkpoint", "2": "FreeU (published: 1.2 / 1.4 / 0.9 / 0.2)", "3": "Positive prompt (the domain)",
              "4": "Negative prompt (empty)", "5": "Target (structure)", "6": "Reference (appearance)",
              "7": "Encode target", "8": "Encode reference", "9": "Invert target", "10": "Invert reference",
              "11": "Apply Eye-for-an-eye", "12": "Sample the result", "13": "Decode", "14": "Save result"}
    stages = [
        ("1. Load: model, prompts, images", LOAD_NOTE.format(ckpt=ckpt, missing=MISSING_FILES), [["1", "2", "3", "4"], ["5", "6", "7", "8"]]),
        ("2. Invert both images", INVERT_NOTE, [["9", "10"]]),
        ("3. Transfer", TRANSFER_NOTE, [["11"]]),
        ("4. Sample, decode, save", SAMPLE_NOTE, [["12", "13", "14"]]),
    ]
    return Example(api, titles, stages, {"1": [SD15_MODEL]})


INSPECT_LOAD_NOTE = (
    "Shows which reference part each target part is matched to, before you run a transfer.\n\nNeeds one SD1.5 "
    "checkpoint in models/checkpoints ({ckpt}); the example images ship in the pack's example_inputs/ (copy them "
    "into ComfyUI/input)."
)
FEATURES_NOTE = (
    "DIFT features: each image is noised to 'timestep' and the model's decoder self-attention inputs are averaged "
    "over 'ensemble' draws.\n\nKnobs: resolution (1/16 is DIFT's; the transfer itself matches at the two finest "
    "decoder grids), timestep 261, ensemble 8 (more draws, steadier features). Extract both images the same way."
)
MATCH_NOTE = (
    "Semantic Match: every target token takes its cosine-nearest reference token. Knobs: mutual (keep only "
    "matches that agree both ways), min_similarity (drop weak matches), masks.\n\nVisualize Correspondence saves "
    "the match lines, the reference warped into the target's layout and a confidence map. Connect the "
    "correspondence to Apply Eye-for-an-eye to use it as a fixed correspondence."
)


def inspection_graph(ckpt: str = SD15_CHECKPOINT, target: str = "e4e_target.png", reference: str = "e4e_reference.png", prompt: str = "a photo of a bird") -> Example:
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
    titles = {"1": "Load SD1.5 checkpoint", "2": "Prompt (the domain)", "3": "Target (structure)", "4": "Reference (appearance)",
              "5": "Encode target", "6": "Encode reference", "7": "Target features", "8": "Reference features",
              "9": "Semantic Match", "10": "Visualize Correspondence", "11": "Save match lines",
              "12": "Save warped reference", "13": "Save confidence"}
    stages = [
        ("1. Load: model, prompt, images", INSPECT_LOAD_NOTE.format(ckpt=ckpt), [["3", "4"], ["1", "2", "5", "6"]]),
        ("2. Features of both images (DIFT)", FEATURES_NOTE, [["7", "8"]]),
        ("3. Match and look", MATCH_NOTE, [["9", "10", "11", "12"], ["13"]]),
    ]
    return Example(api, titles, stages, {"1": [SD15_MODEL]})


TWO_LOAD_NOTE = (
    "Two birds in one target, each taking its appearance from its own reference bird.\n\nNeeds one SD1.5 "
    "checkpoint in models/checkpoints ({ckpt}). The images and masks ship with the pack in example_inputs/ (copy "
    "them into ComfyUI/input). Masks are white on black; the red channel is read."
)
OBJECTS_NOTE = (
    "Each Transfer Object pairs one target region with one reference region; chain them through 'objects'. Where "
    "target masks overlap, the later object wins; target tokens outside every mask keep their own appearance.\n\n"
    "Apply (multi-object) takes the same schedule knobs as Apply: start 10, refresh_every 5, refresh_until 40."
)
TWO_SAMPLE_NOTE = (
    "The KSampler takes the objects (not a single reference), so AdaIN is done per object inside its mask.\n\n"
    "Knobs: cfg 2.5 (1 keeps structure best), adain_start 49 (-1 turns it off)."
)


def two_object_graph(ckpt: str = SD15_CHECKPOINT, prompt: str = "a photo of two birds") -> Example:
    """Two birds in one target, each taking its appearance from its own reference bird."""
    invert = {"model": link("2"), "positive": link("3"), "negative": link("4"), "steps": 100, "skip": 32, "cfg": 3.5, "scheduler": "ddim_uniform", "record_features": True}
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
        "20": {"class_type": "E4E_ApplyEyeForEyeObjects", "inputs": {"model": link("2"), "target_inversion": link("15"), "objects": link("19"), "start": 10, "end": -1, "refresh_every": 5, "refresh_until": 40, "mode": "rearrange features (q, k, v)", "feature_source": "recorded at inversion", "behaviour": "paper"}},
        "21": {"class_type": "E4E_KSampler", "inputs": {"model": link("20"), "positive": link("3"), "negative": link("4"), "target_inversion": link("15"), "objects": link("19"), "cfg": 2.5, "adain_start": 49}},
        "22": {"class_type": "VAEDecode", "inputs": {"samples": link("21"), "vae": link("1", 2)}},
        "23": {"class_type": "SaveImage", "inputs": {"images": link("22"), "filename_prefix": "eye_for_eye_two_objects"}},
    }
    titles = {"1": "Load SD1.5 checkpoint", "2": "FreeU (published: 1.2 / 1.4 / 0.9 / 0.2)", "3": "Positive prompt (the domain)",
              "4": "Negative prompt (empty)", "5": "Target with two birds", "6": "Left bird's reference",
              "7": "Right bird's reference", "8": "Left bird mask", "9": "Right bird mask",
              "10": "Left reference mask", "11": "Right reference mask", "12": "Encode target",
              "13": "Encode left reference", "14": "Encode right reference", "15": "Invert target",
              "16": "Invert left reference", "17": "Invert right reference", "18": "Left bird <- left reference",
              "19": "Right bird <- right reference", "20": "Apply Eye-for-an-eye (two objects)",
              "21": "Sample the result", "22": "Decode", "23": "Save result"}
    stages = [
        ("1. Load: model, prompts, images", TWO_LOAD_NOTE.format(ckpt=ckpt), [["5", "6"], ["7", "1", "2", "3", "4", "12", "13", "14"]]),
        ("2. Invert all three images", INVERT_NOTE, [["15", "16", "17"]]),
        ("3. Object masks and transfer", OBJECTS_NOTE, [["18", "19", "20"], ["8", "9"], ["10", "11"]]),
        ("4. Sample, decode, save", TWO_SAMPLE_NOTE, [["21"], ["22", "23"]]),
    ]
    return Example(api, titles, stages, {"1": [SD15_MODEL]}, stack=[[0], [1], [2, 3]])


COMPOSE_LOAD_NOTE = (
    "The transfer composed with other model patches and ControlNet. Files to put in place of the names shown:\n"
    "- models/checkpoints: an SD1.5 checkpoint ({ckpt}; offered for download);\n"
    "- models/loras: YOUR SD1.5 LoRA, picked in 'Load LoRA' ({lora} is only a placeholder name);\n"
    "- models/controlnet: an SD1.5 canny ControlNet ({controlnet}; offered for download). Another SD1.5 "
    "ControlNet works with its own preprocessor in place of Canny.\n{missing}\n\nThe MODEL passes LoRA, then FreeU, and "
    "that one patched MODEL feeds both Invert nodes and Apply (the order of LoRA and FreeU is free; the pack "
    "refuses inversions made with another model)."
)
CONTROL_NOTE = (
    "ControlNet guides only the final sampling, from the TARGET's edges (Canny), so the result keeps the target's "
    "outline more firmly while it takes the reference's appearance. The inversions stay unguided: they must "
    "describe the images as the plain prompt sees them.\n\nKnobs: strength (0.5; 0 turns ControlNet off, as if "
    "it were not there), end_percent (stop guiding earlier to free the details), Canny thresholds."
)


def composition_graph(ckpt: str = SD15_CHECKPOINT, lora: str = SD15_LORA_PLACEHOLDER, controlnet: str = SD15_CANNY_CONTROLNET,
                      target: str = "e4e_target.png", reference: str = "e4e_reference.png", prompt: str = "a photo of a bird") -> Example:
    """The transfer on a LoRA + FreeU model, its sampling guided by a canny ControlNet from the target."""
    invert = {"model": link("3"), "positive": link("4"), "negative": link("5"), "steps": 100, "skip": 32, "cfg": 3.5, "scheduler": "ddim_uniform", "record_features": True}
    api = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": link("1"), "lora_name": lora, "strength_model": 0.8}},
        "3": {"class_type": "FreeU", "inputs": {"model": link("2"), "b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": link("1", 1)}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": link("1", 1)}},
        "6": {"class_type": "LoadImage", "inputs": {"image": target}},
        "7": {"class_type": "LoadImage", "inputs": {"image": reference}},
        "8": {"class_type": "VAEEncode", "inputs": {"pixels": link("6"), "vae": link("1", 2)}},
        "9": {"class_type": "VAEEncode", "inputs": {"pixels": link("7"), "vae": link("1", 2)}},
        "10": {"class_type": "E4E_Invert", "inputs": {**invert, "latent": link("8"), "seed": 0}},
        "11": {"class_type": "E4E_Invert", "inputs": {**invert, "latent": link("9"), "seed": 1}},
        "12": {"class_type": "E4E_ApplyEyeForEye", "inputs": {"model": link("3"), "reference_inversion": link("11"), "target_inversion": link("10"), "start": 10, "end": -1, "refresh_every": 5, "refresh_until": 40, "mode": "rearrange features (q, k, v)", "feature_source": "recorded at inversion", "behaviour": "paper"}},
        "13": {"class_type": "Canny", "inputs": {"image": link("6"), "low_threshold": 0.4, "high_threshold": 0.8}},
        "14": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": controlnet}},
        "15": {"class_type": "ControlNetApplyAdvanced", "inputs": {"positive": link("4"), "negative": link("5"), "control_net": link("14"), "image": link("13"), "strength": 0.5, "start_percent": 0.0, "end_percent": 1.0, "vae": link("1", 2)}},
        "16": {"class_type": "E4E_KSampler", "inputs": {"model": link("12"), "positive": link("15", 0), "negative": link("15", 1), "target_inversion": link("10"), "reference_inversion": link("11"), "cfg": 2.5, "adain_start": 49}},
        "17": {"class_type": "VAEDecode", "inputs": {"samples": link("16"), "vae": link("1", 2)}},
        "18": {"class_type": "SaveImage", "inputs": {"images": link("17"), "filename_prefix": "eye_for_eye_composed"}},
    }
    titles = {"1": "Load SD1.5 checkpoint", "2": "Load LoRA (your SD1.5 LoRA)", "3": "FreeU (published: 1.2 / 1.4 / 0.9 / 0.2)",
              "4": "Positive prompt (the domain)", "5": "Negative prompt (empty)", "6": "Target (structure)",
              "7": "Reference (appearance)", "8": "Encode target", "9": "Encode reference", "10": "Invert target",
              "11": "Invert reference", "12": "Apply Eye-for-an-eye", "13": "Target edges (Canny)",
              "14": "Load ControlNet (SD1.5 canny)", "15": "Guide with the target's edges", "16": "Sample the result",
              "17": "Decode", "18": "Save result"}
    stages = [
        ("1. Load: model + LoRA + FreeU, prompts, images", COMPOSE_LOAD_NOTE.format(ckpt=ckpt, lora=lora, controlnet=controlnet, missing=MISSING_FILES),
         [["6", "7"], ["1", "2", "3", "4", "5", "8", "9"]]),
        ("2. Invert both images (patched model)", INVERT_NOTE, [["10"], ["11"]]),
        ("3. Transfer", TRANSFER_NOTE, [["12"]]),
        ("4. ControlNet from the target", CONTROL_NOTE, [["13", "14", "15"]]),
        ("5. Sample, decode, save", SAMPLE_NOTE, [["16"], ["17", "18"]]),
    ]
    return Example(api, titles, stages, {"1": [SD15_MODEL], "14": [SD15_CANNY_MODEL]}, stack=[[0], [1, 2], [3, 4]])


PUBLISHED_LOAD_NOTE = (
    "The authors' documented run (their README: masked AdaIN, guidance 2.5, SAM masks from boxes), with their own "
    "FreeU.\n\nNeeds one SD1.5 checkpoint in models/checkpoints ({ckpt}). The images and the two example masks "
    "ship in the pack's example_inputs/ (copy them into ComfyUI/input). Masks are white on black; the red channel "
    "is read.\n\nMasks for your own images: any segmentation node that outputs a MASK (a SAM or SAM-HQ pack from "
    "a box around the object, as the authors did, or from the text 'bird') plugs into the two mask slots of Apply "
    "and the KSampler in place of the Load Image (as Mask) nodes.\n\nNo SAM? 'Object Masks from Attention' "
    "(group 3) makes both masks from the model's own attention, the way the published code does when no masks "
    "are given: connect its two outputs in place of the loaded masks."
)
PUBLISHED_FREEU_NOTE = (
    "FreeU (as published) is the authors' FreeU: once per decoder stage it scales and Fourier-filters the "
    "backbone (ComfyUI's FreeU node filters the skip connections instead). It patches the model BEFORE the "
    "Invert nodes: the inversions and the transfer see the same model, as in the published code."
)
PUBLISHED_TRANSFER_NOTE = (
    "Apply with feature_source 'live branches' and behaviour 'published code' does what the published code does: "
    "the reference and target are denoised alongside the result at the sampling guidance, the step counter runs "
    "one behind, soft masks are multiplied into the features, AdaIN takes its statistics where the mask is 1.\n\n"
    "Object Masks from Attention (not connected): reads the model's attention at generation step 49, the first "
    "AdaIN step; prompt and object_noun must match the positive prompt."
)
PUBLISHED_SAMPLE_NOTE = (
    "KSampler (Eye-for-an-eye) with cfg 2.5 (the published example) and masked AdaIN from step 49, inside the "
    "masks. Live branches need this sampler (or Replay Pieces), not the plain KSampler."
)


def as_published_graph(ckpt: str = SD15_CHECKPOINT, target: str = "e4e_target.png", reference: str = "e4e_reference.png", prompt: str = "a photo of a bird") -> Example:
    """The authors' documented run: their FreeU, SAM-style masks into matching and masked AdaIN, live branches with
    the published rules, guidance 2.5; the attention-mask node beside it as the no-SAM alternative."""
    invert = {"model": link("2"), "positive": link("3"), "negative": link("4"), "steps": 100, "skip": 32, "cfg": 3.5, "scheduler": "ddim_uniform", "record_features": False}
    masks = {"target_mask": link("7"), "reference_mask": link("8")}
    api = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "E4E_FreeUPublished", "inputs": {"model": link("1"), "b1": 1.2, "b2": 1.4, "s1": 0.9, "s2": 0.2}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": prompt, "clip": link("1", 1)}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": link("1", 1)}},
        "5": {"class_type": "LoadImage", "inputs": {"image": target}},
        "6": {"class_type": "LoadImage", "inputs": {"image": reference}},
        "7": {"class_type": "LoadImageMask", "inputs": {"image": "e4e_target_mask.png", "channel": "red"}},
        "8": {"class_type": "LoadImageMask", "inputs": {"image": "e4e_reference_mask.png", "channel": "red"}},
        "9": {"class_type": "VAEEncode", "inputs": {"pixels": link("5"), "vae": link("1", 2)}},
        "10": {"class_type": "VAEEncode", "inputs": {"pixels": link("6"), "vae": link("1", 2)}},
        "11": {"class_type": "E4E_Invert", "inputs": {**invert, "latent": link("9"), "seed": 0}},
        "12": {"class_type": "E4E_Invert", "inputs": {**invert, "latent": link("10"), "seed": 1}},
        "13": {"class_type": "E4E_AttentionMasks", "inputs": {"model": link("2"), "positive": link("3"), "negative": link("4"), "target_inversion": link("11"), "reference_inversion": link("12"), "prompt": prompt, "object_noun": "bird", "other_nouns": "", "step": 49, "attention": "unconditional (as published)", "segments": 5, "threshold": 1.4}},
        "14": {"class_type": "E4E_ApplyEyeForEye", "inputs": {"model": link("2"), "reference_inversion": link("12"), "target_inversion": link("11"), "start": 10, "end": -1, "refresh_every": 5, "refresh_until": 40, "mode": "rearrange features (q, k, v)", **masks, "feature_source": "live branches", "behaviour": "published code"}},
        "15": {"class_type": "E4E_KSampler", "inputs": {"model": link("14"), "positive": link("3"), "negative": link("4"), "target_inversion": link("11"), "reference_inversion": link("12"), "cfg": 2.5, "adain_start": 49, **masks}},
        "16": {"class_type": "VAEDecode", "inputs": {"samples": link("15"), "vae": link("1", 2)}},
        "17": {"class_type": "SaveImage", "inputs": {"images": link("16"), "filename_prefix": "eye_for_eye_as_published"}},
    }
    titles = {"1": "Load SD1.5 checkpoint", "2": "FreeU (as published)", "3": "Positive prompt (the domain)",
              "4": "Negative prompt (empty)", "5": "Target (structure)", "6": "Reference (appearance)",
              "7": "Target mask (SAM or any segmentation)", "8": "Reference mask", "9": "Encode target",
              "10": "Encode reference", "11": "Invert target", "12": "Invert reference",
              "13": "No SAM? Object Masks from Attention", "14": "Apply Eye-for-an-eye (as published)",
              "15": "Sample the result (cfg 2.5)", "16": "Decode", "17": "Save result"}
    stages = [
        ("1. Load: model, prompts, images, masks", PUBLISHED_LOAD_NOTE.format(ckpt=ckpt, missing=MISSING_FILES), [["5", "6"], ["1", "3", "4", "7", "8"]]),
        ("2. Their FreeU; Invert both images", PUBLISHED_FREEU_NOTE + "\n\n" + INVERT_NOTE, [["2", "9", "10", "11", "12"]]),
        ("3. Transfer as published", PUBLISHED_TRANSFER_NOTE, [["14", "13"]]),
        ("4. Sample, decode, save", PUBLISHED_SAMPLE_NOTE, [["15", "16", "17"]]),
    ]
    return Example(api, titles, stages, {"1": [SD15_MODEL]})


GRAPHS = {
    "eye_for_eye_transfer": transfer_graph,
    "correspondence_inspection": inspection_graph,
    "two_object_transfer": two_object_graph,
    "composition_transfer": composition_graph,
    "as_published": as_published_graph,
}

# The template file of each graph (workflows/<file>.json and .jpg): what the template browser shows as the card's
# title and description, in the order to read them. At most 34 characters, one line on a card.
TEMPLATE_FILES = {
    "eye_for_eye_transfer": "1_appearance_transfer_part_by_part",
    "correspondence_inspection": "2_see_which_parts_match",
    "two_object_transfer": "3_two_objects_two_references",
    "composition_transfer": "4_with_lora_freeu_and_controlnet",
    "as_published": "5_as_published_with_masks",
}


def template_path(name: str, suffix: str = ".json") -> Path:
    """The UI-format template of graph `name` (or its thumbnail, suffix .jpg)."""
    return WORKFLOWS / f"{TEMPLATE_FILES[name]}{suffix}"


def api_path(name: str) -> Path:
    """The API-format twin of graph `name`."""
    return API_WORKFLOWS / f"{name}.api.json"


def with_titles(api: dict, titles: dict) -> dict:
    return {k: ({**v, "_meta": {"title": titles[k]}} if k in titles else v) for k, v in api.items()}


def _shown(value) -> str:
    """A widget value as the page shows it (floats with two decimals)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def node_size(node_type: str, definition: dict, inputs: dict | None = None, title: str = "") -> tuple[int, int]:
    """A size that fits what the page draws in the node: its title, sockets, every widget's label and value
    uncut, and previews or text boxes."""
    from workflow_format import CONTROL, UPLOAD, _is_widget, frontend_widgets

    inputs = inputs or {}
    specs = {name: spec for kind in ("required", "optional") for name, spec in definition["input"].get(kind, {}).items()}
    sockets = [name for name, spec in specs.items() if not _is_widget(spec)]
    widgets = frontend_widgets(definition)
    rows = max(len(sockets), len(definition["output"]))
    height = max(TALL.get(node_type, 0), 20 * rows + 24 * len(widgets) + 16)
    texts = []
    for name, kind in widgets:
        if kind == CONTROL:
            texts.append("control after generate" + "randomize")
        elif kind == UPLOAD:
            texts.append("choose file to upload")
        else:
            texts.append(name + _shown(inputs.get(name, "")))
    slots = max(map(len, sockets), default=0) + max(map(len, definition["output_name"]), default=0)
    width = max(
        MIN_WIDTH,
        TITLE_CHROME + TITLE_CHAR * len(title or node_type),
        SLOT_CHROME + SLOT_CHAR * slots,
        *(WIDGET_CHROME + WIDGET_CHAR * len(text) for text in texts),
    )
    return int(-(-width // 10) * 10), int(height)


def note_size(text: str, title: str, width: int) -> tuple[int, int]:
    """A note as wide as its column (or its title), tall enough that its text box never scrolls."""
    import textwrap

    width = max(width, int(-(-(TITLE_CHROME + TITLE_CHAR * len(title)) // 10) * 10))
    chars = int((width - 24) // NOTE_CHAR)
    lines = sum(max(1, len(textwrap.wrap(paragraph, chars))) for paragraph in text.split("\n"))
    return width, max(NOTE_MIN_HEIGHT, NOTE_CHROME + NOTE_LINE * lines)


def fit_scale(ui: dict, viewport: tuple[int, int] = VIEWPORT) -> float:
    """The zoom at which the page shows the whole template when it opens it (fitToBounds of the nodes' box)."""
    from workflow_format import bounding_box

    boxes = [bounding_box(node) for node in ui["nodes"]]
    width = max(b[2] for b in boxes) - min(b[0] for b in boxes) + 2 * FIT_PADDING
    height = max(b[3] for b in boxes) - min(b[1] for b in boxes) + 2 * FIT_PADDING
    return FIT_ZOOM * min(viewport[0] / max(width, 300), viewport[1] / max(height, 300))


def layout(example: Example, definitions: dict) -> dict:
    """One group per stage, its note on top of its first column; groups side by side, or stacked where the
    example says so; nothing overlaps."""
    from workflow_format import TITLE_HEIGHT

    def size(node_id):
        node = example.api[node_id]
        return node_size(node["class_type"], definitions[node["class_type"]], node["inputs"], example.titles.get(node_id, ""))

    positions, sizes, groups, notes = {}, {}, [], []
    next_id = max(int(k) for k in example.api) + 1
    x = 0
    for stacked in example.stack or [[i] for i in range(len(example.stages))]:
        y = 0
        stack_width = 0
        for index in stacked:
            title, text, columns = example.stages[index]
            top = y + GROUP_TITLE + TITLE_HEIGHT
            column_x = x + GROUP_PADDING
            bottom = top
            for number, column in enumerate(columns):
                width = max(size(i)[0] for i in column)
                column_y = top
                if number == 0:
                    note_title = f"About: {title.split('. ', 1)[-1].split(':')[0]}"
                    note_w, note_h = note_size(text, note_title, width)
                    width = max(width, note_w)
                    notes.append({
                        "id": next_id, "type": "Note", "pos": [column_x, top], "size": [width, note_h], "flags": {},
                        "mode": 0, "inputs": [], "outputs": [], "title": note_title, "properties": {"text": ""},
                        "widgets_values": [text], "color": "#432", "bgcolor": "#653",
                    })
                    next_id += 1
                    column_y = top + note_h + ROW_GAP + TITLE_HEIGHT
                for node_id in column:
                    positions[node_id], sizes[node_id] = (column_x, column_y), (width, size(node_id)[1])
                    bottom = max(bottom, column_y + sizes[node_id][1])
                    column_y += sizes[node_id][1] + ROW_GAP + TITLE_HEIGHT
                column_x += width + COLUMN_GAP
            group_width = max(column_x - COLUMN_GAP + GROUP_PADDING - x, GROUP_TITLE_CHROME + GROUP_TITLE_CHAR * len(title))
            groups.append({
                "id": index + 1, "title": title, "bounding": [x, y, group_width, bottom + GROUP_PADDING - y],
                "color": GROUP_COLOURS[index % len(GROUP_COLOURS)], "font_size": 24, "flags": {},
            })
            stack_width = max(stack_width, group_width)
            y = bottom + GROUP_PADDING + GROUP_GAP
        x += stack_width + GROUP_GAP
    groups.sort(key=lambda g: g["id"])
    return {
        "positions": positions, "sizes": sizes, "titles": example.titles, "groups": groups, "extra_nodes": notes,
        "properties": {node_id: {"models": models} for node_id, models in example.models.items()},
    }


def main() -> None:
    from comfy_host import load_host_with_pack
    from example_assets import write_example_inputs, write_thumbnails
    from workflow_format import api_to_ui, host_definitions

    comfy_nodes, _ = load_host_with_pack("build-base")
    API_WORKFLOWS.mkdir(parents=True, exist_ok=True)
    for name, build in GRAPHS.items():
        example = build()
        definitions = host_definitions(comfy_nodes.NODE_CLASS_MAPPINGS, {n["class_type"] for n in example.api.values()})
        ui = api_to_ui(example.api, definitions, layout(example, definitions))
        template_path(name).write_text(json.dumps(ui, indent=2) + "\n")
        api_path(name).write_text(json.dumps(with_titles(example.api, example.titles), indent=2) + "\n")
        print(f"wrote {template_path(name).relative_to(REPO)} and {api_path(name).relative_to(REPO)} (fits a "
              f"{VIEWPORT[0]}x{VIEWPORT[1]} window at zoom {fit_scale(ui):.2f})")
    write_example_inputs()
    with tempfile.TemporaryDirectory() as folder:  # example_assets names the thumbnails after the graphs
        for path in write_thumbnails(Path(folder)):
            shutil.move(path, template_path(path.stem, ".jpg"))
            print(f"wrote {template_path(path.stem, '.jpg').relative_to(REPO)}")


if __name__ == "__main__":
    main()

"""The example workflows: UI and API files in step, and every one run by the real ComfyUI server."""

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"
sys.path.insert(0, str(REPO / "scripts"))

import build_workflows  # noqa: E402
from demo import configure  # noqa: E402
from run_workflow import image_path, output_images, queue_prompt, start_server, wait_for  # noqa: E402
from tiny_checkpoint import CHECKPOINT_NAME, write_demo_images, write_tiny_sd15_checkpoint, write_two_object_images  # noqa: E402
from workflow_format import host_definitions, ui_to_api  # noqa: E402

NAMES = sorted(build_workflows.GRAPHS)


def load(name, api=True):
    return json.loads((WORKFLOWS / f"{name}{'.api' if api else ''}.json").read_text())


@pytest.mark.parametrize("name", NAMES)
def test_ui_and_api_files_are_in_step(host, name):
    api, ui = load(name), load(name, api=False)
    definitions = host_definitions(host.nodes.NODE_CLASS_MAPPINGS, {n["type"] for n in ui["nodes"]})
    assert ui_to_api(ui, definitions) == api
    built, _, titles = build_workflows.GRAPHS[name]()
    assert build_workflows.with_titles(built, titles) == api, "run `make workflows` after changing a graph"


@pytest.fixture(scope="module")
def server():
    with start_server("e2e-base") as running:
        write_tiny_sd15_checkpoint(running.base / "models" / "checkpoints" / CHECKPOINT_NAME)
        write_demo_images(running.base / "input")
        write_two_object_images(running.base / "input")
        yield running


def run(server, prompt, timeout=900):
    history = wait_for(server.url, queue_prompt(server.url, prompt), timeout=timeout)
    saved = [image for image in output_images(history) if image[2] == "output"]  # previews go to temp
    return history, [image_path(server.base, image) for image in saved]


def test_example_transfer_workflow_runs_in_the_real_server(server):
    from PIL import Image

    prompt = configure(load("eye_for_eye_transfer"), CHECKPOINT_NAME, "e4e_target.png", "e4e_reference.png", None)
    classes = {node["class_type"] for node in prompt.values()}
    assert {"CheckpointLoaderSimple", "CLIPTextEncode", "VAEEncode", "VAEDecode", "FreeU", "SaveImage"} <= classes
    _, images = run(server, prompt)
    assert len(images) == 1 and Image.open(images[0]).size == (64, 64)


def test_inspection_workflow_saves_three_pictures(server):
    from PIL import Image

    _, images = run(server, load("correspondence_inspection"))
    sizes = sorted(Image.open(p).size for p in images)
    assert sizes == [(64, 64), (64, 64), (128, 64)]  # warped reference, confidence, side-by-side matches


def test_two_object_workflow_runs(server):
    from PIL import Image

    prompt = load("two_object_transfer")
    for node in prompt.values():  # fewer steps keep the suite short; the graph is otherwise as shipped
        if node["class_type"] == "E4E_Invert":
            node["inputs"].update(steps=20, skip=6)
        if node["class_type"] == "E4E_ApplyEyeForEyeObjects":
            node["inputs"].update(start=3, refresh_until=9, refresh_every=4)
        if node["class_type"] == "E4E_KSampler":
            node["inputs"].update(adain_start=10)
    _, images = run(server, prompt)
    assert len(images) == 1 and Image.open(images[0]).size == (64, 64)


def test_bad_input_is_reported_by_the_server_naming_the_input(server):
    prompt = load("eye_for_eye_transfer")
    prompt = configure(prompt, CHECKPOINT_NAME, "e4e_target.png", "e4e_reference.png", None)
    reference_invert = next(n for n in prompt.values() if n.get("_meta", {}).get("title") == "Invert reference")
    reference_invert["inputs"]["skip"] = 31  # schedules no longer match
    with pytest.raises(RuntimeError, match="give both Invert nodes the same steps, skip and scheduler"):
        run(server, prompt)

"""The example workflows: UI and API files in step, shaped as the frontend expects, and run by the real server."""

import json
import sys
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = REPO / "workflows"
sys.path.insert(0, str(REPO / "scripts"))

import build_workflows  # noqa: E402
import example_assets  # noqa: E402
from comfy_host import PACK_FOLDER  # noqa: E402
from demo import configure  # noqa: E402
from run_workflow import image_path, output_images, queue_prompt, start_server, wait_for  # noqa: E402
from tiny_checkpoint import CHECKPOINT_NAME, write_demo_images, write_tiny_sd15_checkpoint, write_two_object_images  # noqa: E402
from workflow_format import CONTROL, UPLOAD, VIRTUAL_NODES, frontend_widgets, host_definitions, overlapping_nodes, ui_to_api  # noqa: E402

NAMES = sorted(build_workflows.GRAPHS)


def load(name, api=True):
    path = build_workflows.api_path(name) if api else build_workflows.template_path(name)
    return json.loads(path.read_text())


def on_tiny_checkpoint(prompt):
    """The shipped prompt with the tests' tiny checkpoint in place of the SD1.5 one it names."""
    for node in prompt.values():
        if node["class_type"] == "CheckpointLoaderSimple":
            node["inputs"]["ckpt_name"] = CHECKPOINT_NAME
    return prompt


@pytest.mark.parametrize("name", NAMES)
def test_ui_and_api_files_are_in_step(host, name):
    api, ui = load(name), load(name, api=False)
    definitions = host_definitions(host.nodes.NODE_CLASS_MAPPINGS, {n["type"] for n in ui["nodes"]})
    assert ui_to_api(ui, definitions) == api
    example = build_workflows.GRAPHS[name]()
    assert build_workflows.with_titles(example.api, example.titles) == api, "run `make workflows` after changing a graph"


def test_widget_order_is_the_frontends(host):
    """Facts measured in the real page (frontend 1.32.9), see the docs: not derived from the writer itself."""
    definitions = host_definitions(host.nodes.NODE_CLASS_MAPPINGS, {"LoadImageMask", "LoadImage", "E4E_ExtractFeatures", "E4E_Invert", "KSampler", "SaveImage"})
    assert frontend_widgets(definitions["LoadImageMask"]) == [("image", "value"), ("channel", "value"), ("image", UPLOAD)]
    assert frontend_widgets(definitions["LoadImage"]) == [("image", "value"), ("image", UPLOAD)]
    # any INT named seed gets the control, whether or not the node asks for it
    names = [f"{n}:{k}" for n, k in frontend_widgets(definitions["E4E_ExtractFeatures"])]
    assert names[names.index("seed:value") + 1] == f"seed:{CONTROL}" and names[-1] == "step:value"
    assert ("seed", CONTROL) in frontend_widgets(definitions["E4E_Invert"])
    assert [n for n, k in frontend_widgets(definitions["KSampler"])][:2] == ["seed", "seed"]
    assert frontend_widgets(definitions["SaveImage"]) == [("filename_prefix", "value")]


@pytest.mark.parametrize("name", NAMES)
def test_shipped_widget_values_land_on_the_right_widgets(host, name):
    """Each UI node's widgets_values, read in the frontend's order, are values its widgets accept."""
    ui = load(name, api=False)
    definitions = host_definitions(host.nodes.NODE_CLASS_MAPPINGS, {n["type"] for n in ui["nodes"]})
    for node in ui["nodes"]:
        if node["type"] in VIRTUAL_NODES:
            continue
        specs = {k: v for kind in ("required", "optional") for k, v in definitions[node["type"]]["input"].get(kind, {}).items()}
        widgets = frontend_widgets(definitions[node["type"]])
        assert len(widgets) == len(node["widgets_values"]), node["type"]
        for (input_name, kind), value in zip(widgets, node["widgets_values"]):
            spec = specs[input_name]
            if kind == CONTROL:
                assert value == "fixed", f"{node['type']}: seeds of an example stay fixed"
            elif kind == UPLOAD:
                assert value == "image"
            elif spec[0] in ("INT", "FLOAT"):
                assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{node['type']}.{input_name} = {value!r}"
            elif spec[0] == "BOOLEAN":
                assert isinstance(value, bool)
            elif isinstance(spec[0], list) or spec[0] == "COMBO":
                options = spec[0] if isinstance(spec[0], list) else spec[1]["options"]
                if input_name not in ("image", "ckpt_name", "lora_name", "control_net_name"):  # file lists depend on the server's folders
                    assert value in options, f"{node['type']}.{input_name} = {value!r} not in {options}"


@pytest.mark.parametrize("name", NAMES)
def test_a_person_can_read_the_graph(name):
    """Titled nodes, a group and a note per stage, sizes from content, nothing overlapping, every node in a group."""
    ui = load(name, api=False)
    assert not overlapping_nodes(ui), "nodes overlap"
    nodes = [n for n in ui["nodes"] if n["type"] not in VIRTUAL_NODES]
    assert all(n.get("title") for n in nodes), "every node has a title"
    assert len({n["title"] for n in nodes}) == len(nodes), "titles tell the nodes apart"
    assert len({tuple(n["size"]) for n in nodes}) >= 4, "sizes follow what each node shows"
    groups = ui["groups"]
    notes = [n for n in ui["nodes"] if n["type"] == "Note"]
    assert len(groups) >= 3 and len(notes) == len(groups)
    if any(n["type"] == "E4E_Invert" for n in nodes):  # a transfer: one group per stage, invert, transfer, sample
        for stage in ("Invert", "ransfer", "Sample"):
            assert any(stage in g["title"] for g in groups), f"no group for the {stage} stage"
    boxes = [g["bounding"] for g in groups]
    for i, (x, y, w, h) in enumerate(boxes):
        for bx, by, bw, bh in boxes[i + 1:]:
            assert not (x < bx + bw and bx < x + w and y < by + bh and by < y + h), "groups overlap"
    for node in ui["nodes"]:
        (nx, ny), (nw, nh) = node["pos"], node["size"]
        inside = [g for g in groups if g["bounding"][0] <= nx and nx + nw <= g["bounding"][0] + g["bounding"][2]
                  and g["bounding"][1] <= ny - 30 and ny + nh <= g["bounding"][1] + g["bounding"][3]]
        assert len(inside) == 1, f"node {node['id']} ({node.get('title')}) lies in {len(inside)} groups"
    for note in notes:
        assert len(note["widgets_values"][0]) > 150, "a note says which knobs matter"


def test_template_names_are_numbered_one_line_descriptions():
    """The template browser shows a pack's template as its file name only (title, and in frontend 1.32.9 the name
    with spaces as the card's second line): the names say what each one does, are numbered in the order to read
    them (the main transfer first; web/eye_for_eye.js puts the page's list in that order), fit one line of a card,
    and are the only templates in workflows/."""
    files = build_workflows.TEMPLATE_FILES
    assert set(files) == set(NAMES)
    ordered = sorted(files.values())
    assert ordered[0] == files["eye_for_eye_transfer"]
    assert [f.split("_", 1)[0] for f in ordered] == [str(i) for i in range(1, len(files) + 1)]
    for file in ordered:
        assert len(file) <= 34 and len(file.split("_")) >= 4 and file == file.lower(), file
    assert sorted(p.stem for p in WORKFLOWS.glob("*.json")) == ordered
    assert sorted(p.stem for p in WORKFLOWS.glob("*.jpg")) == ordered


@pytest.mark.parametrize("name", NAMES)
def test_opened_template_fits_the_window_at_a_zoom_where_text_is_drawn(name):
    """Both frontends fit a template opened from the browser to the window (1.58.1 always, 1.32.9 when the file
    has no saved view): at 1600x1000 that zoom is at least the one from which the canvas draws node text."""
    ui = load(name, api=False)
    assert "ds" not in ui["extra"], "1.58.1 ignores a template's saved view; both frontends fit it"
    assert build_workflows.fit_scale(ui) >= build_workflows.FIT_GOAL > build_workflows.READABLE_SCALE


@pytest.mark.parametrize("name", NAMES)
def test_each_workflow_names_the_models_it_needs(host, name):
    """The frontend's missing-model dialog: `models` on the loader node, name == the widget value, a direct
    huggingface download of a .safetensors file, and a model folder the host knows. A file that is the user's
    own choice (a LoRA) is a placeholder instead: no `models` entry (the frontend's schema requires a url in
    each), and a note names it and the folder where the user's file goes."""
    import folder_paths

    ui = load(name, api=False)
    notes = " ".join(n["widgets_values"][0] for n in ui["nodes"] if n["type"] == "Note")
    loaders = [n for n in ui["nodes"] if any(isinstance(v, str) and v.endswith(".safetensors") for v in n["widgets_values"])]
    assert loaders
    for node in loaders:
        selected = {v for v in node["widgets_values"] if isinstance(v, str) and v.endswith(".safetensors")}
        models = node["properties"].get("models")
        if selected <= set(build_workflows.PLACEHOLDERS) and not models:
            for file in selected:
                assert file in notes and f"models/{build_workflows.PLACEHOLDERS[file]}" in notes, f"{file}: the notes explain the placeholder"
            continue
        assert models, f"{node['type']} names a model file but not where to get it"
        for model in models:
            assert set(model) == {"name", "url", "directory"}
            assert model["name"] in selected and model["name"].endswith(".safetensors")
            assert model["url"].startswith("https://huggingface.co/") and model["url"].endswith("/" + model["name"])
            assert model["directory"] in folder_paths.folder_names_and_paths


def test_example_inputs_ship_with_the_pack_and_are_the_scripts_output(tmp_path):
    from PIL import Image, ImageChops

    named = {v["inputs"]["image"] for name in NAMES for v in load(name).values() if v["class_type"] in ("LoadImage", "LoadImageMask")}
    shipped = {p.name for p in example_assets.EXAMPLE_INPUTS.glob("*.png")}
    assert named <= shipped, f"workflows name files the pack does not ship: {named - shipped}"
    fresh = set(example_assets.write_example_inputs(tmp_path))
    assert fresh == shipped
    for file in sorted(shipped):
        a, b = Image.open(tmp_path / file), Image.open(example_assets.EXAMPLE_INPUTS / file)
        assert a.size == b.size == (example_assets.EXAMPLE_SIZE,) * 2 and a.mode == b.mode
        assert ImageChops.difference(a, b).getbbox() is None, f"{file}: run workflow_builder/example_assets.py"
        assert (example_assets.EXAMPLE_INPUTS / file).stat().st_size < 20_000


@pytest.fixture(scope="module")
def server():
    with start_server("e2e-base", timeout=600) as running:
        write_tiny_sd15_checkpoint(running.base / "models" / "checkpoints" / CHECKPOINT_NAME)
        write_demo_images(running.base / "input")  # the shipped example inputs' names, drawn at 64x64 for speed
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

    _, images = run(server, on_tiny_checkpoint(load("correspondence_inspection")))
    sizes = sorted(Image.open(p).size for p in images)
    assert sizes == [(64, 64), (64, 64), (128, 64)]  # warped reference, confidence, side-by-side matches


def test_two_object_workflow_runs(server):
    from PIL import Image

    prompt = fewer_steps(on_tiny_checkpoint(load("two_object_transfer")))
    _, images = run(server, prompt)
    assert len(images) == 1 and Image.open(images[0]).size == (64, 64)


def fewer_steps(prompt: dict) -> dict:
    """20 inversion steps from skip 6 and the schedule scaled to them: keeps the suite short, the graph as shipped."""
    for node in prompt.values():
        if node["class_type"] == "E4E_Invert":
            node["inputs"].update(steps=20, skip=6)
        if node["class_type"] in ("E4E_ApplyEyeForEye", "E4E_ApplyEyeForEyeObjects"):
            node["inputs"].update(start=3, refresh_until=9, refresh_every=4)
        if node["class_type"] == "E4E_KSampler":
            node["inputs"].update(adain_start=10)
    return prompt


def test_as_published_workflow_runs(server):
    """The documented run (their FreeU, masks, live branches + published code, cfg 2.5) on the tiny checkpoint with
    fewer steps; the attention-mask node sits beside it unconnected (the no-SAM alternative) and is not run."""
    from PIL import Image

    prompt = on_tiny_checkpoint(load("as_published"))
    classes = {node["class_type"] for node in prompt.values()}
    assert {"E4E_FreeUPublished", "E4E_AttentionMasks", "LoadImageMask"} <= classes and "FreeU" not in classes
    (apply,) = [n["inputs"] for n in prompt.values() if n["class_type"] == "E4E_ApplyEyeForEye"]
    (sample,) = [n["inputs"] for n in prompt.values() if n["class_type"] == "E4E_KSampler"]
    assert (apply["feature_source"], apply["behaviour"], sample["cfg"]) == ("live branches", "published code", 2.5)
    _, images = run(server, fewer_steps(prompt))
    assert len(images) == 1 and Image.open(images[0]).size == (64, 64)


def test_bad_input_is_reported_by_the_server_naming_the_input(server):
    prompt = load("eye_for_eye_transfer")
    prompt = configure(prompt, CHECKPOINT_NAME, "e4e_target.png", "e4e_reference.png", None)
    reference_invert = next(n for n in prompt.values() if n.get("_meta", {}).get("title") == "Invert reference")
    reference_invert["inputs"]["skip"] = 31  # schedules no longer match
    with pytest.raises(RuntimeError, match="give both Invert nodes the same steps, skip and scheduler"):
        run(server, prompt)


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.headers.get("Content-Type", ""), response.read()


def test_the_template_browser_lists_only_the_ui_workflows_each_with_a_thumbnail(server):
    """What the page asks the real server for: the template list, each template and its `<name>.jpg`."""
    from PIL import Image
    import io

    pack = PACK_FOLDER
    _, body = _get(server.url + "/workflow_templates")
    assert sorted(json.loads(body)[pack]) == sorted(build_workflows.TEMPLATE_FILES.values())
    for file in build_workflows.TEMPLATE_FILES.values():
        _, body = _get(f"{server.url}/api/workflow_templates/{pack}/{file}.json")
        workflow = json.loads(body)
        assert workflow["version"] and workflow["nodes"] and "links" in workflow, f"{file} is not UI format"
        content_type, body = _get(f"{server.url}/api/workflow_templates/{pack}/{file}.jpg")
        assert content_type == "image/jpeg"
        assert Image.open(io.BytesIO(body)).format == "JPEG" and len(body) < 40_000

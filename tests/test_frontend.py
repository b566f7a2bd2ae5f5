"""Every shipped workflow in the real ComfyUI web page: the frontend that ships with the host, served by the real
server, in Debian's headless Chromium (see ../shared docs/frontend.md for the facts this relies on).

For each template: it loads with no missing node types and no node errors, the page names the models it
needs (missing-model dialog: the checkpoint, and the ControlNet of the composition example), nothing overlaps as the page lays the nodes out, the prompt the page builds
(`app.graphToPrompt()`) equals the shipped API prompt input by input, and, queued from the page (on the tiny
checkpoint, with fewer steps), it completes. A screenshot of each is kept in output/frontend/.

Skipped when no Chromium is installed (`.ci/run` installs it; locally: apt-get install chromium).
"""

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import build_workflows  # noqa: E402
from browser import Browser, find_chromium  # noqa: E402
from run_workflow import start_server  # noqa: E402
from tiny_adapters import CONTROLNET_NAME, LORA_NAME, write_tiny_adapters  # noqa: E402
from tiny_checkpoint import CHECKPOINT_NAME, write_demo_images, write_tiny_sd15_checkpoint, write_two_object_images  # noqa: E402

if find_chromium() is None and os.environ.get("E4E_REQUIRE_BROWSER"):
    raise RuntimeError("E4E_REQUIRE_BROWSER is set but no Chromium is installed (apt-get install chromium)")
pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no Chromium (apt-get install chromium)")

NAMES = sorted(build_workflows.GRAPHS)
SCREENSHOTS = REPO / "output" / "frontend"
# Messages the page logs on this closed network that say nothing about our workflows (frontend.md).
HARMLESS = ("user.css", "favicon", "comfy.templates.json", "/api/userdata", "Content Security Policy", "api.comfy.org",
            "Failed to load resource", "ERR_", "i18n", "Error loading", "getSettings", "Setting")

# Fewer steps for the run from the page; what the comparison checks is the graph as shipped.
QUICK = {
    "E4E_Invert": {"steps": 20, "skip": 6},
    "E4E_ApplyEyeForEye": {"start": 3, "refresh_every": 4, "refresh_until": 9},
    "E4E_ApplyEyeForEyeObjects": {"start": 3, "refresh_every": 4, "refresh_until": 9},
    "E4E_KSampler": {"adain_start": 10},
    "E4E_ExtractFeatures": {"ensemble": 2},
    "CheckpointLoaderSimple": {"ckpt_name": CHECKPOINT_NAME},
    "LoraLoaderModelOnly": {"lora_name": LORA_NAME},
    "ControlNetLoader": {"control_net_name": CONTROLNET_NAME},
}


def _get_json(url, tries=10):
    """GET a JSON answer; a server busy sampling on a loaded machine may answer slowly, so retry timeouts."""
    for attempt in range(tries):
        try:
            with urllib.request.urlopen(url, timeout=60) as response:
                return json.loads(response.read())
        except TimeoutError:
            if attempt == tries - 1:
                raise


def _post_json(url, data):
    request = urllib.request.Request(url, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


@pytest.fixture(scope="module")
def page():
    with start_server("frontend-base", timeout=600) as server:
        base = server.base
        write_tiny_sd15_checkpoint(base / "models" / "checkpoints" / CHECKPOINT_NAME)
        write_demo_images(base / "input")
        write_two_object_images(base / "input")
        write_tiny_adapters(base / "models")
        # A returning user: no first-visit template browser over the graph.
        _post_json(server.url + "/api/settings/Comfy.TutorialCompleted", True)
        with Browser() as browser:
            browser.open(server.url)
            ready = ("window.app && app.graph && app.canvas && window.LiteGraph && app.vueAppReady "
                     "&& Object.keys(LiteGraph.registered_node_types).length > 300")
            try:
                browser.wait_for(ready, timeout=300)
            except TimeoutError:
                state = browser.evaluate("JSON.stringify({app: !!window.app, graph: !!(window.app && app.graph), "
                                         "vue: !!(window.app && app.vueAppReady), types: window.LiteGraph ? "
                                         "Object.keys(LiteGraph.registered_node_types).length : 0, url: location.href})")
                raise TimeoutError(f"the page never got ready: {state}; events: {browser.events[-10:]}") from None
            browser.evaluate("""(() => {
                window.__e4e = {missingNodes: [], missingModels: []};
                app.showMissingNodesError = (types) => { window.__e4e.missingNodes.push(...types); };
                app.showMissingModelsError = (models) => { window.__e4e.missingModels.push(...models.map(m => m.name)); };
                return true; })()""")
            yield server, browser


def load_in_page(browser, name):
    ui = json.loads((REPO / "workflows" / f"{name}.json").read_text())
    browser.evaluate("window.__e4e.missingNodes = []; window.__e4e.missingModels = []; true")
    browser.evaluate(f"(async () => {{ await app.loadGraphData({json.dumps(ui)}, true, true, {json.dumps(name)}); return true; }})()")
    return ui


@pytest.mark.parametrize("name", NAMES)
def test_workflow_in_the_real_page(page, name):
    server, browser = page
    ui = load_in_page(browser, name)
    api = json.loads((REPO / "workflows" / "api" / f"{name}.api.json").read_text())

    # 1. no missing node types, no node errors, and the page names the checkpoint to download
    types = {n["type"] for n in ui["nodes"]}
    registered = browser.evaluate(f"{json.dumps(sorted(types))}.filter(t => t in LiteGraph.registered_node_types)")
    assert sorted(registered) == sorted(types)
    assert browser.evaluate("window.__e4e.missingNodes") == []
    assert browser.evaluate("app.graph.nodes.filter(n => n.has_errors).map(n => n.type)") == []
    assert not browser.evaluate("document.body.innerText.includes('Invalid workflow')"), "the frontend's schema refuses the file"
    downloads = [m["name"] for n in ui["nodes"] for m in n.get("properties", {}).get("models", [])]
    assert build_workflows.SD15_CHECKPOINT in downloads
    assert browser.evaluate("window.__e4e.missingModels") == downloads

    # 2. nothing overlaps as the page sizes the nodes (it grows a node that is too small for its content)
    boxes = browser.evaluate("app.graph.nodes.map(n => [n.id, n.pos[0], n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT, "
                             "n.pos[0] + n.size[0], n.pos[1] + n.size[1]])")
    overlaps = [(a[0], b[0]) for i, a in enumerate(boxes) for b in boxes[i + 1:]
                if a[1] < b[3] and b[1] < a[3] and a[2] < b[4] and b[2] < a[4]]
    assert not overlaps, f"nodes overlap in the page: {overlaps}"

    # 3. the prompt the page would queue equals the shipped API prompt, input by input
    output = browser.evaluate("(async () => (await app.graphToPrompt()).output)()")
    assert sorted(output, key=int) == sorted(api, key=int)
    differences = [
        f"node {node_id} ({api[node_id]['class_type']}).{key}: page {output[node_id]['inputs'].get(key)!r}, file {value!r}"
        for node_id in api for key, value in api[node_id]["inputs"].items() if output[node_id]["inputs"].get(key) != value
    ] + [f"node {node_id}: page sends extra {key}" for node_id in api for key in output[node_id]["inputs"] if key not in api[node_id]["inputs"]]
    assert not differences, "\n".join(differences)
    assert all(output[i]["class_type"] == api[i]["class_type"] for i in api)

    # 4. a screenshot of the graph as shipped, at a zoom where node text is drawn
    browser.evaluate("app.canvas.ds.scale = 0.7; app.canvas.ds.offset = [10, 10]; app.canvas.setDirty(true, true); true")
    time.sleep(0.5)
    browser.screenshot(SCREENSHOTS / f"{name}.png")

    # 5. queued from the page (tiny checkpoint, fewer steps), it completes and saves its images
    browser.evaluate(f"""(() => {{
        const quick = {json.dumps(QUICK)};
        for (const node of app.graph.nodes) for (const [k, v] of Object.entries(quick[node.type] || {{}})) {{
            const widget = node.widgets.find(w => w.name === k); widget.value = v; }}
        return true; }})()""")
    before = set(_get_json(server.url + "/history"))
    browser.evaluate("(async () => { await app.queuePrompt(0, 1); return true; })()")
    deadline = time.monotonic() + 300
    while True:
        new = {k: v for k, v in _get_json(server.url + "/history").items() if k not in before}
        status = next(iter(new.values()), {}).get("status", {})
        if status.get("completed") or status.get("status_str") == "error":
            break
        assert time.monotonic() < deadline, "the prompt queued from the page did not finish"
        time.sleep(0.5)
    assert status.get("status_str") == "success", status.get("messages")
    entry = next(iter(new.values()))
    saved = [image for out in entry["outputs"].values() for image in out.get("images", []) if image.get("type") == "output"]
    assert saved, "the workflow saved no image"

    errors = [e["text"] for e in browser.events if e["kind"] == "pageerror" and not any(h in e["text"] for h in HARMLESS)]
    assert not errors, errors

"""Every shipped workflow in the real ComfyUI web page, on two frontends: the one the host pins
(comfyui-frontend-package 1.32.9) and the newest on PyPI (tests/support/browser.py NEWEST_FRONTEND, unpacked by
`make frontends` and served with --front-end-root). The real server, Debian's headless Chromium (see ../shared
docs/frontend.md for the facts this relies on).

- The template browser lists the templates by their numbered file names (all a pack's card shows), the main
  transfer first (the pack's page extension, web/eye_for_eye.js, numbers their order), each name one line on its card.
- A template opened from the browser is fitted to the 1600x1000 window at a zoom where the canvas draws node text,
  with every node in view; no node is smaller than the page computes it, no widget label or value and no title is
  cut, no note scrolls.
- Loaded, it has no missing node types and no node errors, the page names the models to download (1.32.9: the
  missing-models dialog; 1.58.1: the Issues panel behind a warning that names the missing file or says "N issues
  found"), nothing overlaps, and the prompt
  the page builds (`app.graphToPrompt()`) equals the shipped API prompt input by input.
- Queued from the page (on the tiny checkpoint, with fewer steps) it completes, on both frontends.
- A fresh Invert or Extract Features node's seed control is "fixed" (1.58.1 reads it from the node definition, the
  page extension sets it on 1.32.9); a loaded one keeps its saved mode.

A screenshot of each template as it opens is kept in output/frontend/<version>/.
Skipped when no Chromium is installed (`.ci/run` installs it; locally: apt-get install chromium).
"""

import importlib.metadata
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
from browser import NEWEST_FRONTEND, Browser, find_chromium, frontend_root  # noqa: E402
from comfy_host import PACK_FOLDER as PACK  # noqa: E402
from run_workflow import start_server  # noqa: E402
from tiny_adapters import CONTROLNET_NAME, LORA_NAME, write_tiny_adapters  # noqa: E402
from tiny_checkpoint import CHECKPOINT_NAME, write_demo_images, write_tiny_sd15_checkpoint, write_two_object_images  # noqa: E402

REQUIRE = bool(os.environ.get("E4E_REQUIRE_BROWSER"))
if find_chromium() is None and REQUIRE:
    raise RuntimeError("E4E_REQUIRE_BROWSER is set but no Chromium is installed (apt-get install chromium)")
pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no Chromium (apt-get install chromium)")

PINNED_FRONTEND = importlib.metadata.version("comfyui-frontend-package")  # the host's (requirements-host.txt)
FRONTENDS = [PINNED_FRONTEND, NEWEST_FRONTEND]
NAMES = sorted(build_workflows.GRAPHS)
MAIN = "eye_for_eye_transfer"
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

STORE = "document.querySelector('#vue-app').__vue_app__.config.globalProperties.$pinia._s.get({!r})"


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


def _frontend_args(version):
    if version == PINNED_FRONTEND:
        return []
    root = frontend_root(version)
    if not (root / "index.html").is_file():
        message = f"frontend {version} is not unpacked at {root}: run `make frontends`"
        if REQUIRE:
            raise RuntimeError(message)
        pytest.skip(message)
    return ["--front-end-root", str(root)]


@pytest.fixture(scope="module", params=FRONTENDS)
def page(request):
    """(server, browser, frontend version): the real server serving one frontend, and the page open in Chromium."""
    version = request.param
    extra = _frontend_args(version)
    with start_server(f"frontend-base-{version}", extra_args=extra, timeout=600) as server:
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
            assert browser.evaluate("window.__COMFYUI_FRONTEND_VERSION__") == version
            browser.evaluate("""(() => {
                window.__e4e = {missingNodes: [], missingModels: []};
                app.showMissingNodesError = (types) => { window.__e4e.missingNodes.push(...types); };
                app.showMissingModelsError = (models) => { window.__e4e.missingModels.push(...models.map(m => m.name)); };
                return true; })()""")
            yield server, browser, version


def load_in_page(browser, name):
    ui = json.loads(build_workflows.template_path(name).read_text())
    browser.evaluate("window.__e4e.missingNodes = []; window.__e4e.missingModels = []; true")
    browser.evaluate(f"(async () => {{ await app.loadGraphData({json.dumps(ui)}, true, true, {json.dumps(name)}); return true; }})()")
    return ui


def close_dialogs(browser):
    browser.evaluate(f"(() => {{ const d = {STORE.format('dialog')}; for (let i = 0; i < 5 && d.dialogStack.length; i++) "
                     "d.closeDialog(); return !d.dialogStack.length; })()")


def template_cards(browser, files):
    """Open the template browser; returns its cards of our templates in page order: [title, second line or None, clamped]."""
    close_dialogs(browser)
    browser.evaluate("(async () => { await app.extensionManager.command.execute('Comfy.BrowseTemplates'); return true; })()")
    cards = f"""[...document.querySelectorAll('[role=dialog] h3')].filter(h => {json.dumps(sorted(files))}.includes(h.textContent.trim()))"""
    browser.wait_for(f"{cards}.length === {len(files)}", timeout=60)
    return browser.evaluate(f"""{cards}.map(h => {{
        const line = h.parentElement.querySelector('p');
        return [h.textContent.trim(), line ? line.textContent.trim() : null, h.scrollWidth > h.clientWidth + 1]; }})""")


def open_from_template_browser(browser, name):
    """Click the template's card, as a user does, and wait until the page has drawn it."""
    file = build_workflows.TEMPLATE_FILES[name]
    template_cards(browser, [file])
    browser.evaluate(f"""(() => {{ [...document.querySelectorAll('[role=dialog] h3')]
        .find(h => h.textContent.trim() === {json.dumps(file)}).click(); return true; }})()""")
    count = len(json.loads(build_workflows.template_path(name).read_text())["nodes"])
    browser.wait_for(f"app.graph.nodes.length === {count} && ![...document.querySelectorAll('[role=dialog] h3')]"
                     f".some(h => h.textContent.trim() === {json.dumps(file)})", timeout=60)
    browser.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))")
    time.sleep(0.5)


def test_template_browser_lists_the_main_transfer_first(page):
    """What the browser shows of a pack's template is its file name: the title, and in 1.32.9 the card's second line
    with spaces for `_`. The server lists a pack's templates in file-system order (on ext4 a hash order) and the page
    keeps it; the pack's page extension (web/eye_for_eye.js) puts ours in numbered order, so the browser's default
    view shows the main transfer first."""
    server, browser, version = page
    files = sorted(build_workflows.TEMPLATE_FILES.values())
    listed = _get_json(server.url + "/workflow_templates")[PACK]
    assert sorted(listed) == files

    # Whatever order the server sends (this file system may happen to list them sorted), the page gets ours
    # numbered, and another pack's list as it came.
    other = ["b_second", "a_first"]
    answer = {PACK: files[::-1], "another_pack": other}
    got = browser.evaluate(f"""(async () => {{
        const api = app.api, fetchApi = api.fetchApi;
        api.fetchApi = async (route, options) => route === '/workflow_templates'
            ? new Response(JSON.stringify({json.dumps(answer)})) : fetchApi.call(api, route, options);
        try {{ return await api.getWorkflowTemplates(); }} finally {{ api.fetchApi = fetchApi; }} }})()""")
    assert got == {PACK: files, "another_pack": other}

    shown = browser.evaluate(f"""(async () => {{ const s = {STORE.format('workflowTemplates')}; await s.loadWorkflowTemplates();
        return s.enhancedTemplates.filter(t => t.sourceModule === {json.dumps(PACK)}).map(t => [t.name, t.title, t.description]); }})()""")
    assert shown == [[f, f, f] for f in files], "the page shows the file names in numbered order"
    cards = template_cards(browser, files)  # the browser's default sort
    close_dialogs(browser)
    assert [title for title, _, _ in cards] == files
    assert cards[0][0] == build_workflows.TEMPLATE_FILES[MAIN]
    assert not [title for title, _, clamped in cards if clamped], "a title does not fit one line of its card"
    if version == PINNED_FRONTEND:
        assert [line for _, line, _ in cards] == [f.replace("_", " ") for f in files]


# Draws every node at zoom 1 and records what it cuts: widget labels and values (BaseWidget.drawTruncatingText,
# the same rule in both frontends), titles (drawn 2 title heights narrower than the node), and notes whose text box
# would scroll. Also: nodes saved smaller than the page computes them.
CUT_TEXT = """(async () => {
    const nodes = app.graph.nodes, saved = %s, cut = [];
    const loaders = nodes.filter(n => n.type === 'LoadImage' || n.type === 'LoadImageMask');
    for (let i = 0; i < 100 && !loaders.every(n => n.imgs && n.imgs.length && n.imgs[0].complete); i++)
        await new Promise(r => setTimeout(r, 100));  // the image previews grow what the page computes
    for (const n of nodes) {
        const c = n.computeSize(), s = saved[String(n.id)];
        if (s[0] < c[0] || s[1] < c[1]) cut.push(`${n.id} ${n.type}: saved ${s} < computed ${c.map(Math.round)}`);
        const ctx = app.canvas.ctx; ctx.save(); ctx.font = n.titleFontStyle;
        const title = ctx.measureText(n.title).width; ctx.restore();
        if (title > n.size[0] - 2 * LiteGraph.NODE_TITLE_HEIGHT) cut.push(`${n.id} title "${n.title}"`);
    }
    const widget = nodes.flatMap(n => n.widgets || [])[0];
    let base = Object.getPrototypeOf(widget);
    while (!Object.prototype.hasOwnProperty.call(base, 'drawTruncatingText')) base = Object.getPrototypeOf(base);
    const draw = base.drawTruncatingText;
    base.drawTruncatingText = function (o) {
        const margin = this.constructor.margin, gap = this.constructor.labelValueGap;
        const room = o.width - (margin * 2 + (o.leftPadding ?? 5)) - 2 * margin - (o.rightPadding ?? 20);
        const need = o.ctx.measureText(this.displayName).width + gap + o.ctx.measureText(this._displayValue).width;
        if (need > room) cut.push(`widget ${this.name} = "${this._displayValue}" needs ${Math.ceil(need - room)} more`);
        return draw.call(this, o);
    };
    try {
        for (const n of nodes) {
            app.canvas.ds.scale = 1; app.canvas.ds.offset = [20 - n.pos[0], 60 - n.pos[1]];
            app.canvas.draw(true, true);
            if (n.type === 'Note') {
                await new Promise(r => setTimeout(r, 50));
                const box = n.widgets[0].element || n.widgets[0].inputEl, height = box.style.height, shown = box.clientHeight;
                box.style.height = '1px'; const text = box.scrollHeight; box.style.height = height;
                if (text > shown) cut.push(`note ${n.id} scrolls: ${text} > ${shown}`);
            }
        }
    } finally { base.drawTruncatingText = draw; }
    return [...new Set(cut)];
})()"""


@pytest.mark.parametrize("name", NAMES)
def test_opened_template_is_readable(page, name):
    """Opened from the template browser, the page fits the template to the window at a zoom where node text is
    drawn (MinFontSizeForLOD 8 / NODE_TEXT_SIZE 14), every node in view; nothing is cut at the saved sizes."""
    server, browser, version = page
    open_from_template_browser(browser, name)
    scale, low_quality = browser.evaluate("[app.canvas.ds.scale, app.canvas.low_quality]")
    browser.screenshot(SCREENSHOTS / version / f"{build_workflows.TEMPLATE_FILES[name]}.png")
    assert scale >= build_workflows.READABLE_SCALE and not low_quality, f"opens at zoom {scale:.3f}: nodes without text"
    outside = browser.evaluate("""(() => { const ds = app.canvas.ds, c = app.canvas.canvas, dpr = window.devicePixelRatio || 1;
        const [w, h] = [c.width / dpr, c.height / dpr];
        return app.graph.nodes.filter(n => { const x0 = (n.pos[0] + ds.offset[0]) * ds.scale,
            y0 = (n.pos[1] - LiteGraph.NODE_TITLE_HEIGHT + ds.offset[1]) * ds.scale,
            x1 = (n.pos[0] + n.size[0] + ds.offset[0]) * ds.scale, y1 = (n.pos[1] + n.size[1] + ds.offset[1]) * ds.scale;
            return x0 < 0 || y0 < 0 || x1 > w || y1 > h; }).map(n => n.title); })()""")
    assert not outside, f"outside the window as the template opens: {outside}"
    ui = json.loads(build_workflows.template_path(name).read_text())
    saved = {str(n["id"]): n["size"] for n in ui["nodes"]}
    assert browser.evaluate(CUT_TEXT % json.dumps(saved)) == []


@pytest.mark.parametrize("name", NAMES)
def test_workflow_in_the_real_page(page, name):
    server, browser, version = page
    ui = load_in_page(browser, name)
    api = json.loads(build_workflows.api_path(name).read_text())

    # 1. no missing node types, no node errors, and the page names the models to download
    types = {n["type"] for n in ui["nodes"]}
    registered = browser.evaluate(f"{json.dumps(sorted(types))}.filter(t => t in LiteGraph.registered_node_types)")
    assert sorted(registered) == sorted(types)
    assert browser.evaluate("window.__e4e.missingNodes") == []
    with_errors = browser.evaluate("app.graph.nodes.filter(n => n.has_errors).map(n => String(n.id))")
    assert not browser.evaluate("document.body.innerText.includes('Invalid workflow')"), "the frontend's schema refuses the file"
    downloads = [m["name"] for n in ui["nodes"] for m in n.get("properties", {}).get("models", [])]
    assert build_workflows.SD15_CHECKPOINT in downloads
    if version == PINNED_FRONTEND:  # the missing-models dialog
        assert browser.evaluate("window.__e4e.missingModels") == downloads
        assert with_errors == []
    else:  # a notice whose View details opens the Issues panel: the missing models (placeholders without a download)
        placeholders = [v for n in ui["nodes"] for v in n["widgets_values"] if v in build_workflows.PLACEHOLDERS]
        missing = browser.wait_for(f"(() => {{ const m = {STORE.format('missingModel')}.missingModelCandidates; "
                                   "return m && m.length && m.map(c => [c.name, c.url || null, String(c.nodeId)]); })()", timeout=30)
        assert sorted(n for n, url, _ in missing if url) == sorted(downloads)
        assert sorted(n for n, url, _ in missing if not url) == sorted(placeholders)
        assert set(with_errors) <= {node for _, _, node in missing}, "only the loaders of missing models are marked"
        notice = (f"(/\\d+ (issues? found|required models? (is|are) missing)/.test(document.body.innerText) || "
                  f"document.body.innerText.includes({json.dumps(missing[0][0] + ' is missing')}))")
        browser.wait_for(notice + " && document.body.innerText.includes('View details')", timeout=30)

    # 2. nothing overlaps as the page sizes the nodes
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

    errors = [e["text"] for e in browser.events if e["kind"] == "pageerror" and not any(h in e["text"] for h in HARMLESS)]
    assert not errors, errors


@pytest.mark.parametrize("name", NAMES)
def test_queued_from_the_page_it_completes(page, name):
    """On the tiny checkpoint with fewer steps, every template on both frontends."""
    server, browser, version = page
    load_in_page(browser, name)
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


def test_a_fresh_node_keeps_its_seed(page):
    """Invert's and Extract Features' seed controls start at "fixed" (re-runs reuse the cached inversion): the node
    definition says control_after_generate="fixed", which frontend 1.58.1 reads as the control's mode
    (useIntWidget.ts) and 1.32.9 does not (it starts every control at "randomize"); the pack's page extension
    (web/eye_for_eye.js) sets it on both. A node loaded from a workflow keeps the mode saved with it."""
    server, browser, version = page
    modes = browser.evaluate("""(() => ['E4E_Invert', 'E4E_ExtractFeatures', 'KSampler'].map(type => {
        const node = LiteGraph.createNode(type); app.graph.add(node);
        const mode = node.widgets.find(w => w.name === 'seed').linkedWidgets[0].value;
        app.graph.remove(node); return mode; }))()""")
    assert modes == ["fixed", "fixed", "randomize"], "only our nodes' seeds start fixed"

    saved = browser.evaluate("""(() => {
        const node = LiteGraph.createNode('E4E_Invert'); app.graph.add(node);
        const control = node.widgets.find(w => w.name === 'seed').linkedWidgets[0];
        control.value = 'increment';
        const copy = LiteGraph.createNode('E4E_Invert'); copy.configure(node.serialize()); app.graph.add(copy);
        const mode = copy.widgets.find(w => w.name === 'seed').linkedWidgets[0].value;
        app.graph.remove(node); app.graph.remove(copy); return mode; })()""")
    assert saved == "increment"

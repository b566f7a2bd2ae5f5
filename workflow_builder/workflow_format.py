"""API-format <-> UI-format ComfyUI workflows, following what the real web frontend (1.32.9) does.

`definitions` maps a node type to what GET /object_info reports for it (`host_definitions` reads the same
in-process). The frontend's widget list is not the node's input list (see ../shared docs/frontend.md, measured
in the page and read from the frontend's own code):

- every INT input whose options say `control_after_generate`, or that is named `seed` / `noise_seed` when the
  option is absent, is followed by a "control after generate" widget (a COMBO only when the option is set);
- a node with an `image_upload` COMBO gets an "upload" widget after all its required inputs, so LoadImageMask
  stores [image, channel, upload].

`frontend_widgets` is that rule in one place; `api_to_ui` and `ui_to_api` both use it. The browser test
(tests/test_frontend.py) is what checks it against the real page.
"""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_NAMES = ("seed", "noise_seed")
UPLOAD_OPTIONS = ("image_upload", "animated_image_upload", "video_upload", "audio_upload")
CONTROL = "control_after_generate"  # the frontend's name for the extra widget
UPLOAD = "upload"
VIRTUAL_NODES = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}  # never sent to the server
TITLE_HEIGHT = 30  # litegraph draws the title bar above `pos`


def host_definitions(node_classes: dict, types: set[str]) -> dict:
    """What GET /object_info reports for these node types (V3 nodes through GET_NODE_INFO_V1, as server.py)."""
    out = {}
    for node_type in types - VIRTUAL_NODES:
        cls = node_classes[node_type]
        if hasattr(cls, "GET_NODE_INFO_V1"):
            info = cls.GET_NODE_INFO_V1()
            out[node_type] = {"input": info["input"], "output": list(info["output"]), "output_name": list(info["output_name"])}
            continue
        out[node_type] = {
            "input": cls.INPUT_TYPES(),
            "output": list(cls.RETURN_TYPES),
            "output_name": list(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES),
        }
    return out


def _options(spec) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _has_control(name: str, spec) -> bool:
    options = _options(spec)
    if spec[0] == "INT":
        return bool(options[CONTROL]) if CONTROL in options else name in SEED_NAMES
    if isinstance(spec[0], list) or spec[0] == "COMBO":
        return bool(options.get(CONTROL))
    return False


def frontend_widgets(definition: dict) -> list[tuple[str, str]]:
    """The node's widgets in the frontend's order: (input name, "value" | CONTROL | UPLOAD)."""
    widgets = []
    uploads = []
    for kind in ("required", "optional"):
        for name, spec in definition["input"].get(kind, {}).items():
            if not _is_widget(spec):
                continue
            widgets.append((name, "value"))
            if _has_control(name, spec):
                widgets.append((name, CONTROL))
            if kind == "required" and any(_options(spec).get(o) for o in UPLOAD_OPTIONS):
                uploads.append((name, UPLOAD))
        if kind == "required":
            widgets.extend(uploads)
    return widgets


def _extra_value(kind: str):
    return {CONTROL: "fixed", UPLOAD: "image"}[kind]


def api_to_ui(api: dict, definitions: dict, layout: dict | None = None) -> dict:
    """A UI-format graph (litegraph 0.4) equivalent to an API-format prompt.

    layout (all optional): positions {id: (x, y)}, sizes {id: (w, h)}, titles {id: title},
    properties {id: {...}} merged into the node's properties, groups [litegraph group dicts],
    extra_nodes [UI nodes with no API twin, e.g. notes].
    """
    layout = layout or {}
    positions, sizes, titles = layout.get("positions", {}), layout.get("sizes", {}), layout.get("titles", {})
    links, nodes = [], []
    outgoing: dict[tuple[int, int], list[int]] = {}
    link_by_target = {}
    for node_id, node in api.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                link_id = len(links) + 1
                source, slot = int(value[0]), int(value[1])
                definition = definitions[api[value[0]]["class_type"]]
                link = [link_id, source, slot, int(node_id), None, definition["output"][slot]]
                links.append(link)
                link_by_target[(int(node_id), name)] = link
                outgoing.setdefault((source, slot), []).append(link_id)
    for order, (node_id, node) in enumerate(api.items()):
        definition = definitions[node["class_type"]]
        inputs = []
        for kind in ("required", "optional"):
            for name, spec in definition["input"].get(kind, {}).items():
                if _is_widget(spec):
                    continue
                link = link_by_target.get((int(node_id), name))
                if link is not None:
                    link[4] = len(inputs)
                inputs.append({"name": name, "type": spec[0], "link": None if link is None else link[0]})
        widgets = []
        for name, kind in frontend_widgets(definition):
            value = node["inputs"].get(name)
            if isinstance(value, list):
                raise ValueError(f"node {node_id}: widget input {name} is linked; this writer does not convert widgets to sockets")
            widgets.append(value if kind == "value" else _extra_value(kind))
        outputs = [
            {"name": out_name, "type": out_type, "links": outgoing.get((int(node_id), slot), []), "slot_index": slot}
            for slot, (out_type, out_name) in enumerate(zip(definition["output"], definition["output_name"]))
        ]
        ui_node = {
            "id": int(node_id), "type": node["class_type"], "pos": list(positions.get(node_id, (0, 0))),
            "size": list(sizes.get(node_id, (320, 130))), "flags": {}, "order": order, "mode": 0,
            "inputs": inputs, "outputs": outputs,
            "properties": {"Node name for S&R": node["class_type"], **layout.get("properties", {}).get(node_id, {})},
            "widgets_values": widgets,
        }
        if node_id in titles:
            ui_node["title"] = titles[node_id]
        nodes.append(ui_node)
    extra_nodes = [dict(n, order=len(nodes) + i) for i, n in enumerate(layout.get("extra_nodes", []))]
    all_ids = [int(k) for k in api] + [n["id"] for n in extra_nodes]
    return {
        "last_node_id": max(all_ids), "last_link_id": len(links), "nodes": nodes + extra_nodes, "links": links,
        "groups": list(layout.get("groups", [])), "config": {}, "extra": {}, "version": 0.4,
    }


def ui_to_api(ui: dict, definitions: dict) -> dict:
    """The API-format prompt the frontend would queue for a UI-format graph (virtual nodes such as notes left out)."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in sorted(ui["nodes"], key=lambda n: n["id"]):
        if node["type"] in VIRTUAL_NODES:
            continue
        definition = definitions[node["type"]]
        values = list(node.get("widgets_values", []))
        widgets = frontend_widgets(definition)
        if len(values) != len(widgets):
            raise ValueError(f"node {node['id']} ({node['type']}): {len(values)} widget values for the frontend's "
                             f"{len(widgets)} widgets {[f'{n}:{k}' for n, k in widgets]}")
        inputs = {}
        for (name, kind), value in zip(widgets, values):
            if kind == "value":
                inputs[name] = value
        for slot in node["inputs"]:
            if slot.get("link") is not None:
                link = links[slot["link"]]
                inputs[slot["name"]] = [str(link[1]), link[2]]
        ordered = {}
        for kind in ("required", "optional"):  # the page sends inputs in the definition's order
            for name in definition["input"].get(kind, {}):
                if name in inputs:
                    ordered[name] = inputs[name]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": ordered}
        if node.get("title"):
            api[str(node["id"])]["_meta"] = {"title": node["title"]}
    return api


def bounding_box(node: dict) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of a UI node on the canvas, title bar included."""
    (x, y), (w, h) = node["pos"], node["size"]
    return (x, y - TITLE_HEIGHT, x + w, y + h)


def overlapping_nodes(ui: dict, margin: float = 0.0) -> list[tuple[int, int]]:
    """Pairs of node ids whose bounding boxes overlap (closer than `margin`)."""
    boxes = [(n["id"], bounding_box(n)) for n in ui["nodes"]]
    pairs = []
    for i, (a, (ax0, ay0, ax1, ay1)) in enumerate(boxes):
        for b, (bx0, by0, bx1, by1) in boxes[i + 1:]:
            if ax0 < bx1 + margin and bx0 < ax1 + margin and ay0 < by1 + margin and by0 < ay1 + margin:
                pairs.append((a, b))
    return pairs

"""API-format <-> UI-format ComfyUI workflows, from the node definitions the host reports.

`definitions` maps a node type to ComfyUI's INPUT_TYPES() dict and RETURN_TYPES /
RETURN_NAMES, as /object_info gives them (`host_definitions` reads them in-process).
"""

from __future__ import annotations

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def host_definitions(node_classes: dict, types: set[str]) -> dict:
    out = {}
    for node_type in types:
        cls = node_classes[node_type]
        out[node_type] = {
            "input": cls.INPUT_TYPES(),
            "output": list(cls.RETURN_TYPES),
            "output_name": list(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES),
        }
    return out


def _ordered_inputs(definition: dict):
    for kind in ("required", "optional"):
        yield from definition["input"].get(kind, {}).items()


def _is_widget(spec) -> bool:
    kind = spec[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _extra_widget_values(spec) -> list:
    """Values the frontend stores after a widget: the seed control and the image upload button."""
    options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    extra = []
    if options.get("control_after_generate"):
        extra.append("fixed")
    if options.get("image_upload"):
        extra.append("image")
    return extra


def api_to_ui(api: dict, definitions: dict, positions: dict[str, tuple[int, int]], titles: dict[str, str] | None = None) -> dict:
    """A UI-format graph (litegraph 0.4) equivalent to an API-format prompt."""
    titles = titles or {}
    links, nodes = [], []
    outgoing: dict[tuple[int, int], list[int]] = {}
    for node_id, node in api.items():
        for name, value in node["inputs"].items():
            if isinstance(value, list):
                link_id = len(links) + 1
                source, slot = int(value[0]), int(value[1])
                definition = definitions[api[value[0]]["class_type"]]
                links.append([link_id, source, slot, int(node_id), None, definition["output"][slot]])
                outgoing.setdefault((source, slot), []).append(link_id)
    link_by_target = {(link[3], name): link for link, name in zip(links, _link_input_names(api))}
    for order, (node_id, node) in enumerate(api.items()):
        definition = definitions[node["class_type"]]
        inputs, widgets = [], []
        for name, spec in _ordered_inputs(definition):
            value = node["inputs"].get(name)
            if _is_widget(spec) and not isinstance(value, list):
                widgets.append(value)
                widgets.extend(_extra_widget_values(spec))
            elif not _is_widget(spec):
                link = link_by_target.get((int(node_id), name))
                if link is not None:
                    link[4] = len(inputs)
                inputs.append({"name": name, "type": spec[0], "link": None if link is None else link[0]})
        outputs = [
            {"name": out_name, "type": out_type, "links": outgoing.get((int(node_id), slot), []), "slot_index": slot}
            for slot, (out_type, out_name) in enumerate(zip(definition["output"], definition["output_name"]))
        ]
        ui_node = {
            "id": int(node_id), "type": node["class_type"], "pos": list(positions[node_id]), "size": [320, 130],
            "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
            "properties": {"Node name for S&R": node["class_type"]}, "widgets_values": widgets,
        }
        if node_id in titles:
            ui_node["title"] = titles[node_id]
        nodes.append(ui_node)
    return {
        "last_node_id": max(int(k) for k in api), "last_link_id": len(links), "nodes": nodes, "links": links,
        "groups": [], "config": {}, "extra": {}, "version": 0.4,
    }


def _link_input_names(api: dict) -> list[str]:
    return [name for node in api.values() for name, value in node["inputs"].items() if isinstance(value, list)]


def ui_to_api(ui: dict, definitions: dict) -> dict:
    """The API-format prompt the frontend would queue for a UI-format graph."""
    links = {link[0]: link for link in ui["links"]}
    api = {}
    for node in sorted(ui["nodes"], key=lambda n: n["id"]):
        definition = definitions[node["type"]]
        values = list(node.get("widgets_values", []))
        inputs = {}
        for name, spec in _ordered_inputs(definition):
            if _is_widget(spec):
                linked = [i for i in node["inputs"] if i["name"] == name and i.get("link") is not None]
                if linked:
                    link = links[linked[0]["link"]]
                    inputs[name] = [str(link[1]), link[2]]
                    continue
                if not values:
                    continue
                inputs[name] = values.pop(0)
                for _ in _extra_widget_values(spec):
                    values.pop(0)
        for slot in node["inputs"]:
            if slot.get("link") is not None and slot["name"] not in inputs:
                link = links[slot["link"]]
                inputs[slot["name"]] = [str(link[1]), link[2]]
        api[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
        if node.get("title"):
            api[str(node["id"])]["_meta"] = {"title": node["title"]}
    return api

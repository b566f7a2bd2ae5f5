"""The pack as ComfyUI sees it: loading, registration, schema, and a core free of ComfyUI."""

import ast
from pathlib import Path

import pytest

from conftest import NODE_IDS

REPO = Path(__file__).resolve().parent.parent
COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "comfy_execution", "folder_paths", "nodes", "server", "execution", "latent_preview", "node_helpers"}


def test_every_node_is_registered_by_comfyuis_loader(host):
    for node_id in NODE_IDS:
        cls = host.nodes.NODE_CLASS_MAPPINGS[node_id]
        schema = cls.GET_SCHEMA()
        assert schema.node_id == node_id
        assert schema.description, f"{node_id} needs a description"
        assert host.nodes.NODE_DISPLAY_NAME_MAPPINGS[node_id] == schema.display_name


def test_node_ids_are_prefixed_and_custom_types_too(host):
    ours = [k for k, v in host.nodes.NODE_CLASS_MAPPINGS.items() if getattr(v, "RELATIVE_PYTHON_MODULE", "").endswith("eye_for_eye")]
    assert sorted(ours) == sorted(NODE_IDS)
    for node_id in ours:
        info = host.nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1()
        for kind in ("required", "optional"):
            for name, spec in info["input"].get(kind, {}).items():
                if isinstance(spec[0], str) and spec[0].isupper() and spec[0] not in {"MODEL", "CONDITIONING", "LATENT", "IMAGE", "MASK", "INT", "FLOAT", "STRING", "BOOLEAN", "SAMPLER", "SIGMAS", "NOISE", "COMBO", "BOOLEAN"}:
                    assert spec[0].startswith("E4E_"), f"{node_id}.{name} uses a generic custom type {spec[0]}"


@pytest.mark.parametrize("path", sorted((REPO / "core").glob("*.py")), ids=lambda p: p.name)
def test_core_never_imports_comfyui(path):
    tree = ast.parse(path.read_text())
    for statement in ast.walk(tree):
        if isinstance(statement, ast.Import):
            names = [alias.name for alias in statement.names]
        elif isinstance(statement, ast.ImportFrom) and statement.level == 0:
            names = [statement.module or ""]
        else:
            continue
        for name in names:
            assert name.split(".")[0] not in COMFY_MODULES, f"{path.name} imports {name}"


def _node_infos(host):
    """What GET /object_info reports for each of our nodes (server.py calls GET_NODE_INFO_V1 for V3 nodes)."""
    return {node_id: host.nodes.NODE_CLASS_MAPPINGS[node_id].GET_NODE_INFO_V1() for node_id in NODE_IDS}


def test_every_input_and_output_explains_itself(host):
    """A tooltip on every input and output and a readable output name, as the page shows them."""
    missing = []
    for node_id, info in _node_infos(host).items():
        for kind in ("required", "optional"):
            for name, spec in info["input"].get(kind, {}).items():
                options = spec[1] if len(spec) > 1 else {}
                if not (options.get("tooltip") or "").strip():
                    missing.append(f"{node_id} input {name}: no tooltip")
        assert len(info["output_name"]) == len(info["output"]) == len(info["output_tooltips"])
        for out_type, out_name, tooltip in zip(info["output"], info["output_name"], info["output_tooltips"]):
            if not (tooltip or "").strip():
                missing.append(f"{node_id} output {out_name}: no tooltip")
            if out_name == out_type or out_name != out_name.lower():
                missing.append(f"{node_id} output {out_name}: shows its type name instead of a readable lower-case name")
        if not info["description"].strip():
            missing.append(f"{node_id}: no description")
    assert not missing, "\n".join(missing)


def test_pyproject_is_registry_ready_as_the_hosts_own_parser_reads_it(host):
    """[project.urls], [tool.comfy] publisher, display name, icon and requires-comfyui; an MIT LICENSE file."""
    import tomllib

    from comfy_config import config_parser

    config = config_parser.extract_node_configuration(str(REPO))
    assert config is not None and config.project.name and config.project.version.count(".") == 2
    assert config.project.urls.repository.startswith("https://")
    comfy = config.tool_comfy
    assert comfy.publisher_id and comfy.display_name and comfy.icon.startswith("https://")
    raw = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert raw["tool"]["comfy"]["requires-comfyui"].startswith(">=")
    assert raw["project"]["license"] == {"file": "LICENSE"}
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    icon = REPO / comfy.icon.split("/main/", 1)[1]  # the icon address points at a file of this repository
    from PIL import Image

    width, height = Image.open(icon).size
    assert width <= 800 and height <= 400
    requirements = [line for line in (REPO / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    assert sorted(requirements) == sorted(raw["project"]["dependencies"])


def test_scripts_holds_only_what_a_person_runs():
    """scripts/ holds the entry points a person runs and what they import; test support and builders live elsewhere."""
    scripts = REPO / "scripts"
    modules = {path.stem: path.read_text() for path in scripts.glob("*.py")}
    entry_points = {"demo", "serve", "run_workflow"}  # make demo; a headless server with the pack; queue an API prompt
    assert entry_points <= set(modules) and all('if __name__ == "__main__"' in modules[e] for e in entry_points)
    needed, todo = set(entry_points), list(entry_points)
    while todo:
        text = modules[todo.pop()]
        for name in modules:
            if name not in needed and (f"from {name} import" in text or f"import {name}\n" in text):
                needed.add(name)
                todo.append(name)
    assert set(modules) == needed, f"not used by an entry point: {sorted(set(modules) - needed)}"


def test_quality_holds_the_benchmark_the_model_and_one_diagnostics_module():
    """quality/ holds the part-transfer benchmark, the creature model, its training images and training, the
    diagnostics (one command with subcommands: a new measurement belongs there), the demo-only nodes and graph."""
    quality = REPO / "quality"
    modules = {str(path.relative_to(quality).with_suffix("")) for path in quality.rglob("*.py")}
    expected = {"__init__", "benchmark", "creature_model", "creatures", "train_creatures", "diagnostics", "comfy_nodes", "demo_graph"}
    assert modules == expected, f"unexpected: {sorted(modules - expected)}, missing: {sorted(expected - modules)}"

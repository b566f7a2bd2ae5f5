"""The real ComfyUI host, booted once per test session, with the pack loaded by ComfyUI's own loader."""

from __future__ import annotations

import asyncio
import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))

from comfy_host import base_directory, boot_in_process, link_pack  # noqa: E402

NODE_IDS = ["E4E_Invert", "E4E_ApplyEyeForEye", "E4E_KSampler", "E4E_ReplayPieces"]


@pytest.fixture(scope="session")
def host():
    """ComfyUI's `nodes` module and our pack as ComfyUI loaded it (host.nodes, host.pack)."""
    base = base_directory("test-base")
    link = link_pack(base)
    comfy_nodes = boot_in_process(base)
    loaded = asyncio.run(comfy_nodes.load_custom_node(str(link)))
    assert loaded, "ComfyUI failed to load the pack"
    pack = sys.modules[str(link).replace(".", "_x_")]
    return types.SimpleNamespace(nodes=comfy_nodes, pack=pack, base=base)


@pytest.fixture(scope="session")
def node(host):
    """node("E4E_Invert") -> the registered node class."""
    return lambda node_id: host.nodes.NODE_CLASS_MAPPINGS[node_id]


def run_node(cls, **inputs):
    """Execute a V3 node the way the executor does and return its outputs tuple."""
    return cls.execute(**inputs).result

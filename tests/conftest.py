"""The real ComfyUI host, booted once per test session, with the pack loaded by ComfyUI's own loader."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "tests" / "support"))  # tiny models and checkpoints, the browser driver
sys.path.insert(0, str(REPO / "workflow_builder"))  # the templates' builder

from comfy_host import load_host_with_pack  # noqa: E402

NODE_IDS = [
    "E4E_Invert", "E4E_ApplyEyeForEye", "E4E_KSampler", "E4E_ReplayPieces", "E4E_ExtractFeatures",
    "E4E_SemanticMatch", "E4E_TransferObject", "E4E_ApplyEyeForEyeObjects", "E4E_VisualizeCorrespondence",
    "E4E_FreeUPublished", "E4E_AttentionMasks",
]


@pytest.fixture(scope="session")
def host():
    """ComfyUI's `nodes` module and our pack as ComfyUI loaded it (host.nodes, host.pack)."""
    comfy_nodes, pack = load_host_with_pack("test-base")
    return types.SimpleNamespace(nodes=comfy_nodes, pack=pack)


@pytest.fixture(autouse=True)
def _inference_mode():
    """ComfyUI's executor runs nodes without autograd; so do the tests."""
    import torch

    with torch.inference_mode():
        yield


@pytest.fixture(scope="session")
def node(host):
    """node("E4E_Invert") -> the registered node class."""
    return lambda node_id: host.nodes.NODE_CLASS_MAPPINGS[node_id]


def run_node(cls, **inputs):
    """Execute a V3 node the way the executor does and return its outputs tuple."""
    return cls.execute(**inputs).result


def invert_pair(node, model, steps: int, skip: int, cfg: float) -> dict:
    """{"target", "reference"}: E4E_Invert of the 16x16 test latents of seeds 3 and 4 (inversion seed 5)."""
    import torch
    from tiny_models import conditioning, latent

    def invert(image_seed):
        (inversion,) = run_node(
            node("E4E_Invert"), model=model, positive=conditioning(10), negative=conditioning(11),
            latent=latent(image_seed, 16), steps=steps, skip=skip, cfg=cfg, seed=5, scheduler="ddim_uniform",
        )
        return inversion

    with torch.inference_mode():
        return {"target": invert(3), "reference": invert(4)}

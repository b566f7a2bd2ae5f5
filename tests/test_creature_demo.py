"""`make demo` without a checkpoint: a creature transfer in the real server, with the demo-only loader nodes."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from quality import benchmark  # noqa: E402
from quality.creatures import draw_creatures  # noqa: E402
from quality.demo_graph import PAIR_SEED, inspection_prompt, transfer_prompt, write_creature_inputs  # noqa: E402
from run_workflow import _get_json, image_path, output_images, queue_prompt, start_server, wait_for  # noqa: E402


def read_image(path: Path) -> torch.Tensor:
    from PIL import Image

    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0).permute(2, 0, 1)


@pytest.fixture(scope="module")
def demo_server():
    with start_server("creature-demo-base", extra_args=["--demo-nodes"]) as running:
        names = write_creature_inputs(running.base / "input")
        yield running, names


def test_demo_nodes_load_only_with_the_demo_pack(demo_server, host):
    server, _ = demo_server
    assert "E4EDemo_LoadCreatureModel" in _get_json(server.url + "/object_info/E4EDemo_LoadCreatureModel")
    # the user pack, loaded alone by ComfyUI's loader, registers none of them
    assert "E4E_Invert" in host.nodes.NODE_CLASS_MAPPINGS
    assert not any(node_id.startswith("E4EDemo_") for node_id in host.nodes.NODE_CLASS_MAPPINGS)


def test_creature_transfer_keeps_the_target_and_changes_its_colours(demo_server):
    server, names = demo_server
    history = wait_for(server.url, queue_prompt(server.url, transfer_prompt(names)), timeout=600)
    result = read_image(image_path(server.base, output_images(history)[0]))
    generator = torch.Generator().manual_seed(PAIR_SEED)
    target, reference = draw_creatures(1, generator, flip=False), draw_creatures(1, generator, flip=False)
    scores = benchmark.summarise(benchmark.metrics(result[None], target, reference))
    assert scores["silhouette_iou"] >= 0.85 and scores["background_delta_e"] <= 5, scores  # the target's structure
    # the creature's colours moved towards the reference's (part by part they do not yet: docs/quality.md)
    unchanged = benchmark.summarise(benchmark.metrics(target.images, target, reference))
    assert scores["part_delta_e"] < unchanged["part_delta_e"] - 5, (scores, unchanged)


def test_creature_inspection_writes_its_three_pictures(demo_server):
    server, names = demo_server
    history = wait_for(server.url, queue_prompt(server.url, inspection_prompt(names)), timeout=600)
    saved = [image for image in output_images(history) if image[2] == "output"]
    assert sorted(image[0].split("_0")[0] for image in saved) == ["e4e_confidence", "e4e_matches", "e4e_warped_reference"]
    for image in saved:
        assert read_image(image_path(server.base, image)).std() > 0.01  # a picture, not a blank

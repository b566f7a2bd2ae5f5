"""The composition workflow (LoRA + FreeU before the inversions, ControlNet guiding the sampling) in the real
ComfyUI server, on the tiny checkpoint and the tiny LoRA and ControlNet (tests/support/tiny_adapters.py).

Both patch orders complete; each ingredient changes the pixels; the pack accepts one patched model feeding
both Invert nodes and Apply, and refuses an inversion made with the unpatched model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from run_workflow import queue_prompt, saved_pixels, start_server, wait_for  # noqa: E402
from tiny_adapters import CONTROLNET_NAME, LORA_NAME, write_tiny_adapters  # noqa: E402
from tiny_checkpoint import CHECKPOINT_NAME, write_demo_images, write_tiny_sd15_checkpoint  # noqa: E402

SHIPPED = REPO / "workflows" / "api" / "composition_transfer.api.json"


def by_type(prompt: dict, class_type: str) -> str:
    (node_id,) = [k for k, v in prompt.items() if v["class_type"] == class_type]
    return node_id


def composed() -> dict:
    """The shipped prompt on the tiny files, with a 4-step schedule (6 steps, skip 2) to keep the test short."""
    prompt = json.loads(SHIPPED.read_text())
    names = {"CheckpointLoaderSimple": ("ckpt_name", CHECKPOINT_NAME), "LoraLoaderModelOnly": ("lora_name", LORA_NAME),
             "ControlNetLoader": ("control_net_name", CONTROLNET_NAME)}
    quick = {"E4E_Invert": {"steps": 6, "skip": 2}, "E4E_ApplyEyeForEye": {"start": 1, "refresh_every": 2, "refresh_until": 3},
             "E4E_KSampler": {"adain_start": 3}}
    for node in prompt.values():
        if node["class_type"] in names:
            key, value = names[node["class_type"]]
            node["inputs"][key] = value
        node["inputs"].update(quick.get(node["class_type"], {}))
    return prompt


def bypass(prompt: dict, class_type: str) -> dict:
    """Remove a MODEL patch node, connecting its consumers to its own model input."""
    node_id = by_type(prompt, class_type)
    source = prompt.pop(node_id)["inputs"]["model"]
    for node in prompt.values():
        for key, value in node["inputs"].items():
            if value == [node_id, 0]:
                node["inputs"][key] = source
    return prompt


def freeu_then_lora(prompt: dict) -> dict:
    """The other order: checkpoint -> FreeU -> LoRA -> (inversions, Apply)."""
    lora, freeu = by_type(prompt, "LoraLoaderModelOnly"), by_type(prompt, "FreeU")
    checkpoint = prompt[lora]["inputs"]["model"]
    for node_id, node in prompt.items():
        if node_id != freeu and node["inputs"].get("model") == [freeu, 0]:
            node["inputs"]["model"] = [lora, 0]
    prompt[freeu]["inputs"]["model"] = checkpoint
    prompt[lora]["inputs"]["model"] = [freeu, 0]
    return prompt


def without_controlnet(prompt: dict) -> dict:
    apply, sampler = by_type(prompt, "ControlNetApplyAdvanced"), by_type(prompt, "E4E_KSampler")
    prompt[sampler]["inputs"].update(positive=prompt[apply]["inputs"]["positive"], negative=prompt[apply]["inputs"]["negative"])
    for node_id in (apply, prompt[apply]["inputs"]["control_net"][0], prompt[apply]["inputs"]["image"][0]):
        del prompt[node_id]
    return prompt


@pytest.fixture(scope="module")
def server():
    with start_server("composition-base", timeout=600) as running:
        write_tiny_sd15_checkpoint(running.base / "models" / "checkpoints" / CHECKPOINT_NAME)
        write_tiny_adapters(running.base / "models")
        write_demo_images(running.base / "input")
        yield running


def pixels(server, prompt):
    history = wait_for(server.url, queue_prompt(server.url, prompt), timeout=600)
    assert history["status"]["status_str"] == "success", history["status"]
    return saved_pixels(server.base, history).astype(int)


@pytest.fixture(scope="module")
def composed_pixels(server):
    return pixels(server, composed())


def test_the_shipped_graph_patches_the_model_before_the_inversions_and_guides_the_sampling():
    prompt = json.loads(SHIPPED.read_text())
    lora, freeu = by_type(prompt, "LoraLoaderModelOnly"), by_type(prompt, "FreeU")
    assert prompt[lora]["inputs"]["model"] == [by_type(prompt, "CheckpointLoaderSimple"), 0]
    assert prompt[freeu]["inputs"]["model"] == [lora, 0]
    consumers = [v for v in prompt.values() if v["class_type"] in ("E4E_Invert", "E4E_ApplyEyeForEye")]
    assert len(consumers) == 3 and all(v["inputs"]["model"] == [freeu, 0] for v in consumers)
    control = by_type(prompt, "ControlNetApplyAdvanced")
    sampler = prompt[by_type(prompt, "E4E_KSampler")]["inputs"]
    assert sampler["positive"] == [control, 0] and sampler["negative"] == [control, 1]
    assert prompt[control]["inputs"]["image"] == [by_type(prompt, "Canny"), 0]


def test_both_patch_orders_complete_and_each_ingredient_changes_the_pixels(server, composed_pixels):
    """Running a prompt twice gives identical pixels (see the server battery), so any difference is the
    ingredient's; 0.1 grey levels on average is well above rounding. FreeU scales only the 640- and 1280-channel
    decoder blocks of SD1.5 (model_channels * 2 and * 4), which the tiny checkpoint (320 channels at both levels)
    does not have: there it must leave the pixels exactly as they are, while the provenance check still tells the
    FreeU model apart (next test)."""
    import numpy as np
    from tiny_checkpoint import unet_config

    other_order = pixels(server, freeu_then_lora(composed()))
    assert other_order.shape == composed_pixels.shape == (64, 64, 3)
    variants = {
        "without ControlNet": without_controlnet(composed()),
        "without LoRA": bypass(composed(), "LoraLoaderModelOnly"),
        "plain transfer (no LoRA, FreeU, ControlNet)": without_controlnet(bypass(bypass(composed(), "LoraLoaderModelOnly"), "FreeU")),
    }
    differences = {name: np.abs(pixels(server, prompt) - composed_pixels).mean() for name, prompt in variants.items()}
    same = {name: round(d, 3) for name, d in differences.items() if d < 0.1}
    assert not same, f"mean pixel difference (0-255) from the composed transfer too small: {same} (all: {differences})"
    assert set(unet_config()["channel_mult"]) == {1}, "the tiny UNet now has FreeU's channel widths: assert a change"
    assert np.array_equal(pixels(server, bypass(composed(), "FreeU")), composed_pixels)


def test_an_inversion_with_the_unpatched_model_is_refused(server, composed_pixels):
    """composed_pixels ran with one LoRA+FreeU model feeding both inversions and Apply: accepted. Inverting the
    reference with the checkpoint's own model is refused by Apply, which names both models."""
    prompt = composed()
    checkpoint = by_type(prompt, "CheckpointLoaderSimple")
    reference_invert = next(k for k, v in prompt.items() if v.get("_meta", {}).get("title") == "Invert reference")
    prompt[reference_invert]["inputs"]["model"] = [checkpoint, 0]
    with pytest.raises(RuntimeError) as refused:
        wait_for(server.url, queue_prompt(server.url, prompt), timeout=600)
    message = str(refused.value).splitlines()[0]
    assert f"node {by_type(prompt, 'E4E_ApplyEyeForEye')} (E4E_ApplyEyeForEye)" in message and "ValueError" in message
    patched, _, unpatched = message.partition("is not the model reference_inversion was made with")
    assert "patched weights" in patched and "output_block_patch" in patched, patched  # LoRA's weight patches, FreeU
    assert unpatched and "patched weights" not in unpatched and "output_block_patch" not in unpatched, unpatched

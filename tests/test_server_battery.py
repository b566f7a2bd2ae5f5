"""A battery of bad inputs posted to the real ComfyUI server.

Every case is refused with a message that names the input to fix, either at POST /prompt (HTTP 400, before
any model runs) or by the node that receives the input, before it computes. After each case the server still
answers; after the whole battery a good run gives exactly the pixels it gave before.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from run_workflow import saved_pixels, start_server, wait_for  # noqa: E402
from tiny_checkpoint import CHECKPOINT_NAME, write_demo_images, write_tiny_sd15_checkpoint  # noqa: E402

TRANSFER = "rearrange features (q, k, v)"
STEPS, SKIP = 6, 2  # 4 generation steps


def good_prompt() -> dict:
    """A small transfer graph (64x64 images, 6 steps) plus a correspondence-inspection branch."""
    link = lambda node, slot=0: [node, slot]  # noqa: E731
    invert = lambda latent, seed: {"class_type": "E4E_Invert", "inputs": {  # noqa: E731
        "model": link("ckpt"), "positive": link("pos"), "negative": link("neg"), "latent": link(latent),
        "steps": STEPS, "skip": SKIP, "cfg": 2.0, "seed": seed, "scheduler": "ddim_uniform"}}
    features = lambda inversion: {"class_type": "E4E_ExtractFeatures", "inputs": {  # noqa: E731
        "inversion": link(inversion), "resolution": "1/8", "layer": "all", "timestep": 261, "ensemble": 1, "seed": 0, "step": 1}}
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CHECKPOINT_NAME}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a bird", "clip": link("ckpt", 1)}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": link("ckpt", 1)}},
        "timg": {"class_type": "LoadImage", "inputs": {"image": "e4e_target.png"}},
        "rimg": {"class_type": "LoadImage", "inputs": {"image": "e4e_reference.png"}},
        "tmaskimg": {"class_type": "LoadImage", "inputs": {"image": "e4e_target_mask.png"}},
        "rmaskimg": {"class_type": "LoadImage", "inputs": {"image": "e4e_reference_mask.png"}},
        "tmask": {"class_type": "ImageToMask", "inputs": {"image": link("tmaskimg"), "channel": "red"}},
        "rmask": {"class_type": "ImageToMask", "inputs": {"image": link("rmaskimg"), "channel": "red"}},
        "tlat": {"class_type": "VAEEncode", "inputs": {"pixels": link("timg"), "vae": link("ckpt", 2)}},
        "rlat": {"class_type": "VAEEncode", "inputs": {"pixels": link("rimg"), "vae": link("ckpt", 2)}},
        "tinv": invert("tlat", 0),
        "rinv": invert("rlat", 1),
        "apply": {"class_type": "E4E_ApplyEyeForEye", "inputs": {
            "model": link("ckpt"), "reference_inversion": link("rinv"), "target_inversion": link("tinv"),
            "start": 1, "end": -1, "refresh_every": 2, "refresh_until": 3, "mode": TRANSFER,
            "target_mask": link("tmask"), "reference_mask": link("rmask")}},
        "ks": {"class_type": "E4E_KSampler", "inputs": {
            "model": link("apply"), "positive": link("pos"), "negative": link("neg"), "target_inversion": link("tinv"),
            "reference_inversion": link("rinv"), "cfg": 2.0, "adain_start": 2, "target_mask": link("tmask"), "reference_mask": link("rmask")}},
        "dec": {"class_type": "VAEDecode", "inputs": {"samples": link("ks"), "vae": link("ckpt", 2)}},
        "save": {"class_type": "SaveImage", "inputs": {"images": link("dec"), "filename_prefix": "battery"}},
        "tfeat": features("tinv"),
        "rfeat": features("rinv"),
        "match": {"class_type": "E4E_SemanticMatch", "inputs": {
            "target_features": link("tfeat"), "reference_features": link("rfeat"), "mutual": False, "min_similarity": -1.0}},
        "vis": {"class_type": "E4E_VisualizeCorrespondence", "inputs": {
            "correspondence": link("match"), "target_image": link("timg"), "reference_image": link("rimg"), "points_per_side": 4}},
    }


# ---- graph edits --------------------------------------------------------------------------------------------

def set_input(node: str, **values) -> Callable[[dict], None]:
    def edit(prompt):
        prompt[node]["inputs"].update(values)
    return edit


def add(node_id: str, class_type: str, **inputs) -> Callable[[dict], None]:
    def edit(prompt):
        prompt[node_id] = {"class_type": class_type, "inputs": inputs}
    return edit


def both(*edits) -> Callable[[dict], None]:
    def edit(prompt):
        for e in edits:
            e(prompt)
    return edit


def solid_mask(node_id: str, width: int, height: int, value: float = 1.0):
    if 0.0 <= value <= 1.0:
        return add(node_id, "SolidMask", value=value, width=width, height=height)
    # A linked value passes the host's 0..1 check of the widget, as a value from another node does.
    return both(add(node_id + "_value", "PrimitiveFloat", value=value),
                add(node_id, "SolidMask", value=[node_id + "_value", 0], width=width, height=height))


def mask_batch(node_id: str, amount: int):
    return both(
        add(node_id + "_img", "MaskToImage", mask=["tmask", 0]),
        add(node_id + "_rep", "RepeatImageBatch", image=[node_id + "_img", 0], amount=amount),
        add(node_id, "ImageToMask", image=[node_id + "_rep", 0], channel="red"),
    )


def without_inspection(prompt):
    """Drop the correspondence-inspection branch, for cases where it would refuse the same input first."""
    for node_id in ("tfeat", "rfeat", "match", "vis"):
        del prompt[node_id]


def freeu(node_id: str = "freeu"):
    return add(node_id, "FreeU", model=["ckpt", 0], b1=1.1, b2=1.2, s1=0.9, s2=0.2)


def replay_pieces_branch(adain_start: int):
    """ReplayPieces driving ComfyUI's own SamplerCustomAdvanced (only validated: the prompt is refused)."""
    return both(
        add("pieces", "E4E_ReplayPieces", target_inversion=["tinv", 0], reference_inversion=["rinv", 0], adain_start=adain_start),
        add("guider", "CFGGuider", model=["apply", 0], positive=["pos", 0], negative=["neg", 0], cfg=2.0),
        add("custom", "SamplerCustomAdvanced", noise=["pieces", 0], guider=["guider", 0], sampler=["pieces", 1],
            sigmas=["pieces", 2], latent_image=["pieces", 3]),
        add("dec2", "VAEDecode", samples=["custom", 0], vae=["ckpt", 2]),
        add("save2", "SaveImage", images=["dec2", 0], filename_prefix="battery_pieces"),
    )


def objects_branch(**apply_inputs):
    """Two Transfer Objects into the multi-object Apply, sampled (only validated: the prompt is refused)."""
    inputs = dict(model=["ckpt", 0], target_inversion=["tinv", 0], objects=["obj", 0], start=1, end=-1,
                  refresh_every=0, refresh_until=0, mode=TRANSFER)
    inputs.update(apply_inputs)
    return both(
        add("obj", "E4E_TransferObject", reference_inversion=["rinv", 0], target_mask=["tmask", 0], reference_mask=["rmask", 0]),
        add("applyobj", "E4E_ApplyEyeForEyeObjects", **inputs),
        set_input("ks", model=["applyobj", 0]),
    )


@dataclass(frozen=True)
class Case:
    name: str
    edit: Callable[[dict], None]
    node: str | tuple  # the node id that must report the error (a tuple: whichever of them runs first)
    names: str  # the input the message must name
    says: str  # a fragment of what the message must say
    at_prompt: bool = True  # refused by POST /prompt (else: by the node when it runs)


NAN, INF = math.nan, math.inf
BAD_MODE = "rearrange everything"
CASES = [
    # Refused at /prompt by the nodes' validate_inputs (no model runs).
    Case("invert scheduler not an option", set_input("tinv", scheduler="linear_quadratic_typo"), "tinv", "scheduler", "not one of its options"),
    Case("invert scheduler empty", set_input("rinv", scheduler=""), "rinv", "scheduler", "not one of its options"),
    Case("invert cfg NaN", set_input("tinv", cfg=NAN), "tinv", "cfg", "finite"),
    Case("invert cfg NaN as a string", set_input("rinv", cfg="NaN"), "rinv", "cfg", "finite"),
    Case("invert cfg inf", set_input("tinv", cfg=INF), "tinv", "cfg", "finite"),
    Case("invert cfg -inf", set_input("tinv", cfg=-INF), "tinv", "cfg", "finite"),
    Case("invert cfg above max", set_input("tinv", cfg=31.0), "tinv", "cfg", "accepts"),
    Case("invert cfg negative", set_input("tinv", cfg=-1.0), "tinv", "cfg", "accepts"),
    Case("invert skip equals steps", set_input("tinv", skip=STEPS), "tinv", "skip", "smaller than steps"),
    Case("invert skip beyond steps", set_input("rinv", steps=4, skip=9), "rinv", "skip", "smaller than steps"),
    Case("invert steps below min", set_input("tinv", steps=1, skip=0), "tinv", "steps", "accepts"),
    Case("apply mode not an option", set_input("apply", mode=BAD_MODE), "apply", "mode", "not one of its options"),
    Case("apply mode wrong case", set_input("apply", mode=TRANSFER.upper()), "apply", "mode", "not one of its options"),
    Case("apply start after end", set_input("apply", start=3, end=2), "apply", "start", "not before end"),
    Case("apply start equals end", set_input("apply", start=2, end=2), "apply", "start", "not before end"),
    Case("apply end below -1", set_input("apply", end=-2), "apply", "end", "accepts"),
    Case("apply refresh_every negative", set_input("apply", refresh_every=-1), "apply", "refresh_every", "accepts"),
    Case("apply start negative", set_input("apply", start=-3), "apply", "start", "accepts"),
    Case("ksampler cfg NaN", set_input("ks", cfg=NAN), "ks", "cfg", "finite"),
    Case("ksampler cfg inf", set_input("ks", cfg=INF), "ks", "cfg", "finite"),
    Case("ksampler cfg above max", set_input("ks", cfg=100.0), "ks", "cfg", "accepts"),
    Case("ksampler adain_start below -1", set_input("ks", adain_start=-2), "ks", "adain_start", "accepts"),
    Case("features resolution not an option", set_input("tfeat", resolution="1/3"), "tfeat", "resolution", "not one of its options"),
    Case("features timestep above max", set_input("tfeat", timestep=1000), "tfeat", "timestep", "accepts"),
    Case("features ensemble zero", set_input("rfeat", ensemble=0), "rfeat", "ensemble", "accepts"),
    Case("match min_similarity NaN", set_input("match", min_similarity=NAN), "match", "min_similarity", "finite"),
    Case("match min_similarity above 1", set_input("match", min_similarity=1.5), "match", "min_similarity", "accepts"),
    Case("visualize points_per_side 1", set_input("vis", points_per_side=1), "vis", "points_per_side", "accepts"),
    Case("replay pieces adain_start below -1", replay_pieces_branch(-5), "pieces", "adain_start", "accepts"),
    Case("multi-object mode not an option", objects_branch(mode=BAD_MODE), "applyobj", "mode", "not one of its options"),
    Case("multi-object start after end", objects_branch(start=3, end=1), "applyobj", "start", "not before end"),
    Case("invert steps not a number", set_input("tinv", steps="abc"), "tinv", "steps", "not a number"),
    Case("apply end not a number", set_input("apply", end="last"), "apply", "end", "not a number"),
    Case("published code reading recorded features with a refresh", set_input("apply", behaviour="published code"),
         "apply", "behaviour", "use feature_source 'live branches'"),
    Case("values only with published code and a refresh", set_input(
        "apply", mode="rearrange values only", behaviour="published code", feature_source="live branches"), "apply", "refresh_every", "V-injection"),
    Case("multi-object published code reading recorded features with a refresh",
         objects_branch(refresh_every=2, refresh_until=3, behaviour="published code"), "applyobj", "behaviour", "live branches"),
    # Refused by the node that receives the input, before it computes.
    Case("apply window past the last step", set_input("apply", start=10), "apply", "start", "generation steps", False),
    Case("ksampler adain_start past the last step", set_input("ks", adain_start=10), "ks", "adain_start", "never run", False),
    Case("apply target_mask of another aspect", both(solid_mask("m64x48", 64, 48), set_input("apply", target_mask=["m64x48", 0])), "apply", "target_mask", "64x48 mask", False),
    Case("apply reference_mask of another aspect", both(solid_mask("m128x64", 128, 64), set_input("apply", reference_mask=["m128x64", 0])), "apply", "reference_mask", "128x64 mask", False),
    Case("apply target_mask batch of 3", both(mask_batch("m3", 3), set_input("apply", target_mask=["m3", 0])), "apply", "target_mask", "batch of 3", False),
    Case("apply target_mask empty", both(solid_mask("m0", 64, 64, 0.0), set_input("apply", target_mask=["m0", 0])), "apply", "target_mask", "empty", False),
    Case("ksampler target_mask batch of 3", both(mask_batch("m3", 3), set_input("ks", target_mask=["m3", 0])), "ks", "target_mask", "batch of 3", False),
    Case("ksampler reference_mask of another aspect", both(solid_mask("m48x64", 48, 64), set_input("ks", reference_mask=["m48x64", 0])), "ks", "reference_mask", "48x64 mask", False),
    Case("ksampler target inversion differs from apply's", set_input("ks", target_inversion=["rinv", 0]), "ks", "target_inversion", "different target_inversion", False),
    Case("ksampler model is not the inversions' model", both(freeu(), set_input("ks", model=["freeu", 0])), "ks", "model", "is not the model target_inversion was made with", False),
    Case("apply model is not the inversions' model", both(freeu(), set_input("apply", model=["freeu", 0])), "apply", "model", "is not the model target_inversion was made with", False),
    Case("reference inverted with another model", both(freeu(), set_input("rinv", model=["freeu", 0]), without_inspection), "apply", "reference_inversion", "is not the model", False),
    Case("features of two models matched", both(freeu(), set_input("rinv", model=["freeu", 0]), set_input("ks", reference_inversion=["tinv", 0]),
         set_input("apply", reference_inversion=["tinv", 0])), "match", "reference_features", "different models", False),
    # Refused by the first Invert to run, before it inverts: it reads its partner's schedule from the prompt.
    Case("reference inverted with another schedule", set_input("rinv", skip=1), ("tinv", "rinv"), "skip", "give both Invert nodes the same", False),
    Case("reference skip through a link", both(add("rskip", "PrimitiveInt", value=1), set_input("rinv", skip=["rskip", 0])),
         "rinv", "skip", "skip 1 here and 2 there", False),
    # Both through links, neither Invert can know the other's value: Apply compares the two inversions.
    Case("both schedules through links", both(
        add("tskip", "PrimitiveInt", value=2), add("rskip", "PrimitiveInt", value=1),
        set_input("tinv", skip=["tskip", 0]), set_input("rinv", skip=["rskip", 0])),
         "apply", "reference_inversion", "give both Invert nodes the same", False),
    Case("correspondence made for other images", both(
        add("swapped", "E4E_SemanticMatch", target_features=["rfeat", 0], reference_features=["tfeat", 0], mutual=False, min_similarity=-1.0),
        set_input("apply", correspondence=["swapped", 0])), "apply", "correspondence", "computed for", False),
    Case("features of other layers with the same width", set_input("rfeat", resolution="1/16"), "match", "reference_features", "different layers", False),
    Case("match target_mask of another aspect", both(solid_mask("m32x16", 32, 16), set_input("match", target_mask=["m32x16", 0])), "match", "target_mask", "32x16 mask", False),
    Case("transfer object reference_mask of another aspect", both(
        objects_branch(), solid_mask("m16x64", 16, 64), set_input("obj", reference_mask=["m16x64", 0])), "obj", "reference_mask", "16x64 mask", False),
    Case("visualize target_image of another aspect", both(
        add("wide", "ImageScale", image=["timg", 0], upscale_method="nearest-exact", width=128, height=64, crop="disabled"),
        set_input("vis", target_image=["wide", 0])), "vis", "target_image", "128x64 image", False),
    Case("features step past the inversion", set_input("tfeat", step=20), "tfeat", "step", "must be between", False),
    Case("features given both latent and inversion", set_input("tfeat", latent=["tlat", 0]), "tfeat", "latent", "not both", False),
    Case("invert an 8x8 image", both(
        add("tiny", "ImageScale", image=["timg", 0], upscale_method="nearest-exact", width=8, height=8, crop="disabled"),
        add("tinylat", "VAEEncode", pixels=["tiny", 0], vae=["ckpt", 2]),
        set_input("tinv", latent=["tinylat", 0])), "tinv", "latent", "smaller than one token", False),
    Case("apply target_mask with values above 1", both(solid_mask("m3x", 64, 64, 3.0), set_input("apply", target_mask=["m3x", 0])),
         "apply", "target_mask", "values range from 3 to 3", False),
    Case("published ksampler reference_mask with values above 1", both(
        solid_mask("m3x", 64, 64, 3.0), set_input("apply", behaviour="published code", feature_source="live branches"),
        set_input("ks", reference_mask=["m3x", 0])), "ks", "reference_mask", "values range from 3 to 3", False),
    Case("match reference_mask with negative values", both(solid_mask("mneg", 64, 64, -1.0), set_input("match", reference_mask=["mneg", 0])),
         "match", "reference_mask", "values range from -1 to -1", False),
    Case("one invert with record_features off", both(set_input("rinv", record_features=False), without_inspection),
         "apply", "feature_source", "reference_inversion was inverted with record_features off", False),
    # ddim_uniform gives the inversions one step more than asked (7 of 6), so 5 generation steps from skip 2.
    Case("replay pieces given other sigmas of the same length", both(
        replay_pieces_branch(2), add("sched", "BasicScheduler", model=["ckpt", 0], scheduler="karras", steps=STEPS - SKIP + 1, denoise=1.0),
        set_input("custom", sigmas=["sched", 0])), "custom", "sigmas", "values differ", False),
    Case("area conditioning into invert", both(
        add("area", "ConditioningSetArea", conditioning=["pos", 0], width=64, height=64, x=0, y=0, strength=1.0),
        add("posarea", "ConditioningCombine", conditioning_1=["pos", 0], conditioning_2=["area", 0]),
        set_input("tinv", positive=["posarea", 0])), "tinv", "positive", "area conditioning (entry 2 of 2)", False),
    Case("invert a video latent", both(
        add("video", "EmptyHunyuanLatentVideo", width=64, height=64, length=5, batch_size=1),
        set_input("tinv", latent=["video", 0])), "tinv", "latent", "video latent", False),
]


# ---- the server -----------------------------------------------------------------------------------------------

def post_prompt(url: str, prompt: dict) -> tuple[int, dict]:
    data = json.dumps({"prompt": prompt, "client_id": uuid.uuid4().hex}).encode()
    request = urllib.request.Request(url + "/prompt", data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def history(url: str, prompt_id: str, timeout: float = 1800.0) -> dict:
    """The history entry once the prompt finished (successfully or not)."""
    try:
        return wait_for(url, prompt_id, timeout=timeout)
    except RuntimeError:
        with urllib.request.urlopen(f"{url}/history/{prompt_id}", timeout=10) as response:
            return json.loads(response.read())[prompt_id]


OUTPUT_CLASSES = {"SaveImage", "E4E_VisualizeCorrespondence"}


def outputs(prompt: dict) -> list[str]:
    return [node_id for node_id, node in prompt.items() if node["class_type"] in OUTPUT_CLASSES]


def depends_on(prompt: dict, node_id: str, target: str) -> bool:
    """Whether node_id is target or takes, directly or not, an input from it."""
    if node_id == target:
        return True
    links = [v[0] for v in prompt[node_id]["inputs"].values() if isinstance(v, list) and len(v) == 2]
    return any(depends_on(prompt, upstream, target) for upstream in links)


def answers(url: str) -> bool:
    with urllib.request.urlopen(url + "/queue", timeout=10) as response:
        return response.status == 200 and "queue_running" in json.loads(response.read())


def run_saved(server, prompt: dict, timeout: float = 1800.0):
    """POST the prompt, require success, return the image it saved (uint8 [H, W, C])."""
    status, body = post_prompt(server.url, copy.deepcopy(prompt))
    assert status == 200, body
    entry = history(server.url, body["prompt_id"], timeout=timeout)
    assert entry["status"]["status_str"] == "success", entry["status"]
    return saved_pixels(server.base, entry)


def run_good(server):
    return run_saved(server, good_prompt())


@contextlib.contextmanager
def tiny_sd15_server(base_name: str):
    """A real server in .e4e/<base_name> with the tiny SD1.5 checkpoint and the demo images (the battery's graph runs)."""
    with start_server(base_name, timeout=900) as running:
        write_tiny_sd15_checkpoint(running.base / "models" / "checkpoints" / CHECKPOINT_NAME)
        write_demo_images(running.base / "input")
        yield running


@pytest.fixture(scope="module")
def server():
    with tiny_sd15_server("battery-base") as running:
        yield running


@pytest.fixture(scope="module")
def pixels_before(server):
    return run_good(server)


def test_the_battery_is_large_and_distinct():
    assert len(CASES) >= 40
    assert len({case.name for case in CASES}) == len(CASES)
    prompts = []
    for case in CASES:
        prompt = good_prompt()
        case.edit(prompt)
        prompts.append(json.dumps(prompt, sort_keys=True, default=str))
    assert len(set(prompts)) == len(CASES), "two cases post the same prompt"


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name.replace(" ", "_"))
def test_bad_input_is_refused_naming_the_input(server, pixels_before, case):
    prompt = good_prompt()
    case.edit(prompt)
    status, body = post_prompt(server.url, copy.deepcopy(prompt))
    if case.at_prompt:
        # The host refuses the whole prompt (400) when every output needs the bad node; otherwise it accepts the
        # prompt (200), runs only the outputs that do not need it, and still lists the bad node's errors.
        every_output_needs_it = all(depends_on(prompt, out, case.node) for out in outputs(prompt))
        assert status == (400 if every_output_needs_it else 200), f"got {status}: {body}"
        if status == 200:
            assert history(server.url, body["prompt_id"])["status"]["status_str"] == "success"
        errors = body.get("node_errors", {})
        assert case.node in errors, f"error not reported by node {case.node}: {errors}"
        texts = [f"{e['message']}: {e['details']}" for e in errors[case.node]["errors"]]
        ours = [t for t in texts if case.says in t]
        assert ours, texts
        # The reason itself names the input (the host prefixes every reason with each input's name, so look past it).
        assert any(f"{case.names}:" in t.split(" - ", 1)[-1] or f"{case.names}," in t for t in ours), ours
    else:
        assert status == 200, f"expected the prompt to be accepted, got {status}: {body}"
        entry = history(server.url, body["prompt_id"])
        assert entry["status"]["status_str"] == "error", "the bad input was not refused"
        errors = [data for event, data in entry["status"]["messages"] if event == "execution_error"]
        assert len(errors) == 1
        error = errors[0]
        assert error["node_id"] in (case.node if isinstance(case.node, tuple) else (case.node,)), f"refused by {error['node_id']} ({error['node_type']}), not {case.node}: {error['exception_message']}"
        assert error["exception_type"].endswith("ValueError"), error["exception_type"]
        message = error["exception_message"]
        assert case.names in message and case.says in message, message
    assert answers(server.url)


def test_after_the_battery_a_good_run_gives_the_same_pixels(server, pixels_before):
    import numpy as np

    request = urllib.request.Request(server.url + "/free", data=json.dumps({"free_memory": True}).encode(),
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=10).close()  # drop every cached output: the run below recomputes all
    time.sleep(5)  # the prompt worker wakes on the flag and resets its caches before the next prompt arrives
    after = run_good(server)
    assert np.array_equal(after, pixels_before)


# A prompt of about 540 tokens: ComfyUI cannot pad a 77-token negative to share its batch, so every step runs the
# conditional and the unconditional branch in model calls of their own (Invert crashed on that before).
LONG_PROMPT = ", ".join(["a photo of a small bird with a long tail and bright feathers"] * 35)


@pytest.mark.parametrize("source", ["recorded at inversion", "live branches"])
def test_a_long_prompt_runs(server, pixels_before, source):
    import numpy as np

    prompt = good_prompt()
    prompt["pos"]["inputs"]["text"] = LONG_PROMPT
    set_input("apply", feature_source=source)(prompt)
    pixels = run_saved(server, prompt)
    assert pixels.shape == pixels_before.shape and pixels.std() > 0
    assert not np.array_equal(pixels, pixels_before), "the long prompt changed nothing"


def test_live_branches_take_inversions_that_recorded_nothing(server, pixels_before):
    prompt = good_prompt()
    without_inspection(prompt)
    both(set_input("tinv", record_features=False), set_input("rinv", record_features=False),
         set_input("apply", feature_source="live branches"))(prompt)
    pixels = run_saved(server, prompt)
    assert pixels.shape == pixels_before.shape and pixels.std() > 0

"""Model families end to end through the real ComfyUI server: SD2.x with v-prediction, SDXL, and a refused SD3.

The models are tiny random-weight files (tests/support/tiny_families.py) that ComfyUI's stock loaders detect as the
family: UNETLoader from models/diffusion_models, VAELoader's "taesd" / "taesdxl" (TAESD-shaped files in
models/vae_approx), DualCLIPLoader (type sdxl) for SDXL's full-size CLIP-L + CLIP-G, and the stock
LotusConditioning node for SD2's [1, 77, 1024] conditioning (no text encoder needed). The transfer graph is the
server battery's (E4E_Invert x2 -> E4E_ApplyEyeForEye -> E4E_KSampler -> VAEDecode -> SaveImage, 64x64, 6 steps,
skip 2) on these loaders.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

from run_workflow import start_server  # noqa: E402
from test_server_battery import good_prompt, history, post_prompt, run_saved, without_inspection  # noqa: E402
from tiny_checkpoint import write_demo_images  # noqa: E402
from tiny_families import CLIP_G_FILE, CLIP_L_FILE, UNET_FILES, detected_family, write_all  # noqa: E402

SUPPORTED_TEXT = "SD1.x, SD2.x (eps or v prediction) and SDXL UNets"


def loaders(family: str, sampling: str = "v_prediction") -> dict:
    """Stock loader nodes giving the ids the battery graph links to: model, pos, neg, vae."""
    unet = {"class_type": "UNETLoader", "inputs": {"unet_name": UNET_FILES[family], "weight_dtype": "default"}}
    if family == "SD20":
        return {
            "unet": unet,
            "model": {"class_type": "ModelSamplingDiscrete", "inputs": {"model": ["unet", 0], "sampling": sampling, "zsnr": False}},
            "pos": {"class_type": "LotusConditioning", "inputs": {}},
            "neg": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["pos", 0]}},
            "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "taesd"}},
        }
    if family == "SDXL":
        return {
            "model": unet,
            "clip": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": CLIP_L_FILE, "clip_name2": CLIP_G_FILE, "type": "sdxl"}},
            "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a bird", "clip": ["clip", 0]}},
            "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["clip", 0]}},
            "vae": {"class_type": "VAELoader", "inputs": {"vae_name": "taesdxl"}},
        }
    raise ValueError(family)


def transfer_prompt(family: str, sampling: str = "v_prediction", apply: bool = True) -> dict:
    """The battery's transfer graph (without its inspection branch) on the family's stock loaders; with
    apply=False the sampler takes the MODEL directly (no transfer)."""
    prompt = good_prompt()
    without_inspection(prompt)
    del prompt["ckpt"], prompt["pos"], prompt["neg"]
    for node in prompt.values():
        for name, value in node["inputs"].items():
            if value in (["ckpt", 0], ["ckpt", 2]):
                node["inputs"][name] = ["model", 0] if value[1] == 0 else ["vae", 0]
    prompt.update(loaders(family, sampling))
    prompt["save"]["inputs"]["filename_prefix"] = f"families_{family}"
    if not apply:
        del prompt["apply"]
        prompt["ks"]["inputs"]["model"] = ["model", 0]
    return prompt


@pytest.fixture(scope="module")
def server(host):
    """A server whose base holds the tiny family models (written before it starts, kept between runs)."""
    base_name = "families-base"
    from comfy_host import base_directory

    base = base_directory(base_name)
    write_all(base / "models")  # `host` booted ComfyUI in this process, so the writers use its classes
    write_demo_images(base / "input")
    with start_server(base_name, timeout=900) as running:
        yield running


def run_image(server, prompt: dict):
    """POST the prompt, require success, return the saved image as float pixels in [0, 1]."""
    return run_saved(server, prompt, timeout=900).astype("float64") / 255.0


def run_error(server, prompt: dict) -> dict:
    """POST the prompt, require it to be accepted and then fail; return the execution_error message."""
    status, body = post_prompt(server.url, copy.deepcopy(prompt))
    assert status == 200, body
    entry = history(server.url, body["prompt_id"], timeout=900)
    assert entry["status"]["status_str"] == "error", "the prompt was not refused"
    errors = [data for event, data in entry["status"]["messages"] if event == "execution_error"]
    assert len(errors) == 1
    return errors[0]


def test_stock_detection_picks_the_families(server):
    """What ComfyUI's detection (the one UNETLoader uses) makes of each file: SDXL is the SDXL class itself."""
    models = server.base / "models" / "diffusion_models"
    assert {family: detected_family(models / name) for family, name in UNET_FILES.items()} == {
        "SD20": "SD20", "SDXL": "SDXL", "SD3": "SD3"}


def test_the_pack_sees_sd2_v_prediction_and_sdxl(host, server):
    """In-process, loaded as UNETLoader loads them (comfy.sd.load_diffusion_model), then the stock
    ModelSamplingDiscrete: the family and sampling the pack's model_info reads."""
    import comfy.model_sampling
    import comfy.sd

    model_info = sys.modules[host.pack.__name__ + ".nodes.model_info"]
    models = server.base / "models" / "diffusion_models"
    sd2 = comfy.sd.load_diffusion_model(str(models / UNET_FILES["SD20"]))
    loaded = sd2.get_model_object("model_sampling")  # eps: there is no output_blocks.11 to detect v from
    assert isinstance(loaded, comfy.model_sampling.EPS) and not isinstance(loaded, comfy.model_sampling.V_PREDICTION)
    sd2v = host.nodes.NODE_CLASS_MAPPINGS["ModelSamplingDiscrete"]().patch(sd2, "v_prediction", False)[0]
    assert isinstance(sd2v.get_model_object("model_sampling"), comfy.model_sampling.V_PREDICTION)
    sdxl = comfy.sd.load_diffusion_model(str(models / UNET_FILES["SDXL"]))
    for model, family in ((sd2v, "SD20"), (sdxl, "SDXL")):
        model_info.check_supported(model)
        assert model_info.model_family(model) == family
        assert model_info.finest_decoder_layers(model), family


def test_sd2_v_prediction_transfer_runs_through_the_server(server):
    """SD2.x UNet made v-prediction by the stock ModelSamplingDiscrete node (ComfyUI's automatic v-pred test needs
    output_blocks.11, which the tiny two-level UNet lacks): the transfer runs, the image is not blank, Apply
    changed it, and v_prediction is in effect (the same graph with eps sampling gives another image)."""
    import numpy as np

    transfer = run_image(server, transfer_prompt("SD20"))
    assert transfer.std() > 0.01, "blank image"
    plain = run_image(server, transfer_prompt("SD20", apply=False))
    assert np.abs(transfer - plain).mean() > 1e-3, "Apply Eye-for-an-eye changed nothing"
    eps = run_image(server, transfer_prompt("SD20", sampling="eps"))
    assert np.abs(transfer - eps).mean() > 1e-3, "v_prediction sampling gave the eps image"


def test_sdxl_transfer_runs_through_the_server(server):
    """SDXL UNet, CLIP-L + CLIP-G through DualCLIPLoader (pooled output feeds SDXL's adm), taesdxl VAE."""
    import numpy as np

    transfer = run_image(server, transfer_prompt("SDXL"))
    assert transfer.std() > 0.01, "blank image"
    plain = run_image(server, transfer_prompt("SDXL", apply=False))
    assert np.abs(transfer - plain).mean() > 1e-3, "Apply Eye-for-an-eye changed nothing"


def test_the_server_run_sees_both_families(server):
    """Through the server: SD2 inversions given to Apply with the SDXL MODEL are refused, naming both families
    as the pack saw them."""
    prompt = transfer_prompt("SD20")
    prompt.update({f"xl_{k}": v for k, v in loaders("SDXL").items()})
    prompt["xl_pos"]["inputs"]["clip"] = prompt["xl_neg"]["inputs"]["clip"] = ["xl_clip", 0]
    prompt["apply"]["inputs"]["model"] = ["xl_model", 0]
    error = run_error(server, prompt)
    assert error["node_id"] == "apply", error
    assert "model is a SDXL model but target_inversion was made with a SD20 model" in error["exception_message"]


def test_sd3_is_refused_at_the_first_pack_node(server):
    """A tiny SD3 (MMDiT, flow) file through UNETLoader: E4E_Invert refuses it, naming SD3 and what is supported."""
    prompt = transfer_prompt("SD20")
    del prompt["unet"]
    prompt["model"] = {"class_type": "UNETLoader", "inputs": {"unet_name": UNET_FILES["SD3"], "weight_dtype": "default"}}
    prompt["sd3"] = {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    for invert in ("tinv", "rinv"):
        prompt[invert]["inputs"]["latent"] = ["sd3", 0]
    error = run_error(server, prompt)
    assert error["node_type"] == "E4E_Invert", error
    assert error["exception_type"].endswith("UnsupportedModelError"), error["exception_type"]
    message = error["exception_message"]
    assert message.startswith("model: the MODEL is a SD3 model"), message
    assert SUPPORTED_TEXT in message, message

"""The documented run as published, piece by piece, against literal translations of the authors' code
(sooyeon-go/eye_for_an_eye), on tiny real ComfyUI UNets with seeded random weights.

- FreeU: their FreeUUNet2DConditionModel.forward (models/unet_2d_condition.py), written over the tiny UNet's
  own modules (diffusers' up block i = the i-th group of num_res_blocks + 1 output blocks), against
  E4E_FreeUPublished. Their 1280 / 640 are 4x / 2x model_channels (128 / 64 on the tiny UNet).
- The whole run: their generation stage (tests/test_faithful.py's translation, imported) on their FreeU UNet,
  with masks into matching and masked AdaIN, against FreeU (as published) -> Invert -> Apply (live branches,
  published code) -> KSampler (Eye-for-an-eye).

Each comparison is paired with a check that it can fail: the piece switched off or swapped lands elsewhere.
"""

from __future__ import annotations

import pytest
import torch

from conftest import run_node
from tiny_models import conditioning, tiny_sd15

# their hard-coded numbers (models/unet_2d_condition.py)
B1, B2, S1, S2 = 1.2, 1.4, 0.9, 0.2


# ----------------------------------------------------------------------------------------------------------------
# Their FreeU UNet, translated
# ----------------------------------------------------------------------------------------------------------------


def Fourier_filter(x, threshold, scale):
    """Their Fourier_filter (the mask is made on x's device instead of .cuda())."""
    x_freq = torch.fft.fftn(x, dim=(-2, -1))
    x_freq = torch.fft.fftshift(x_freq, dim=(-2, -1))
    B, C, H, W = x_freq.shape
    mask = torch.ones((B, C, H, W), device=x.device)
    crow, ccol = H // 2, W // 2
    mask[..., crow - threshold:crow + threshold, ccol - threshold:ccol + threshold] = scale
    x_freq = x_freq * mask
    x_freq = torch.fft.ifftshift(x_freq, dim=(-2, -1))
    return torch.fft.ifftn(x_freq, dim=(-2, -1)).real


def their_freeu_unet(unet, sample, timesteps, context, transformer_options=None, freeu=True):
    """FreeUUNet2DConditionModel.forward on a ComfyUI UNet: down, mid, then per up block the Free-U trick on the
    backbone `sample` before the block. `transformer_options` carries attention patches (e.g. their processor)."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import forward_timestep_embed, timestep_embedding

    options = {"patches": {}, **(transformer_options or {})}
    options["original_shape"] = list(sample.shape)
    options["transformer_index"] = 0
    big, small = 4 * unet.model_channels, 2 * unet.model_channels  # 1280 and 640 in SD1.5
    emb = unet.time_embed(timestep_embedding(timesteps, unet.model_channels, repeat_only=False).to(sample.dtype))
    down_block_res_samples = []
    for i, module in enumerate(unet.input_blocks):
        options["block"] = ("input", i)
        sample = forward_timestep_embed(module, sample, emb, context, options)
        down_block_res_samples.append(sample)
    options["block"] = ("middle", 0)
    sample = forward_timestep_embed(unet.middle_block, sample, emb, context, options)
    per_block = len(unet.output_blocks) // len(unet.channel_mult)  # resnets per up block
    up_blocks = [list(range(k, k + per_block)) for k in range(0, len(unet.output_blocks), per_block)]
    for upsample_block in up_blocks:
        # Add the Free-U trick here!
        if freeu and sample.shape[1] == big:
            sample[:, :big // 2] *= B1
            sample = Fourier_filter(sample, threshold=1, scale=S1)
        if freeu and sample.shape[1] == small:
            sample[:, :small // 2] *= B2
            sample = Fourier_filter(sample, threshold=1, scale=S2)
        for i in upsample_block:
            options["block"] = ("output", i)
            sample = torch.cat([sample, down_block_res_samples.pop()], dim=1)
            output_shape = down_block_res_samples[-1].shape if down_block_res_samples else None
            sample = forward_timestep_embed(unet.output_blocks[i], sample, emb, context, options, output_shape)
    return unet.out(sample)


# ----------------------------------------------------------------------------------------------------------------
# FreeU (as published)
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model(host):
    return tiny_sd15(seed=1)


def unet_call(model, x, t, context):
    """The pack's side: the patched model's UNet with the model's own transformer_options (its FreeU patch)."""
    options = model.model_options["transformer_options"]
    return model.model.diffusion_model(x, t, context=context, transformer_options={**options, "patches": dict(options.get("patches", {}))})


def test_freeu_equals_their_freeu_unet(node, model):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 16, 16, generator=generator)
    t = torch.tensor([500.0, 500.0])
    context = torch.cat([conditioning(10)[0][0], conditioning(11)[0][0]])
    (patched,) = run_node(node("E4E_FreeUPublished"), model=model, b1=B1, b2=B2, s1=S1, s2=S2)
    unet = model.model.diffusion_model
    expected = their_freeu_unet(unet, x, t, context)
    got = unet_call(patched, x, t, context)
    difference = float((got - expected).abs().max())
    print(f"FreeU (as published) vs their FreeU UNet: max |diff| = {difference:.2e}")
    assert difference <= 1e-5
    # it can fail: no FreeU, and ComfyUI's FreeU node (skip filtered, every block scaled), land elsewhere
    assert float((unet_call(model, x, t, context) - expected).abs().max()) > 1e-3
    assert float((their_freeu_unet(unet, x.clone(), t, context, freeu=False) - got).abs().max()) > 1e-3
    (comfy_freeu,) = node("FreeU")().patch(model, B1, B2, S1, S2)
    assert float((unet_call(comfy_freeu, x, t, context) - expected).abs().max()) > 1e-3
    assert patched is not model and "output_block_patch" not in model.model_options["transformer_options"].get("patches", {})


def test_freeu_is_applied_once_and_refuses_other_families_and_comfys_freeu(host, node, model):
    from tiny_models import tiny_sdxl

    freeu = node("E4E_FreeUPublished")
    (once,) = run_node(freeu, model=model, b1=B1, b2=B2, s1=S1, s2=S2)
    (again,) = run_node(freeu, model=once, b1=B1, b2=B2, s1=S1, s2=S2)
    (other,) = run_node(freeu, model=once, b1=1.0, b2=1.0, s1=1.0, s2=1.0)
    patches = lambda m: m.model_options["transformer_options"]["patches"]["output_block_patch"]  # noqa: E731
    assert patches(again) == patches(once) and len(patches(again)) == 1  # same numbers: nothing changes
    assert len(patches(other)) == 1 and patches(other)[0] is not patches(once)[0]  # other numbers replace it
    run_node(freeu, model=tiny_sdxl(seed=2), b1=B1, b2=B2, s1=S1, s2=S2)  # SDXL has the stage layout too
    (comfy_freeu,) = node("FreeU")().patch(model, B1, B2, S1, S2)
    with pytest.raises(ValueError, match="model: it already carries ComfyUI's FreeU"):
        run_node(freeu, model=comfy_freeu, b1=B1, b2=B2, s1=S1, s2=S2)
    flux_like = model.clone()
    flux_like.model = type("Model", (), {"model_config": type("Flux", (), {})()})()
    with pytest.raises(host.pack.nodes.model_info.UnsupportedModelError, match="model: the MODEL is a Flux model"):
        run_node(freeu, model=flux_like, b1=B1, b2=B2, s1=S1, s2=S2)

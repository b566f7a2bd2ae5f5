"""Edit-friendly DDPM inversion and its replay in the real host."""

import pytest
import torch

from conftest import run_node
from tiny_models import conditioning, latent, tiny_sd15


@pytest.fixture(scope="module")
def model(host):
    return tiny_sd15(seed=1)


def invert(node, model, image_seed, steps, skip, cfg=3.5, size=16):
    (inv,) = run_node(
        node("E4E_Invert"), model=model, positive=conditioning(10), negative=conditioning(11),
        latent=latent(image_seed, size), steps=steps, skip=skip, cfg=cfg, seed=7, scheduler="ddim_uniform",
    )
    return inv


@pytest.mark.parametrize("skip", [0, 32])
def test_replay_reconstructs_every_inverted_latent(host, node, model, skip):
    inv = invert(node, model, image_seed=3, steps=100, skip=skip)
    seen = []
    sampling = host.pack.nodes.sampling
    latent_in = {"samples": inv.source_latent}
    guider_model = model
    import comfy.samplers

    guider = comfy.samplers.CFGGuider(guider_model)
    guider.set_conds(conditioning(10), conditioning(11))
    guider.set_cfg(3.5)
    out = guider.sample(
        sampling.InversionNoise(inv).generate_noise(latent_in), latent_in["samples"], sampling.replay_sampler(inv),
        inv.generation_sigmas, callback=lambda i, denoised, x, total: seen.append(x.clone()), disable_pbar=True,
    )
    assert len(seen) == inv.generation_steps
    for k, x in enumerate(seen[:-1], start=1):
        assert (x - inv.latents[k]).abs().max() <= 1e-4, f"step {k}"
    final = model.model.process_latent_in(out)
    assert (final - inv.reconstruction).abs().max() <= 1e-4
    # The inversion is not trivially exact: a different cfg does not retrace it.
    assert (inv.latents[1] - inv.latents[0]).abs().max() > 0.1


@pytest.mark.parametrize("family", ["v-prediction SD1.x", "SDXL"])
def test_other_families_invert_replay_and_transfer(host, node, family):
    """The layers come from the loaded model: SDXL has no attention at its finest level and two transformers per block."""
    from tiny_models import tiny_sdxl

    model = tiny_sd15(seed=4, prediction="v") if family.startswith("v") else tiny_sdxl(seed=4)
    pooled = family == "SDXL"
    positive, negative = conditioning(10, pooled=pooled), conditioning(11, pooled=pooled)

    def inv(seed):
        (out,) = run_node(node("E4E_Invert"), model=model, positive=positive, negative=negative, latent=latent(seed, 16),
                          steps=20, skip=4, cfg=3.5, seed=7, scheduler="ddim_uniform")
        return out

    target, reference = inv(3), inv(4)
    layers = host.pack.nodes.model_info.decoder_attention_layers(model)
    recorded = set(target.features.layers)
    if family == "SDXL":
        assert {layer.downscale for layer in layers} == {2, 4}
        assert ("output", 0, 1) in recorded  # second transformer of a coarse block
    assert recorded == {layer.key for layer in layers if layer.downscale in sorted({l.downscale for l in layers})[:2]}

    def sample(m):
        (out,) = run_node(node("E4E_KSampler"), model=m, positive=positive, negative=negative,
                          target_inversion=target, reference_inversion=reference, cfg=3.5, adain_start=-1)
        return model.model.process_latent_in(out["samples"])

    assert (sample(model) - target.reconstruction).abs().max() <= 1e-4
    (patched,) = run_node(node("E4E_ApplyEyeForEye"), model=model, reference_inversion=reference, target_inversion=target,
                          start=2, end=-1, refresh_every=0, refresh_until=0, mode="rearrange features (q, k, v)")
    assert (sample(patched) - target.reconstruction).abs().max() > 1e-2


def test_cancel_stops_inversion_and_sampling(node, model):
    import comfy.model_management as mm

    before = repr(model.model_options)
    for run in (
        lambda: invert(node, model, image_seed=3, steps=10, skip=2),
        lambda: run_node(node("E4E_ExtractFeatures"), model=model, positive=conditioning(10), latent=latent(3, 16),
                         resolution="1/8", layer="all", timestep=261, ensemble=4, seed=0, step=0),
    ):
        mm.interrupt_current_processing(True)
        try:
            with pytest.raises(mm.InterruptProcessingException):
                run()
        finally:
            mm.interrupt_current_processing(False)
    assert repr(model.model_options) == before
    inv = invert(node, model, image_seed=3, steps=10, skip=2)  # works again once the flag is cleared
    mm.interrupt_current_processing(True)
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run_node(node("E4E_KSampler"), model=model, positive=conditioning(10), negative=conditioning(11),
                     target_inversion=inv, cfg=2.5, adain_start=-1)
    finally:
        mm.interrupt_current_processing(False)


def test_replay_pieces_drive_comfyuis_own_sampler_custom_advanced(node, model):
    """NOISE, SAMPLER, SIGMAS, LATENT from the pack + stock CFGGuider + SamplerCustomAdvanced == E4E_KSampler."""
    target, reference = invert(node, model, image_seed=3, steps=20, skip=6), invert(node, model, image_seed=4, steps=20, skip=6)
    noise, sampler, sigmas, latent_in = run_node(node("E4E_ReplayPieces"), target_inversion=target, reference_inversion=reference, adain_start=8)
    (guider,) = run_node(node("CFGGuider"), model=model, positive=conditioning(10), negative=conditioning(11), cfg=2.5)
    out, _ = run_node(node("SamplerCustomAdvanced"), noise=noise, guider=guider, sampler=sampler, sigmas=sigmas, latent_image=latent_in)
    (expected,) = run_node(node("E4E_KSampler"), model=model, positive=conditioning(10), negative=conditioning(11),
                           target_inversion=target, reference_inversion=reference, cfg=2.5, adain_start=8)
    assert torch.allclose(out["samples"], expected["samples"], atol=1e-5)
    (no_adain,) = run_node(node("E4E_KSampler"), model=model, positive=conditioning(10), negative=conditioning(11),
                           target_inversion=target, reference_inversion=reference, cfg=2.5, adain_start=-1)
    assert not torch.allclose(no_adain["samples"], expected["samples"], atol=1e-3)
    with pytest.raises(ValueError, match="connect the LATENT that was inverted"):
        noise.generate_noise({"samples": latent_in["samples"] + 1})
    with pytest.raises(ValueError, match="sigmas: use the SIGMAS of the target inversion"):
        run_node(node("SamplerCustomAdvanced"), noise=noise, guider=guider, sampler=sampler, sigmas=sigmas[2:], latent_image=latent_in)


def test_nodes_called_outside_comfyuis_executor_keep_no_autograd_graph(node, model):
    """ComfyUI's executor runs nodes in inference mode; a script calling them directly must not build a graph
    over every UNet call (the CPU bench held over 10 GB that way)."""
    with torch.inference_mode(False), torch.enable_grad():
        inv = invert(node, model, image_seed=3, steps=4, skip=1)
        assert not inv.noise_maps.requires_grad and not inv.latents.requires_grad
        (out,) = run_node(
            node("E4E_KSampler"), model=model, positive=conditioning(10), negative=conditioning(11), target_inversion=inv,
            cfg=2.5, adain_start=-1,
        )
        assert not out["samples"].requires_grad

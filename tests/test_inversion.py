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

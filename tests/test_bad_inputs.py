"""Bad input gets an error that names the input to fix, and leaves the caller's model unpatched."""

import pytest
import torch

from conftest import run_node
from tiny_models import conditioning, latent, tiny_sd15

TRANSFER = "rearrange features (q, k, v)"
SCHEDULE = dict(start=1, end=-1, refresh_every=0, refresh_until=0)


@pytest.fixture(scope="module")
def model(host):
    return tiny_sd15(seed=1)


def invert(node, model, steps=8, skip=2, size=16, batch=1, seed=3):
    (inv,) = run_node(node("E4E_Invert"), model=model, positive=conditioning(10), negative=conditioning(11),
                      latent=latent(seed, size, batch), steps=steps, skip=skip, cfg=2.0, seed=0, scheduler="ddim_uniform")
    return inv


def apply(node, model, reference, target, **extra):
    return run_node(node("E4E_ApplyEyeForEye"), model=model, reference_inversion=reference, target_inversion=target,
                    mode=extra.pop("mode", TRANSFER), **SCHEDULE, **extra)


def test_flow_matching_models_are_refused_by_name(host, node, model):
    import comfy.model_sampling

    class FlowSampling(comfy.model_sampling.ModelSamplingDiscreteFlow, comfy.model_sampling.CONST):
        pass

    flow = model.clone()
    flow.add_object_patch("model_sampling", FlowSampling(model.model.model_config))
    with pytest.raises(ValueError, match="model: .* eps- or v-prediction UNet"):
        invert(node, flow)


def test_skip_beyond_the_schedule(node, model):
    with pytest.raises(ValueError, match="skip must be smaller than steps"):
        invert(node, model, steps=8, skip=8)


def test_mismatched_inversions(node, model):
    before = repr(model.model_options)
    target = invert(node, model)
    with pytest.raises(ValueError, match="give both Invert nodes the same steps, skip and scheduler"):
        apply(node, model, invert(node, model, steps=10), target)
    with pytest.raises(ValueError, match="use one reference image or as many as targets"):
        apply(node, model, invert(node, model, batch=3), invert(node, model, batch=2))
    other_model = tiny_sd15(seed=2, channel_mult=(1, 2))
    with pytest.raises(ValueError, match="recorded different layers|invert with this MODEL"):
        apply(node, other_model, target, target)
    assert repr(model.model_options) == before


def test_key_value_baseline_needs_a_same_size_reference(node, model):
    with pytest.raises(ValueError, match="mode: key/value injection"):
        apply(node, model, invert(node, model, size=24), invert(node, model), mode="reference keys and values, no rearrangement")


def test_feature_and_match_inputs(node, model):
    with pytest.raises(ValueError, match="connect model, positive and latent"):
        run_node(node("E4E_ExtractFeatures"), model=model, resolution="1/8", layer="all", timestep=261, ensemble=1, seed=0, step=0)
    target = invert(node, model)
    with pytest.raises(ValueError, match="step must be between 0 and"):
        run_node(node("E4E_ExtractFeatures"), inversion=target, resolution="1/8", layer="all", timestep=261, ensemble=1, seed=0, step=50)
    fine = run_node(node("E4E_ExtractFeatures"), inversion=target, resolution="1/8", layer="all", timestep=261, ensemble=1, seed=0, step=0)[0]
    coarse = run_node(node("E4E_ExtractFeatures"), inversion=target, resolution="1/16", layer="all", timestep=261, ensemble=1, seed=0, step=0)[0]
    with pytest.raises(ValueError, match="target_features .* and reference_features .* come from different layers"):
        run_node(node("E4E_SemanticMatch"), target_features=fine, reference_features=coarse, mutual=False, min_similarity=-1.0)
    with pytest.raises(ValueError, match="reference_mask is empty"):
        run_node(node("E4E_SemanticMatch"), target_features=fine, reference_features=fine, mutual=False, min_similarity=-1.0,
                 reference_mask=torch.zeros(128, 128))
    with pytest.raises(ValueError, match="target_mask must be a MASK"):
        run_node(node("E4E_SemanticMatch"), target_features=fine, reference_features=fine, mutual=False, min_similarity=-1.0,
                 target_mask=torch.ones(1, 1, 128, 128))


def test_sampling_a_different_latent_size_names_the_latent(node, model):
    target, reference = invert(node, model), invert(node, model, seed=4)
    (patched,) = apply(node, model, reference, target)
    noise, sampler, sigmas, latent_in = run_node(node("E4E_ReplayPieces"), target_inversion=target, adain_start=-1)
    with pytest.raises(ValueError, match="latent_image: connect the LATENT that was inverted"):
        noise.generate_noise({"samples": torch.zeros(1, 4, 24, 24)})


def test_model_fingerprint_follows_weights_and_patches(host, model):
    fingerprint = host.pack.nodes.model_info.model_fingerprint
    assert fingerprint(model.clone()) == fingerprint(model)
    lora_like = model.clone()
    key = next(k for k in lora_like.model_state_dict() if k.endswith("out.2.bias"))
    lora_like.add_patches({key: (torch.zeros(4),)}, 0.5)
    freeu_like = model.clone()
    freeu_like.set_model_output_block_patch(lambda h, hsp, options: (h, hsp))
    other_checkpoint = tiny_sd15(seed=1)  # same family, same config, another load
    prints = {fingerprint(m) for m in (model, lora_like, freeu_like, other_checkpoint)}
    assert len(prints) == 4


def test_inversions_from_another_model_are_refused_naming_both_sides(node, model):
    freeu_like = model.clone()
    freeu_like.set_model_output_block_patch(lambda h, hsp, options: (h, hsp))
    target, foreign = invert(node, model), invert(node, freeu_like, seed=4)
    with pytest.raises(ValueError, match=r"reference_inversion was made with \[.*output_block_patch.*\] is not|model \[.*\] is not the model reference_inversion was made with \[.*output_block_patch"):
        apply(node, model, foreign, target)
    with pytest.raises(ValueError, match=r"model \[.*output_block_patch.*\] is not the model target_inversion was made with \["):
        apply(node, freeu_like, target, target)
    apply(node, model.clone(), target, target)  # a plain clone is the same model


def test_sampling_another_target_than_apply_was_given_is_refused(host, node, model):
    target, reference = invert(node, model), invert(node, model, seed=4)
    (patched,) = apply(node, model, reference, target)
    with pytest.raises(ValueError, match="target_inversion is a 128x128 image .*different target_inversion"):
        run_node(node("E4E_KSampler"), model=patched, positive=conditioning(10), negative=conditioning(11),
                 target_inversion=reference, reference_inversion=reference, cfg=2.0, adain_start=-1)
    # the same inversion computed again (another object, equal noise maps) is the same target
    host.pack.nodes.sampling.check_patch_target(patched.model_options, invert(node, model))

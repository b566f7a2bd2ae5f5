"""Correspondence you can see and steer: features, matching, masks, fixed mode, multi-object."""

import pytest
import torch

from conftest import run_node
from test_attention_patch import Observer, SCHEDULE, SKIP, STEPS, _cond_rows
from tiny_models import conditioning, latent, tiny_sd15

TRANSFER = "rearrange features (q, k, v)"


@pytest.fixture(scope="module")
def model(host):
    return tiny_sd15(seed=1)


def invert(node, model, image_seed, size=16):
    with torch.inference_mode():
        (inv,) = run_node(
            node("E4E_Invert"), model=model, positive=conditioning(10), negative=conditioning(11),
            latent=latent(image_seed, size), steps=STEPS, skip=SKIP, cfg=3.5, seed=5, scheduler="ddim_uniform",
        )
    return inv


@pytest.fixture(scope="module")
def inversions(node, model):
    return {"target": invert(node, model, 3), "reference": invert(node, model, 4), "other": invert(node, model, 6, size=24)}


def sample(node, model, target, cfg=2.5, **extra):
    (out,) = run_node(
        node("E4E_KSampler"), model=model, positive=conditioning(10), negative=conditioning(11),
        target_inversion=target, cfg=cfg, adain_start=-1, **extra,
    )
    return out["samples"]


def half_mask(side, size=128):
    mask = torch.zeros(1, size, size)
    if side == "left":
        mask[..., : size // 2] = 1
    elif side == "right":
        mask[..., size // 2 :] = 1
    elif side == "top":
        mask[:, : size // 2] = 1
    return mask


@pytest.mark.parametrize("levels, expected", [((1, 2, 4), {"1/8": [4, 5], "1/16": [2, 3], "1/32": [0, 1]}), ((1, 2), {"1/8": [2, 3], "1/16": [0, 1]})])
def test_feature_extractor_reads_the_loaded_decoder_layout(node, levels, expected):
    model = tiny_sd15(seed=2, channel_mult=levels)
    for resolution, blocks in expected.items():
        (features,) = run_node(
            node("E4E_ExtractFeatures"), model=model, positive=conditioning(10), latent=latent(3, 16),
            resolution=resolution, layer="all", timestep=261, ensemble=2, seed=0, step=0,
        )
        grid = 16 // {"1/8": 1, "1/16": 2, "1/32": 4}[resolution]
        assert features.layers == tuple(f"output.{b}.0" for b in blocks)
        assert features.grid == (grid, grid) and features.tokens.shape[:2] == (1, grid * grid)
    if len(levels) == 2:
        with pytest.raises(ValueError, match="available: output.0.0"):
            run_node(node("E4E_ExtractFeatures"), model=model, positive=conditioning(10), latent=latent(3, 16),
                     resolution="1/32", layer="all", timestep=261, ensemble=1, seed=0, step=0)


def test_dift_ensemble_averages_draws(node, model):
    args = dict(model=model, positive=conditioning(10), latent=latent(3, 16), resolution="1/16", layer="output.2.0", timestep=261, step=0)
    (one,) = run_node(node("E4E_ExtractFeatures"), ensemble=1, seed=0, **args)
    (again,) = run_node(node("E4E_ExtractFeatures"), ensemble=1, seed=0, **args)
    (other_seed,) = run_node(node("E4E_ExtractFeatures"), ensemble=1, seed=1, **args)
    (four,) = run_node(node("E4E_ExtractFeatures"), ensemble=4, seed=0, **args)
    assert torch.equal(one.tokens, again.tokens)
    assert not torch.allclose(one.tokens, other_seed.tokens)
    assert not torch.allclose(one.tokens, four.tokens)


def test_inversion_features_are_what_the_patch_matches(node, inversions):
    target = inversions["target"]
    (features,) = run_node(node("E4E_ExtractFeatures"), inversion=target, resolution="1/8", layer="output.5.0", timestep=261, ensemble=1, seed=0, step=4)
    recorded = target.features.at(("output", 5, 0), SKIP + 4).float()
    assert torch.allclose(features.tokens, torch.nn.functional.normalize(recorded, dim=-1))


def test_semantic_match_with_masks_and_mutual_check(host, node, inversions):
    extract = lambda inv: run_node(node("E4E_ExtractFeatures"), inversion=inv, resolution="1/8", layer="all", timestep=261, ensemble=1, seed=0, step=4)[0]
    target, reference = extract(inversions["target"]), extract(inversions["other"])  # 16x16 vs 24x24 grids
    (corr,) = run_node(node("E4E_SemanticMatch"), target_features=target, reference_features=reference, mutual=False, min_similarity=-1.0,
                       target_mask=half_mask("left"), reference_mask=half_mask("top"))
    assert corr.target_grid == (16, 16) and corr.reference_grid == (24, 24)
    assert torch.equal(corr.valid.reshape(16, 16), half_mask("left", 16)[0].bool())
    assert bool((corr.index // 24 < 12).all()), "a masked-out reference token was chosen"
    (mutual,) = run_node(node("E4E_SemanticMatch"), target_features=target, reference_features=reference, mutual=True, min_similarity=-1.0)
    assert 0 < int(mutual.valid.sum()) < mutual.valid.numel()
    (self_match,) = run_node(node("E4E_SemanticMatch"), target_features=target, reference_features=target, mutual=True, min_similarity=-1.0)
    assert torch.equal(self_match.index[0], torch.arange(256)) and bool(self_match.valid.all())


def test_empty_mask_is_a_clear_error_and_patches_nothing(node, model, inversions):
    before = repr(model.model_options)
    with pytest.raises(ValueError, match="target_mask is empty"):
        run_node(node("E4E_ApplyEyeForEye"), model=model, reference_inversion=inversions["reference"], target_inversion=inversions["target"],
                 mode=TRANSFER, target_mask=torch.zeros(1, 128, 128), **SCHEDULE)
    assert repr(model.model_options) == before


def test_fixed_identity_correspondence_reproduces_per_step_matching_on_identical_images(host, node, model, inversions):
    target = inversions["target"]
    per_step = run_node(node("E4E_ApplyEyeForEye"), model=model, reference_inversion=target, target_inversion=target, mode=TRANSFER, **SCHEDULE)[0]
    identity = host.pack.core.correspondence.identity_correspondence((4, 4))  # resampled to every layer's grid
    fixed = run_node(node("E4E_ApplyEyeForEye"), model=model, reference_inversion=target, target_inversion=target, mode=TRANSFER, correspondence=identity, **SCHEDULE)[0]
    a, b = sample(node, per_step, target, cfg=3.5), sample(node, fixed, target, cfg=3.5)
    assert torch.allclose(a, b, atol=1e-5)
    # and a fixed correspondence is really used: a shifted one changes the result
    shifted = host.pack.core.correspondence.identity_correspondence((4, 4))
    shifted = type(shifted)(torch.roll(shifted.index, 1, dims=1), shifted.similarity, shifted.valid, (4, 4), (4, 4))
    moved = run_node(node("E4E_ApplyEyeForEye"), model=model, reference_inversion=target, target_inversion=target, mode=TRANSFER, correspondence=shifted, **SCHEDULE)[0]
    assert not torch.allclose(sample(node, moved, target, cfg=3.5), a, atol=1e-3)


def test_multi_object_transfer_takes_each_region_from_its_own_reference(host, node, model, inversions):
    core = host.pack.core
    (objects,) = run_node(node("E4E_TransferObject"), reference_inversion=inversions["reference"], target_mask=half_mask("left"), reference_mask=half_mask("top"))
    (objects,) = run_node(node("E4E_TransferObject"), reference_inversion=inversions["other"], target_mask=_quadrant(), reference_mask=half_mask("left"), objects=objects)
    before, after = Observer(), Observer()
    observed = model.clone()
    observed.set_model_attn1_patch(before)
    (patched,) = run_node(node("E4E_ApplyEyeForEyeObjects"), model=observed, target_inversion=inversions["target"], objects=objects, mode=TRANSFER, **SCHEDULE)
    patched.set_model_attn1_patch(after)
    sample(node, patched, inversions["target"], objects=objects)
    schedule = core.schedule.TransferSchedule(**SCHEDULE)
    target = inversions["target"]
    checked = 0
    for pre, post in zip(before.calls, after.calls):
        step = target.step_of_sigma(pre["sigma"])
        if pre["layer"] not in target.features.grids or schedule.phase(step - SKIP, target.generation_steps) is not core.schedule.Phase.REARRANGE:
            continue
        grid = target.features.grids[pre["layer"]]
        rows = _cond_rows(pre)
        own, new = pre["n"][rows], post["n"][rows]
        left = core.masks.token_mask(half_mask("left")[:, None], grid)[0]
        quadrant = core.masks.token_mask(_quadrant()[:, None], grid)[0]
        untouched = ~(left | quadrant)
        assert torch.equal(new[:, untouched], own[:, untouched])
        for region, name, ref_mask in ((left, "reference", half_mask("top")), (quadrant, "other", half_mask("left"))):
            bank = inversions[name].features
            ref_tokens = bank.at(pre["layer"], step)
            allowed = core.masks.token_mask(ref_mask[:, None], bank.grids[pre["layer"]])
            index, _ = core.matching.nearest_reference_index(own[:, region], ref_tokens, allowed)
            assert torch.allclose(new[:, region], core.matching.gather_tokens(ref_tokens.to(own.dtype), index))
        checked += 1
    assert checked > 0


def _quadrant(size=128):
    mask = torch.zeros(1, size, size)
    mask[:, size // 2 :, size // 2 :] = 1
    return mask

"""Loose ends of 'published code', found by checking live branches against an independent translation.

Each test here failed before its fix: the refresh rule for a start that is not a multiple of the period, the
V-injection path given a refresh, AdaIN's live reference found by object identity, and AdaIN switched off when
the KSampler's reference_inversion is left unconnected under live branches.
"""

import pytest
import torch

from conftest import run_node
from test_faithful import (  # noqa: F401 (model and inversions are the faithfulness tests' fixtures)
    ADAIN_START, CFG, REFRESH_EVERY, REFRESH_UNTIL, STEPS, SKIP, inversions, model, pack_generation, published_generation,
)
from tiny_models import conditioning, latent

LIVE = dict(mode="rearrange features (q, k, v)", feature_source="live branches", behaviour="published code")


def test_published_refresh_is_step_modulo_period_whatever_the_start(node, model, inversions):
    """Start 3, period 2: the published code refreshes on lagged steps 4, 6, 8 (not 3, 5, 7 counted from the start)."""
    target, reference = inversions["target"], inversions["reference"]
    start = 3
    assert start % REFRESH_EVERY != 0
    expected = published_generation(model, target, reference, start=start)
    got = pack_generation(node, model, target, reference, start=start)
    difference = float((got - expected).abs().max())
    print(f"published code, start {start}, period {REFRESH_EVERY}: max |diff| = {difference:.2e}")
    assert difference <= 1e-4
    # The comparison can fail: one step's difference in the schedule lands elsewhere.
    shifted = pack_generation(node, model, target, reference, start=start + 1)
    assert float((shifted - expected).abs().max()) > 1e-3


def test_values_only_with_published_code_refuses_a_refresh(node, model, inversions):
    apply = node("E4E_ApplyEyeForEye")
    values = {**LIVE, "mode": "rearrange values only"}
    schedule = dict(start=2, end=-1, refresh_every=REFRESH_EVERY, refresh_until=REFRESH_UNTIL)
    problem = apply.validate_inputs(**schedule, **values)
    assert isinstance(problem, str) and problem.startswith("refresh_every:") and "V-injection" in problem
    with pytest.raises(ValueError, match="^refresh_every: .*V-injection"):
        run_node(apply, model=model, reference_inversion=inversions["reference"], target_inversion=inversions["target"], **schedule, **values)
    assert apply.validate_inputs(**{**schedule, "refresh_every": 0}, **values) is True
    assert apply.validate_inputs(**schedule, **{**values, "behaviour": "paper"}) is True


def sample_live(node, model, target, apply_reference, adain_reference):
    (patched,) = run_node(
        node("E4E_ApplyEyeForEye"), model=model, reference_inversion=apply_reference, target_inversion=target,
        start=4, end=-1, refresh_every=REFRESH_EVERY, refresh_until=REFRESH_UNTIL, **LIVE,
    )
    inputs = {} if adain_reference is None else {"reference_inversion": adain_reference}
    (out,) = run_node(
        node("E4E_KSampler"), model=patched, positive=conditioning(10), negative=conditioning(11), target_inversion=target,
        cfg=CFG, adain_start=ADAIN_START, **inputs,
    )
    return out["samples"]


def test_live_adain_finds_the_reference_row_of_an_identical_second_inversion(node, model, inversions):
    target, reference = inversions["target"], inversions["reference"]
    (twin,) = run_node(
        node("E4E_Invert"), model=model, positive=conditioning(10), negative=conditioning(11), latent=latent(4, 16),
        steps=STEPS, skip=SKIP, cfg=3.5, seed=5, scheduler="ddim_uniform",
    )
    assert twin is not reference
    same = sample_live(node, model, target, reference, reference)
    torch.testing.assert_close(sample_live(node, model, target, reference, twin), same, rtol=0, atol=1e-6)


def test_live_adain_refuses_a_reference_the_live_branches_do_not_denoise(node, model, inversions):
    target, reference = inversions["target"], inversions["reference"]
    with pytest.raises(ValueError, match="^reference_inversion is .* which Apply Eye-for-an-eye \\(live branches\\) does not denoise"):
        sample_live(node, model, target, reference, target)


def test_live_adain_uses_applys_reference_when_the_ksampler_has_none(node, model, inversions):
    target, reference = inversions["target"], inversions["reference"]
    connected = sample_live(node, model, target, reference, reference)
    torch.testing.assert_close(sample_live(node, model, target, reference, None), connected, rtol=0, atol=1e-6)

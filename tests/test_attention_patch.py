"""The attention patch in the real UNet: what it changes, where and when."""

import pytest
import torch

from conftest import invert_pair, run_node
from tiny_models import conditioning, tiny_sd15

STEPS, SKIP = 20, 6  # 14 generation steps
SCHEDULE = dict(start=3, end=-1, refresh_every=4, refresh_until=9)  # refresh on 3, 7; rearrange 4-6, 8-13


@pytest.fixture(scope="module")
def model(host):
    return tiny_sd15(seed=1)


@pytest.fixture(scope="module")
def inversions(node, model):
    return invert_pair(node, model, STEPS, SKIP, cfg=3.5)


class Observer:
    """An attn1 patch that records what self-attention receives."""

    def __init__(self):
        self.calls = []

    def __deepcopy__(self, memo):  # survive ModelPatcher.clone()
        return self

    def __call__(self, n, context, value, extra_options):
        block = extra_options["block"]
        self.calls.append({
            "layer": (block[0], block[1], extra_options["block_index"]),
            "sigma": float(extra_options["sigmas"][0]),
            "cond_or_uncond": list(extra_options["cond_or_uncond"]),
            "n": n.clone(), "context": context.clone(), "value": value.clone(),
        })
        return n, context, value


def sample(node, model, inversions, cfg=2.5):
    (out,) = run_node(
        node("E4E_KSampler"), model=model, positive=conditioning(10), negative=conditioning(11),
        target_inversion=inversions["target"], reference_inversion=inversions["reference"], cfg=cfg, adain_start=-1,
    )
    return out["samples"]


def observed_transfer(node, model, inversions, mode="rearrange features (q, k, v)", **schedule):
    before, after = Observer(), Observer()
    observed = model.clone()
    observed.set_model_attn1_patch(before)
    (patched,) = run_node(
        node("E4E_ApplyEyeForEye"), model=observed, reference_inversion=inversions["reference"],
        target_inversion=inversions["target"], mode=mode, **{**SCHEDULE, **schedule},
    )
    patched.set_model_attn1_patch(after)
    sample(node, patched, inversions)
    assert len(before.calls) == len(after.calls) > 0
    return list(zip(before.calls, after.calls))


def expected_cond_rows(host, inversions, pre, phase, step, layer):
    core = host.pack.core
    own = pre["n"][_cond_rows(pre)]
    if phase is core.schedule.Phase.REFRESH:
        return inversions["target"].features.at(layer, step).to(own.dtype)
    reference = inversions["reference"].features.at(layer, step)
    index, _ = core.matching.nearest_reference_index(own, reference)
    return core.matching.gather_tokens(reference.to(own.dtype), index)


def _cond_rows(call):
    size = call["n"].shape[0] // len(call["cond_or_uncond"])
    return torch.cat([torch.arange(i * size, (i + 1) * size) for i, c in enumerate(call["cond_or_uncond"]) if c == 0])


def _uncond_rows(call):
    size = call["n"].shape[0] // len(call["cond_or_uncond"])
    rows = [torch.arange(i * size, (i + 1) * size) for i, c in enumerate(call["cond_or_uncond"]) if c == 1]
    return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)


def test_patch_changes_only_cond_rows_of_chosen_layers_inside_the_window(host, node, model, inversions):
    core = host.pack.core
    target = inversions["target"]
    chosen = set(target.features.layers)
    assert len({target.features.grids[layer] for layer in chosen}) == 2  # the two finest decoder grids
    schedule = core.schedule.TransferSchedule(**SCHEDULE)
    seen_phases = set()
    for pre, post in observed_transfer(node, model, inversions):
        step = target.step_of_sigma(pre["sigma"])
        phase = schedule.phase(step - SKIP, target.generation_steps)
        unchanged = pre["layer"] not in chosen or phase is core.schedule.Phase.OFF
        if unchanged:
            assert torch.equal(post["n"], pre["n"]) and torch.equal(post["value"], pre["value"])
            continue
        seen_phases.add(phase)
        uncond = _uncond_rows(pre)
        assert len(uncond) > 0
        assert torch.equal(post["n"][uncond], pre["n"][uncond]), "the uncond branch must not be rearranged"
        expected = expected_cond_rows(host, inversions, pre, phase, step, pre["layer"])
        assert torch.allclose(post["n"][_cond_rows(pre)], expected, atol=1e-6)
        assert not torch.allclose(post["n"][_cond_rows(pre)], pre["n"][_cond_rows(pre)])
        assert torch.equal(post["context"], post["n"]) and torch.equal(post["value"], post["n"])
    assert seen_phases == {core.schedule.Phase.REFRESH, core.schedule.Phase.REARRANGE}


def test_values_only_mode_keeps_queries_and_keys(host, node, model, inversions):
    changed = 0
    for pre, post in observed_transfer(node, model, inversions, mode="rearrange values only"):
        assert torch.equal(post["n"], pre["n"]) and torch.equal(post["context"], pre["context"])
        changed += not torch.equal(post["value"], pre["value"])
    assert changed > 0


def test_key_value_injection_baseline_attends_to_unrearranged_reference(host, node, model, inversions):
    core = host.pack.core
    target = inversions["target"]
    schedule = core.schedule.TransferSchedule(**SCHEDULE)
    checked = 0
    for pre, post in observed_transfer(node, model, inversions, mode="reference keys and values, no rearrangement"):
        step = target.step_of_sigma(pre["sigma"])
        if pre["layer"] not in target.features.grids or schedule.phase(step - SKIP, target.generation_steps) is not core.schedule.Phase.REARRANGE:
            continue
        rows = _cond_rows(pre)
        assert torch.equal(post["n"], pre["n"])
        reference = inversions["reference"].features.at(pre["layer"], step).to(pre["n"].dtype)
        assert torch.equal(post["context"][rows], reference) and torch.equal(post["value"][rows], reference)
        assert torch.equal(post["context"][_uncond_rows(pre)], pre["context"][_uncond_rows(pre)])
        checked += 1
    assert checked > 0


def test_a_window_that_never_opens_is_refused_and_one_that_opens_changes_the_result(node, model, inversions):
    plain = sample(node, model, inversions)
    with pytest.raises(ValueError, match="start/end: the window from generation step 500"):
        run_node(
            node("E4E_ApplyEyeForEye"), model=model, reference_inversion=inversions["reference"],
            target_inversion=inversions["target"], mode="rearrange features (q, k, v)", **{**SCHEDULE, "start": 500},
        )
    assert "attn1_patch" not in model.model_options["transformer_options"].get("patches", {})
    assert torch.equal(sample(node, model, inversions), plain)
    (active,) = run_node(
        node("E4E_ApplyEyeForEye"), model=model, reference_inversion=inversions["reference"],
        target_inversion=inversions["target"], mode="rearrange features (q, k, v)", **SCHEDULE,
    )
    assert not torch.equal(sample(node, active, inversions), plain)


def test_callers_model_is_untouched_and_reapplying_replaces(host, node, model, inversions):
    patch_type = host.pack.core.attention_patch.EyeForEyePatch
    options_before = repr(model.model_options)
    args = dict(reference_inversion=inversions["reference"], target_inversion=inversions["target"], mode="rearrange features (q, k, v)", **SCHEDULE)
    (once,) = run_node(node("E4E_ApplyEyeForEye"), model=model, **args)
    assert repr(model.model_options) == options_before
    assert "attn1_patch" not in model.model_options["transformer_options"].get("patches", {})
    (twice,) = run_node(node("E4E_ApplyEyeForEye"), model=once, **args)
    mine = [p for p in twice.model_options["transformer_options"]["patches"]["attn1_patch"] if isinstance(p, patch_type)]
    assert len(mine) == 1
    # ComfyUI deep-copies model_options on every clone; the recorded features must be shared, not copied.
    assert twice.clone().model_options["transformer_options"]["patches"]["attn1_patch"][0] is mine[0]

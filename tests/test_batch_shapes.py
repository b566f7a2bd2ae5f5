"""Every batch ComfyUI forms, in the real host: cond and uncond in separate model calls (a long prompt, a
low-memory split), several positive conditionings, an area conditioning, a batch of targets.

Each shape runs through Invert, Apply + the Eye-for-an-eye KSampler (recorded and live) and Extract Features.
Where the method defines the result, it must equal the run ComfyUI would batch whole:

- a split batch (ComfyUI's free-memory estimate made to report too little, so every chunk runs alone) equals
  the unsplit run;
- a prompt of 385 tokens (77 repeated 5 times: ComfyUI cannot batch it with a 77-token negative, so it runs
  the branches apart) equals the 77-token prompt (cross-attention over repeated keys is the same attention);
- the same positive conditioning combined twice equals it once (features are the mean over positive chunks).

An Observer patch records the chunks of every model call, so each test also proves the shape really formed.
"""

from __future__ import annotations

import contextlib

import pytest
import torch

from conftest import run_node
from tiny_models import conditioning, latent, tiny_sd15

STEPS, SKIP = 8, 2  # 6 generation steps
SCHEDULE = dict(start=1, end=-1, refresh_every=2, refresh_until=4)  # refresh on 1 and 3, rearrange the rest
RECORDED, LIVE = "recorded at inversion", "live branches"
PAPER, PUBLISHED = "paper", "published code"
TOLERANCE = dict(rtol=1e-4, atol=1e-4)


class ChunkObserver:
    """An attn1 patch that notes the chunks (cond_or_uncond) of every model call it sees."""

    def __init__(self):
        self.shapes = []

    def __deepcopy__(self, memo):  # survive ModelPatcher.clone()
        return self

    def __call__(self, n, context, value, extra_options):
        if extra_options["block"] == ("output", 3) and extra_options["block_index"] == 0:  # once per model call
            self.shapes.append(tuple(extra_options["cond_or_uncond"]))
        return n, context, value

    def formed(self) -> set:
        shapes = set(self.shapes)
        self.shapes.clear()
        return shapes


@pytest.fixture(scope="module")
def observed(host):
    """(model, observer): one tiny model for every run, so inversions, Apply and sampling agree on it."""
    model = tiny_sd15(seed=1)
    observer = ChunkObserver()
    model.set_model_attn1_patch(observer)
    return model, observer


@contextlib.contextmanager
def low_memory(monkeypatch):
    """ComfyUI batches the chunks of a step by what get_free_memory reports: report too little for two."""
    import comfy.model_management

    with monkeypatch.context() as patch:
        patch.setattr(comfy.model_management, "get_free_memory", lambda *args, **kwargs: 1)
        yield


def long_prompt(seed: int):
    """385 tokens: the 77-token conditioning repeated 5 times (more than ComfyUI pads to share a batch)."""
    ((tokens, extra),) = conditioning(seed)
    return [[tokens.repeat(1, 5, 1), extra]]


def invert(node, model, positive, negative, samples):
    (inversion,) = run_node(
        node("E4E_Invert"), model=model, positive=positive, negative=negative, latent=samples,
        steps=STEPS, skip=SKIP, cfg=3.5, seed=5, scheduler="ddim_uniform",
    )
    return inversion


def transfer(node, model, positive, negative, target, reference, source, behaviour=PAPER):
    (patched,) = run_node(
        node("E4E_ApplyEyeForEye"), model=model, reference_inversion=reference, target_inversion=target,
        mode="rearrange features (q, k, v)", feature_source=source, behaviour=behaviour, **SCHEDULE,
    )
    (out,) = run_node(
        node("E4E_KSampler"), model=patched, positive=positive, negative=negative, target_inversion=target,
        reference_inversion=reference, cfg=2.5, adain_start=4,
    )
    return out["samples"]


def dift(node, model, positive, samples):
    (features,) = run_node(
        node("E4E_ExtractFeatures"), model=model, positive=positive, latent=samples, resolution="1/8", layer="all",
        timestep=261, ensemble=2, seed=0, step=0,
    )
    return features.tokens


def pipeline(node, model, positive, negative, target_batch: int = 1) -> dict:
    """Invert target and reference, transfer with recorded features (paper) and live branches (published)."""
    target = invert(node, model, positive, negative, latent(3, 16, batch=target_batch))
    reference = invert(node, model, positive, negative, latent(4, 16))
    return {
        "target": target,
        "reference": reference,
        "recorded": transfer(node, model, positive, negative, target, reference, RECORDED),
        "live": transfer(node, model, positive, negative, target, reference, LIVE, PUBLISHED),
        "dift": dift(node, model, positive, latent(3, 16, batch=target_batch)),
    }


def assert_same_run(got: dict, expected: dict):
    for which in ("target", "reference"):
        a, b = got[which], expected[which]
        assert a.features.layers == b.features.layers
        for layer in a.features.layers:
            torch.testing.assert_close(a.features.features[layer], b.features.features[layer], **TOLERANCE)
        torch.testing.assert_close(a.noise_maps, b.noise_maps, **TOLERANCE)
    for which in ("recorded", "live", "dift"):
        torch.testing.assert_close(got[which], expected[which], **TOLERANCE)


@pytest.fixture(scope="module")
def whole(node, observed):
    """The plain graph, every step's cond and uncond in one model call."""
    model, observer = observed
    run = pipeline(node, model, conditioning(10), conditioning(11))
    assert {(0, 1), (1, 0)} & observer.formed(), "ComfyUI did not batch cond and uncond together"
    return run


def test_a_low_memory_split_gives_the_unsplit_result(node, observed, whole, monkeypatch):
    model, observer = observed
    with low_memory(monkeypatch):
        split = pipeline(node, model, conditioning(10), conditioning(11))
    assert observer.formed() == {(0,), (1,)}, "ComfyUI did not split the batch"
    assert_same_run(split, whole)


def test_a_long_prompt_runs_apart_from_the_negative_and_gives_the_short_prompts_result(node, observed, whole):
    model, observer = observed
    run = pipeline(node, model, long_prompt(10), conditioning(11))
    assert observer.formed() == {(0,), (1,)}, "ComfyUI batched the long prompt with the negative"
    assert_same_run(run, whole)


def test_one_conditioning_combined_twice_is_that_conditioning(node, observed, whole):
    model, observer = observed
    run = pipeline(node, model, conditioning(10) + conditioning(10), conditioning(11))
    assert any(shape.count(0) == 2 for shape in observer.formed()), "the two positives did not arrive as two cond chunks"
    assert_same_run(run, whole)


def test_two_positive_conditionings_split_by_memory_give_the_unsplit_result(node, observed, monkeypatch):
    model, observer = observed
    positive = conditioning(10) + conditioning(12)
    together = pipeline(node, model, positive, conditioning(11))
    assert any(shape.count(0) == 2 for shape in observer.formed())
    with low_memory(monkeypatch):
        apart = pipeline(node, model, positive, conditioning(11))
    assert observer.formed() == {(0,), (1,)}
    assert_same_run(apart, together)
    # The mean of two different conditionings is neither of them.
    alone = pipeline(node, model, conditioning(10), conditioning(11))
    observer.formed()
    assert not torch.allclose(together["recorded"], alone["recorded"], **TOLERANCE)


def test_a_batch_of_two_targets_split_by_memory_gives_the_unsplit_result(node, observed, monkeypatch):
    model, observer = observed
    together = pipeline(node, model, conditioning(10), conditioning(11), target_batch=2)
    observer.formed()
    assert together["recorded"].shape[0] == together["live"].shape[0] == 2
    with low_memory(monkeypatch):
        apart = pipeline(node, model, conditioning(10), conditioning(11), target_batch=2)
    assert observer.formed() == {(0,), (1,)}
    assert_same_run(apart, together)


def area_conditioning(seed: int):
    """Conditioning (Set Area) over the left half of a 16x16 latent, combined with a whole-image prompt."""
    ((tokens, extra),) = conditioning(seed)
    return conditioning(10) + [[tokens, {**extra, "area": (16, 8, 0, 0), "strength": 1.0, "set_area_to_bounds": False}]]


@pytest.mark.parametrize("stage", ["invert", "extract", "ksampler"])
def test_an_area_conditioning_is_refused_before_the_model_runs(node, observed, whole, stage):
    model, observer = observed
    observer.formed()
    with pytest.raises(ValueError, match=r"^positive: an area conditioning \(entry 2 of 2\)"):
        if stage == "invert":
            invert(node, model, area_conditioning(12), conditioning(11), latent(3, 16))
        elif stage == "extract":
            dift(node, model, area_conditioning(12), latent(3, 16))
        else:
            transfer(node, model, area_conditioning(12), conditioning(11), whole["target"], whole["reference"], LIVE, PUBLISHED)
    assert observer.formed() == set(), "the model ran before the refusal"


def test_comfyuis_own_sampler_with_an_area_conditioning_is_refused_naming_it(node, observed, whole):
    """Apply + ComfyUI's SamplerCustomAdvanced (no node of ours sees the conditioning): the patch refuses the crop."""
    model, _ = observed
    (patched,) = run_node(
        node("E4E_ApplyEyeForEye"), model=model, reference_inversion=whole["reference"], target_inversion=whole["target"],
        mode="rearrange features (q, k, v)", **{**SCHEDULE, "start": 0},
    )
    noise, sampler, sigmas, samples = run_node(node("E4E_ReplayPieces"), target_inversion=whole["target"], adain_start=-1)
    (guider,) = run_node(node("CFGGuider"), model=patched, positive=area_conditioning(12), negative=conditioning(11), cfg=2.5)
    with pytest.raises(ValueError, match="area conditioning"):
        run_node(node("SamplerCustomAdvanced"), noise=noise, guider=guider, sampler=sampler, sigmas=sigmas, latent_image=samples)

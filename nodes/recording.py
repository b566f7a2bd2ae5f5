"""Running a custom loop inside ComfyUI's sampling stack, and recording self-attention features while it runs."""

from __future__ import annotations

import torch

import comfy.samplers

from ..core.attention_patch import RecordingPatch
from ..core.features import FeatureRecorder


def run_loop(model, positive, negative, cfg: float, samples, sigmas, loop, seed: int, loop_options: dict) -> None:
    """Run `loop` as a KSAMPLER function on `model`, with `loop_options` as its keyword arguments.

    The noise is zero, so ComfyUI hands `loop` the clean latent in model space (after process_in);
    model loading, conditioning, other patches and ControlNet behave as in any sampler.
    """
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    sampler = comfy.samplers.KSAMPLER(loop, extra_options=loop_options)
    guider.sample(torch.zeros_like(samples), samples, sampler, sigmas, disable_pbar=True, seed=seed)


def run_recording(model, recorder: FeatureRecorder, positive, negative, cfg: float, samples, sigmas, loop, seed: int, **options) -> None:
    """Run `loop` (given `recorder` and `seed`) on a clone of `model` that feeds `recorder`."""
    recording_model = model.clone()
    recording_model.set_model_attn1_patch(RecordingPatch(recorder))
    run_loop(recording_model, positive, negative, cfg, samples, sigmas, loop, seed, {"recorder": recorder, "seed": seed, **options})

"""Running a custom loop inside ComfyUI's sampling stack while recording self-attention features."""

from __future__ import annotations

import torch

import comfy.samplers

from ..core.attention_patch import RecordingPatch
from ..core.features import FeatureRecorder


def run_recording(model, recorder: FeatureRecorder, positive, negative, cfg: float, samples, sigmas, loop, seed: int, **options) -> None:
    """Run `loop` as a KSAMPLER function on a clone of `model` that feeds `recorder`.

    The noise is zero, so ComfyUI hands `loop` the clean latent in model space (after process_in);
    model loading, conditioning, other patches and ControlNet behave as in any sampler.
    """
    recording_model = model.clone()
    recording_model.set_model_attn1_patch(RecordingPatch(recorder))
    guider = comfy.samplers.CFGGuider(recording_model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    sampler = comfy.samplers.KSAMPLER(loop, extra_options={"recorder": recorder, "seed": seed, **options})
    guider.sample(torch.zeros_like(samples), samples, sampler, sigmas, disable_pbar=True, seed=seed)

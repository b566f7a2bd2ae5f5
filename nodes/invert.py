"""E4E_Invert: edit-friendly DDPM inversion of a LATENT through ComfyUI's own sampling stack."""

from __future__ import annotations

import math

import torch

import comfy.model_management
import comfy.sample
import comfy.samplers
import comfy.utils

from ..core.ddpm import invert
from ..core.features import FeatureRecorder
from ..core.inversion import Inversion
from ..core.provenance import tensor_digest
from .api import CATEGORY, Inversion as InversionType, io
from .model_info import check_supported, finest_decoder_layers, image_downscale, model_family, model_fingerprint, unet_downscale
from .invert_pairs import schedule_mismatch
from .validation import check_image_latent, check_whole_image_conditioning, is_number, verdict, widget_problems
from .recording import run_recording


def _inversion_sampler(model, x0, sigmas, extra_args, callback, disable, *, skip, seed, recorder, out):
    """A KSAMPLER function: given zero noise, ComfyUI hands it the clean latent in model space."""
    sigma_list = [float(s) for s in sigmas]
    s_in = x0.new_ones([x0.shape[0]])
    progress = comfy.utils.ProgressBar(len(sigma_list) - 1 - skip)

    def denoise(x, i):
        return model(x, sigma_list[i] * s_in, **extra_args)

    def on_step(i):
        comfy.model_management.throw_exception_if_processing_interrupted()
        if i > skip:
            progress.update(1)
        recorder.step = i

    out["result"] = invert(denoise, x0, sigma_list, skip, seed, on_step)
    progress.update(1)
    out["x0"] = x0
    return x0


@torch.no_grad()  # called outside ComfyUI's executor (which runs in inference mode), keep no autograd graph either
def invert_latent(model, positive, negative, latent: dict, steps: int, skip: int, cfg: float, seed: int, scheduler: str, record_features: bool = True) -> Inversion:
    check_supported(model)
    check_whole_image_conditioning(positive, "positive")
    check_whole_image_conditioning(negative, "negative")
    if not 0 <= skip < steps:
        raise ValueError(f"skip must be smaller than steps ({steps}), got {skip}")
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    check_latent_for(model, samples, "latent")
    sampling = model.get_model_object("model_sampling")
    sigmas = comfy.samplers.calculate_sigmas(sampling, scheduler, steps).cpu().float()
    steps = len(sigmas) - 1  # some schedulers (ddim_uniform) give a step more than asked for

    storage = comfy.model_management.intermediate_device()
    # Features are kept in the dtype the model computes in (fp32 models keep fp32).
    recorder = FeatureRecorder(frozenset(finest_decoder_layers(model)) if record_features else frozenset(), storage)
    out: dict = {}
    run_recording(model, recorder, positive, negative, cfg, samples, sigmas, _inversion_sampler, seed, skip=skip, out=out)

    result = out["result"]
    max_sigma = float(sampling.sigma_max)
    return Inversion(
        sigmas=sigmas,
        skip=skip,
        latents=result.latents.to(storage),
        noise_maps=result.noise_maps.to(storage),
        reconstruction=result.reconstruction.to(storage),
        source_latent=samples.to(storage),
        clean_latent=out["x0"].to(storage),
        features=recorder.bank(skip, steps - 1),
        starts_at_max_sigma=math.isclose(max_sigma, float(sigmas[skip]), rel_tol=1e-5) or float(sigmas[skip]) > max_sigma,
        model_family=model_family(model),
        image_downscale=image_downscale(model),
        made_by=model_fingerprint(model),
        source_digest=tensor_digest(samples),
        seed=seed,
        cfg=cfg,
    )


def check_latent_for(model, samples, name: str) -> None:
    channels = int(model.get_model_object("latent_format").latent_channels)
    check_image_latent(samples, name, channels, unet_downscale(model), image_downscale(model))


def _problems(cls, steps, skip, cfg, scheduler) -> list[str]:
    problems = widget_problems(cls, steps=steps, skip=skip, cfg=cfg, scheduler=scheduler)
    if is_number(steps) and is_number(skip) and not skip < steps:
        problems.append(f"skip: got {skip}, but skip must be smaller than steps ({steps}): lower skip (published: 32 of 100)")
    return problems


class Invert(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4E_Invert",
            display_name="Invert Image (Eye-for-an-eye)",
            category=CATEGORY,
            description=(
                "Edit-friendly DDPM inversion: finds the noise maps that make the sampler retrace this latent, and "
                "records the self-attention features the transfer needs. Invert the target and the reference with "
                "the same MODEL, steps, skip and scheduler."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model you will sample with (apply LoRA / FreeU before this node)."),
                io.Conditioning.Input("positive", tooltip='Describe the domain, e.g. "a photo of a bird".'),
                io.Conditioning.Input("negative", tooltip="Usually an empty prompt."),
                io.Latent.Input("latent", tooltip="The VAE-encoded image to invert."),
                io.Int.Input("steps", default=100, min=2, max=1000, tooltip="Schedule length (published: 100)."),
                io.Int.Input("skip", default=32, min=0, max=999, tooltip="Steps skipped before generation starts (published: 32)."),
                io.Float.Input("cfg", default=3.5, min=0.0, max=30.0, step=0.1, round=0.01, tooltip="Guidance during inversion (published: 3.5)."),
                # "fixed": a fresh node keeps its seed, so a re-run reuses the cached inversion (frontend 1.58.1 reads
                # the mode here; for 1.32.9, which starts every control at "randomize", web/eye_for_eye.js sets it).
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate="fixed", tooltip="Seed of the independent noise draws."),
                io.Combo.Input("scheduler", options=comfy.samplers.SCHEDULER_NAMES, default="ddim_uniform", tooltip="ddim_uniform matches the DDPM timesteps of the published code."),
                io.Boolean.Input(
                    "record_features", default=True, optional=True,
                    tooltip=(
                        "Record the self-attention features the transfer reads with feature source 'recorded at inversion' "
                        "(memory grows with steps). Turn off when Apply uses 'live branches' (nothing stored)."
                    ),
                ),
            ],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],  # to compare the paired Invert's schedule before work
            outputs=[InversionType.Output("inversion", display_name="inversion", tooltip="Noise maps, latents and features of the inverted image: connect to Apply Eye-for-an-eye and the KSampler.")],
        )

    @classmethod
    def validate_inputs(cls, steps=None, skip=None, cfg=None, scheduler=None):
        return verdict(_problems(cls, steps, skip, cfg, scheduler))

    @classmethod
    def execute(cls, model, positive, negative, latent, steps, skip, cfg, seed, scheduler, record_features=True) -> io.NodeOutput:
        problems = _problems(cls, steps, skip, cfg, scheduler)
        hidden = getattr(cls, "hidden", None)
        if hidden is not None:
            mismatch = schedule_mismatch(hidden.prompt, hidden.unique_id, dict(steps=steps, skip=skip, scheduler=scheduler))
            problems += [mismatch] if mismatch else []
        if problems:
            raise ValueError("; ".join(problems))
        return io.NodeOutput(invert_latent(model, positive, negative, latent, steps, skip, cfg, seed, scheduler, record_features))

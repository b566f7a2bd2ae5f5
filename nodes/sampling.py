"""Sampling that replays an inversion: a NOISE, a SAMPLER, the SIGMAS, and an all-in-one KSampler."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch

import comfy.model_management
import comfy.samplers
import comfy.utils
import latent_preview

from ..core.attention_patch import EyeForEyePatch
from ..core.ddpm import replay
from ..core.inversion import Inversion, check_compatible, same_inversion
from ..core.latent_adain import LatentAdain
from ..core.live_branches import live_patch, transfer_patch
from ..core.published import Behaviour, alpha_cumprod_sigma_scale, published_last_step
from .api import CATEGORY, Inversion as InversionType, Objects, io
from .objects import check_object_fits, object_label, transfer_object
from .model_info import check_same_model, check_supported
from .validation import check_whole_image_conditioning, refuse, verdict, widget_problems


@dataclass
class InversionNoise:
    """A ComfyUI NOISE that puts the sampler's first latent exactly on the inversion's start."""

    inversion: Inversion
    seed: int = 0

    def generate_noise(self, input_latent: dict) -> torch.Tensor:
        samples = input_latent["samples"]
        expected = self.inversion.source_latent
        if samples.shape != expected.shape or not torch.allclose(samples.cpu().float(), expected.cpu().float()):
            raise ValueError(
                f"latent_image: connect the LATENT that was inverted (shape {tuple(expected.shape)}); "
                f"got a different latent of shape {tuple(samples.shape)}"
            )
        inv = self.inversion
        sigma = float(inv.sigmas[inv.skip])
        scale = math.sqrt(1.0 + sigma**2) if inv.starts_at_max_sigma else sigma
        return ((inv.latents[0].float() - inv.clean_latent.float()) / scale).cpu()


def check_patch_target(model_options: dict, target: Inversion, input_name: str = "target_inversion") -> None:
    """Refuse sampling a target inversion other than the one Apply Eye-for-an-eye patched the model with."""
    patches = model_options.get("transformer_options", {}).get("patches", {}).get("attn1_patch", [])
    for patch in patches:
        if isinstance(patch, EyeForEyePatch) and not same_inversion(patch.target, target):
            raise ValueError(
                f"{input_name} is {target.describe()}, but the model was patched by Apply Eye-for-an-eye with a "
                f"different target_inversion ({patch.target.describe()}): connect the same Invert output to both"
            )


def check_replay_sigmas(sigmas: torch.Tensor, target: Inversion) -> None:
    """Refuse SIGMAS other than the target inversion's generation schedule, saying what differs."""
    expected = target.generation_sigmas
    got = sigmas.cpu().float()
    if len(got) == len(expected) and torch.allclose(got, expected, rtol=1e-5, atol=1e-7):
        return
    if len(got) != len(expected):
        differs = f"got {len(got) - 1} steps"
    else:
        wrong = (~torch.isclose(got, expected, rtol=1e-5, atol=1e-7)).nonzero().flatten().tolist()
        shown = ", ".join(f"sigma {k}: {float(got[k]):.4g} instead of {float(expected[k]):.4g}" for k in wrong[:3])
        differs = f"got as many steps, but {len(wrong)} of the {len(got)} values differ ({shown}{', ...' if len(wrong) > 3 else ''})"
    raise ValueError(
        f"sigmas: use the SIGMAS of the target inversion ({len(expected) - 1} steps from skip {target.skip}, "
        f"from {float(expected[0]):.4g} to {float(expected[-1]):.4g}); {differs}: connect Replay Pieces' sigmas output"
    )


def live_reference_rows(live, adain: LatentAdain) -> list[int]:
    """For each AdaIN object, the live branch that denoises its reference (matched by content, not identity)."""
    rows = []
    for k, obj in enumerate(adain.objects):
        found = [j for j, branch in enumerate(live.objects) if same_inversion(branch.reference, obj.reference)]
        if not found:
            name = f"{object_label(k, len(adain.objects))}reference_inversion"
            raise ValueError(
                f"{name} is {obj.reference.describe()}, which Apply Eye-for-an-eye (live branches) does not denoise "
                f"(it denoises {', '.join(b.reference.describe() for b in live.objects)}): connect the same Invert output "
                "to both, or leave it unconnected to use Apply's reference"
            )
        rows.append(found[0])
    return rows


def _replay_sampler(model, x, sigmas, extra_args, callback, disable, *, target: Inversion, adain: Optional[LatentAdain]):
    """A KSAMPLER function: DDPM steps with the target's noise maps, AdaIN late in sampling.

    With an Eye-for-an-eye patch set to 'live branches' on the model, the reference(s) and the
    target are denoised in the same batch as the result (see core.live_branches); with
    'published code', AdaIN and the last step follow the published rules.
    """
    check_patch_target(extra_args.get("model_options", {}), target)
    check_replay_sigmas(sigmas, target)
    sigma_list = [float(s) for s in sigmas]
    model_options = extra_args.get("model_options")
    patch = transfer_patch(model_options)
    live = live_patch(model_options)
    if live is not None and live.target is not target:
        raise ValueError("target_inversion: sample the target inversion that Apply Eye-for-an-eye (live branches) was given")
    published = getattr(patch, "behaviour", None) is Behaviour.PUBLISHED
    last_scale = 1.0
    if published:
        sigma_list = published_last_step(sigma_list, patch.last_sigma)
        last_scale = alpha_cumprod_sigma_scale(patch.last_sigma)
        if adain is not None:
            adain = dataclasses.replace(adain, published=True)
    live_rows = None if live is None or adain is None else live_reference_rows(live, adain)
    result_rows = slice(0, x.shape[0]) if live is None else live.layout.result_rows()
    x_start = x if live is None else live.start(x)
    noise_maps = target.noise_maps if live is None else live.noise()
    s_in = x_start.new_ones([x_start.shape[0]])
    last = len(sigma_list) - 2

    def denoise(x, i):
        comfy.model_management.throw_exception_if_processing_interrupted()
        return model(x, sigma_list[i] * s_in, **extra_args)

    def live_styles(x_next):
        return None if live_rows is None else [x_next[live.layout.reference_rows(j)] for j in live_rows]

    def after_step(i, x_next, denoised):
        if i == last and last_scale != 1.0:
            x_next = x_next * last_scale  # the published latent carries sqrt(alpha_cumprod[0]) there
        if adain is not None and adain.active(i):
            x_next = x_next.clone()
            x_next[result_rows] = adain(i, x_next[result_rows], live_styles(x_next))
        if callback is not None:
            callback({"x": x_next[result_rows], "i": i, "sigma": sigma_list[i], "sigma_hat": sigma_list[i], "denoised": denoised[result_rows]})
        return x_next

    return replay(denoise, x_start, sigma_list, noise_maps, after_step)[result_rows]


def replay_sampler(target: Inversion, adain: Optional[LatentAdain] = None) -> comfy.samplers.KSAMPLER:
    return comfy.samplers.KSAMPLER(_replay_sampler, extra_options={"target": target, "adain": adain})


def latent_adain(target: Inversion, reference: Optional[Inversion], adain_start: int, target_mask, reference_mask, objects=None) -> Optional[LatentAdain]:
    """AdaIN towards the reference (or towards each object's reference when `objects` is given)."""
    if adain_start < 0:
        return None
    if objects is None:
        if reference is None:
            return None
        objects = (transfer_object(reference, target_mask, reference_mask, target=target),)
    elif target_mask is not None or reference_mask is not None:
        raise ValueError("target_mask/reference_mask: with objects connected each Transfer Object carries its own masks: disconnect these")
    for k, obj in enumerate(objects):
        check_compatible(obj.reference, target)
        check_object_fits(obj, target, object_label(k, len(objects)))
    if adain_start >= target.generation_steps:
        raise ValueError(
            f"adain_start: got {adain_start}, but target_inversion has only {target.generation_steps} generation steps "
            f"(steps - skip), so AdaIN would never run: choose a step below {target.generation_steps} "
            f"(published: 49 of 68), or -1 to turn it off"
        )
    return LatentAdain(tuple(objects), adain_start)


@torch.no_grad()  # no autograd graph outside ComfyUI's executor either
def sample_replay(model, positive, negative, target: Inversion, cfg: float, adain: Optional[LatentAdain]) -> dict:
    check_supported(model)
    check_whole_image_conditioning(positive, "positive")
    check_whole_image_conditioning(negative, "negative")
    check_same_model(model, target, "target_inversion")
    check_patch_target(model.model_options, target)
    latent = {"samples": target.source_latent}
    sigmas = target.generation_sigmas
    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    samples = guider.sample(
        InversionNoise(target).generate_noise(latent),
        latent["samples"],
        replay_sampler(target, adain),
        sigmas,
        callback=callback,
        disable_pbar=not comfy.utils.PROGRESS_BAR_ENABLED,
        seed=0,
    )
    return {"samples": samples.to(comfy.model_management.intermediate_device())}


def _adain_inputs():
    return [
        io.Int.Input("adain_start", default=49, min=-1, max=1000, tooltip="Generation step from which the result latent takes the reference's statistics (published: 49 of 68); -1 turns it off."),
        io.Mask.Input("target_mask", optional=True, tooltip="Foreground of the target; AdaIN statistics are taken inside it."),
        io.Mask.Input("reference_mask", optional=True, tooltip="Foreground of the reference."),
    ]


def live_references(model_options: dict) -> tuple[Optional[Inversion], Optional[tuple]]:
    """(reference, objects) that live branches denoise anyway, for AdaIN when none is connected."""
    live = live_patch(model_options)
    if live is None:
        return None, None
    return (live.objects[0].reference, None) if len(live.objects) == 1 else (None, live.objects)


class TransferKSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4E_KSampler",
            display_name="KSampler (Eye-for-an-eye)",
            category=CATEGORY,
            description=(
                "Samples from the target's inverted latent, replaying its noise maps, with classifier-free guidance "
                "and masked AdaIN towards the reference late in sampling. Connect the MODEL from Apply Eye-for-an-eye."
            ),
            inputs=[
                io.Model.Input("model", tooltip="Usually the output of Apply Eye-for-an-eye."),
                io.Conditioning.Input("positive", tooltip="The prompt the inversions were made with."),
                io.Conditioning.Input("negative", tooltip="The negative prompt the inversions were made with (usually empty)."),
                InversionType.Input("target_inversion", tooltip="The structure image's inversion; sampling starts from it."),
                InversionType.Input("reference_inversion", optional=True, tooltip="The appearance image's inversion (for AdaIN). Unconnected with 'live branches': the reference Apply denoises."),
                Objects.Input("objects", optional=True, tooltip="Several objects (from Transfer Object nodes): AdaIN per object instead."),
                io.Float.Input("cfg", default=2.5, min=0.0, max=30.0, step=0.1, round=0.01, tooltip="Guidance; 1 keeps structure best, 2.5 looks best (published range)."),
            ]
            + _adain_inputs(),
            outputs=[io.Latent.Output("latent", display_name="latent", tooltip="The result latent: target structure, reference appearance. VAE Decode it.")],
        )

    @classmethod
    def validate_inputs(cls, cfg=None, adain_start=None):
        return verdict(widget_problems(cls, cfg=cfg, adain_start=adain_start))

    @classmethod
    def execute(cls, model, positive, negative, target_inversion, cfg, adain_start, reference_inversion=None, objects=None, target_mask=None, reference_mask=None) -> io.NodeOutput:
        refuse(widget_problems(cls, cfg=cfg, adain_start=adain_start))
        check_supported(model)
        check_same_model(model, target_inversion, "target_inversion")
        check_patch_target(model.model_options, target_inversion)
        if reference_inversion is None and objects is None:
            reference_inversion, objects = live_references(model.model_options)
        adain = latent_adain(target_inversion, reference_inversion, adain_start, target_mask, reference_mask, objects)
        return io.NodeOutput(sample_replay(model, positive, negative, target_inversion, cfg, adain))


class ReplayPieces(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4E_ReplayPieces",
            display_name="Inversion Replay Pieces (Eye-for-an-eye)",
            category=CATEGORY,
            description=(
                "NOISE, SAMPLER, SIGMAS and LATENT for ComfyUI's SamplerCustomAdvanced that replay the target "
                "inversion (with AdaIN towards the reference late in sampling)."
            ),
            inputs=[
                InversionType.Input("target_inversion", tooltip="The structure image's inversion; sampling replays it."),
                InversionType.Input("reference_inversion", optional=True, tooltip="The appearance image's inversion (for AdaIN)."),
                Objects.Input("objects", optional=True, tooltip="Several objects: AdaIN per object instead."),
            ]
            + _adain_inputs(),
            outputs=[
                io.Noise.Output("noise", display_name="noise", tooltip="Puts the first latent exactly on the target inversion's start."),
                io.Sampler.Output("sampler", display_name="sampler", tooltip="DDPM steps that replay the target's noise maps (AdaIN late in sampling)."),
                io.Sigmas.Output("sigmas", display_name="sigmas", tooltip="The target inversion's generation schedule (from its skip on)."),
                io.Latent.Output("latent", display_name="latent", tooltip="The latent that was inverted (the sampler's latent_image)."),
            ],
        )

    @classmethod
    def validate_inputs(cls, adain_start=None):
        return verdict(widget_problems(cls, adain_start=adain_start))

    @classmethod
    def execute(cls, target_inversion, adain_start, reference_inversion=None, objects=None, target_mask=None, reference_mask=None) -> io.NodeOutput:
        refuse(widget_problems(cls, adain_start=adain_start))
        adain = latent_adain(target_inversion, reference_inversion, adain_start, target_mask, reference_mask, objects)
        return io.NodeOutput(
            InversionNoise(target_inversion),
            replay_sampler(target_inversion, adain),
            target_inversion.generation_sigmas.clone(),
            {"samples": target_inversion.source_latent},
        )

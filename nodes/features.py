"""E4E_ExtractFeatures and E4E_SemanticMatch: correspondence you can inspect and steer."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import comfy.model_management
import comfy.sample
import comfy.utils

from ..core.correspondence import ImageFeatures, mirror_aware_match, semantic_match
from ..core.features import FeatureRecorder, LayerKey
from ..core.masks import token_mask
from ..core.provenance import tensor_digest
from .api import CATEGORY, Correspondence, Features, Inversion as InversionType, io
from .model_info import check_supported, decoder_attention_layers, image_downscale, model_fingerprint, unet_downscale
from .recording import run_recording
from .validation import check_image_latent, check_whole_image_conditioning, fitting_mask, refuse, verdict, widget_problems

# Token grid as a fraction of the image size.
RESOLUTIONS = ["1/2", "1/4", "1/8", "1/16", "1/32", "1/64"]


def layer_name(layer: LayerKey) -> str:
    return f"{layer[0]}.{layer[1]}.{layer[2]}"


def choose_layers(available: dict[LayerKey, int], resolution: str, names: str) -> list[LayerKey]:
    """Layers at `resolution` (available: layer -> image pixels per token), all of them or those named in `names`."""
    at_resolution = [layer for layer, down in available.items() if f"1/{down}" == resolution]
    wanted = [n.strip() for n in names.split(",") if n.strip() and n.strip() != "all"]
    chosen = [layer for layer in at_resolution if not wanted or layer_name(layer) in wanted]
    if not chosen:
        offered = ", ".join(f"{layer_name(k)} (1/{d})" for k, d in sorted(available.items()))
        raise ValueError(f"layer/resolution: no decoder self-attention layer matches {resolution} '{names}'; available: {offered}")
    return chosen


def _normalised_concat(per_layer: list[torch.Tensor]) -> torch.Tensor:
    """One descriptor per token: each layer L2-normalised, then concatenated (cosine = mean of per-layer cosines)."""
    return torch.cat([F.normalize(t.float(), dim=-1) for t in per_layer], dim=-1) / len(per_layer) ** 0.5


def _ensemble_sampler(model, x0, sigmas, extra_args, callback, disable, *, sigma, ensemble, seed, recorder):
    generator = torch.Generator(device="cpu").manual_seed(seed)
    s_in = x0.new_ones([x0.shape[0]])
    progress = comfy.utils.ProgressBar(ensemble)
    for k in range(ensemble):
        comfy.model_management.throw_exception_if_processing_interrupted()
        recorder.step = k
        noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
        model(x0 + sigma * noise, sigma * s_in, **extra_args)
        progress.update(1)
    return x0


@torch.no_grad()  # no autograd graph outside ComfyUI's executor either
def features_from_latent(model, positive, latent: dict, timestep: int, ensemble: int, seed: int, resolution: str, names: str) -> ImageFeatures:
    """DIFT: noise the latent to `timestep`, run the model per draw, average the drawn features."""
    check_supported(model)
    check_whole_image_conditioning(positive, "positive")
    available = {layer.key: layer.downscale * image_downscale(model) for layer in decoder_attention_layers(model)}
    layers = choose_layers(available, resolution, names)
    samples = comfy.sample.fix_empty_latent_channels(model, latent["samples"])
    channels = int(model.get_model_object("latent_format").latent_channels)
    check_image_latent(samples, "latent", channels, unet_downscale(model), image_downscale(model))
    sigma = float(model.get_model_object("model_sampling").sigma(torch.tensor(float(timestep))))
    recorder = FeatureRecorder(frozenset(layers), comfy.model_management.intermediate_device(), torch.float32)
    # cfg 1: the conditional branch only, as DIFT
    run_recording(model, recorder, positive, positive, 1.0, samples, torch.tensor([sigma, 0.0]), _ensemble_sampler, seed,
                  sigma=sigma, ensemble=ensemble)
    bank = recorder.bank(0, ensemble - 1)
    tokens = _normalised_concat([bank.features[layer].float().mean(dim=0) for layer in layers])
    size = (int(samples.shape[-2]) * image_downscale(model), int(samples.shape[-1]) * image_downscale(model))
    return ImageFeatures(tokens, bank.grids[layers[0]], tuple(map(layer_name, layers)), f"t={timestep}, ensemble {ensemble}",
                         size, tensor_digest(samples), model_fingerprint(model))


def features_from_inversion(inversion, step: int, resolution: str, names: str) -> ImageFeatures:
    """The features the transfer patch itself matches, recorded at generation step `step`."""
    if not 0 <= step < inversion.generation_steps:
        raise ValueError(f"step must be between 0 and {inversion.generation_steps - 1} (generation steps of the inversion), got {step}")
    bank = inversion.features
    if not bank.layers:
        raise ValueError("inversion: it was made with record_features off; invert again with it on, or use model, positive and latent")
    latent_height = inversion.latents.shape[-2]
    available = {layer: latent_height // bank.grids[layer][0] * inversion.image_downscale for layer in bank.layers}
    layers = choose_layers(available, resolution, names)
    tokens = _normalised_concat([bank.at(layer, inversion.skip + step) for layer in layers])
    return ImageFeatures(tokens, bank.grids[layers[0]], tuple(map(layer_name, layers)), f"inversion step {step}",
                         inversion.image_size, inversion.source_digest, inversion.made_by)


class ExtractFeatures(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4E_ExtractFeatures",
            display_name="Extract Diffusion Features (Eye-for-an-eye)",
            category=CATEGORY,
            description=(
                "Diffusion features for semantic matching. With MODEL + positive + latent: DIFT (noise to a timestep, "
                "average an ensemble of draws). With an inversion: the features the transfer patch itself matches at "
                "a generation step. Features are the self-attention inputs of the decoder layers at one resolution."
            ),
            inputs=[
                io.Model.Input("model", optional=True, tooltip="Needed with a latent."),
                io.Conditioning.Input("positive", optional=True, tooltip='Needed with a latent, e.g. "a photo of a bird".'),
                io.Latent.Input("latent", optional=True, tooltip="The image to describe (DIFT mode)."),
                InversionType.Input("inversion", optional=True, tooltip="Read the recorded features of this inversion instead."),
                io.Combo.Input("resolution", options=RESOLUTIONS, default="1/16", tooltip="Token grid as a fraction of the image (DIFT: 1/16; the transfer uses the two finest decoder grids)."),
                io.String.Input("layer", default="all", tooltip="'all' layers at that resolution, or names such as output.7.0"),
                io.Int.Input("timestep", default=261, min=0, max=999, tooltip="DIFT noise level (of 1000 training steps); DIFT's default is 261."),
                io.Int.Input("ensemble", default=8, min=1, max=64, tooltip="Noise draws averaged (DIFT: 8)."),
                # "fixed" control for a fresh node, as E4E_Invert's seed (read by frontend 1.58.1, not by 1.32.9).
                io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF, control_after_generate="fixed", tooltip="Seed of the noise draws."),
                io.Int.Input("step", default=10, min=0, max=1000, tooltip="With an inversion: the generation step to read (the transfer starts at 10)."),
            ],
            outputs=[Features.Output("features", display_name="features", tooltip="One descriptor per token of the chosen layers: connect to Semantic Match.")],
        )

    @classmethod
    def validate_inputs(cls, resolution=None, timestep=None, ensemble=None, step=None):
        return verdict(widget_problems(cls, resolution=resolution, timestep=timestep, ensemble=ensemble, step=step))

    @classmethod
    def execute(cls, resolution, layer, timestep, ensemble, seed, step, model=None, positive=None, latent=None, inversion=None) -> io.NodeOutput:
        refuse(widget_problems(cls, resolution=resolution, timestep=timestep, ensemble=ensemble, step=step))
        if inversion is not None:
            if latent is not None:
                raise ValueError("connect either latent (with model and positive) or inversion, not both")
            return io.NodeOutput(features_from_inversion(inversion, step, resolution, layer))
        if latent is None or model is None or positive is None:
            raise ValueError("connect model, positive and latent (or an inversion)")
        return io.NodeOutput(features_from_latent(model, positive, latent, timestep, ensemble, seed, resolution, layer))


class SemanticMatch(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4E_SemanticMatch",
            display_name="Semantic Match (Eye-for-an-eye)",
            category=CATEGORY,
            description=(
                "Dense correspondence from every target token to its cosine-nearest reference token, with a "
                "confidence (the similarity) per token, an optional mutual-nearest-neighbour check and masks."
            ),
            inputs=[
                Features.Input("target_features", tooltip="Features of the structure image (from Extract Diffusion Features)."),
                Features.Input("reference_features", tooltip="Features of the appearance image, extracted with the same MODEL, resolution and layers (the images may differ in size)."),
                io.Boolean.Input("mutual", default=False, tooltip="Keep only matches that are nearest neighbours both ways."),
                io.Float.Input("min_similarity", default=-1.0, min=-1.0, max=1.0, step=0.01, tooltip="Matches below this cosine similarity are not transferred."),
                io.Mask.Input("target_mask", optional=True, tooltip="Only these target tokens are matched."),
                io.Mask.Input("reference_mask", optional=True, tooltip="Only these reference tokens can be chosen."),
                Features.Input("mirrored_reference_features", optional=True, tooltip="Features of the reference flipped left-right (Image Flip before encoding): each image keeps the orientation that matches better, so a creature facing the other way is matched part to part."),
            ],
            outputs=[Correspondence.Output("correspondence", display_name="correspondence", tooltip="For each target token the reference token it takes, with a confidence: connect to Apply, Transfer Object or Visualize Correspondence.")],
        )

    @classmethod
    def validate_inputs(cls, min_similarity=None):
        return verdict(widget_problems(cls, min_similarity=min_similarity))

    @classmethod
    def execute(cls, target_features, reference_features, mutual, min_similarity, target_mask=None, reference_mask=None, mirrored_reference_features=None) -> io.NodeOutput:
        refuse(widget_problems(cls, min_similarity=min_similarity))
        for name, other in (("reference_features", reference_features), ("mirrored_reference_features", mirrored_reference_features)):
            if other is None:
                continue
            if tuple(target_features.layers) != tuple(other.layers) or target_features.tokens.shape[-1] != other.tokens.shape[-1]:
                raise ValueError(
                    f"target_features ({', '.join(target_features.layers)}) and {name} "
                    f"({', '.join(other.layers)}) come from different layers: extract both the same way"
                )
            if target_features.made_by and other.made_by and target_features.made_by != other.made_by:
                raise ValueError(
                    f"target_features come from the model [{target_features.made_by}] and {name} from "
                    f"[{other.made_by}]: features of different models are not comparable, extract both with one MODEL"
                )
        t_mask = r_mask = None
        if target_mask is not None:
            masks = fitting_mask(target_mask, "target_mask", target_features.image_size, target_features.tokens.shape[0], "target_features' image")
            t_mask = token_mask(masks, target_features.grid)
        if reference_mask is not None:
            masks = fitting_mask(reference_mask, "reference_mask", reference_features.image_size, reference_features.tokens.shape[0], "reference_features' image")
            r_mask = token_mask(masks, reference_features.grid)
        if mirrored_reference_features is None:
            return io.NodeOutput(semantic_match(target_features, reference_features, mutual, t_mask, r_mask, min_similarity))
        corr, _ = mirror_aware_match(target_features, reference_features, mirrored_reference_features, mutual, t_mask, r_mask, min_similarity)
        return io.NodeOutput(corr)

"""E4E_AttentionMasks: object masks for the target and the reference from the model's own attention (published way)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

import comfy.model_management

from ..core.attention_capture import AttentionCapture
from ..core.inversion import Inversion, check_compatible
from ..core.segmentation import Segmentation, noun_columns, segment_object
from .api import CATEGORY, Inversion as InversionType, io
from .model_info import check_same_model, check_supported, decoder_attention_layers
from .recording import run_loop
from .validation import refuse, verdict, widget_problems

ROWS = ["unconditional (as published)", "conditional"]
PALETTE = torch.tensor([
    [0.90, 0.30, 0.25], [0.25, 0.60, 0.90], [0.95, 0.75, 0.20], [0.40, 0.80, 0.40], [0.70, 0.45, 0.85],
    [0.95, 0.55, 0.70], [0.30, 0.80, 0.80], [0.85, 0.55, 0.25], [0.55, 0.55, 0.55], [0.60, 0.75, 0.30],
])


def capture_layers(model) -> tuple[tuple, tuple]:
    """(self-attention layer, cross-attention layer) read: the last decoder layer at the finest self-attention grid
    (the published 'self_attention_64') and the last at the grid half as fine (the published 'cross_attention_64',
    64 in their naming but a 32x32 grid for a 512 image)."""
    layers = decoder_attention_layers(model)
    scales = sorted({layer.downscale for layer in layers})
    finest = scales[0]
    if 2 * finest not in scales:
        raise ValueError("model: its decoder has no cross-attention at half the finest self-attention grid, which the published masks read")
    last = lambda scale: max(layer.key for layer in layers if layer.downscale == scale)  # noqa: E731
    return last(finest), last(2 * finest)


def _one_call(model, x, sigmas, extra_args, callback, disable, *, latent, sigma):
    comfy.model_management.throw_exception_if_processing_interrupted()
    model(latent.to(x.device, x.dtype), sigma * x.new_ones([latent.shape[0]]), **extra_args)
    return x


def capture(model, conditioning, inversion: Inversion, step: int, layers) -> tuple[torch.Tensor, torch.Tensor]:
    """One model call on the inversion's latent at generation step `step` with `conditioning` only (cfg 1):
    (self-attention weights [B, T, T], cross-attention weights [B, T/4, tokens]), heads averaged."""
    self_layer, cross_layer = layers
    self_capture, cross_capture = AttentionCapture("self"), AttentionCapture("cross")
    capturing = model.clone()
    capturing.set_model_attn1_replace(self_capture, *self_layer)
    capturing.set_model_attn2_replace(cross_capture, *cross_layer)
    sigma = float(inversion.generation_sigmas[step])
    run_loop(capturing, conditioning, conditioning, 1.0, inversion.source_latent, torch.tensor([sigma, 0.0]), _one_call,
             seed=0, loop_options={"latent": inversion.latents[step], "sigma": sigma})
    if self_capture.weights is None or cross_capture.weights is None:
        raise RuntimeError("model: the attention layers the masks read were not called (another patch replaced them?)")
    return self_capture.weights, cross_capture.weights


def segment_all(self_weights, cross_weights, nouns, object_noun, segments, threshold, which: str) -> list[Segmentation]:
    found = []
    for b in range(self_weights.shape[0]):
        seg = segment_object(self_weights[b], cross_weights[b], nouns, object_noun, segments, threshold)
        label = which if self_weights.shape[0] == 1 else f"{which} #{b + 1}"
        if not seg.kept:
            scores = ", ".join(f"{s:.3f}" for s in seg.scores.tolist())
            raise ValueError(
                f"threshold: no segment of the {label} qualifies as '{object_noun}' (best noun scores per segment: {scores}; "
                f"a segment needs more than {threshold} x the mean of the others): lower threshold, change segments or "
                "step, or connect masks from a segmentation node instead"
            )
        if len(seg.kept) == segments:
            raise ValueError(f"threshold: every segment of the {label} qualifies, so the mask would cover the whole image: raise threshold or segments")
        found.append(seg)
    return found


def to_image_size(mask: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(mask[None, None], size=tuple(size), mode="nearest")[0, 0]


def picture(seg: Segmentation, size) -> torch.Tensor:
    """[H, W, 3]: every segment in its colour, the kept ones bright, the others dimmed, kept borders white."""
    colours = PALETTE[torch.arange(int(seg.labels.max()) + 1) % len(PALETTE)]
    image = colours[seg.labels]  # [res, res, 3]
    kept = seg.mask.bool()
    image = torch.where(kept[..., None], image, image * 0.3 + 0.05)
    image = F.interpolate(image.permute(2, 0, 1)[None], size=tuple(size), mode="nearest")[0].permute(1, 2, 0)
    big = to_image_size(seg.mask, size).bool()
    edge = big ^ (F.max_pool2d((~big).float()[None, None], 3, 1, 1)[0, 0] == 0)
    return torch.where(edge[..., None], torch.ones(3), image)


class AttentionMasks(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="E4E_AttentionMasks",
            display_name="Object Masks from Attention (Eye-for-an-eye)",
            category=CATEGORY,
            description=(
                "Object masks for the target and the reference without a segmentation model, the way the published "
                "code means to make them when no SAM masks are given: at generation step `step` (default 49, the "
                "first step after which masked AdaIN runs; the published code asks for them one step later, after "
                "AdaIN has already needed them) the model is run once on each inversion's latent, and the last "
                "decoder self-attention layer at the finest grid (their 'self_attention_64', heads averaged) is "
                "clustered with k-means into `segments` segments (seeded, deterministic); the last decoder "
                "cross-attention layer at the grid half as fine (their 'cross_attention_64', a 32x32 grid for a "
                "512 image) scores each segment against the prompt's nouns; a segment is the object when its best "
                "noun is the object noun and its score exceeds `threshold` x the mean of the other segments' best "
                "scores. The published code reads the unconditional rows (the empty prompt's attention) of its "
                "live batch; this node reads the inversion's latent at that step (the same when sampling cfg equals "
                "inversion cfg)."
            ),
            inputs=[
                io.Model.Input("model", tooltip="The model the inversions were made with (FreeU included)."),
                io.Conditioning.Input("positive", tooltip="The prompt the inversions were made with."),
                io.Conditioning.Input("negative", tooltip="The negative prompt the inversions were made with (usually empty)."),
                InversionType.Input("target_inversion", tooltip="The structure image's inversion."),
                InversionType.Input("reference_inversion", tooltip="The appearance image's inversion."),
                io.String.Input("prompt", default="a photo of a bird", tooltip="The text the positive conditioning was encoded from (conditioning does not carry its text). A noun's cross-attention column is its word index + 1, as published."),
                io.String.Input("object_noun", default="bird", tooltip="The noun of the prompt that names the object (published: the domain name)."),
                io.String.Input("other_nouns", default="", optional=True, tooltip="Other nouns of the prompt, comma-separated, that compete for segments (the published code takes every noun nltk tags, except photo, image, picture)."),
                io.Int.Input("step", default=49, min=0, max=1000, tooltip="Generation step (after the skip) whose model call is read; published: the first AdaIN step (49 of 68)."),
                io.Combo.Input("attention", options=ROWS, default=ROWS[0], tooltip="Which branch's attention: the unconditional one (the published constants pick those rows of the six-row batch) or the conditional one (the prompt's own cross-attention)."),
                io.Int.Input("segments", default=5, min=2, max=10, tooltip="k-means segments (published: 5)."),
                io.Float.Input("threshold", default=1.4, min=0.0, max=10.0, step=0.05, tooltip="A segment is the object when its noun score exceeds this times the mean of the other segments' best scores (published: 1.4)."),
            ],
            outputs=[
                io.Mask.Output("target_mask", display_name="target_mask", tooltip="The object in the target, at image size (1 on object segments)."),
                io.Mask.Output("reference_mask", display_name="reference_mask", tooltip="The object in the reference, at image size."),
                io.Image.Output("segments_image", display_name="segments", tooltip="Target | reference: every segment in its colour, the object's segments bright with a white border, the rest dimmed."),
            ],
        )

    @classmethod
    def validate_inputs(cls, step=None, attention=None, segments=None, threshold=None):
        return verdict(widget_problems(cls, step=step, attention=attention, segments=segments, threshold=threshold))

    @classmethod
    def execute(cls, model, positive, negative, target_inversion, reference_inversion, prompt, object_noun, step, attention, segments, threshold, other_nouns="") -> io.NodeOutput:
        refuse(widget_problems(cls, step=step, attention=attention, segments=segments, threshold=threshold))
        check_supported(model)
        check_same_model(model, target_inversion, "target_inversion")
        check_same_model(model, reference_inversion, "reference_inversion")
        check_compatible(reference_inversion, target_inversion)
        if step >= target_inversion.generation_steps:
            raise ValueError(f"step: got {step}, but the inversions have {target_inversion.generation_steps} generation steps (steps - skip): choose a step below that")
        nouns = noun_columns(prompt, object_noun, tuple(n for n in other_nouns.split(",") if n.strip()))
        conditioning = negative if attention == ROWS[0] else positive
        layers = capture_layers(model)
        out = {}
        for which, inversion in (("target", target_inversion), ("reference", reference_inversion)):
            self_weights, cross_weights = capture(model, conditioning, inversion, step, layers)
            tokens = cross_weights.shape[-1]
            if max(c for c, _ in nouns) >= tokens:
                raise ValueError(f"prompt: the object noun's column lies beyond the conditioning's {tokens} tokens: give the prompt the conditioning was encoded from")
            out[which] = (inversion, segment_all(self_weights, cross_weights, nouns, object_noun.strip(), segments, threshold, which))
        masks = {w: torch.stack([to_image_size(s.mask, inv.image_size) for s in segs]) for w, (inv, segs) in out.items()}
        t_inv, t_segs = out["target"]
        r_inv, r_segs = out["reference"]
        pictures = []
        for b, seg in enumerate(t_segs):
            ref = r_segs[b if len(r_segs) > 1 else 0]
            left, right = picture(seg, t_inv.image_size), picture(ref, t_inv.image_size)
            pictures.append(torch.cat([left, right], dim=1))
        device = comfy.model_management.intermediate_device()
        return io.NodeOutput(masks["target"].to(device), masks["reference"].to(device), torch.stack(pictures).to(device))

"""Checks a node runs before it computes. Every message names the input, what it got, what it accepts and how
to fix it.

`widget_problems` reads the node's own schema, so a V3 `validate_inputs` (run by the server at /prompt, before
any node executes) and the start of `execute` (for values that arrive through links) apply the same rules.
The host skips its own min/max check for every input a `validate_inputs` takes, and does not check V3 combos at
all, so both are done here.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from ..core.masks import as_mask_batch
from ..core.provenance import size_text


def widget_problems(cls, **values) -> list[str]:
    """Combo values outside their options, non-finite floats, numbers outside min/max (None: not known yet)."""
    specs = {spec.id: spec for spec in cls.define_schema().inputs}
    problems = []
    for name, value in values.items():
        spec = specs.get(name)
        if spec is None or value is None:
            continue
        options = getattr(spec, "options", None)
        if isinstance(options, (list, tuple)):
            if value not in options:
                problems.append(f"{name}: got {value!r}, which is not one of its options ({', '.join(map(repr, options))}): pick one of them")
            continue
        low, high = getattr(spec, "min", None), getattr(spec, "max", None)
        accepts = f"a number from {low} to {high}"
        if not is_number(value):
            if spec.get_io_type() in ("INT", "FLOAT"):
                problems.append(f"{name}: got {value!r}, which is not a number ({accepts}): type a number")
            continue
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(f"{name}: got {value}, but it must be a finite number ({accepts}): type a number")
        elif (low is not None and value < low) or (high is not None and value > high):
            problems.append(f"{name}: got {value}, but it accepts {accepts}: change it")
    return problems


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def verdict(problems: list[str]):
    """What a V3 validate_inputs returns: True, or the reasons as one string."""
    return True if not problems else "; ".join(problems)


def refuse(problems: list[str]) -> None:
    if problems:
        raise ValueError("; ".join(problems))


def window_problems(start: Optional[int], end: Optional[int]) -> list[str]:
    if not (is_number(start) and is_number(end)) or end < 0 or start < end:
        return []
    return [f"start: got {start}, which is not before end ({end}), so no step would be rearranged: make end larger than start, or -1 to run to the last step"]


def check_image_latent(samples: torch.Tensor, name: str, channels: int, min_cells: int, pixels_per_cell: int) -> None:
    """An image LATENT [B, C, H, W] with the model's channels and at least one token at the UNet's coarsest grid."""
    if samples.ndim != 4:
        kind = "a video latent [B, C, T, H, W]" if samples.ndim == 5 else f"{samples.ndim} dimensions"
        raise ValueError(
            f"{name}: got a LATENT of shape {tuple(samples.shape)} ({kind}); Eye-for-an-eye takes image latents "
            "[batch, channels, height, width]: encode still images (VAE Encode of an IMAGE)"
        )
    if samples.shape[1] != channels:
        raise ValueError(
            f"{name}: got a LATENT with {samples.shape[1]} channels but the model takes {channels}: "
            "encode the image with this model's VAE"
        )
    h, w = samples.shape[-2:]
    if h < min_cells or w < min_cells:
        px = min_cells * pixels_per_cell
        raise ValueError(
            f"{name}: the image is {w * pixels_per_cell}x{h * pixels_per_cell} pixels (latent {w}x{h}), smaller than one "
            f"token at the model's coarsest grid: use an image of at least {px}x{px} pixels"
        )


def fitting_mask(mask: torch.Tensor, name: str, image_size, batch: Optional[int], image_name: str, pixels_per_cell: int = 8) -> torch.Tensor:
    """A MASK as float [B, 1, H, W] after checking it covers `image_size` (height, width) and the batch."""
    masks = as_mask_batch(mask, name)
    check_mask_fits(masks, name, image_size, batch, image_name, pixels_per_cell)
    return masks


def check_mask_fits(masks: torch.Tensor, name: str, image_size, batch: Optional[int], image_name: str, pixels_per_cell: int = 8) -> None:
    """masks float [B, 1, H, W] against an image of `image_size` (height, width) and `batch` (None: unknown).

    A mask at another resolution with the same framing (aspect ratio) is scaled onto the image; ComfyUI's VAE
    Encode crops images to a multiple of the VAE's cell, so the aspect ratio may differ by up to one cell. Any
    other mask would be stretched onto the image: refused.
    """
    if image_size is not None:
        check_framing(name, "mask", tuple(masks.shape[-2:]), image_size, image_name, pixels_per_cell)
    if batch is not None and masks.shape[0] not in (1, batch):
        raise ValueError(
            f"{name}: got a batch of {masks.shape[0]} masks but {image_name} has a batch of {batch}: "
            f"give 1 mask (used for every image) or {batch}"
        )


def check_framing(name: str, kind: str, size, image_size, image_name: str, pixels_per_cell: int = 8) -> None:
    """Refuse a picture of `size` (height, width) whose aspect ratio differs from `image_size`'s by more than
    one latent cell: it would be stretched onto the image."""
    (mh, mw), (h, w) = size, image_size
    if abs(mw * h / mh - w) > pixels_per_cell and abs(mh * w / mw - h) > pixels_per_cell:
        raise ValueError(
            f"{name}: got a {mw}x{mh} {kind} but {image_name} is {w}x{h}: another aspect ratio, so it would be "
            f"stretched: use the {kind} of that image ({w}x{h}, or any size with the same framing)"
        )


def check_correspondence_for(correspondence, inversion, side: str, inversion_name: str, name: str = "correspondence") -> None:
    """Refuse a correspondence computed for other images than the inversion's (side: "target" or "reference")."""
    digest = getattr(correspondence, f"{side}_digest")
    size = getattr(correspondence, f"{side}_image_size")
    if digest and inversion.source_digest and digest != inversion.source_digest:
        made_for = f"a {size_text(size[::-1]) if size else 'different'} image (latent #{digest[:8]})"
        raise ValueError(
            f"{name} was computed for {made_for} as its {side}, but {inversion_name} is {inversion.describe()}: "
            f"compute it (Extract Features + Semantic Match) from the same {side} latent that was inverted"
        )


def check_whole_image_conditioning(conditioning, name: str) -> None:
    """Refuse conditionings that crop the latent (Conditioning Set Area, or a mask with 'mask bounds'):
    the transfer and the inversion's features need the whole image in every model call."""
    for k, entry in enumerate(conditioning or []):
        options = entry[1] if len(entry) > 1 and isinstance(entry[1], dict) else {}
        if "area" in options or (options.get("set_area_to_bounds") and "mask" in options):
            which = "" if len(conditioning) == 1 else f" (entry {k + 1} of {len(conditioning)})"
            raise ValueError(
                f"{name}: an area conditioning{which} (Conditioning Set Area, or Conditioning Set Mask with set_cond_area "
                "'mask bounds') makes ComfyUI run the model on a crop of the latent, which Eye-for-an-eye cannot "
                "align with the inverted image: use Conditioning Set Mask with set_cond_area 'default' instead"
            )

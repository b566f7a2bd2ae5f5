"""Procedurally drawn 64x64 "creatures" with exact part ground truth (pure torch, no ComfyUI).

A creature has four parts in a fixed relative layout, drawn in this order (a later part
occludes an earlier one, so the visible part masks never overlap):

    tail  - a triangle behind the body
    body  - an ellipse
    head  - a circle in front of the body
    wing  - a small ellipse on top of the body

Each creature gets a random global position, scale (x0.85..x1.2), horizontal flip
(canonical creature faces right: head on the right), rotation (+-15 degrees), an independent
colour per part and a plain background colour; all five colours are at least
`MIN_COLOUR_DISTANCE` apart (Euclidean RGB distance in 0..1 units) whenever rejection sampling
finds such a set (it practically always does).

Pixel convention: pixel (row i, column j) covers [j, j+1) x [i, i+1) and its centre is
(j + 0.5, i + 0.5); centres are (x, y) in these pixel units.

    >>> g = torch.Generator().manual_seed(0)
    >>> c = draw_creatures(32, g)            # images [32,3,64,64] in 0..1, masks, centres ...
    >>> a = draw_creatures(8, g, flip=False)  # forced orientation (pairs of same/opposite flip)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

import torch

PART_NAMES = ("tail", "body", "head", "wing")
IMAGE_SIZE = 64
SCALE_RANGE = (0.85, 1.2)
MAX_ROTATION_DEG = 15.0
MIN_COLOUR_DISTANCE = 0.35

# Canonical layout, in pixels at scale 1, creature facing right (+x), y pointing down, origin at
# the body centre. At scale 1 the creature is about 43 x 19 px, so that every part covers several
# 4x4-pixel tokens of the creature model's finest grid even at the smallest scale (head >= 6, wing
# >= 7 tokens), while leaving room to move around the canvas.
LAYOUT_SCALE = 1.0
BODY = dict(cx=0.0, cy=0.0, ax=12.0 * LAYOUT_SCALE, ay=7.0 * LAYOUT_SCALE)
HEAD = dict(cx=14.0 * LAYOUT_SCALE, cy=-4.0 * LAYOUT_SCALE, r=6.5 * LAYOUT_SCALE)
WING = dict(cx=-2.0 * LAYOUT_SCALE, cy=-7.0 * LAYOUT_SCALE, ax=8.0 * LAYOUT_SCALE, ay=5.0 * LAYOUT_SCALE)
TAIL = tuple((x * LAYOUT_SCALE, y * LAYOUT_SCALE) for x, y in ((-8.0, 0.0), (-22.0, -8.0), (-21.0, 6.0)))
# The layout's middle (centre of its bounding box) and the radius of a circle around it holding
# every part, + 1 px margin: placement keeps the whole creature inside the image.
_MIDDLE = (-1.0 * LAYOUT_SCALE, -2.0 * LAYOUT_SCALE)


def _dist(x, y):
    return math.hypot(x - _MIDDLE[0], y - _MIDDLE[1])


_EXTENT = max(
    max(_dist(x, y) for x, y in TAIL),
    _dist(HEAD["cx"], HEAD["cy"]) + HEAD["r"],
    _dist(WING["cx"], WING["cy"]) + WING["ax"],
    _dist(BODY["cx"], BODY["cy"]) + BODY["ax"],
) + 1.0


@dataclass
class Creatures:
    images: torch.Tensor  # [B, 3, 64, 64] float32 in 0..1
    part_masks: torch.Tensor  # [B, 4, 64, 64] bool, visible part pixels, mutually disjoint
    centres: torch.Tensor  # [B, 4, 2] float32, (x, y) pixels: centroid of the visible mask
    foreground: torch.Tensor  # [B, 64, 64] bool, union of the part masks
    flipped: torch.Tensor  # [B] bool, True = facing left
    part_colours: torch.Tensor  # [B, 4, 3] float32 in 0..1
    background: torch.Tensor  # [B, 3] float32 in 0..1
    scale: torch.Tensor  # [B] float32
    rotation: torch.Tensor  # [B] float32, radians
    position: torch.Tensor  # [B, 2] float32, (x, y) pixels of the canonical origin (body centre)


def _uniform(shape, low, high, generator):
    return low + (high - low) * torch.rand(shape, generator=generator)


def _distinct_colours(n: int, k: int, generator: torch.Generator, candidates: int = 64) -> torch.Tensor:
    """[n, k, 3] colours; greedy rejection so each is >= MIN_COLOUR_DISTANCE from the earlier ones."""
    chosen = [torch.rand(n, 3, generator=generator)]
    for _ in range(1, k):
        cand = torch.rand(n, candidates, 3, generator=generator)
        prev = torch.stack(chosen, 1)  # [n, j, 3]
        dist = torch.cdist(cand, prev).amin(-1)  # [n, candidates]
        ok = dist >= MIN_COLOUR_DISTANCE
        # first acceptable candidate, else the farthest one
        first = torch.where(ok.any(1), ok.float().argmax(1), dist.argmax(1))
        chosen.append(cand[torch.arange(n), first])
    return torch.stack(chosen, 1)


def draw_creatures(
    n: int,
    generator: torch.Generator,
    flip: Optional[Union[bool, torch.Tensor]] = None,
    size: int = IMAGE_SIZE,
    colours_of: Optional[Creatures] = None,
    device: Optional[torch.device] = None,
) -> Creatures:
    """Draw `n` creatures from `generator` (fully determined by its state).

    flip: None = random orientation; a bool or a [n] bool tensor forces it.
    colours_of: reuse these creatures' background and part colours (siblings) instead of drawing new ones.
    device: where the pictures are rendered (default: the CPU); the random choices are drawn from `generator`
    on the CPU either way, so a device draws the same creatures (up to float rounding), only faster.
    """
    g = generator
    scale = _uniform((n,), *SCALE_RANGE, g)
    rotation = _uniform((n,), -MAX_ROTATION_DEG, MAX_ROTATION_DEG, g) * (math.pi / 180.0)
    random_flip = torch.rand(n, generator=g) < 0.5
    if flip is None:
        flipped = random_flip
    elif isinstance(flip, torch.Tensor):
        flipped = flip.to(torch.bool).reshape(n).clone()
    else:
        flipped = torch.full((n,), bool(flip))
    radius = _EXTENT * scale
    middle = radius[:, None] + torch.rand(n, 2, generator=g) * (size - 2 * radius)[:, None]
    # Canonical origin (body centre) in pixels: the middle minus the rotated, scaled, mirrored offset.
    mx = torch.where(flipped, -_MIDDLE[0], _MIDDLE[0]) * scale
    my = _MIDDLE[1] * scale
    cos_r, sin_r = torch.cos(rotation), torch.sin(rotation)
    position = middle - torch.stack([cos_r * mx - sin_r * my, sin_r * mx + cos_r * my], -1)
    if colours_of is None:
        colours = _distinct_colours(n, 5, g)  # background first, then tail, body, head, wing
        background, part_colours = colours[:, 0], colours[:, 1:]
    else:
        background, part_colours = colours_of.background, colours_of.part_colours
    if device is not None:
        scale, rotation, flipped, position, background, part_colours = (
            t.to(device) for t in (scale, rotation, flipped, position, background, part_colours))

    # Inverse similarity transform of the pixel-centre grid into the canonical frame.
    coords = torch.arange(size, dtype=torch.float32, device=device) + 0.5
    py, px = torch.meshgrid(coords, coords, indexing="ij")  # [H, W]
    dx = px[None] - position[:, 0, None, None]
    dy = py[None] - position[:, 1, None, None]
    cos, sin = torch.cos(rotation)[:, None, None], torch.sin(rotation)[:, None, None]
    s = scale[:, None, None]
    qx = (cos * dx + sin * dy) / s  # rotate by -rotation, then unscale
    qy = (-sin * dx + cos * dy) / s
    qx = torch.where(flipped[:, None, None], -qx, qx)

    def ellipse(p):
        return ((qx - p["cx"]) / p["ax"]) ** 2 + ((qy - p["cy"]) / p["ay"]) ** 2 <= 1.0

    def triangle(vertices):
        (x0, y0), (x1, y1), (x2, y2) = vertices
        def edge(ax, ay, bx, by):
            return (bx - ax) * (qy - ay) - (by - ay) * (qx - ax)
        e0, e1, e2 = edge(x0, y0, x1, y1), edge(x1, y1, x2, y2), edge(x2, y2, x0, y0)
        return ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))

    raw = torch.stack([
        triangle(TAIL),
        ellipse(BODY),
        (qx - HEAD["cx"]) ** 2 + (qy - HEAD["cy"]) ** 2 <= HEAD["r"] ** 2,
        ellipse(WING),
    ], 1)  # [n, 4, H, W] in drawing order
    # Visible = drawn and not covered by any later part.
    later = torch.flip(torch.cumsum(torch.flip(raw.int(), [1]), 1), [1]) - raw.int()
    part_masks = raw & (later == 0)
    foreground = part_masks.any(1)

    m = part_masks.float()
    images = background[:, :, None, None].expand(n, 3, size, size).clone()
    images = images * (1 - foreground.float())[:, None] + torch.einsum("bphw,bpc->bchw", m, part_colours)

    area = m.sum((2, 3)).clamp_min(1.0)
    centres = torch.stack([(m * px).sum((2, 3)) / area, (m * py).sum((2, 3)) / area], -1)
    return Creatures(
        images=images.clamp(0, 1), part_masks=part_masks, centres=centres, foreground=foreground,
        flipped=flipped, part_colours=part_colours, background=background,
        scale=scale, rotation=rotation, position=position,
    )


def to_pil_grid(images: torch.Tensor, columns: int = 8):
    """A PIL image grid of [B,3,H,W] 0..1 images (for eyeballing; needs Pillow)."""
    from PIL import Image

    b, _, h, w = images.shape
    rows = (b + columns - 1) // columns
    grid = torch.ones(3, rows * h, columns * w)
    for i in range(b):
        r, c = divmod(i, columns)
        grid[:, r * h:(r + 1) * h, c * w:(c + 1) * w] = images[i]
    arr = (grid.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr)

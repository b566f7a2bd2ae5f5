"""Pictures of a correspondence: match lines, the reference warped into the target, and a confidence map.

Images are ComfyUI-style float [B, H, W, 3] in 0..1 (channels last); an image batch of 1 is
broadcast against the correspondence batch. Pixel coordinates put pixel centres at integers.
"""

from __future__ import annotations

import math

import kornia
import torch
import torch.nn.functional as F
from einops import rearrange

from .correspondence import Correspondence, Grid

Size = tuple[int, int]

_INVALID_DIM = 0.5  # invalid tokens in the warped reference: this fraction of their luma, in grey


def _batch_size(*sizes: int) -> int:
    """The common batch of several batches that are each 1 or the largest."""
    batch = max(sizes)
    if any(size not in (1, batch) for size in sizes):
        raise ValueError(f"batch sizes {sizes} do not match: each must be 1 or {batch}")
    return batch


def _channels_first(image: torch.Tensor, batch: int) -> torch.Tensor:
    """[B or 1, H, W, 3] -> [batch, 3, H, W] float."""
    return image.movedim(-1, 1).float().expand(batch, -1, -1, -1)


def _channels_last(image: torch.Tensor) -> torch.Tensor:
    return rearrange(image, "b c h w -> b h w c").contiguous()


def _token_map(values: torch.Tensor, grid: Grid, batch: int) -> torch.Tensor:
    """[B, ht * wt] per-token values -> [batch, 1, ht, wt] float."""
    return rearrange(values.float(), "b (h w) -> b 1 h w", h=grid[0]).expand(batch, -1, -1, -1)


def _upsample_nearest(tokens: torch.Tensor, size: Size) -> torch.Tensor:
    """Token grid [B, C, ht, wt] -> [B, C, H, W], each pixel taking the token it lies in."""
    return F.interpolate(tokens, size=tuple(size), mode="nearest-exact")


def valid_pixels(corr: Correspondence, size: Size, batch: int | None = None) -> torch.Tensor:
    """[B, H, W] bool: the pixels of an image of `size` that lie in valid target tokens."""
    batch = batch or corr.index.shape[0]
    return _upsample_nearest(_token_map(corr.valid, corr.target_grid, batch), size)[:, 0] > 0.5


def flow_to_pixels(corr: Correspondence, target_size: Size, reference_size: Size) -> torch.Tensor:
    """[B, 2, H, W]: the reference pixel (x, y) each target pixel looks at.

    The matched token centres (corr.reference_coordinates(), in [0, 1]) are upsampled bilinearly
    (align_corners=False: token centres sit at pixel (i + 0.5) * H / ht - 0.5) and scaled to reference
    pixels. An affine correspondence is reproduced exactly except within half a token of the border.
    """
    height, width = reference_size
    coords = F.interpolate(corr.reference_coordinates(), size=tuple(target_size), mode="bilinear", align_corners=False)
    scale = coords.new_tensor([width, height]).view(1, 2, 1, 1)
    return coords * scale - 0.5


def warp_reference(reference_image: torch.Tensor, corr: Correspondence, target_size: Size) -> torch.Tensor:
    """[B, H, W, 3]: the reference resampled into the target's layout through the correspondence.

    Pixels of invalid target tokens (what is not transferred) are shown in dimmed grey.
    """
    batch = _batch_size(corr.index.shape[0], reference_image.shape[0])
    reference = _channels_first(reference_image, batch)
    flow = flow_to_pixels(corr, target_size, reference.shape[-2:]).expand(batch, -1, -1, -1)
    # remap's pixel maps put pixel centres at integers only with align_corners=True (kornia #4504).
    warped = kornia.geometry.transform.remap(reference, flow[:, 0], flow[:, 1], mode="bilinear", padding_mode="border", align_corners=True)
    grey = (_INVALID_DIM * kornia.color.rgb_to_grayscale(warped)).expand_as(warped)
    valid = valid_pixels(corr, target_size, batch).unsqueeze(1)
    return _channels_last(torch.where(valid, warped, grey).clamp(0, 1))


def confidence_heatmap(corr: Correspondence, size: Size, colormap: str = "viridis") -> torch.Tensor:
    """[B, H, W, 3]: each target token's match similarity (0 -> low end, 1 -> high end; clamped) as colour; invalid tokens black."""
    batch = corr.index.shape[0]
    similarity = _token_map(corr.similarity, corr.target_grid, batch).nan_to_num(0.0).clamp(0, 1)
    palette = kornia.color.ColorMap(base=colormap, num_colors=256, device=similarity.device, dtype=similarity.dtype)
    colours = kornia.color.apply_colormap(similarity, palette)  # [B, 3, ht, wt]
    colours = colours * _token_map(corr.valid, corr.target_grid, batch)
    return _channels_last(_upsample_nearest(colours, size))


def sparse_tokens(grid: Grid, points_per_side: int) -> torch.Tensor:
    """Flat (row-major) indices of an even `points_per_side` x `points_per_side` subgrid of tokens (fewer if the grid is smaller)."""

    def spread(length: int) -> torch.Tensor:
        picks = ((torch.arange(points_per_side) + 0.5) * length / points_per_side).floor().long()
        return picks.clamp(0, length - 1).unique()

    rows, cols = spread(grid[0]), spread(grid[1])
    return (rows[:, None] * grid[1] + cols[None, :]).flatten()


def token_centres(tokens: torch.Tensor, grid: Grid, size: Size) -> torch.Tensor:
    """[..., 2] pixel (x, y) of the centres of flat token indices on `grid` over an image of `size`."""
    rows = torch.div(tokens, grid[1], rounding_mode="floor")
    cols = tokens % grid[1]
    x = (cols.float() + 0.5) * size[1] / grid[1] - 0.5
    y = (rows.float() + 0.5) * size[0] / grid[0] - 0.5
    return torch.stack([x, y], dim=-1)


def point_colours(points: torch.Tensor, size: Size) -> torch.Tensor:
    """[N, 3] RGB for [N, 2] target pixel positions: hue from x, saturation from y (paler lower down)."""
    u = (points[:, 0] / max(size[1] - 1, 1)).clamp(0, 1)
    v = (points[:, 1] / max(size[0] - 1, 1)).clamp(0, 1)
    hsv = torch.stack([2 * math.pi * 0.8 * u, 1.0 - 0.6 * v, torch.ones_like(u)], dim=-1)  # 0.8: left and right ends differ
    return kornia.color.hsv_to_rgb(hsv.T[:, :, None])[:, :, 0].T


def side_by_side(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """[B, 3, max(H, Hr), W + Wr]: two channels-first images next to each other, the shorter padded black at the bottom."""
    height = max(left.shape[-2], right.shape[-2])
    pad = lambda image: F.pad(image, (0, 0, 0, height - image.shape[-2]))  # noqa: E731
    return torch.cat([pad(left), pad(right)], dim=-1)


def _draw_matches(canvas: torch.Tensor, start: torch.Tensor, end: torch.Tensor, colours: torch.Tensor, square: int) -> None:
    """Draw lines start[i] -> end[i] and filled end-point squares into one [3, H, W] canvas, in place."""
    for p1, p2, colour in zip(start, end, colours):
        kornia.image.draw_line(canvas, p1, p2, colour)
    half = (square - 1) / 2
    for points in (start, end):
        boxes = torch.cat([points - half, points + half], dim=-1)[None]  # [1, N, 4] x1, y1, x2, y2
        kornia.image.draw_rectangle(canvas[None], boxes, colours[None], fill=True)


def match_lines(target_image: torch.Tensor, reference_image: torch.Tensor, corr: Correspondence, points_per_side: int = 8, square: int = 3) -> torch.Tensor:
    """[B, max(H, Hr), W + Wr, 3]: target | reference, with lines from a sparse grid of valid target tokens to their matches.

    Each line and its two end squares take a colour from the target point's position.
    """
    batch = _batch_size(corr.index.shape[0], target_image.shape[0], reference_image.shape[0])
    target = _channels_first(target_image, batch)
    reference = _channels_first(reference_image, batch)
    canvas = side_by_side(target, reference).clone()
    target_size, reference_size = tuple(target.shape[-2:]), tuple(reference.shape[-2:])
    tokens = sparse_tokens(corr.target_grid, points_per_side).to(corr.index.device)
    start = token_centres(tokens, corr.target_grid, target_size)
    colours = point_colours(start, target_size)
    index = corr.index.expand(batch, -1)
    valid = corr.valid.expand(batch, -1)
    for b in range(batch):
        keep = valid[b, tokens]
        end = token_centres(index[b, tokens[keep]], corr.reference_grid, reference_size)
        end[:, 0] += target_size[1]
        if keep.any():
            _draw_matches(canvas[b], start[keep], end, colours[keep], square)
    return _channels_last(canvas)

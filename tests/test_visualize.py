"""Correspondence pictures against ground-truth correspondences of known geometric transforms."""

import importlib
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import run_node

SIZE = 64  # reference images are SIZE x SIZE


@pytest.fixture
def visualize(host):
    """core/visualize.py as part of the pack ComfyUI loaded (imported here: until the node is registered nothing imports it)."""
    return importlib.import_module(host.pack.__name__ + ".core.visualize")


def texture(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A smooth, textured RGB image [H, W, 3] sampled at continuous pixel coordinates (x, y)."""
    tau = 2 * math.pi
    r = 0.5 + 0.3 * torch.sin(tau * x / 32 + 0.4) + 0.15 * torch.cos(tau * y / 21)
    g = 0.5 + 0.3 * torch.sin(tau * y / 27 + 1.0) + 0.15 * torch.sin(tau * (x + y) / 40)
    b = 0.5 + 0.25 * torch.cos(tau * (x - y) / 36) + 0.2 * (x / SIZE - 0.5)
    return torch.stack([r, g, b], dim=-1)


def pixel_grid(height, width):
    y, x = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    return x, y


# Target pixel (x, y) -> the reference pixel it shows, and the token grids that make it exact.
TRANSFORMS = {
    "flip": (lambda x, y: (SIZE - 1 - x, y), (16, 16), (16, 16)),
    "shift": (lambda x, y: (x - 8, y - 4), (16, 16), (16, 16)),  # content moves 8 px right, 4 px down
    # target = a 2x upscale of the 32x32 reference crop at (16, 8); 4 px target tokens land on 2 px reference tokens
    "crop_scale": (lambda x, y: ((x + 0.5) / 2 - 0.5 + 16, (y + 0.5) / 2 - 0.5 + 8), (16, 16), (32, 32)),
}


def ground_truth(host, name, batch=1):
    """(reference image, target image, Correspondence, target->reference pixel map [2, H, W]) for a transform."""
    mapping, target_grid, reference_grid = TRANSFORMS[name]
    reference = texture(*pixel_grid(SIZE, SIZE))[None]
    mx, my = mapping(*pixel_grid(SIZE, SIZE))
    target = texture(mx, my)[None]
    # Target token centres, mapped into the reference, name the matched reference token.
    ht, wt = target_grid
    hr, wr = reference_grid
    cy, cx = torch.meshgrid((torch.arange(ht) + 0.5) * SIZE / ht - 0.5, (torch.arange(wt) + 0.5) * SIZE / wt - 0.5, indexing="ij")
    rx, ry = mapping(cx, cy)
    col = torch.floor((rx + 0.5) * wr / SIZE).long()
    row = torch.floor((ry + 0.5) * hr / SIZE).long()
    valid = (col >= 0) & (col < wr) & (row >= 0) & (row < hr)
    index = (row.clamp(0, hr - 1) * wr + col.clamp(0, wr - 1)).flatten()[None].expand(batch, -1).clone()
    Correspondence = host.pack.core.correspondence.Correspondence
    corr = Correspondence(index, torch.ones(batch, ht * wt), valid.flatten()[None].expand(batch, -1).clone(), target_grid, reference_grid)
    return reference, target, corr, torch.stack([mx, my])


def interior(corr, size=(SIZE, SIZE)):
    """[H, W] bool: pixels whose token and all 8 neighbouring tokens are valid, the border ring of tokens excluded."""
    valid = corr.valid[0].reshape(1, 1, *corr.target_grid).float()
    valid = F.pad(valid, (1, 1, 1, 1))  # outside the image counts as invalid
    eroded = -F.max_pool2d(-valid, 3, stride=1)
    eroded[..., 0, :] = eroded[..., -1, :] = 0
    eroded[..., :, 0] = eroded[..., :, -1] = 0
    return F.interpolate(eroded, size=size, mode="nearest")[0, 0] > 0.5


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_flow_reproduces_the_affine_map_inside(host, visualize, name):
    _, _, corr, expected = ground_truth(host, name)
    flow = visualize.flow_to_pixels(corr, (SIZE, SIZE), (SIZE, SIZE))
    assert flow.shape == (1, 2, SIZE, SIZE)
    inside = interior(corr)
    assert inside.sum() > 0.4 * SIZE * SIZE
    assert torch.allclose(flow[0][:, inside], expected[:, inside], atol=1e-4)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_warping_through_the_ground_truth_reproduces_the_transformed_image(host, visualize, name):
    reference, target, corr, _ = ground_truth(host, name)
    warped = visualize.warp_reference(reference, corr, (SIZE, SIZE))
    assert warped.shape == (1, SIZE, SIZE, 3)
    inside = interior(corr)
    assert (warped[0][inside] - target[0][inside]).abs().max() < 0.02


def test_a_wrong_correspondence_does_not_reproduce_the_shift(host, visualize):
    reference, target, corr, _ = ground_truth(host, "shift")
    identity = host.pack.core.correspondence.identity_correspondence(corr.target_grid)
    warped = visualize.warp_reference(reference, identity, (SIZE, SIZE))
    inside = interior(corr)
    assert (warped[0][inside] - target[0][inside]).abs().max() > 0.2


def test_a_batch_of_correspondences_warps_one_reference_and_greys_invalid_tokens(host, visualize):
    Correspondence = host.pack.core.correspondence.Correspondence
    reference, flipped, flip, _ = ground_truth(host, "flip")
    _, shifted, shift, _ = ground_truth(host, "shift")
    both = Correspondence(torch.cat([flip.index, shift.index]), torch.ones(2, 256), torch.cat([flip.valid, shift.valid]), (16, 16), (16, 16))
    warped = visualize.warp_reference(reference, both, (SIZE, SIZE))
    assert warped.shape == (2, SIZE, SIZE, 3)
    assert (warped[0][interior(flip)] - flipped[0][interior(flip)]).abs().max() < 0.02
    assert (warped[1][interior(shift)] - shifted[0][interior(shift)]).abs().max() < 0.02
    # The shift has no source for its first 2 token columns and first token row: shown grey and dimmed.
    invalid = warped[1, :4]
    assert torch.allclose(invalid[..., 0], invalid[..., 1]) and torch.allclose(invalid[..., 1], invalid[..., 2])
    assert invalid.max() <= 0.5 + 1e-6 and invalid.max() > 0.05
    assert not torch.allclose(warped[1, 8:, 8:, 0], warped[1, 8:, 8:, 1])  # valid pixels keep their colour


def side_by_side(left, right):
    height = max(left.shape[1], right.shape[1])
    pad = lambda image: F.pad(image, (0, 0, 0, 0, 0, height - image.shape[1]))  # noqa: E731
    return torch.cat([pad(left), pad(right)], dim=2)


def test_match_lines_leave_the_images_alone_away_from_the_points(host, visualize):
    reference, target, corr, _ = ground_truth(host, "flip")
    picture = visualize.match_lines(target, reference, corr, points_per_side=8)
    plain = side_by_side(target, reference)
    assert picture.shape == (1, SIZE, 2 * SIZE, 3)
    # The 8x8 points sit on token rows 1, 3, ..., 15 (first at pixel row 6), lines run between points: rows 0-3 are untouched.
    assert torch.equal(picture[:, :4], plain[:, :4])
    assert not torch.equal(picture, plain)


def test_a_match_line_has_its_target_points_colour_from_end_to_end(host, visualize):
    Correspondence = host.pack.core.correspondence.Correspondence
    reference, target, corr, _ = ground_truth(host, "flip")
    # Two valid tokens on the 8x8 subgrid: (row 5, col 3) and (row 11, col 13); the flip keeps rows, so lines are horizontal.
    sparse = visualize.sparse_tokens((16, 16), 8).tolist()
    assert 5 * 16 + 3 in sparse and 11 * 16 + 13 in sparse
    valid = torch.zeros(1, 256, dtype=torch.bool)
    valid[0, [5 * 16 + 3, 11 * 16 + 13]] = True
    picture = visualize.match_lines(target, reference, Correspondence(corr.index, corr.similarity, valid, (16, 16), (16, 16)), points_per_side=8)[0]
    plain = side_by_side(target, reference)[0]
    # (5, 3): target centre (13.5, 21.5) -> pixel (14, 22); matched reference token column 12 at x 64 + 49.5 -> 114.
    start, middle, end = picture[22, 14], picture[22, 64], picture[22, 114]
    assert torch.equal(start, middle) and torch.equal(middle, end)
    assert (middle - plain[22, 64]).abs().max() > 0.05
    assert torch.equal(picture[22, 13], start) and torch.equal(picture[23, 15], start)  # 3x3 end square
    # (11, 13): target (53.5, 45.5) -> (54, 46); reference token column 2 at 64 + 9.5 -> 74.
    other = picture[46, 64]
    assert torch.equal(other, picture[46, 54]) and torch.equal(other, picture[46, 74])
    assert (other - middle).abs().max() > 0.1  # another position, another colour
    # Nothing else is drawn: rows away from both lines are the plain images.
    assert torch.equal(picture[30:40], plain[30:40])


def test_no_valid_token_draws_no_line_and_the_shorter_image_is_padded_black(host, visualize):
    Correspondence = host.pack.core.correspondence.Correspondence
    g = torch.Generator().manual_seed(0)
    target = torch.rand(2, 32, 48, 3, generator=g)
    reference = torch.rand(1, SIZE, SIZE, 3, generator=g)
    index = torch.randint(0, 256, (2, 8 * 12), generator=g)
    none = Correspondence(index, torch.ones(2, 96), torch.zeros(2, 96, dtype=torch.bool), (8, 12), (16, 16))
    picture = visualize.match_lines(target, reference, none, points_per_side=8)
    assert picture.shape == (2, SIZE, 48 + SIZE, 3)
    assert torch.equal(picture, side_by_side(target, reference.expand(2, -1, -1, -1)))
    assert picture[:, 32:, :48].abs().max() == 0
    every = Correspondence(index, torch.ones(2, 96), torch.ones(2, 96, dtype=torch.bool), (8, 12), (16, 16))
    drawn = visualize.match_lines(target, reference, every, points_per_side=8)
    assert drawn.shape == picture.shape and not torch.equal(drawn, picture)


def test_confidence_heatmap_colours_similarity_and_blacks_out_invalid_tokens(host, visualize):
    Correspondence = host.pack.core.correspondence.Correspondence
    similarity = torch.tensor([[1.0, 0.0, -0.5, 1.0]])  # on a 2x2 grid; the last token is invalid
    valid = torch.tensor([[True, True, True, False]])
    corr = Correspondence(torch.zeros(1, 4, dtype=torch.long), similarity, valid, (2, 2), (2, 2))
    heat = visualize.confidence_heatmap(corr, (16, 16))[0]
    assert heat.shape == (16, 16, 3)
    high, low, negative, invalid = heat[:8, :8], heat[:8, 8:], heat[8:, :8], heat[8:, 8:]
    for block in (high, low, negative, invalid):
        assert torch.equal(block, block[:1, :1].expand_as(block))  # one colour per token
    assert (high[0, 0] - low[0, 0]).abs().max() > 0.3
    assert torch.allclose(negative, low)  # similarity below 0 is clamped to the low end
    assert low.max() > 0.1  # the low end is a colour, not black
    assert invalid.abs().max() == 0


# Needs E4E_VisualizeCorrespondence registered in nodes/__init__.py (NODES); fails with KeyError until then.
def test_node_outputs_three_pictures_and_names_a_mismatched_batch(host):
    cls = host.nodes.NODE_CLASS_MAPPINGS["E4E_VisualizeCorrespondence"]
    reference, target, corr, _ = ground_truth(host, "flip", batch=2)
    matches, warped, confidence = run_node(cls, correspondence=corr, target_image=target.expand(2, -1, -1, -1), reference_image=reference, points_per_side=8)
    assert matches.shape == (2, SIZE, 2 * SIZE, 3)
    assert warped.shape == confidence.shape == (2, SIZE, SIZE, 3)
    assert cls.execute(correspondence=corr, target_image=target, reference_image=reference, points_per_side=4).ui is not None
    with pytest.raises(ValueError, match="reference_image"):
        run_node(cls, correspondence=corr, target_image=target, reference_image=reference.expand(3, -1, -1, -1), points_per_side=8)

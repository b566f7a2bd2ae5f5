"""Dense correspondence from target tokens to reference tokens (the E4E_CORRESPONDENCE type)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from einops import rearrange

from .matching import nearest_reference_index

Grid = tuple[int, int]


@dataclass(frozen=True)
class ImageFeatures:
    """Per-token features of a batch of images on one token grid (the E4E_FEATURES type)."""

    tokens: torch.Tensor  # [B, h * w, C], row-major over the grid
    grid: Grid
    layers: tuple  # names of the layers the channels come from
    source: str  # how they were made, for display
    # Provenance: the image (pixels, height x width), the latent's digest and the model (fingerprint) they describe.
    image_size: Optional[Grid] = None
    digest: str = ""
    made_by: str = ""


@dataclass(frozen=True)
class Correspondence:
    """index[b, t]: the reference token matched to target token t; valid[b, t]: whether t is transferred."""

    index: torch.Tensor  # [B, ht * wt] long
    similarity: torch.Tensor  # [B, ht * wt] cosine similarity of the match
    valid: torch.Tensor  # [B, ht * wt] bool
    target_grid: Grid
    reference_grid: Grid
    # Provenance: what it was computed for (empty when unknown, e.g. built by hand).
    target_digest: str = ""
    reference_digest: str = ""
    target_image_size: Optional[Grid] = None
    reference_image_size: Optional[Grid] = None
    layers: tuple = ()

    def reference_coordinates(self) -> torch.Tensor:
        """[B, 2, ht, wt]: (x, y) of each matched reference token centre, in [0, 1] of the reference image."""
        h, w = self.reference_grid
        y = (torch.div(self.index, w, rounding_mode="floor").float() + 0.5) / h
        x = (self.index % w).float() + 0.5
        x = x / w
        return rearrange(torch.stack([x, y], dim=1), "b xy (h w) -> b xy h w", h=self.target_grid[0])


def identity_correspondence(grid: Grid, batch: int = 1) -> Correspondence:
    tokens = grid[0] * grid[1]
    index = torch.arange(tokens).expand(batch, -1).clone()
    return Correspondence(index, torch.ones(batch, tokens), torch.ones(batch, tokens, dtype=torch.bool), grid, grid)


def semantic_match(
    target: ImageFeatures,
    reference: ImageFeatures,
    mutual: bool = False,
    target_mask: Optional[torch.Tensor] = None,
    reference_mask: Optional[torch.Tensor] = None,
    min_similarity: float = -1.0,
) -> Correspondence:
    """Cosine nearest neighbour of every target token among the reference tokens.

    Masks are bool [B or 1, tokens] on each side's grid: masked-out reference tokens are
    never chosen, masked-out target tokens are marked invalid. With `mutual`, a match
    is valid only if the target token is also the reference token's nearest neighbour.
    """
    index, similarity = nearest_reference_index(target.tokens, reference.tokens, reference_mask)
    valid = similarity >= min_similarity
    if target_mask is not None:
        valid &= target_mask.expand_as(valid)
    if mutual:
        back, _ = nearest_reference_index(reference.tokens.expand(target.tokens.shape[0], -1, -1), target.tokens, target_mask)
        round_trip = torch.gather(back, 1, index)
        valid &= round_trip == torch.arange(index.shape[1], device=index.device)
    return Correspondence(index, similarity, valid, target.grid, reference.grid, *_provenance(target, reference))


def _provenance(target: ImageFeatures, reference: ImageFeatures) -> tuple:
    return target.digest, reference.digest, target.image_size, reference.image_size, tuple(target.layers)


def token_centres(grid: Grid) -> torch.Tensor:
    """[2, h, w]: (x, y) of every token centre of a grid, in [0, 1]."""
    h, w = grid
    y, x = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing="ij")
    return torch.stack([x, y])


def resample(correspondence: Correspondence, target_grid: Grid, reference_grid: Grid) -> tuple[torch.Tensor, torch.Tensor]:
    """The correspondence on other token grids: (index [B, T'], valid [B, T']).

    The displacement (matched position minus own position) is carried over by nearest
    neighbour, so identities and shifts stay exact and a fine token keeps its offset
    inside the coarse token it falls in.
    """
    if target_grid == correspondence.target_grid and reference_grid == correspondence.reference_grid:
        return correspondence.index, correspondence.valid
    displacement = correspondence.reference_coordinates() - token_centres(correspondence.target_grid).to(correspondence.index.device)
    coords = F.interpolate(displacement, size=target_grid, mode="nearest") + token_centres(target_grid).to(displacement.device)
    valid_map = rearrange(correspondence.valid.float(), "b (h w) -> b 1 h w", h=correspondence.target_grid[0])
    valid = F.interpolate(valid_map, size=target_grid, mode="nearest")
    h, w = reference_grid
    col = (coords[:, 0] * w).floor().clamp(0, w - 1).long()
    row = (coords[:, 1] * h).floor().clamp(0, h - 1).long()
    return rearrange(row * w + col, "b h w -> b (h w)"), rearrange(valid, "b 1 h w -> b (h w)") > 0.5


def mirror_index(index: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Row-major token indices of a (h, w) grid mapped to the same tokens of the left-right mirrored grid."""
    w = grid[1]
    return (index // w) * w + (w - 1 - index % w)


def mirror_tokens(tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
    """[..., h * w] or [..., h * w, C] values of a grid, mirrored left-right (token order stays row-major)."""
    mirrored = mirror_index(torch.arange(grid[0] * grid[1], device=tokens.device), grid)
    return tokens[..., mirrored, :] if tokens.ndim == 3 else tokens[..., mirrored]


def mirror_aware_match(
    target: ImageFeatures,
    reference: ImageFeatures,
    mirrored_reference: ImageFeatures,
    mutual: bool = False,
    target_mask: Optional[torch.Tensor] = None,
    reference_mask: Optional[torch.Tensor] = None,
    min_similarity: float = -1.0,
) -> tuple[Correspondence, torch.Tensor]:
    """Match against the reference and against its mirror image; per image, keep the orientation whose
    valid matches are more similar on average. Mirrored matches are mapped back onto the reference's grid.

    Returns (correspondence into the unmirrored reference, flipped [B] bool).
    """
    if mirrored_reference.grid != reference.grid:
        raise ValueError("mirrored_reference_features must come from the mirrored reference image (same size)")
    mirrored_mask = None if reference_mask is None else mirror_tokens(reference_mask, reference.grid)
    direct = semantic_match(target, reference, mutual, target_mask, reference_mask, min_similarity)
    mirror = semantic_match(target, mirrored_reference, mutual, target_mask, mirrored_mask, min_similarity)

    def mean_similarity(corr: Correspondence) -> torch.Tensor:
        weight = corr.valid.float()
        return (corr.similarity * weight).sum(1) / weight.sum(1).clamp_min(1)

    flipped = mean_similarity(mirror) > mean_similarity(direct)
    unmirrored_index = mirror_index(mirror.index, reference.grid)
    pick = flipped[:, None]
    chosen = Correspondence(
        torch.where(pick, unmirrored_index, direct.index),
        torch.where(pick, mirror.similarity, direct.similarity),
        torch.where(pick, mirror.valid, direct.valid),
        target.grid,
        reference.grid,
        *_provenance(target, reference),
    )
    return chosen, flipped

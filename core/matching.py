"""Dense nearest-neighbour correspondence by cosine similarity, batched and chunked."""

from __future__ import annotations

from typing import Optional

import torch

# Bounds one chunk's similarity matrix (elements, float32): 2**26 is 256 MiB.
DEFAULT_CHUNK_ELEMENTS = 2**26
_EPS = 1e-12  # as F.normalize


def _unit_rows(x: torch.Tensor) -> torch.Tensor:
    return x / torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(_EPS)


def nearest_reference_index(
    query: torch.Tensor,
    reference: torch.Tensor,
    reference_mask: Optional[torch.Tensor] = None,
    chunk_elements: int = DEFAULT_CHUNK_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For every query token, the reference token of highest cosine similarity.

    query [B, Tq, C]; reference [B or 1, Tr, C]; reference_mask [B or 1, Tr] bool,
    True where a reference token may be chosen. Returns (index [B, Tq] long,
    similarity [B, Tq] float32). One matrix product per chunk of query rows.

    Only the reference is normalised before the product: scaling a query row by a
    positive number does not move its argmax, so the query's norm divides the
    winning similarity afterwards instead of the whole matrix's inputs.
    """
    if reference_mask is not None and not bool(reference_mask.any(dim=-1).all()):
        raise ValueError("the reference mask is empty: nothing in the reference can be matched")
    q = query.float()
    r = _unit_rows(reference.float())
    allowed = None
    if reference_mask is not None and reference_mask.shape[0] == 1:
        # One mask for the whole batch: drop the excluded columns instead of filling them with -inf.
        allowed = reference_mask[0].to(r.device).nonzero().flatten()
        r, reference_mask = r[:, allowed], None
    r_t = r.transpose(1, 2).expand(q.shape[0], -1, -1)
    rows_per_chunk = max(1, chunk_elements // max(1, r_t.shape[0] * r_t.shape[2]))
    indices, similarities = [], []
    for begin in range(0, q.shape[1], rows_per_chunk):
        sim = torch.bmm(q[:, begin : begin + rows_per_chunk], r_t)
        if reference_mask is not None:
            sim.masked_fill_(~reference_mask[:, None, :].to(sim.device), float("-inf"))
        best, index = sim.max(dim=-1)
        indices.append(index)
        similarities.append(best)
    index = indices[0] if len(indices) == 1 else torch.cat(indices, dim=1)
    best = similarities[0] if len(similarities) == 1 else torch.cat(similarities, dim=1)
    if allowed is not None:
        index = allowed[index]
    return index, best / torch.linalg.vector_norm(q, dim=-1).clamp_min(_EPS)


def gather_tokens(reference: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """reference [B or 1, Tr, C] rearranged by index [B, Tq] into [B, Tq, C]."""
    reference = reference.expand(index.shape[0], -1, -1)
    return torch.gather(reference, 1, index[..., None].expand(-1, -1, reference.shape[-1]))


def rearrange_like(
    own: torch.Tensor,
    reference: torch.Tensor,
    index: torch.Tensor,
    own_mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """own [B, T, C] with every token inside own_mask [B, T] replaced by reference[index]."""
    moved = gather_tokens(reference.to(own.dtype), index)
    if own_mask is None:
        return moved
    return torch.where(own_mask[..., None].to(own.device), moved, own)

"""Dense nearest-neighbour correspondence by cosine similarity, batched and chunked."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

# Bounds one chunk's similarity matrix (elements, float32): 2**26 is 256 MiB.
DEFAULT_CHUNK_ELEMENTS = 2**26


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
    """
    if reference_mask is not None and not bool(reference_mask.any(dim=-1).all()):
        raise ValueError("the reference mask is empty: nothing in the reference can be matched")
    q = F.normalize(query.float(), dim=-1)
    r = F.normalize(reference.float(), dim=-1).expand(q.shape[0], -1, -1)
    rows_per_chunk = max(1, chunk_elements // max(1, r.shape[0] * r.shape[1]))
    indices, similarities = [], []
    for begin in range(0, q.shape[1], rows_per_chunk):
        sim = torch.bmm(q[:, begin : begin + rows_per_chunk], r.transpose(1, 2))
        if reference_mask is not None:
            sim = sim.masked_fill(~reference_mask[:, None, :].to(sim.device), float("-inf"))
        best, index = sim.max(dim=-1)
        indices.append(index)
        similarities.append(best)
    return torch.cat(indices, dim=1), torch.cat(similarities, dim=1)


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

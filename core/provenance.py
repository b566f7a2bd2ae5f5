"""Cheap identities of what travels between nodes, so that mixing things up is refused instead of drawn."""

from __future__ import annotations

import hashlib

import torch


def tensor_digest(tensor: torch.Tensor) -> str:
    """A short content hash of a tensor (shape and float32 values); a LATENT is tens of kB, so this is cheap."""
    data = tensor.detach().to("cpu", torch.float32).contiguous()
    digest = hashlib.blake2b(str(tuple(data.shape)).encode(), digest_size=6)
    digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def size_text(size) -> str:
    return "x".join(str(int(s)) for s in size) if size else "unknown size"

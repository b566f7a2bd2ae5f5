"""An attention replace patch that keeps the softmax weights (heads averaged) of the layer it replaces.

Registered as attn1 / attn2 replace patch on a model clone for one extra model call. It computes attention the
way the published processors do (softmax(q k^T / sqrt(d)) @ v per head, in float32) and keeps the weights of
the last call, as the published Segmentor keeps the last layer called at each size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class AttentionCapture:
    name: str
    weights: Optional[torch.Tensor] = field(default=None, repr=False)  # [B, queries, keys], heads averaged

    def __deepcopy__(self, memo):
        return self  # ComfyUI copies model options; the capture must stay the one the node reads

    def __call__(self, q, k, v, extra_options):
        heads = int(extra_options["n_heads"])
        batch, queries, inner = q.shape
        dim = inner // heads
        split = lambda t: t.float().reshape(t.shape[0], t.shape[1], heads, dim).transpose(1, 2)  # noqa: E731
        qh, kh, vh = split(q), split(k), split(v)
        weights = torch.softmax(qh @ kh.transpose(-2, -1) / math.sqrt(dim), dim=-1)
        self.weights = weights.mean(dim=1)
        out = (weights @ vh).transpose(1, 2).reshape(batch, queries, inner)
        return out.to(q.dtype)

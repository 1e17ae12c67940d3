"""Full attention, as BERT computes it: every token attends to every real token, softmax(q kᵀ / √hs) v.

It runs on `torch.nn.functional.scaled_dot_product_attention`, which picks a fused kernel (flash attention on CPU and
CUDA) that never materialises the (T, T) score matrix. Two things decide whether the fused kernel is used (measured
with benchmarks/bench_model.py --sdpa):
- dropout on the attention probabilities sends SDPA on CPU to its unfused "math" kernel (about 3.7x slower at 4096
  tokens), hence the default of 0.0;
- a mask: the fused CPU kernel takes one, and a (B, 1, 1, T) boolean mask broadcast over heads and queries costs
  nothing measurable; CUDA's flash kernel takes no mask at all, so the encoder passes none when a batch has no
  padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from textcls.config import AttentionOptions
from textcls.model.attention import Attention, AttentionInputs, register_attention


@dataclass
class FullOptions(AttentionOptions):
    """Full attention has no options."""


@register_attention("full", FullOptions)
class FullAttention(Attention):
    """Every token attends to every real token (BERT); fused SDPA kernels."""

    exact = True

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        # (B, T) -> (B, 1, 1, T): broadcast over heads and queries; True = may be attended to (SDPA's convention too)
        mask = None if inputs.key_padding_mask is None else inputs.key_padding_mask[:, None, None, :]
        p = self.shape.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)  # (B, nh, T, hs)

    @classmethod
    def full_limit(cls, seq_len: int) -> Optional[dict]:
        return {}

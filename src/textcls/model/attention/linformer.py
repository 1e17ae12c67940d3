"""Linformer (Wang et al. 2020, "Linformer: Self-Attention with Linear Complexity"): keys and values are projected
along the sequence to a fixed length k before attention, so that each query attends to k mixtures of tokens:

    K' = E[:, :T] K,  V' = F[:, :T] V          E, F: (k, n) learned, n = the model's positions
    out = softmax(Q K'ᵀ / √hs) V'              (T, k) scores instead of (T, T)

Time and memory grow as T * k, not T * T (plus the O(T * k * hs) projections). A batch shorter than n uses the
first T columns of E and F. The same query, key and value projections as BERT, so a BERT checkpoint or MiniLM
switches to it as it is; E and F are weights of the mechanism, saved with the model (checkpoints without them start
them fresh).

Sharing (`--linformer-share`, the paper's section 4):
- head: one E and one F per layer, shared by all its heads (headwise sharing);
- kv: one projection per layer for keys and values alike (E = F, key-value sharing);
- layer: one projection for keys and values shared by every layer (layerwise sharing): the encoder ties the
  layers' parameters to the first layer's (`tie_layers`), which is how it is saved and exported.

Padding is exact: padded keys and values are zeroed before projecting, and a projected key with no real token in
its support (its row of E is zero on every real token) is masked. A padded row therefore gives its real tokens
exactly what the row gives alone, and at k = n with identity projections (`full_limit`) this is full attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from textcls.config import AttentionOptions, opt
from textcls.errors import TextclsError
from textcls.model.attention import Attention, AttentionInputs, AttentionShape, register_attention


@dataclass
class LinformerOptions(AttentionOptions):
    linformer_k: int = opt(256, "projected length k: keys and values are projected along the sequence to k "
                                "mixtures of tokens (time and memory T * k)", ge=1)
    linformer_share: str = opt("head", "what shares a projection: head, one E and one F per layer for all its "
                                       "heads; kv, one per layer for keys and values (E = F); layer, one for "
                                       "keys and values in every layer", choices=("head", "kv", "layer"))


def projected_key_mask(E: torch.Tensor, real: Optional[torch.Tensor]) -> torch.Tensor:
    """Which projected keys have a real token in their support: (k, T) projection, (B, T) bool real tokens (None:
    all real) -> (B or 1, 1, 1, k) bool, True = may be attended to. A random projection has full support (all
    True); an identity one keeps exactly the real tokens. A row with none (an example of padding only) keeps all
    its keys, which are then zero: a finite output, never NaN."""
    support = (E != 0).to(torch.float32)  # (k, T)
    if real is None:
        valid = support.sum(1)[None] > 0  # (1, k)
    else:
        valid = real.to(torch.float32) @ support.T > 0  # (B, k): counts of real tokens in each row's support
    valid = valid | ~valid.any(-1, keepdim=True)
    return valid[:, None, None, :]  # broadcast over heads and queries


INIT_SEED = 0  # of the initial random projections (initial_projection)


@register_attention("linformer", LinformerOptions)
class LinformerAttention(Attention):
    """Keys and values projected along the sequence to k (Linformer); O(T * k)."""

    def __init__(self, shape: AttentionShape, options: LinformerOptions):
        super().__init__(shape, options)
        k, n = options.linformer_k, shape.max_positions
        g = torch.Generator().manual_seed(INIT_SEED)
        self.E = nn.Parameter(self.initial_projection(k, n, g))  # (k, n): keys
        # (k, n): values; "kv" and "layer" use E for both
        self.F = nn.Parameter(self.initial_projection(k, n, g)) if options.linformer_share == "head" else None

    @staticmethod
    def initial_projection(k: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """(k, n). At k = n a projection need lose nothing, and the identity is the exact start: the model begins
        as the full attention it was pretrained with (and `full_limit` relies on it). Otherwise the paper's
        Johnson-Lindenstrauss projection (its Theorem 1): entries N(0, 1/k), so E[Eᵀ E] = I and the projected keys
        and values keep inner products in expectation, for the first T columns as for all n. Drawn from a fixed
        seed: a JL projection needs to be random, not different each time, so a fresh mechanism of a shape is
        always the same one (eval outputs reproducible without a seed) and the global RNG stream is untouched."""
        if k == n:
            return torch.eye(n, device="cpu")
        return torch.randn(k, n, generator=generator, device="cpu") / math.sqrt(k)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        T = k.shape[2]
        E = self.E[:, :T]  # (k, T): the first T columns
        Fv = E if self.F is None else self.F[:, :T]  # (k, T)
        real = inputs.key_padding_mask  # (B, T) bool, True = real token; None: no padding
        if real is not None:  # zero padded keys and values before they are mixed in
            pad = ~real[:, None, :, None]  # (B, 1, T, 1)
            k, v = k.masked_fill(pad, 0), v.masked_fill(pad, 0)
        kp = torch.matmul(E, k)  # (k, T) @ (B, nh, T, hs) -> (B, nh, k, hs)
        vp = torch.matmul(Fv, v)  # (B, nh, k, hs)
        mask = projected_key_mask(E, real)  # (B or 1, 1, 1, k)
        p = self.shape.dropout if self.training else 0.0
        return F.scaled_dot_product_attention(q, kp, vp, attn_mask=mask, dropout_p=p)  # (B, nh, T, hs)

    @classmethod
    def tie_layers(cls, mechanisms: Sequence[Attention]) -> None:
        """Layerwise sharing: every layer's projection is the first layer's (one parameter, saved once)."""
        first = mechanisms[0]
        if first.options.linformer_share == "layer":
            for m in mechanisms[1:]:
                m.E = first.E

    @classmethod
    def check_options(cls, options: LinformerOptions, shape: AttentionShape, max_length: int) -> None:
        n = shape.max_positions
        if max_length > n:
            raise TextclsError(f"attention 'linformer' projects at most {n} positions (E and F are "
                               f"({options.linformer_k}, {n}), the model's positions): --max-length {max_length} is "
                               f"longer; lower --max-length to {n} or add --extend-positions, which lengthens the "
                               f"projections with the positions")
        super().check_options(options, shape, max_length)

    @classmethod
    def full_limit(cls, seq_len: int) -> Optional[dict]:
        return {"linformer_k": seq_len}  # k = n = T: identity projections (initial_projection)

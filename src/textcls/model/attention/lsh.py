"""LSH attention, as Reformer (Kitaev et al. 2020, "Reformer: The Efficient Transformer"): each token attends to the
tokens that a locality-sensitive hash puts near it, instead of to every token.

What it computes, per head:
- queries and keys are one vector (shared QK, `shared_qk`: the block passes k = q, and k is not read); a key is its
  query normalised to unit length, scores are q · k̂ / √hs;
- angular LSH: `--lsh-buckets` n buckets, bucket = argmax([xR; -xR]) for a random rotation R of shape (hs, n/2),
  one per head and round;
- the tokens are stable-sorted by (bucket, position) and the sorted sequence is cut into chunks of `--lsh-chunk` c
  queries; each chunk attends to its own chunk and the previous one (2c keys), whatever their buckets (as Reformer
  and transformers' ReformerAttention: buckets decide the order, chunks the pairs);
- a token does not attend to itself unless it has nothing else: its own score gets -1e5 added (Reformer's constant,
  not -inf: a token alone still attends to itself);
- `--lsh-rounds` r hashes, each attended as above, combined with weights softmax over rounds of each round's
  log-sum-exp: the same as one softmax over the keys of every round (a key met in two rounds counts twice).
Randomness: in training R is drawn at every forward from torch's global RNG (the run's seed makes it reproducible,
and every step hashes differently); in evaluation from a generator seeded with `--lsh-seed`, so the same input gives
the same logits on every call.

Time and memory grow as T · c · r (plus the O(T · hs · n · r) hashing), never T · T.

Differences from transformers' Reformer (ReformerAttention's LSHSelfAttention):
- no wrap-around: the first chunk has no previous chunk (Reformer attends the last one), and padding goes to a bucket
  of its own sorted after every real token, so that a padded row gives its real tokens exactly what the row gives
  alone: padding never shares a chunk's keys unmasked, nor shifts the real tokens' chunks;
- no causal mask (a bidirectional encoder), and no duplicate-count correction across rounds (neither has
  transformers' implementation);
- the sequence is padded internally to a multiple of c, so the collator pads nothing extra (seq_multiple_of = 1);
- the same rotations in every layer in evaluation (one seed), fresh ones per layer in training.
An ONNX export (`textcls export --format onnx`) computes the evaluation's hashing: the rotations are a constant of
the graph.

Kernels: everything is batched over examples, heads, rounds and chunks at once. The mask only depends on the example
(where its padding starts in the sorted order, which is the same for every head and round, since padding sorts last)
and on the chunk, so queries are laid out as (B · chunks, nh · r, c, hs) and one (B · chunks, 1, c, 2c) additive
float mask is shared by every head and round, as sliding.py does. With one round (the default) that is ONE fused
`scaled_dot_product_attention` call (the CPU flash kernel: no score matrix is saved for the backward). With several
rounds the combination needs each round's log-sum-exp, which SDPA does not return (the private CPU flash op does,
but not differentiably), so the (c, 2c) score blocks are computed explicitly: one batched matmul, logsumexp, softmax,
matmul. That costs about 1.7x the fused kernel's time (forward + backward, c = 64, hs = 64, one thread) and keeps
the probabilities for the backward, hence the fused call wherever it suffices. At T = 4096 (64 buckets, chunks of
64, one round) forward + backward takes about a tenth of full attention's time on CPU, half of it in the SDPA call.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from textcls.config import AttentionOptions, opt
from textcls.errors import TextclsError
from textcls.model.attention import (Attention, AttentionInputs, AttentionShape, layout_dtype,
                                     register_attention)


@dataclass
class LshOptions(AttentionOptions):
    lsh_buckets: int = opt(32, "hash buckets n (angular LSH: argmax over [xR; -xR], R of n/2 random rotations); "
                               "even, or 1 (no hashing: the chunks of the sequence in order)", ge=1)
    lsh_rounds: int = opt(1, "hashing rounds, combined by their log-sum-exp (time and memory grow with them)", ge=1)
    lsh_chunk: int = opt(64, "queries per chunk of the sorted sequence; each chunk attends to itself and the previous "
                             "one (time and memory T * 2 * chunk * rounds)", ge=1)
    lsh_seed: int = opt(0, "seed of the hashing in evaluation (fixed, so evaluation is deterministic); training "
                           "draws fresh rotations from the run's seed at every step")

    def check(self) -> None:
        if self.lsh_buckets > 1 and self.lsh_buckets % 2:
            raise TextclsError(f"--lsh-buckets {self.lsh_buckets} must be even (or 1): angular LSH takes the argmax "
                               f"over [xR; -xR], R of buckets/2 rotations")


def self_mask_value(dtype: torch.dtype) -> float:
    """Reformer's score penalty on a token's own key: large but finite (fp16's range ends at 65504: -1e3 there, as
    transformers)."""
    return -1e3 if dtype == torch.float16 else -1e5


@dataclass
class LshLayout:
    """What every layer's LSH attention over one batch shares, made once per forward (`lsh_layout`)."""
    T: int
    c: int  # queries per chunk
    n: int  # chunks; T padded to n * c
    real: torch.Tensor  # (B, n * c) bool, True = real token (the internal padding is not)
    mask: torch.Tensor  # (B * n, 1, c, 2c) additive float mask, in sorted order, shared by heads and rounds

    def mask_as(self, dtype: torch.dtype) -> torch.Tensor:
        return self.mask if self.mask.dtype == dtype else self.mask.to(dtype)


def lsh_layout(B: int, T: int, chunk: int, key_padding_mask: Optional[torch.Tensor], dtype: torch.dtype,
               device: torch.device) -> LshLayout:
    """The chunks and the mask of LSH attention over a (B, T) batch.

    In the sorted order the L_b real tokens of example b come first (padding has a bucket of its own, sorted last),
    in every head and round, so sorted slot s holds a real token iff s < L_b. Query slot i of chunk j sees key
    columns [chunk j-1 | chunk j]: a key counts if it is real and, in the previous half, j > 0 (no wrap-around);
    its own key (column c + i) gets the self penalty. A padded query sees only itself (no empty row, no NaN)."""
    c = min(chunk, T)  # a chunk longer than the sequence is the whole sequence
    n = (T + c - 1) // c  # not -(-T // c): exported to ONNX, integer division truncates
    Tp = n * c
    real = torch.ones(B, T, dtype=torch.bool, device=device) if key_padding_mask is None else \
        key_padding_mask.to(torch.bool)
    real = F.pad(real, (0, Tp - T))                                     # (B, Tp)
    count = real.sum(1)                                                 # (B,) L_b
    slot = torch.arange(Tp, device=device)
    sreal = slot[None, :] < count[:, None]                              # (B, Tp) sorted slot holds a real token
    prev = F.pad(sreal, (c, 0))[:, :Tp].view(B, n, c)  # (B, n, c) keys of chunk j-1; chunk 0 has none (no wrap)
    keyok = torch.cat([prev, sreal.view(B, n, c)], -1)                  # (B, n, 2c)
    ninf = float("-inf")
    own = torch.arange(2 * c, device=device)[None, :] == torch.arange(c, device=device)[:, None] + c  # (c, 2c)
    keys = torch.zeros(B, n, 1, 2 * c, dtype=dtype, device=device).masked_fill_(~keyok[:, :, None], ninf)
    keys = keys + own.to(dtype) * self_mask_value(dtype)                # (B, n, c, 2c) real rows
    alone = torch.zeros(c, 2 * c, dtype=dtype, device=device).masked_fill_(~own, ninf)  # padded rows
    mask = torch.where(sreal.view(B, n, c, 1), keys, alone).view(B * n, 1, c, 2 * c)
    return LshLayout(T, c, n, real, mask)


def hash_buckets(x: torch.Tensor, rotations: Optional[torch.Tensor], real: torch.Tensor, buckets: int) -> torch.Tensor:
    """x: (B, Tp, nh, hs) the shared query-key vectors; rotations: (nh, hs, r, n/2) (None when n = 1, with r = 1);
    real: (B, Tp). Returns (B, nh, r, Tp) the bucket of each token in each round; padding gets bucket n."""
    B, Tp, nh, _ = x.shape
    if rotations is None:
        out = torch.zeros(B, nh, 1, Tp, dtype=torch.long, device=x.device)
    else:
        xr = torch.einsum("bthd,hdrk->bhrtk", x, rotations.to(x.dtype))  # (B, nh, r, Tp, n/2)
        out = torch.cat([xr, -xr], -1).argmax(-1)                          # (B, nh, r, Tp)
    return out.masked_fill(~real[:, None, None, :], buckets)


def lsh_attention(q: torch.Tensor, v: torch.Tensor, buckets: int, chunk: int,
                  rotations: Optional[torch.Tensor], key_padding_mask: Optional[torch.Tensor] = None,
                  dropout_p: float = 0.0, layout: Optional[LshLayout] = None) -> torch.Tensor:
    """Reformer's LSH attention. q, v: (B, nh, T, hs), q the shared query-key vectors. rotations: (nh, hs, r, n/2),
    n = buckets (None for n = 1: one round, no hashing). key_padding_mask: (B, T) bool, True = real token.
    layout: what lsh_layout made of these (shared by the layers of a model), else made here.
    Returns (B, nh, T, hs); rows of padded tokens are finite but meaningless (they see only themselves)."""
    B, nh, T, hs = q.shape
    dev = q.device
    if torch.is_autocast_enabled(dev.type):  # cast once, so that the gathered copies are in the low precision
        dt = torch.get_autocast_dtype(dev.type)
        q, v = q.to(dt), v.to(dt)
    if layout is None:
        layout = lsh_layout(B, T, chunk, key_padding_mask, q.dtype, dev)
    c, n = layout.c, layout.n
    Tp = n * c
    r = 1 if rotations is None else rotations.shape[2]

    # Token-major and padded to whole chunks: (B, Tp, nh, hs), flattened for index_select (backward: index_add).
    qt, vt = (F.pad(x.transpose(1, 2), (0, 0, 0, 0, 0, Tp - T)) for x in (q, v))
    qf, vf = qt.reshape(-1, hs), vt.reshape(-1, hs)  # (B * Tp * nh, hs)
    kf = F.normalize(qf, dim=-1, eps=1e-6)  # keys: the queries at unit length

    with torch.no_grad():
        bucket = hash_buckets(qt, rotations, layout.real, buckets)         # (B, nh, r, Tp)
        # Sorted by (bucket, position): unique keys, so any sort gives the same order (ONNX has no stable sort).
        pos = (bucket * Tp + torch.arange(Tp, device=dev)).argsort(dim=-1)  # (B, nh, r, Tp) sorted slot -> position
        b = torch.arange(B, device=dev)[:, None, None, None]
        h = torch.arange(nh, device=dev)[None, :, None, None]
        src = ((b * Tp + pos) * nh + h).view(B, nh, r, n, c).permute(0, 3, 1, 2, 4)  # (B, n, nh, r, c) rows of qf
        # Keys of chunk j: [chunk j-1 | chunk j]; chunk -1 does not exist (any row: masked).
        win = torch.cat([F.pad(src, (0, 0, 0, 0, 0, 0, 1, 0))[:, :n], src], -1)     # (B, n, nh, r, 2c)
        # Where each (token, head, round) ended up, as a row of the output below, whose rows are (B, n, nh, r, c):
        # the inverse permutation of `pos`, (B, Tp, nh, r).
        row = torch.arange(B * n * nh * r * c, device=dev).view(B, n, nh, r, c).permute(0, 2, 3, 1, 4)
        back = torch.empty_like(pos).scatter_(-1, pos, row.reshape(B, nh, r, Tp)).permute(0, 3, 1, 2)

    qs = qf.index_select(0, src.reshape(-1)).view(B * n, nh * r, c, hs)
    ks = kf.index_select(0, win.reshape(-1)).view(B * n, nh * r, 2 * c, hs)
    vs = vf.index_select(0, win.reshape(-1)).view(B * n, nh * r, 2 * c, hs)
    mask = layout.mask_as(q.dtype)                                        # (B * n, 1, c, 2c)
    if r == 1:  # the fused kernel (see the module docstring)
        out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, dropout_p=dropout_p)
        out = out.reshape(-1, hs).index_select(0, back.reshape(-1)).view(B, Tp, nh, hs)
    else:  # each round's log-sum-exp weighs it: explicit (c, 2c) scores
        scores = qs @ ks.transpose(-2, -1) * (1 / math.sqrt(hs)) + mask   # (B * n, nh * r, c, 2c)
        lse = scores.float().logsumexp(-1)                                # (B * n, nh * r, c), fp32 under autocast
        p = F.dropout(scores.softmax(-1), dropout_p) if dropout_p else scores.softmax(-1)
        rows = back.reshape(-1)  # the rows of `out` and `lse` in (B, Tp, nh, r) order
        out = (p @ vs).reshape(-1, hs).index_select(0, rows).view(B, Tp, nh, r, hs)
        w = lse.reshape(-1).index_select(0, rows).view(B, Tp, nh, r, 1).softmax(3)  # the rounds' weights
        out = (out * w.to(out.dtype)).sum(3)                              # (B, Tp, nh, hs)
    return out[:, :T].transpose(1, 2)                                     # (B, nh, T, hs)


@register_attention("lsh", LshOptions)
class LshAttention(Attention):
    """Tokens hashed into buckets attend within sorted chunks, shared query-key (Reformer); O(T * chunk * rounds)."""

    shared_qk = True
    exact = False

    def __init__(self, shape: AttentionShape, options: LshOptions):
        super().__init__(shape, options)
        self.rotation_shape = (shape.num_heads, shape.head_size, options.lsh_rounds, options.lsh_buckets // 2)
        # Evaluation's rotations, drawn once from --lsh-seed: a constant that moves with the model (and is not saved:
        # the seed is, in the options).
        fixed = torch.randn(self.rotation_shape, generator=torch.Generator().manual_seed(options.lsh_seed))
        self.register_buffer("fixed_rotations", fixed, persistent=False)

    def rotations(self, device: torch.device) -> Optional[torch.Tensor]:
        """(nh, hs, rounds, buckets/2) random rotations: fresh from the global RNG in training, from `--lsh-seed` in
        evaluation; None with one bucket (nothing to hash: every round would be the same, and r equal rounds
        combine to one, so it runs one)."""
        if self.options.lsh_buckets == 1:
            return None
        return torch.randn(self.rotation_shape, device=device) if self.training else self.fixed_rotations

    def prepare(self, inputs: AttentionInputs) -> AttentionInputs:
        ids = inputs.input_ids
        device = ids.device
        dtype = layout_dtype(device)
        layout = lsh_layout(*ids.shape, self.options.lsh_chunk, inputs.key_padding_mask, dtype, device)
        return dataclasses.replace(inputs, state=layout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        # k is not read: the keys are the queries (shared_qk; the block passes k = q)
        o = self.options
        return lsh_attention(q, v, o.lsh_buckets, o.lsh_chunk, self.rotations(q.device), inputs.key_padding_mask,
                             dropout_p=self.shape.dropout if self.training else 0.0,
                             layout=inputs.state)  # (B, nh, T, hs)

    @classmethod
    def full_limit(cls, seq_len: int) -> Optional[dict]:
        return {"lsh_buckets": 1, "lsh_rounds": 1, "lsh_chunk": seq_len}

    @classmethod
    def dense_reference(cls, q, k, v, key_padding_mask=None) -> torch.Tensor:
        """Reformer's shared query-key attention over all real tokens (k is not read): keys are the queries at unit
        length, scores q · k̂ / √hs, a token's own score -1e5 (it attends to itself only when alone)."""
        T = q.shape[2]
        scores = q @ F.normalize(q, dim=-1, eps=1e-6).transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, T, T)
        scores = scores + torch.eye(T, dtype=q.dtype, device=q.device) * self_mask_value(q.dtype)
        if key_padding_mask is not None:
            scores = scores.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
        return scores.softmax(dim=-1) @ v

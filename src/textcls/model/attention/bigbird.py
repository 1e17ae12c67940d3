"""Block-sparse attention, as BigBird's ITC variant (Zaheer et al. 2020, "Big Bird: Transformers for Longer
Sequences"): the sequence is cut into blocks of b = `--bigbird-block` tokens. Of an example of n blocks, the first and
the last block are global: their tokens attend to every token and every token attends to them. Every other query
block i attends to its 3 sliding blocks (i-1, i, i+1), the 2 global blocks and r = `--bigbird-random` random blocks,
chosen without replacement among the blocks outside its window and the globals: (5 + r) blocks of keys, so time and
memory grow as O(T * (5 + r) * b), not T * T. The same query, key and value projections as full attention (BigBird
reused RoBERTa's), so BERT checkpoints, the bert-* presets and MiniLM switch to it as they are.

How it runs: all query blocks are folded into the batch dimension, (B * nb, nh, b, hs), and attend in ONE fused
`scaled_dot_product_attention` call to their (5 + r) key blocks, gathered from the keys as (B * nb, nh, (5 + r) * b,
hs) (index_select, whose backward is an index_add), under one additive mask made once per forward by `prepare` and
shared by every layer and head. The global query blocks then attend to every key in a second, small SDPA call and
overwrite their rows. The gathered keys and values are (5 + r) copies of K and V per layer (kept for the backward);
choosing the blocks, once per forward, works on (B, nb, nb) integers (nb = T / b blocks: 64 x 64 at 4096 tokens).

Differences from transformers' BigBirdModel (attention_type="block_sparse"):
- no silent fallback: transformers switches the whole model to full attention below (5 + 2r) * b tokens. Here an
  example of fewer than 5 + r blocks (at most (4 + r) * b real tokens) gets full attention, which is exact (it is
  the pattern with every available random block taken), and the mechanism logs one warning the first time. Longer
  examples of the same batch keep the sparse pattern.
- the random blocks are drawn per example over its REAL blocks (its last block is the one holding its last real
  token), from fixed numbers: the priority of key block j for query block i is a hash of (--bigbird-seed, i, j), and
  a query block takes the r candidates of lowest priority. So a real token's output does not depend on the padding
  of its batch, the pattern is the same in training and evaluation (transformers draws new blocks with numpy in
  every training forward and, in eval mode, uses a constant all-zero list), and the same in every layer.
- the random blocks are the same for every head (transformers draws them per head), so the mask is shared by the
  heads and one fused call serves them all.
- the second and the second-to-last block, whose window already holds a global block, take r + 1 random blocks in
  that free slot (transformers leaves it masked): every non-global query block attends to exactly 5 + r distinct
  blocks, and at exactly 5 + r blocks the pattern is full attention.
- the sequence is padded inside to a whole number of blocks (transformers needs T to be a multiple of b).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from textcls.config import AttentionOptions, opt
from textcls.model.attention import (Attention, AttentionInputs, AttentionShape, layout_dtype,
                                     register_attention)

log = logging.getLogger(__name__)


@dataclass
class BigBirdOptions(AttentionOptions):
    bigbird_block: int = opt(64, "tokens per block (BigBird's block_size); an example attends block-wise to 3 "
                                 "sliding, 2 global and --bigbird-random random blocks", ge=2)
    bigbird_random: int = opt(3, "random key blocks per query block (BigBird's num_random_blocks)", ge=0)
    bigbird_seed: int = opt(0, "which random blocks: fixed per model, the same in training, evaluation and every "
                               "layer", ge=0)


@register_attention("bigbird", BigBirdOptions)
class BigBirdAttention(Attention):
    """Block-sparse attention: 3 sliding, 2 global and r random blocks per query block (BigBird ITC); O(T*(5+r)*b)."""

    exact = False
    global_tokens = False  # its global tokens are blocks of positions, not AttentionInputs.global_mask

    def __init__(self, shape: AttentionShape, options: BigBirdOptions):
        super().__init__(shape, options)
        # A model whose positions never hold 5 + r blocks always computes full attention: BERT's, as its export.
        self.exact = shape.max_positions <= min_sparse_length(options) - 1
        self.warned = False  # the short-input warning, once per mechanism instance

    def prepare(self, inputs: AttentionInputs) -> AttentionInputs:
        ids = inputs.input_ids
        device = ids.device
        dtype = layout_dtype(device)
        o = self.options
        layout = bigbird_layout(*ids.shape, o.bigbird_block, o.bigbird_random, o.bigbird_seed,
                                inputs.key_padding_mask, dtype, device)
        if layout.short_length is not None and not self.warned:
            self.warned = True
            log.warning("attention 'bigbird': a sequence of %d tokens has fewer than the 5 + r = %d blocks of %d "
                        "tokens that the sparse pattern needs (it needs more than (4 + r) * b = %d tokens); it gets "
                        "full attention, which is exact for it (the pattern with every block). Said once per model; "
                        "further short sequences are not reported",
                        layout.short_length, 5 + o.bigbird_random, o.bigbird_block, min_sparse_length(o) - 1)
        return dataclasses.replace(inputs, state=layout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        return bigbird_attention(q, k, v, inputs.state, inputs.key_padding_mask,
                                 dropout_p=self.shape.dropout if self.training else 0.0)  # (B, nh, T, hs)

    @classmethod
    def full_limit(cls, seq_len: int) -> Optional[dict]:
        # 6 blocks, r = 1: every block sees every block (middle ones: 3 + 2 + 1; the second and the second-to-last:
        # 3 + 1 + 2), through the sparse path. The tests' padded half row (3 blocks) gets the short-input full path.
        b = max(2, -(-seq_len // 6))
        return {"bigbird_block": b, "bigbird_random": max(0, -(-seq_len // b) - 5)}


def min_sparse_length(options: BigBirdOptions) -> int:
    """The fewest real tokens that make 5 + r blocks, the sparse pattern: (4 + r) * b + 1. Shorter examples get
    full attention."""
    return (4 + options.bigbird_random) * options.bigbird_block + 1


@dataclass
class BigBirdLayout:
    """What every layer's BigBird attention over one batch shares, made once per forward (`bigbird_layout`)."""
    b: int  # tokens per block
    nb: int  # blocks of the batch, T padded to nb * b
    slots: int  # key blocks per query block, 5 + r
    short_length: Optional[int]  # real length of the longest example too short for the pattern (None: none)
    full: bool  # no example is long enough for the pattern: the batch runs full attention
    idx: Optional[torch.Tensor] = None  # (B * nb * slots,) which of the B * nb key blocks each slot gathers
    mask: Optional[torch.Tensor] = None  # (B * nb, 1, b, slots * b) additive float mask of the sparse call
    gpos: Optional[torch.Tensor] = None  # (B, 2b) positions of the global queries (clamped below T)
    gmask: Optional[torch.Tensor] = None  # (B, 1, 2b, T) bool, keys each global query attends to
    gsel: Optional[tuple] = None  # (batch index, slot in gpos) of the global rows to write, each (Ng,)
    blocks: Optional[torch.Tensor] = None  # (B, nb, slots) the key blocks of each query block (the tests read it)
    blocks_ok: Optional[torch.Tensor] = None  # (B, nb, slots) bool, which of those count

    def mask_as(self, dtype: torch.dtype) -> torch.Tensor:
        return self.mask if self.mask.dtype == dtype else self.mask.to(dtype)


_BIG = 1 << 62  # priority of a block that must not be chosen
_M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (int64 tensors holding values below 2^32; products stay below 2^63)."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _M32
    return (x >> 16) ^ x


def block_priorities(seed: int, nb: int, device: torch.device) -> torch.Tensor:
    """(nb, nb) int64: the priority of key block j for query block i, distinct in each row, fixed by the seed and
    the same for any nb (a hash of (seed, i, j), not a random stream): the random blocks of query block i are its
    candidates of lowest priority."""
    i = torch.arange(nb, device=device, dtype=torch.int64)
    h = _mix32(torch.tensor(seed & _M32, device=device, dtype=torch.int64))
    h = _mix32((h + i[:, None]) & _M32)                      # (nb, 1)
    h = _mix32((h * 31 + i[None, :] + 0x9E3779B9) & _M32)    # (nb, nb)
    return h * nb + i[None, :]                               # distinct per row: ties broken by j


def bigbird_layout(B: int, T: int, b: int, r: int, seed: int, key_padding_mask: Optional[torch.Tensor],
                   dtype: torch.dtype, device: torch.device) -> BigBirdLayout:
    """The blocks, gather index and masks of BigBird attention over a (B, T) batch.

    Example e has n_e blocks, up to the block of its last real token. Query block i of an example of n_e >= 5 + r
    blocks: slots [i-1 | i | i+1 | 2 + r others], the others being the global blocks 0 and n_e - 1 and r random
    blocks (r + 1 for i = 1 and i = n_e - 2, whose window holds a global block). Global query blocks (0, n_e - 1) are
    recomputed against every key. An example of fewer blocks: every query block's slots hold all its blocks (full
    attention). Rows of padded queries see only themselves (finite, meaningless)."""
    nb = -(-T // b)                       # blocks of the batch
    Tp = nb * b                           # T padded to whole blocks
    S = 5 + r                             # key blocks per query block
    real = (key_padding_mask.to(torch.bool) if key_padding_mask is not None
            else torch.ones(B, T, dtype=torch.bool, device=device))
    length = (real * torch.arange(1, T + 1, device=device)).amax(1)  # (B,) last real position + 1; 0: none
    n = -(-length // b)                                               # (B,) real blocks per example
    short = n < S                                                     # (B,) too few blocks: full attention
    warn = short & (length > 0)                                       # (B,) short, and not empty
    short_length = int(length[warn].max()) if bool(warn.any()) else None
    if bool(short.all()):
        return BigBirdLayout(b, nb, S, short_length, full=True)

    # ---- which key blocks each query block attends to: (B, nb, S) ----
    qi = torch.arange(nb, device=device)[None, :, None]   # (1, nb, 1) query block
    kj = qi.view(1, 1, nb)                                # (1, 1, nb) key block
    ne = n[:, None, None]                                 # (B, 1, 1)
    outside = ((kj - qi).abs() > 1) & (kj < ne)           # (B, nb, nb) real key blocks outside the window
    # Long examples: the globals first (-2, -1), then the random candidates by their seeded priority; only
    # non-global query blocks choose (the global ones are recomputed against every key).
    chooses = (qi >= 1) & (qi <= ne - 2)                  # (B, nb, 1)
    prio = torch.where(kj == 0, -2, torch.where(kj == ne - 1, -1, block_priorities(seed, nb, device)[None]))
    # Short examples: every block outside the window (at most 2 + r of them), in order.
    prio = torch.where(short[:, None, None], kj, prio)
    ok = outside & (chooses | short[:, None, None])
    top = prio.masked_fill(~ok, _BIG).topk(2 + r, dim=-1, largest=False, sorted=True)  # (B, nb, 2 + r)
    window = qi.view(1, nb, 1) + torch.arange(-1, 2, device=device)                     # (1, nb, 3)
    blocks = torch.cat([window.clamp(0, nb - 1).expand(B, nb, 3), top.indices], -1)     # (B, nb, S)
    blocks_ok = torch.cat([(window >= 0) & (window < ne), top.values < _BIG], -1)       # (B, nb, S)
    idx = (torch.arange(B, device=device)[:, None, None] * nb + blocks).reshape(-1)     # (B * nb * S,)

    # ---- one additive mask for the sparse call: (B * nb, 1, b, S * b) ----
    realb = F.pad(real, (0, Tp - T)).view(B, nb, b)                                      # (B, nb, b)
    keyok = realb.view(B * nb, b)[idx].view(B, nb, S, b) & blocks_ok[..., None]        # (B, nb, S, b)
    ninf = float("-inf")
    keyb = torch.zeros(B, nb, 1, S * b, dtype=dtype, device=device).masked_fill_(~keyok.view(B, nb, 1, S * b), ninf)
    # A padded query row sees only itself: its own block is slot 1, so itself is column b + row.
    cols = torch.arange(S * b, device=device)
    selfk = torch.zeros(b, S * b, dtype=dtype, device=device).masked_fill_(
        cols[None, :] != b + torch.arange(b, device=device)[:, None], ninf)            # (b, S * b)
    mask = torch.where(realb[..., None], keyb, selfk).view(B * nb, 1, b, S * b)

    # ---- the global query blocks of the long examples: blocks 0 and n_e - 1 against every key ----
    gblock = torch.stack([torch.zeros_like(n), (n - 1).clamp(min=0)], 1)                # (B, 2)
    gpos = (gblock[:, :, None] * b + torch.arange(b, device=device)).view(B, 2 * b)    # (B, 2b) in [0, Tp)
    gvalid = ~short[:, None] & (gpos < T) & real.gather(1, gpos.clamp(max=T - 1))      # (B, 2b)
    gpos = gpos.clamp(max=T - 1)
    # Real keys, and itself (so that no row is empty: rows not written back may be padding).
    gmask = real[:, None, :] | (torch.arange(T, device=device) == gpos[:, :, None])     # (B, 2b, T)
    gsel = tuple(gvalid.nonzero().unbind(1))                                            # 2 x (Ng,)
    return BigBirdLayout(b, nb, S, short_length, False, idx, mask, gpos, gmask[:, None], gsel, blocks, blocks_ok)


def bigbird_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: BigBirdLayout,
                      key_padding_mask: Optional[torch.Tensor] = None, dropout_p: float = 0.0) -> torch.Tensor:
    """q, k, v: (B, nh, T, hs); layout: what bigbird_layout made for this batch. Returns (B, nh, T, hs); rows of
    padded queries are finite but meaningless."""
    B, nh, T, hs = q.shape
    dev = q.device
    if layout.full:  # every example is short: plain full attention, padded keys masked
        mask = None if key_padding_mask is None else key_padding_mask[:, None, None, :]  # (B, 1, 1, T)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    if torch.is_autocast_enabled(dev.type):  # cast once, so that the gathered keys are in the low precision
        dt = torch.get_autocast_dtype(dev.type)
        q, k, v = (x.transpose(1, 2).to(dt).transpose(1, 2) for x in (q, k, v))
    b, nb, S = layout.b, layout.nb, layout.slots
    Tp = nb * b

    def blocks(x):  # (B, nh, T, hs) -> (B * nb, b, nh, hs): a view for the usual (B, T, nh, hs) memory
        xt = x.transpose(1, 2)                                            # (B, T, nh, hs)
        if Tp > T:  # F.pad always copies, so only when needed
            xt = F.pad(xt, (0, 0, 0, 0, 0, Tp - T))                       # (B, Tp, nh, hs)
        return xt.reshape(B * nb, b, nh, hs)

    qb = blocks(q).transpose(1, 2)                                        # (B*nb, nh, b, hs)
    # Each query block's S key blocks, side by side: (B*nb*S, b, nh, hs) -> (B*nb, S*b, nh, hs) -> heads second.
    kb = blocks(k).index_select(0, layout.idx).view(B * nb, S * b, nh, hs).transpose(1, 2)  # (B*nb, nh, S*b, hs)
    vb = blocks(v).index_select(0, layout.idx).view(B * nb, S * b, nh, hs).transpose(1, 2)  # (B*nb, nh, S*b, hs)
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=layout.mask_as(q.dtype), dropout_p=dropout_p)
    out = out.transpose(1, 2).reshape(B, Tp, nh, hs)                     # (B, Tp, nh, hs)

    bsel, slot = layout.gsel
    if len(bsel):
        # Global query blocks attend to every real key; their rows overwrite the sparse ones.
        qg = q.gather(2, layout.gpos[:, None, :, None].expand(B, nh, 2 * b, hs))  # (B, nh, 2b, hs)
        og = F.scaled_dot_product_attention(qg, k, v, attn_mask=layout.gmask, dropout_p=dropout_p)  # (B, nh, 2b, hs)
        out = out.index_put((bsel, layout.gpos[bsel, slot]), og.transpose(1, 2)[bsel, slot])  # rows (Ng, nh, hs)
    return out[:, :T].transpose(1, 2)                                     # (B, nh, T, hs)

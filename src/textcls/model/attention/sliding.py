"""Sliding-window attention with global tokens, as Longformer (Beltagy et al. 2020): each token attends to the
`--sliding-window` W tokens around it (W/2 on each side, Longformer's attention_window), global tokens attend to
every token and every token attends to them ([CLS] by default, or a pair's whole first text, as Longformer did for
questions). The same query, key and value projections as full attention (Longformer reused RoBERTa's for its local
attention), so BERT checkpoints, the bert-* presets and MiniLM switch to it as they are.

Time and memory grow as T * W, not T * T: no (T, T) tensor is made, in the forward or the backward. The sequence
is cut into blocks of queries; each block attends to its neighbouring key blocks and the global keys in one fused
`scaled_dot_product_attention` call over all blocks at once, and the global queries attend to every key in a second,
small one. On CUDA the same calls run on the GPU's fused kernels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from textcls.config import AttentionOptions, opt
from textcls.errors import TextclsError
from textcls.model.attention import (Attention, AttentionInputs, AttentionShape, layout_dtype,
                                     register_attention)


@dataclass
class SlidingOptions(AttentionOptions):
    sliding_window: int = opt(512, "tokens each token attends to around it, W/2 on each side (Longformer's "
                                   "attention_window); even", ge=2)
    sliding_global: str = opt("cls", "global tokens, which attend to all and are attended by all: [CLS], or for "
                                     "pairs the whole first text (with its [CLS] and [SEP])",
                              choices=("cls", "first-segment"))

    def check(self) -> None:
        if self.sliding_window % 2:
            raise TextclsError(f"--sliding-window {self.sliding_window} must be even: W/2 tokens on each side")


@register_attention("sliding", SlidingOptions)
class SlidingAttention(Attention):
    """Each token attends to the W tokens around it, global tokens to and from all (Longformer); O(T * W)."""

    global_tokens = True

    def __init__(self, shape: AttentionShape, options: SlidingOptions):
        super().__init__(shape, options)
        # A window that reaches every position of the model is full attention, which transformers computes too.
        self.exact = options.sliding_window // 2 >= shape.max_positions - 1

    def prepare(self, inputs: AttentionInputs) -> AttentionInputs:
        """The global tokens of the batch, (B, T) bool, unless the caller gave them (Longformer's
        global_attention_mask), and the layout every layer shares (blocks, mask). Padding is never global."""
        global_mask = inputs.global_mask
        if global_mask is None and self.options.sliding_global == "first-segment" and inputs.token_type_ids is not None:
            global_mask = inputs.token_type_ids == 0  # [CLS], the first text and its [SEP]
        elif global_mask is None:
            global_mask = torch.zeros_like(inputs.input_ids, dtype=torch.bool)
            global_mask[:, 0] = True  # [CLS]
        ids = inputs.input_ids
        device = ids.device
        dtype = layout_dtype(device)
        layout = sliding_layout(*ids.shape, self.options.sliding_window, inputs.key_padding_mask, global_mask, dtype,
                                device)
        return dataclasses.replace(inputs, global_mask=global_mask, state=layout)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        return sliding_window_attention(q, k, v, self.options.sliding_window, inputs.key_padding_mask,
                                        inputs.global_mask, dropout_p=self.shape.dropout if self.training else 0.0,
                                        layout=inputs.state)  # (B, nh, T, hs)

    @classmethod
    def check_data(cls, options: SlidingOptions, pairs: bool) -> None:
        if options.sliding_global == "first-segment" and not pairs:
            raise TextclsError("--sliding-global first-segment makes the first text of a pair global, but the data "
                               "has single texts; use --sliding-global cls")

    @classmethod
    def full_limit(cls, seq_len: int) -> Optional[dict]:
        return {"sliding_window": 2 * seq_len}


MIN_BLOCK = 16  # smallest query block: tiny blocks make many tiny SDPA problems (overhead-bound)


@dataclass
class SlidingLayout:
    """What every layer's sliding attention over one batch shares, made once per forward (`sliding_layout`)."""
    window: int  # W
    b: int  # queries per block; block i attends to key blocks i-1, i, i+1 and the global keys
    nb: int  # blocks
    G: int  # global tokens of the example that has the most; 0: none
    real: torch.Tensor  # (B, T) bool, True = real token
    gidx: Optional[torch.Tensor]  # (B, G) positions of each example's global tokens (padded with any position)
    gvalid: Optional[torch.Tensor]  # (B, G) bool, which of those are real global tokens
    mask: torch.Tensor  # (B * nb, 1, b, 3b + 2G) additive float mask of the windowed attention

    def mask_as(self, dtype: torch.dtype) -> torch.Tensor:
        return self.mask if self.mask.dtype == dtype else self.mask.to(dtype)


def sliding_layout(B: int, T: int, window: int, key_padding_mask: Optional[torch.Tensor],
                   global_mask: Optional[torch.Tensor], dtype: torch.dtype, device: torch.device,
                   min_block: int = MIN_BLOCK) -> SlidingLayout:
    """The blocks, global tokens and mask of sliding attention over a (B, T) batch.

    The sequence is cut into blocks of b = max(W // 2, min_block) queries. Block i attends to the keys of blocks
    i-1, i, i+1 (covering every |i - j| <= W // 2) and the G global keys of its example: S = 3b + 2G key columns,
    [block i-1 | its G globals | block i | own G globals | block i+1], an order that lets every block's keys be one
    window of a single buffer (see _KeyWindows). One additive float mask: the band, keys real, global keys counted
    once (only the middle globals count)."""
    if window < 2 or window % 2:
        raise ValueError(f"window must be even and >= 2, got {window}")
    w = min(window // 2, T - 1)  # a window wider than the sequence is just full attention
    b = min(max(w, min_block), T)  # block size >= w: block i needs only key blocks i-1, i, i+1
    nb = -(-T // b)              # number of query blocks
    Tp = nb * b                  # T padded to whole blocks
    real = (key_padding_mask.to(torch.bool) if key_padding_mask is not None
            else torch.ones(B, T, dtype=torch.bool, device=device))
    if global_mask is not None:
        glob = global_mask.to(torch.bool) & real          # a padded token is never global
        cnt = glob.sum(1)                                  # (B,)
        G = int(cnt.max())
    else:
        glob, G = torch.zeros_like(real), 0
    gidx = gvalid = None
    if G:
        # Positions of the global tokens first (stable sort keeps them in order), G = max over batch.
        gidx = torch.sort((~glob).to(torch.uint8), dim=1, stable=True).indices[:, :G]  # (B, G)
        gvalid = torch.arange(G, device=device) < cnt[:, None]                           # (B, G)
    S = 3 * b + 2 * G

    def columns(x, prev_g, own_g):  # (..., 3b) + (..., G) + (..., G) -> (..., S)
        return torch.cat([x[..., :b], prev_g, x[..., b:2 * b], own_g, x[..., 2 * b:]], -1)

    ninf = float("-inf")
    # key position - query position, for query r of a block and windowed key column c: (b, 3b)
    diff = (torch.arange(3 * b, device=device)[None, :] - b) - torch.arange(b, device=device)[:, None]
    band = torch.zeros(b, 3 * b, dtype=dtype, device=device).masked_fill_(diff.abs() > w, ninf)
    selfk = torch.zeros(b, 3 * b, dtype=dtype, device=device).masked_fill_(diff != 0, ninf)
    no_g = torch.full((b, G), ninf, dtype=dtype, device=device)
    band = columns(band, no_g, torch.zeros_like(no_g))                # (b, S): own globals seen by all
    selfk = columns(selfk, no_g, no_g)                                # (b, S)
    # Windowed keys count only if real (this example, inside the sequence) and not global: globals count once.
    keyok = F.pad(real & ~glob, (b, Tp - T + b)).unfold(1, 3 * b, b)  # (B, nb, 3b)
    gok = gvalid[:, None, :].expand(B, nb, G) if G else keyok[..., :0]
    keyok = columns(keyok, torch.zeros_like(gok), gok)                # (B, nb, S)
    keyb = torch.zeros(B, nb, 1, S, dtype=dtype, device=device).masked_fill_(~keyok[:, :, None], ninf)
    qreal = F.pad(real, (0, Tp - T)).view(B, nb, b, 1)
    # Real rows: band + key validity. Padded rows see only themselves (selfk lies inside the band, so adding the
    # band keeps it): no empty row, no NaN, nothing read from real tokens. One allocation: where() broadcasts the
    # small pieces to (B, nb, b, S), add_ puts the band in place.
    mask = torch.where(qreal, keyb, selfk).add_(band).view(B * nb, 1, b, S)  # (B*nb, 1, b, S)
    return SlidingLayout(window, b, nb, G, real, gidx, gvalid, mask)


def sliding_window_attention(q, k, v, window: int, key_padding_mask=None, global_mask=None, dropout_p: float = 0.0,
                             min_block: int = MIN_BLOCK, layout: Optional[SlidingLayout] = None) -> torch.Tensor:
    """q, k, v: (B, nh, T, hs). window: even W >= 2, W // 2 keys each side.
    key_padding_mask: (B, T) bool, True = real token. global_mask: (B, T) bool, True = global token.
    layout: what sliding_layout made of these (shared by the layers of a model), else made here.
    Returns (B, nh, T, hs). Rows of padded queries are finite but meaningless (they see only themselves).

    ONE fused SDPA call over all blocks, folded into the batch dimension as (B * nb, nh, b, hs) so that the mask
    (B * nb, 1, b, S) is shared by the heads: on CPU the flash kernel (no score matrix is materialised). Global
    query rows get a second small SDPA against all T keys and overwrite their windowed rows."""
    B, nh, T, hs = q.shape
    dev = q.device
    if torch.is_autocast_enabled(dev.type):
        # Cast once up front so that the key buffers are built in the low precision; cast in (B, T, nh, hs) order
        # so the blocks below stay views.
        dt = torch.get_autocast_dtype(dev.type)
        q, k, v = (x.transpose(1, 2).to(dt).transpose(1, 2) for x in (q, k, v))
    if layout is None:
        layout = sliding_layout(B, T, window, key_padding_mask, global_mask, q.dtype, dev, min_block)
    b, nb, G, gidx, gvalid = layout.b, layout.nb, layout.G, layout.gidx, layout.gvalid
    Tp = nb * b

    # ---- queries: blocks folded into the batch dim; a free view for the usual (B, T, nh, hs) memory ----
    qt = q.transpose(1, 2)                                             # (B, T, nh, hs)
    if Tp > T:  # F.pad always copies, so only when needed
        qt = F.pad(qt, (0, 0, 0, 0, 0, Tp - T))                        # (B, Tp, nh, hs)
    qb = qt.reshape(B * nb, b, nh, hs).transpose(1, 2)                # (B*nb, nh, b, hs)

    kb = _KeyWindows.apply(k.transpose(1, 2), b, gidx)                 # (B*nb, nh, S, hs)
    vb = _KeyWindows.apply(v.transpose(1, 2), b, gidx)                 # (B*nb, nh, S, hs)
    out = F.scaled_dot_product_attention(qb, kb, vb, attn_mask=layout.mask_as(q.dtype), dropout_p=dropout_p)
    # SDPA (CPU flash) returns the output in the query's memory layout, so this is normally a view.
    out = out.transpose(1, 2).reshape(B, Tp, nh, hs)                  # (B, Tp, nh, hs)

    if G:
        # Global queries attend to every real key (and themselves, so a row is never empty).
        qg = q.gather(2, gidx[:, None, :, None].expand(B, nh, G, hs))  # (B, nh, G, hs)
        gmask = layout.real[:, None, :] | (torch.arange(T, device=dev) == gidx[:, :, None])  # (B, G, T)
        og = F.scaled_dot_product_attention(qg, k, v, attn_mask=gmask[:, None], dropout_p=dropout_p)
        # Overwrite only the valid global rows (examples may have fewer than G globals).
        bsel = torch.arange(B, device=dev)[:, None].expand(B, G)[gvalid]   # (Gtot,)
        out = out.index_put((bsel, gidx[gvalid]), og.transpose(1, 2)[gvalid])  # og rows (Gtot, nh, hs)
    return out[:, :T].transpose(1, 2)                                   # (B, nh, T, hs)


class _KeyWindows(torch.autograd.Function):
    """x (B, T, nh, hs) -> (B * nb, nh, 3b + 2G, hs): for query block i (of b positions) the keys
    [block i-1 | globals | block i | globals | block i+1], as overlapping windows (a strided view) of one buffer
    [zeros | block 0 | globals | block 1 | globals | ... | zeros] that holds every block once, followed by its
    example's G global keys.  Windows run across example boundaries; those keys are masked.  SDPA reads the
    strided view directly, so the forward copy is ~1x the keys instead of 3x; the backward folds the (dense)
    window gradient back: one copy, two shifted in-place adds and a scatter-add for the globals."""

    @staticmethod
    def forward(ctx, x, b, gidx):
        B, T, nh, hs = x.shape
        nb = -(-T // b)
        G = 0 if gidx is None else gidx.shape[1]
        ctx.b, ctx.T, ctx.gidx = b, T, gidx
        buf = x.new_empty(B * nb + 2, b + G, nh, hs)                   # block f is buf[f + 1]
        buf[0] = 0                                                     # left of the first block
        buf[-1] = 0                                                    # right of the last block
        blocks = buf[1:-1].view(B, nb, b + G, nh, hs)                  # (B, nb, b+G, nh, hs)
        full = T // b                                                  # whole blocks; the rest is zero-padded
        blocks[:, :full, :b] = x[:, :full * b].view(B, full, b, nh, hs)
        if full < nb:
            blocks[:, full, :T - full * b] = x[:, full * b:]
            blocks[:, full, T - full * b:b] = 0
        if G:
            xg = x.gather(1, gidx[:, :, None, None].expand(B, G, nh, hs))  # (B, G, nh, hs)
            blocks[:, :, b:] = xg[:, None]
        # Window of block f starts at buf[f] (block f-1): rows f*(b+G) .. f*(b+G) + 3b+2G.
        row = nh * hs
        return buf.as_strided((B * nb, nh, 3 * b + 2 * G, hs), ((b + G) * row, hs, row, 1))

    @staticmethod
    def backward(ctx, g):                                              # g: (B*nb, nh, 3b + 2G, hs)
        b, T, gidx = ctx.b, ctx.T, ctx.gidx
        N, nh, _, hs = g.shape
        G = 0 if gidx is None else gidx.shape[1]
        B = N // -(-T // b)

        def part(lo, n):  # columns lo .. lo+n of every window, (B, nb, n, nh, hs)
            return g[:, :, lo:lo + n].transpose(1, 2).reshape(B, N // B, n, nh, hs)

        gx = part(b + G, b).clone(memory_format=torch.contiguous_format)  # own block, (B, nb, b, nh, hs)
        gx[:, :-1] += part(0, b)[:, 1:]                                # block i-1 seen by window i
        gx[:, 1:] += part(2 * b + 2 * G, b)[:, :-1]                    # block i+1 seen by window i
        gx = gx.view(B, N // B * b, nh, hs)                            # (B, Tp, nh, hs)
        if G:
            gx.scatter_add_(1, gidx[:, :, None, None].expand(B, G, nh, hs), part(2 * b + G, G).sum(1))
        return gx[:, :T], None, None

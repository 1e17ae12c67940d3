"""The sliding-window kernel against its definition: a dense (T, T) mask (band | global rows | global columns, real
keys only) given to scaled_dot_product_attention, on random inputs of many lengths, windows, paddings and global
token choices. Tolerances (float32): outputs 1e-5, gradients of q, k, v 1e-4; bf16 within 2e-2 of float32."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from textcls.model.attention.sliding import sliding_window_attention

NH, HS = 2, 32


def dense_reference(q, k, v, window, key_padding_mask=None, global_mask=None):
    """The same attention with an explicit (T, T) mask: band | global rows | global columns, & real keys."""
    B, T = q.shape[0], q.shape[2]
    i = torch.arange(T)
    band = (i[:, None] - i[None, :]).abs() <= window // 2  # (T, T)
    real = key_padding_mask if key_padding_mask is not None else torch.ones(B, T, dtype=torch.bool)
    glob = (global_mask if global_mask is not None else torch.zeros(B, T, dtype=torch.bool)) & real
    m = (band[None] | glob[:, :, None] | glob[:, None, :]) & real[:, None, :]  # (B, T, T)
    m = m | (torch.eye(T, dtype=torch.bool)[None] & ~real[:, :, None])  # padded queries: themselves (not compared)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=m[:, None])


def make_inputs(B, T, seed, dtype=torch.float32, packed=True):
    g = torch.Generator().manual_seed(seed)
    if packed:  # as a model makes them: one (B, T, 3, nh, hs) projection, viewed per head
        qkv = torch.randn(B, T, 3, NH, HS, generator=g, dtype=dtype).requires_grad_()
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, nh, T, hs), not contiguous
        return (q, k, v), qkv
    q, k, v = (torch.randn(B, NH, T, HS, generator=g, dtype=dtype).requires_grad_() for _ in range(3))
    return (q, k, v), (q, k, v)


def padding_mask(T, lengths):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def global_choice(kind, B, T, seed):
    if kind == "none":
        return None
    gm = torch.zeros(B, T, dtype=torch.bool)
    if kind == "cls":
        gm[:, 0] = True
    else:  # "random": a different number per example (3, none, 60, 17), anywhere, padding included (ignored)
        g = torch.Generator().manual_seed(seed)
        for b in range(B):
            gm[b, torch.randperm(T, generator=g)[: (3, 0, 60, 17)[b % 4]]] = True
    return gm


def grads(out, leaves, weight):
    return torch.autograd.grad((out * weight).sum(), leaves)


@pytest.mark.parametrize("T,window,glob", list(itertools.product(
    [1, 7, 64, 100, 257, 600], [2, 4, 16, 64, 256], ["none", "cls", "random"])))
def test_matches_dense_reference(T, window, glob):
    B = 3
    (q, k, v), leaves = make_inputs(B, T, seed=T * 1000 + window)
    kpm = padding_mask(T, [T, max(1, T - 5), max(1, T // 3)])
    gm = global_choice(glob, B, T, seed=T + window)
    out = sliding_window_attention(q, k, v, window, kpm, gm)
    ref = dense_reference(q, k, v, window, kpm, gm)
    rows = kpm[:, None, :, None]  # (B, 1, T, 1)
    torch.testing.assert_close(out * rows, ref * rows, atol=1e-5, rtol=0)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)) * rows  # loss on real rows only
    for got, want in zip(grads(out, leaves, weight), grads(ref, leaves, weight)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=0)


@pytest.mark.parametrize("T,glob", [(50, "none"), (300, "cls"), (129, "random")])
def test_window_covering_sequence_is_full_attention(T, glob):
    (q, k, v), _ = make_inputs(2, T, seed=3)
    kpm = padding_mask(T, [T, T // 2])
    out = sliding_window_attention(q, k, v, 2 * T, kpm, global_choice(glob, 2, T, seed=4))
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=kpm[:, None, None, :])
    rows = kpm[:, None, :, None]
    torch.testing.assert_close(out * rows, ref * rows, atol=2e-6, rtol=0)


@pytest.mark.parametrize("T,extra,window,glob", [(100, 37, 16, "cls"), (300, 211, 64, "random"),
                                                 (20, 90, 64, "cls"), (256, 256, 256, "none")])
def test_real_rows_do_not_depend_on_padding(T, extra, window, glob):
    B = 2
    (q, k, v), _ = make_inputs(B, T, seed=5, packed=False)
    gm = global_choice(glob, B, T, seed=6)
    out = sliding_window_attention(q, k, v, window, None, gm)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    g = grads(out, (q, k, v), weight)

    # Same tokens with `extra` random padded positions appended (random content, random global flags there).
    pad = [torch.randn(B, NH, extra, HS) * 10 for _ in range(3)]
    q2, k2, v2 = (torch.cat([x.detach(), p], 2).requires_grad_() for x, p in zip((q, k, v), pad))
    kpm2 = padding_mask(T + extra, [T] * B)
    gm2 = None if gm is None else torch.cat([gm, torch.rand(B, extra) < 0.5], 1)
    out2 = sliding_window_attention(q2, k2, v2, window, kpm2, gm2)
    torch.testing.assert_close(out2[:, :, :T], out, atol=1e-6, rtol=0)
    weight2 = torch.cat([weight, torch.zeros(B, NH, extra, HS)], 2)
    for got, want in zip(grads(out2, (q2, k2, v2), weight2), g):
        torch.testing.assert_close(got[:, :, :T], want, atol=1e-6, rtol=0)
        assert (got[:, :, T:] == 0).all()  # padding gets no gradient from real rows


@pytest.mark.parametrize("glob", ["none", "random"])
def test_heavy_padding_is_finite(glob):
    T = 300
    (q, k, v), leaves = make_inputs(4, T, seed=8)
    kpm = padding_mask(T, [1, 0, 17, 150])  # one example has no real token at all
    out = sliding_window_attention(q, k, v, 16, kpm, global_choice(glob, 4, T, seed=9))
    assert torch.isfinite(out).all()
    out.sum().backward()  # a loss over every row, padded ones included
    assert torch.isfinite(leaves.grad).all()


def test_dropout_runs_and_keeps_grads_finite():
    T = 200
    (q, k, v), leaves = make_inputs(2, T, seed=10)
    kpm = padding_mask(T, [T, 120])
    gm = global_choice("cls", 2, T, seed=0)
    torch.manual_seed(0)
    a = sliding_window_attention(q, k, v, 32, kpm, gm, dropout_p=0.3)
    torch.manual_seed(0)
    b = sliding_window_attention(q, k, v, 32, kpm, gm, dropout_p=0.3)
    c = sliding_window_attention(q, k, v, 32, kpm, gm)
    assert torch.equal(a, b) and not torch.allclose(a, c)
    a.sum().backward()
    assert torch.isfinite(a).all() and torch.isfinite(leaves.grad).all()


@pytest.mark.parametrize("inputs", ["autocast", "bf16"])
def test_bf16_close_to_fp32(inputs):
    T = 600
    (q, k, v), leaves = make_inputs(2, T, seed=11)
    kpm = padding_mask(T, [T, 400])
    gm = global_choice("random", 2, T, seed=12)
    ref = sliding_window_attention(q, k, v, 64, kpm, gm)
    if inputs == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = sliding_window_attention(q, k, v, 64, kpm, gm)
    else:
        out = sliding_window_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), 64, kpm, gm)
    assert out.dtype == torch.bfloat16
    rows = kpm[:, None, :, None]
    torch.testing.assert_close(out.float() * rows, ref * rows, atol=2e-2, rtol=2e-2)
    out.float().sum().backward()
    assert torch.isfinite(leaves.grad).all()


def test_no_quadratic_allocation():
    """Forward + backward at T = 8192 never allocates anything near a (T, T) tensor, even of bools (64 MiB);
    the largest allocation is the float mask, T x (3b + 2G) x 4 bytes, about 2 MiB here."""
    T = 8192
    q, k, v = (torch.randn(1, 1, T, 8).requires_grad_() for _ in range(3))  # small heads: O(T*W) stays tiny
    kpm = padding_mask(T, [T - 100])
    gm = global_choice("random", 1, T, seed=14)
    with torch.profiler.profile(profile_memory=True) as prof:
        sliding_window_attention(q, k, v, 16, kpm, gm).sum().backward()
    biggest = max(e.cpu_memory_usage for e in prof.events())
    assert 0 < biggest < T * T // 8

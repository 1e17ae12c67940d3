"""LSH attention (Reformer) against its definition: the buckets computed by hand from the same rotations, the tokens
sorted by (bucket, position), a (T, T) mask of the pairs that share a chunk or sit in consecutive chunks, shared
query-key scores written out, and the rounds combined by their log-sum-exp; on many lengths, bucket counts, chunk
sizes, rounds and paddings, gradients too. Then its randomness (evaluation deterministic, training from the global
seed), the encoder and MiniLM running on it, and its bad settings on the command line.

Tolerances (float32): outputs 1e-5, gradients 1e-5; bf16 autocast within 2e-2 of float32."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from textcls.model.attention import AttentionInputs, AttentionShape, attention_options
from textcls.model.attention.lsh import LshAttention, LshOptions, lsh_attention

NH, HS = 2, 16


def rotations(buckets, rounds, seed=0):
    if buckets == 1:
        return None
    return torch.randn(NH, HS, rounds, buckets // 2, generator=torch.Generator().manual_seed(seed))


def dense_reference(q, v, buckets, chunk, rot, key_padding_mask):
    """The same attention, one (example, head) at a time, with an explicit (T, T) mask per round."""
    B, nh, T, hs = q.shape
    rounds = 1 if rot is None else rot.shape[2]
    out = torch.zeros_like(q)
    for b, h in itertools.product(range(B), range(nh)):
        x = q[b, h]  # (T, hs)
        real = key_padding_mask[b]
        scores = x @ (x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6)).T / math.sqrt(hs)  # (T, T)
        scores = scores - 1e5 * torch.eye(T)  # a token sees itself only when alone
        outs, lses = [], []
        for r in range(rounds):
            if rot is None:
                bucket = torch.zeros(T, dtype=torch.long)
            else:
                xr = x @ rot[h, :, r]
                bucket = torch.cat([xr, -xr], -1).argmax(-1)
            bucket = torch.where(real, bucket, buckets)  # padding: a bucket after every real one
            order = sorted(range(T), key=lambda t: (int(bucket[t]), t))
            chunk_of = torch.empty(T, dtype=torch.long)
            chunk_of[order] = torch.arange(T) // chunk
            ahead = chunk_of[:, None] - chunk_of[None, :]  # (query, key): 0 the same chunk, 1 the previous one
            near = (ahead == 0) | (ahead == 1)
            alone = torch.eye(T, dtype=torch.bool) & ~real[:, None]  # padded queries: themselves (not compared)
            s = scores.masked_fill(~(near & real[None, :] | alone), float("-inf"))
            lses.append(s.logsumexp(-1))
            outs.append(s.softmax(-1) @ v[b, h])
        w = torch.stack(lses).softmax(0)  # (rounds, T)
        out[b, h] = (torch.stack(outs) * w[..., None]).sum(0)
    return out


def make_inputs(B, T, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, NH, T, HS, generator=g).requires_grad_() for _ in range(2)]


def padding_mask(T, lengths):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def grads(out, leaves, weight):
    return torch.autograd.grad((out * weight).sum(), leaves)


@pytest.mark.parametrize("T,buckets,chunk,rounds", [
    (T, buckets, chunk, rounds) for T, buckets, chunk, rounds in itertools.product(
        [1, 6, 37, 100], [1, 2, 8], [1, 4, 16, 64], [1, 3]) if not (buckets == 1 and rounds > 1)])
def test_matches_dense_reference(T, buckets, chunk, rounds):
    B = 3
    q, v = make_inputs(B, T, seed=T * 100 + chunk)
    kpm = padding_mask(T, [T, max(1, T - 5), max(1, T // 3)])
    rot = rotations(buckets, rounds, seed=buckets + chunk)
    out = lsh_attention(q, v, buckets, chunk, rot, kpm)
    ref = dense_reference(q, v, buckets, chunk, rot, kpm)
    rows = kpm[:, None, :, None]  # padded rows: any (finite) value
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out * rows, ref * rows, atol=1e-5, rtol=0)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)) * rows  # loss on real rows only
    for got, want in zip(grads(out, (q, v), weight), grads(ref, (q, v), weight)):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_one_bucket_and_a_covering_chunk_is_shared_qk_attention():
    T = 50
    q, v = make_inputs(2, T, seed=2)
    kpm = padding_mask(T, [T, 20])
    out = lsh_attention(q, v, 1, T, None, kpm)
    rows = kpm[:, None, :, None]
    want = LshAttention.dense_reference(q, torch.randn_like(q), v, kpm)  # k is not read
    torch.testing.assert_close(out * rows, want * rows, atol=1e-5, rtol=0)


@pytest.mark.parametrize("T,extra,buckets,chunk,rounds", [(40, 13, 8, 4, 2), (64, 64, 4, 16, 1), (5, 90, 2, 8, 3)])
def test_real_rows_do_not_depend_on_padding(T, extra, buckets, chunk, rounds):
    B = 2
    q, v = make_inputs(B, T, seed=5)
    rot = rotations(buckets, rounds, seed=6)
    out = lsh_attention(q, v, buckets, chunk, rot)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(7))
    g = grads(out, (q, v), weight)

    q2, v2 = (torch.cat([x.detach(), torch.randn(B, NH, extra, HS) * 10], 2).requires_grad_() for x in (q, v))
    out2 = lsh_attention(q2, v2, buckets, chunk, rot, padding_mask(T + extra, [T] * B))
    torch.testing.assert_close(out2[:, :, :T], out, atol=1e-6, rtol=0)
    weight2 = torch.cat([weight, torch.zeros(B, NH, extra, HS)], 2)
    for got, want in zip(grads(out2, (q2, v2), weight2), g):
        torch.testing.assert_close(got[:, :, :T], want, atol=1e-6, rtol=0)
        assert (got[:, :, T:] == 0).all()  # padding gets no gradient from real rows


def test_heavy_padding_is_finite():
    T = 70
    q, v = make_inputs(4, T, seed=8)
    kpm = padding_mask(T, [1, 0, 17, 50])  # one example has no real token at all
    out = lsh_attention(q, v, 4, 8, rotations(4, 2), kpm)
    assert torch.isfinite(out).all()
    out.sum().backward()  # a loss over every row, padded ones included
    assert torch.isfinite(q.grad).all() and torch.isfinite(v.grad).all()


def mechanism(dropout=0.0, **fields) -> LshAttention:
    return LshAttention(AttentionShape(num_heads=NH, head_size=HS, max_positions=256, dropout=dropout),
                        LshOptions(**fields))


def run(attn, q, v, key_padding_mask=None):
    ids = torch.ones(q.shape[0], q.shape[2], dtype=torch.long)
    return attn(q, q, v, attn.prepare(AttentionInputs(input_ids=ids, key_padding_mask=key_padding_mask)))


@pytest.mark.parametrize("rounds", [1, 2])
def test_evaluation_is_deterministic_and_training_follows_the_global_seed(rounds):
    q, v = (x.detach() for x in make_inputs(2, 96, seed=9))
    attn = mechanism(lsh_buckets=8, lsh_chunk=8, lsh_rounds=rounds).eval()
    torch.manual_seed(1)
    a = run(attn, q, v)
    torch.manual_seed(2)  # the global RNG plays no part in evaluation
    assert torch.equal(run(attn, q, v), a)
    assert not torch.allclose(run(mechanism(lsh_buckets=8, lsh_chunk=8, lsh_rounds=rounds, lsh_seed=1).eval(), q, v),
                              a, atol=1e-3)  # another seed, other buckets

    attn.train()
    outs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        outs.append(run(attn, q, v))
    assert torch.equal(outs[0], outs[1]) and not torch.allclose(outs[0], outs[2], atol=1e-3)
    torch.manual_seed(3)
    run(attn, q, v)
    assert not torch.allclose(run(attn, q, v), outs[0], atol=1e-3)  # every step hashes afresh


@pytest.mark.parametrize("rounds", [1, 2])
def test_dropout_in_training_keeps_grads_finite(rounds):
    q, v = make_inputs(2, 64, seed=10)
    attn = mechanism(dropout=0.3, lsh_buckets=4, lsh_chunk=8, lsh_rounds=rounds).train()
    torch.manual_seed(0)
    a = run(attn, q, v, padding_mask(64, [64, 30]))
    torch.manual_seed(0)
    assert torch.equal(run(attn, q, v, padding_mask(64, [64, 30])), a)
    a.sum().backward()
    assert torch.isfinite(a).all() and torch.isfinite(q.grad).all() and torch.isfinite(v.grad).all()


@pytest.mark.parametrize("buckets,rounds", [(1, 1), (8, 2)])
def test_bf16_autocast(buckets, rounds):
    T = 200
    q, v = make_inputs(2, T, seed=11)
    kpm = padding_mask(T, [T, 120])
    rot = rotations(buckets, rounds)
    ref = lsh_attention(q, v, buckets, 32, rot, kpm)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = lsh_attention(q, v, buckets, 32, rot, kpm)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    if buckets == 1:  # with hashing, bf16 may put a few tokens into other buckets
        rows = kpm[:, None, :, None]
        torch.testing.assert_close(out.float() * rows, ref * rows, atol=2e-2, rtol=2e-2)
    out.float().sum().backward()
    assert torch.isfinite(q.grad).all()


def test_no_quadratic_allocation():
    """Forward + backward at T = 8192 never allocates anything near a (T, T) tensor of bools (64 MiB)."""
    T = 8192
    q, v = (torch.randn(1, 1, T, 8).requires_grad_() for _ in range(2))
    with torch.profiler.profile(profile_memory=True) as prof:
        lsh_attention(q, v, 8, 16, torch.randn(1, 8, 2, 4), padding_mask(T, [T - 100])).sum().backward()
    biggest = max(e.cpu_memory_usage for e in prof.events())
    assert 0 < biggest < T * T // 8


# ------------------------------------------------------------------------------------------- in models

def test_encoder_with_lsh_runs_forward_and_backward():
    from textcls.model import Encoder, EncoderConfig

    torch.manual_seed(0)
    cfg = EncoderConfig(num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=100,
                        max_positions=128, attention="lsh",
                        attention_options=attention_options("lsh", {"lsh_buckets": 4, "lsh_chunk": 8,
                                                                    "lsh_rounds": 2}))
    enc = Encoder(cfg)
    ids = torch.randint(1, 100, (2, 100))
    mask = torch.ones_like(ids)
    mask[1, 70:] = 0
    h = enc(ids, mask)
    assert h.shape == (2, 100, 32) and torch.isfinite(h).all()
    h[mask.bool()].sum().backward()
    grad = enc.blocks[0].qkv.weight.grad  # (3C, C): query, key, value rows
    assert torch.isfinite(grad).all() and grad[:32].abs().sum() > 0 and grad[64:].abs().sum() > 0
    assert (grad[32:64] == 0).all()  # shared QK: the key projection is not used
    enc.eval()
    assert torch.equal(enc(ids, mask), enc(ids, mask))


def test_minilm_runs_with_lsh(minilm_path):
    """all-MiniLM-L6-v2 (pretrained) with --attention lsh: finite logits, the same on every call in evaluation, other
    than full attention's (its keys are its queries)."""
    from textcls.config import ModelConfig
    from textcls.model import build_classifier

    ids = torch.randint(1000, 20000, (2, 300))
    ids[:, 0] = 101
    mask = torch.ones_like(ids)
    mask[1, 200:] = 0
    logits = {}
    for name, options in (("full", None), ("lsh", {"lsh_buckets": 8, "lsh_chunk": 32})):
        torch.manual_seed(0)  # the same fresh classifier head
        model, _ = build_classifier(ModelConfig(model="minilm-l6", attention=name), ["neg", "pos"], 512,
                                    attention=attention_options(name, options))
        with torch.no_grad():
            logits[name] = model.eval()(input_ids=ids, attention_mask=mask).logits
            if name == "lsh":
                assert torch.equal(model(input_ids=ids, attention_mask=mask).logits, logits[name])
    assert torch.isfinite(logits["lsh"]).all() and not torch.allclose(logits["lsh"], logits["full"], atol=1e-3)


@pytest.mark.slow  # the export alone takes about 20 s on 2 cores: `pytest -m slow tests/test_lsh.py`
def test_onnx_export_computes_the_evaluation_hashing(tmp_path):
    """The export is evaluation: its graph holds the --lsh-seed rotations and gives torch's probabilities on padded
    batches of other lengths than the one it was traced on."""
    pytest.importorskip("onnxruntime")
    from textcls.config import ModelConfig, TokenizeConfig
    from textcls.data.tokenize import load_tokenizer
    from textcls.infer import export_model, load_onnx, load_trained, predict_probabilities
    from textcls.model import build_classifier, save_classifier

    torch.manual_seed(0)
    model, _ = build_classifier(ModelConfig(model="bert-tiny", init="random", attention="lsh"), ["neg", "pos"], 128,
                                attention=attention_options("lsh", {"lsh_buckets": 4, "lsh_chunk": 8,
                                                                    "lsh_rounds": 2}))
    model.encoder.blocks, model.encoder.config.num_layers = model.encoder.blocks[:1], 1  # one layer: a faster export
    save_classifier(model, tmp_path / "model", load_tokenizer("minilm-l6"), ["neg", "pos"],
                    TokenizeConfig(max_length=128))
    export_model(tmp_path / "model", tmp_path / "onnx", "onnx")
    texts = ["a short one", "a review " * 40, "something in between, with a few more words " * 3]
    got = predict_probabilities(load_onnx(tmp_path / "onnx"), texts)
    want = predict_probabilities(load_trained(tmp_path / "model", precision="no"), texts)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("flags, message", [
    (["--attention", "lsh", "--lsh-buckets", "3"], "--lsh-buckets 3 must be even (or 1)"),
    (["--attention", "lsh", "--lsh-chunk", "0"], "--lsh-chunk must be at least 1, got 0"),
    (["--attention", "lsh", "--lsh-rounds", "0"], "--lsh-rounds must be at least 1, got 0"),
    (["--attention", "lsh", "--lsh-buckets", "0"], "--lsh-buckets must be at least 1, got 0"),
    (["--lsh-buckets", "64"], "--lsh-buckets (attention.lsh_buckets) is an option of attention 'lsh', but the "
                              "attention is 'full'; add --attention lsh"),
])
def test_bad_lsh_settings(flags, message, train_argv, cli, tmp_path):
    argv = train_argv(tmp_path / "run", *flags)
    assert message in cli.error(*argv)
    assert not (tmp_path / "run").exists()

"""BigBird block-sparse attention (ITC) against its definition: a dense (T, T) mask built block by block from the
same pattern (globals, sliding window, the seeded random blocks picked again here in plain Python), with the softmax
written out, on random inputs of several lengths, block sizes, random counts and paddings; its random blocks; the
short-input warning; the encoder and MiniLM with it; its bad settings on the command line.

Tolerance: 1e-5 absolute in float32, for outputs and for the gradients of q, k and v."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from textcls.model.attention import AttentionInputs, AttentionShape, attention_options
from textcls.model.attention.bigbird import BigBirdAttention, BigBirdOptions, bigbird_layout, block_priorities

NH, HS = 2, 16
ATOL = 1e-5


def make(b: int, r: int, seed: int = 0, max_positions: int = 4096, dropout: float = 0.0) -> BigBirdAttention:
    return BigBirdAttention(AttentionShape(num_heads=NH, head_size=HS, max_positions=max_positions, dropout=dropout),
                            BigBirdOptions(bigbird_block=b, bigbird_random=r, bigbird_seed=seed)).eval()


def run(attn, q, k, v, key_padding_mask=None):
    """As the encoder calls it: prepare once, then forward."""
    ids = torch.ones(q.shape[0], q.shape[2], dtype=torch.long)
    return attn(q, k, v, attn.prepare(AttentionInputs(input_ids=ids, key_padding_mask=key_padding_mask)))


def padding_mask(T, lengths):
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]  # (B, T)


def reference_blocks(n: int, b: int, r: int, seed: int, i: int) -> set[int]:
    """The key blocks of query block i in an example of n real blocks, by the definition."""
    if n < 5 + r or i in (0, n - 1):  # too short for the pattern, or a global block: every block
        return set(range(n))
    window, globals_ = {i - 1, i, i + 1}, {0, n - 1}
    candidates = [j for j in range(n) if j not in window | globals_]
    prio = block_priorities(seed, n, torch.device("cpu"))[i]
    picks = sorted(candidates, key=lambda j: int(prio[j]))[:r + (i in (1, n - 2))]  # one more where a global
    return window | globals_ | set(picks)                                             # sits in the window


def dense_reference(q, k, v, b, r, seed, key_padding_mask=None):
    """softmax(q kᵀ / √hs + mask) v with the (T, T) mask of the pattern, real keys only; padded query rows see
    themselves (not compared)."""
    B, _, T, hs = q.shape
    real = key_padding_mask if key_padding_mask is not None else torch.ones(B, T, dtype=torch.bool)
    allowed = torch.zeros(B, T, T, dtype=torch.bool)
    for e in range(B):
        length = int(real[e].nonzero().max()) + 1 if real[e].any() else 0
        n = math.ceil(length / b)
        for i in range(n):
            for j in reference_blocks(n, b, r, seed, i):
                allowed[e, i * b:(i + 1) * b, j * b:(j + 1) * b] = True
    allowed &= real[:, None, :]
    allowed |= torch.eye(T, dtype=torch.bool)[None] & ~real[:, :, None]
    scores = (q @ k.transpose(-2, -1) / math.sqrt(hs)).masked_fill(~allowed[:, None], float("-inf"))
    return scores.softmax(-1) @ v


def inputs(B, T, seed, packed=True):
    g = torch.Generator().manual_seed(seed)
    if packed:  # as a model makes them: one (B, T, 3, nh, hs) projection, viewed per head
        qkv = torch.randn(B, T, 3, NH, HS, generator=g).requires_grad_()
        return tuple(qkv.permute(2, 0, 3, 1, 4)), (qkv,)
    q, k, v = (torch.randn(B, NH, T, HS, generator=g).requires_grad_() for _ in range(3))
    return (q, k, v), (q, k, v)


# (T, b, r, real lengths): long and short examples in one batch, partial last blocks, a row of 0 real tokens
CASES = [(64, 4, 1, [64, 50]), (100, 8, 2, [100, 73, 30]), (97, 6, 3, [97, 97]), (130, 10, 0, [130, 51, 49, 1]),
         (200, 16, 3, [200, 129, 128]), (75, 3, 5, [75, 36, 0]), (48, 8, 1, [48, 24])]


@pytest.mark.parametrize("T,b,r,lengths", CASES)
@pytest.mark.parametrize("seed", [0, 7])
def test_matches_dense_reference(T, b, r, lengths, seed, caplog):
    (q, k, v), leaves = inputs(len(lengths), T, seed=T + b + r + seed)
    kpm = padding_mask(T, lengths)
    out = run(make(b, r, seed), q, k, v, kpm)
    ref = dense_reference(q, k, v, b, r, seed, kpm)
    rows = kpm[:, None, :, None]  # (B, 1, T, 1)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out * rows, ref * rows, atol=ATOL, rtol=0)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(1)) * rows  # a loss on real rows
    got = torch.autograd.grad((out * weight).sum(), leaves)
    want = torch.autograd.grad((ref * weight).sum(), leaves)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=ATOL, rtol=0)


def test_the_sparse_path_really_is_sparse():
    """At 20 blocks of 8 with r = 2 a middle block sees 7 blocks, not 20: other outputs than full attention."""
    T, b, r = 160, 8, 2
    (q, k, v), _ = inputs(1, T, seed=3, packed=False)
    layout = run_layout(T, b, r, 0)
    assert not layout.full and layout.mask.shape == (T // b, 1, b, (5 + r) * b)
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert not torch.allclose(run(make(b, r), q, k, v), full, atol=1e-3)


def test_padding_does_not_change_real_rows_or_reach_them():
    """A row padded inside a longer batch gives its real tokens what it gives alone (sparse path for both), and
    padded positions get no gradient from real rows."""
    T, b, r, real = 120, 8, 2, 83
    (q, k, v), _ = inputs(2, T, seed=4, packed=False)
    attn = make(b, r)
    kpm = padding_mask(T, [T, real])
    out = run(attn, q, k, v, kpm)
    alone = run(attn, *(x[1:, :, :real] for x in (q, k, v)))
    torch.testing.assert_close(out[1:, :, :real], alone, atol=ATOL, rtol=0)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[1, :, real:], v2[1, :, real:] = 1e3, -1e3
    torch.testing.assert_close(run(attn, q, k2, v2, kpm)[:, :, :real], out[:, :, :real], atol=ATOL, rtol=0)
    grads = torch.autograd.grad((out * padding_mask(T, [T, real])[:, None, :, None]).sum(), (q, k, v))
    assert all((g[1, :, real:] == 0).all() for g in grads)


@pytest.mark.parametrize("inputs_kind", ["autocast", "bf16"])
def test_bf16_close_to_fp32(inputs_kind):
    """bf16 (autocast, or bf16 tensors) within 2e-2 of float32; gradients finite."""
    T, b, r = 300, 16, 2
    (q, k, v), (leaf,) = inputs(2, T, seed=15)
    kpm = padding_mask(T, [T, 200])
    attn = make(b, r)
    ref = run(attn, q, k, v, kpm)
    if inputs_kind == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = run(attn, q, k, v, kpm)
    else:
        out = run(attn, q.bfloat16(), k.bfloat16(), v.bfloat16(), kpm)
    assert out.dtype == torch.bfloat16
    rows = kpm[:, None, :, None]
    torch.testing.assert_close(out.float() * rows, ref * rows, atol=2e-2, rtol=2e-2)
    out.float().sum().backward()
    assert torch.isfinite(leaf.grad).all()


def test_no_quadratic_allocation():
    """Forward + backward at T = 8192 never allocates anything near a (T, T) tensor, even of bools (64 MiB): the
    largest allocations are the float mask, T x (5 + r) b x 4 bytes (3.5 MiB here), and SDPA's backward buffers of
    the same size; the choice of blocks works on (nb, nb) integers, nb = T / b (2 MiB here)."""
    T, b, r = 8192, 16, 2
    q, k, v = (torch.randn(1, 1, T, 8).requires_grad_() for _ in range(3))  # small heads: the mask dominates
    attn = make(b, r, max_positions=T)
    with torch.profiler.profile(profile_memory=True) as prof:
        run(attn, q, k, v, padding_mask(T, [T - 100])).sum().backward()
    biggest = max(e.cpu_memory_usage for e in prof.events())
    assert 0 < biggest < T * T // 8


# ------------------------------------------------------------------------------------------- the random blocks

def run_layout(T, b, r, seed, lengths=None):
    kpm = None if lengths is None else padding_mask(T, lengths)
    return bigbird_layout(len(lengths or [T]), T, b, r, seed, kpm, torch.float32, torch.device("cpu"))


def random_picks(layout, e: int, n: int) -> dict[int, list[int]]:
    """Query block -> its random key blocks, from the layout (slots 3.. less the globals)."""
    out = {}
    for i in range(1, n - 1):
        others = layout.blocks[e, i, 3:][layout.blocks_ok[e, i, 3:]].tolist()
        out[i] = [j for j in others if j not in (0, n - 1)]
    return out


@pytest.mark.parametrize("n,b,r", [(12, 4, 3), (30, 2, 5), (8, 5, 3), (6, 8, 1)])
def test_random_blocks_avoid_window_and_globals_and_are_distinct(n, b, r):
    layout = run_layout(n * b, b, r, seed=11)
    for i, picks in random_picks(layout, 0, n).items():
        assert len(picks) == len(set(picks)) == r + (i in (1, n - 2))
        assert not set(picks) & {i - 1, i, i + 1, 0, n - 1} and all(0 < j < n - 1 for j in picks)
        assert layout.blocks_ok[0, i].all()  # 5 + r distinct key blocks, all counted
        assert len(set(layout.blocks[0, i].tolist())) == 5 + r


def test_random_blocks_are_fixed_by_the_seed():
    n, b, r = 40, 4, 3
    one, again, other = (random_picks(run_layout(n * b, b, r, s), 0, n) for s in (5, 5, 6))
    assert one == again and one != other
    # The same in every batch that holds the example: over its real blocks, whatever the padding or batch length.
    padded = run_layout(n * b + 37, b, r, 5, lengths=[n * b + 37, n * b])
    assert random_picks(padded, 1, n) == one
    # The priorities of the first blocks do not depend on how many blocks the batch has.
    small, big = block_priorities(5, 10, torch.device("cpu")), block_priorities(5, 50, torch.device("cpu"))
    assert torch.equal(small.argsort(-1), big[:10, :10].argsort(-1))


def test_eval_is_deterministic_and_train_dropout_differs():
    T, b, r = 96, 8, 2
    (q, k, v), _ = inputs(2, T, seed=9, packed=False)
    attn = make(b, r, dropout=0.3)
    assert torch.equal(run(attn, q, k, v), run(attn, q, k, v))
    attn.train()
    assert not torch.allclose(run(attn, q, k, v), run(make(b, r), q, k, v))


# ------------------------------------------------------------------------------------------- too short for the pattern

def test_short_inputs_warn_once_and_get_full_attention(caplog):
    """Fewer than 5 + r blocks ((4 + r) * b = 48 tokens or fewer for b = 8, r = 2): full attention, exactly."""
    T, b, r = 48, 8, 2
    (q, k, v), _ = inputs(2, T, seed=12, packed=False)
    kpm = padding_mask(T, [T, 30])
    attn = make(b, r)
    with caplog.at_level(logging.WARNING, logger="textcls"):
        out = run(attn, q, k, v, kpm)
        run(attn, q, k, v, kpm)
    warnings = [rec.getMessage() for rec in caplog.records if "bigbird" in rec.getMessage()]
    assert len(warnings) == 1
    assert ("a sequence of 48 tokens has fewer than the 5 + r = 7 blocks of 8 tokens" in warnings[0]
            and "more than (4 + r) * b = 48 tokens" in warnings[0] and "full attention" in warnings[0])
    full = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=kpm[:, None, None, :])
    rows = kpm[:, None, :, None]
    torch.testing.assert_close(out * rows, full * rows, atol=ATOL, rtol=0)
    # One token more makes 7 blocks: the sparse pattern, no warning from a new mechanism.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="textcls"):
        run(make(b, r), *inputs(1, T + 1, seed=13, packed=False)[0])
    assert not [rec for rec in caplog.records if "bigbird" in rec.getMessage()]
    assert not run_layout(T + 1, b, r, 0).full and run_layout(T, b, r, 0).full


def test_a_short_example_in_a_long_batch_is_full_and_warned(caplog):
    T, b, r = 120, 8, 1
    (q, k, v), _ = inputs(2, T, seed=14, packed=False)
    kpm = padding_mask(T, [T, 40])  # 5 blocks < 6
    with caplog.at_level(logging.WARNING, logger="textcls"):
        out = run(make(b, r), q, k, v, kpm)
    assert any("a sequence of 40 tokens" in rec.getMessage() for rec in caplog.records)
    alone = torch.nn.functional.scaled_dot_product_attention(*(x[1:, :, :40] for x in (q, k, v)))
    torch.testing.assert_close(out[1:, :, :40], alone, atol=ATOL, rtol=0)


def test_exact_only_when_no_input_can_be_sparse():
    assert make(64, 3, max_positions=448).exact and not make(64, 3, max_positions=449).exact
    assert not BigBirdAttention.exact and not BigBirdAttention.global_tokens


# ------------------------------------------------------------------------------------------- in models

def test_encoder_runs_forward_and_backward_with_bigbird():
    from textcls.model import Encoder, EncoderConfig

    enc = Encoder(EncoderConfig(num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=100,
                                attention="bigbird", max_positions=256,
                                attention_options=attention_options("bigbird", {"bigbird_block": 8,
                                                                                 "bigbird_random": 2})))
    ids = torch.randint(1, 100, (2, 200))
    mask = torch.ones_like(ids)
    mask[1, 150:] = 0
    h = enc(ids, mask)
    assert h.shape == (2, 200, 32) and torch.isfinite(h).all()
    h.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in enc.parameters() if p.requires_grad
               and p.grad is not None)
    assert enc.blocks[0].qkv.weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def long_batch(minilm_path, imdb_dir):
    """Three IMDB test reviews as a (3, 256) MiniLM batch, one of them padded after 200 tokens."""
    import pyarrow.parquet as pq

    from textcls.data.tokenize import load_tokenizer

    texts = [t for t in pq.read_table(imdb_dir / "test.parquet", columns=["text"]).slice(0, 400)["text"].to_pylist()
             if len(t) > 2000][:3]
    batch = load_tokenizer("minilm-l6")(texts, truncation=True, max_length=256, padding=True, return_tensors="pt")
    batch["attention_mask"][2, 200:] = 0
    assert batch["input_ids"].shape == (3, 256)
    return dict(batch)


def minilm_logits(name, options, batch):
    from textcls.config import ModelConfig
    from textcls.model import build_classifier

    torch.manual_seed(0)  # the same fresh classifier head
    model, _ = build_classifier(ModelConfig(model="minilm-l6", attention=name), ["neg", "pos"], 256,
                                attention=attention_options(name, options))
    with torch.no_grad():
        return model.eval()(**batch).logits


def test_minilm_runs_with_bigbird(long_batch):
    """all-MiniLM-L6-v2 (pretrained) with bigbird: at its full limit (blocks of 43, r = 1: 6 blocks, the sparse
    path) the logits of full attention within 1e-5; with blocks of 16 and r = 2 other logits, finite."""
    full = minilm_logits("full", None, long_batch)
    limit = BigBirdAttention.full_limit(256)
    assert limit == {"bigbird_block": 43, "bigbird_random": 1}
    assert torch.allclose(minilm_logits("bigbird", limit, long_batch), full, atol=1e-5, rtol=0)
    sparse = minilm_logits("bigbird", {"bigbird_block": 16, "bigbird_random": 2}, long_batch)
    assert torch.isfinite(sparse).all() and not torch.allclose(sparse, full, atol=1e-3)


# ------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("flags, message", [
    (["--attention", "bigbird", "--bigbird-block", "1"], "--bigbird-block must be at least 2, got 1"),
    (["--attention", "bigbird", "--bigbird-random", "-1"], "--bigbird-random must be at least 0, got -1"),
    (["--attention", "bigbird", "--bigbird-seed", "-3"], "--bigbird-seed must be at least 0, got -3"),
    (["--bigbird-block", "16"], "--bigbird-block (attention.bigbird_block) is an option of attention 'bigbird', "
                                "but the attention is 'full'; add --attention bigbird"),
    (["--attention", "full", "--bigbird-random", "2"], "--bigbird-random (attention.bigbird_random) is an option of "
                                                       "attention 'bigbird', but the attention is 'full'"),
])
def test_bad_bigbird_settings(flags, message, train_argv, cli, tmp_path):
    line = cli.error(*train_argv(tmp_path / "run", *flags))
    assert line.startswith("textcls: error: ") and message in line
    assert not (tmp_path / "run").exists()

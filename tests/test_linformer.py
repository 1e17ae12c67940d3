"""Linformer attention against its definition, its three sharing modes, its projections in saved and exported models,
MiniLM with it, and its bad inputs.

The definition is written out here: keys and values zeroed where padded, projected with the explicit (k, T)
matrices E and F, a projected key kept only if a real token lies in its support, softmax(q K'ᵀ / √hs) V'.
Tolerances (float32): outputs and gradients (of q, k, v, E and F) 1e-5 absolute; MiniLM logits 1e-5 absolute.
"""

from __future__ import annotations

import math

import pytest
import torch

from textcls.config import ModelConfig
from textcls.errors import TextclsError
from textcls.model import (BertClassifier, EncoderConfig, attention_options, build_classifier, hf_state_dict,
                           load_classifier, save_classifier)
from textcls.model.attention import AttentionInputs, AttentionShape
from textcls.model.attention.linformer import LinformerAttention, LinformerOptions

NH, HS, N = 2, 16, 40  # heads, head size, the model's positions (the projections' n)


def dense_reference(q, k, v, E, F, real):
    """Linformer written out: (B, nh, T, hs) inputs, (k, n) projections, (B, T) bool real tokens or None."""
    B, T = q.shape[0], q.shape[2]
    real = torch.ones(B, T, dtype=torch.bool) if real is None else real
    E, F = E[:, :T], F[:, :T]  # (k, T)
    keep = real[:, None, :, None].to(q.dtype)  # (B, 1, T, 1)
    Kp = torch.einsum("jt,bhtd->bhjd", E, k * keep)  # (B, nh, k, hs)
    Vp = torch.einsum("jt,bhtd->bhjd", F, v * keep)
    scores = q @ Kp.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, T, k)
    support = ((E != 0)[None] & real[:, None, :]).any(-1)  # (B, k): a real token in the projected key's support
    scores = scores.masked_fill(~support[:, None, None, :], float("-inf"))
    return scores.softmax(-1) @ Vp


def linformer(k: int, share: str = "head", n: int = N) -> LinformerAttention:
    return LinformerAttention(AttentionShape(num_heads=NH, head_size=HS, max_positions=n),
                              LinformerOptions(linformer_k=k, linformer_share=share)).eval()


def call(attn, q, k, v, real=None):
    return attn(q, k, v, AttentionInputs(input_ids=torch.ones(q.shape[0], q.shape[2], dtype=torch.long),
                                         key_padding_mask=real))


def inputs(B, T, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, NH, T, HS, generator=g).requires_grad_() for _ in range(3)]


def projections(attn):
    return attn.E, attn.E if attn.F is None else attn.F


@pytest.mark.parametrize("T, lengths, k, share", [
    (N, None, 16, "head"), (N, (N, 25, 1), 16, "head"), (24, (24, 7), 16, "kv"), (7, (3, 7), 64, "head"),
    (1, None, 8, "layer"), (33, (33, 20), N, "head"),  # k = n: the identity projection, padding masked exactly
])
def test_equals_the_dense_reference_with_gradients(T, lengths, k, share):
    attn = linformer(k, share)
    if k != N:  # trained projections are not those of the init
        with torch.no_grad():
            for p in attn.parameters():
                p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(7)) * 0.1)
    q, kk, v = inputs(len(lengths or (0, 0)), T, seed=T)
    real = None if lengths is None else torch.arange(T)[None] < torch.tensor(lengths)[:, None]  # (B, T)
    got = call(attn, q, kk, v, real)
    want = dense_reference(q, kk, v, *projections(attn), real)
    rows = torch.ones_like(got) if real is None else real[:, None, :, None].expand_as(got).float()
    assert torch.allclose(got * rows, want * rows, atol=1e-5, rtol=0) and torch.isfinite(got).all()
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(1)) * rows  # a loss on the real rows
    leaves = [q, kk, v, *attn.parameters()]
    for a, b in zip(torch.autograd.grad((got * w).sum(), leaves), torch.autograd.grad((want * w).sum(), leaves)):
        assert torch.allclose(a, b, atol=1e-5, rtol=0)


def test_a_projected_key_without_a_real_token_gets_no_weight():
    """A projection whose rows reach only some positions (here: row j sees token j only past the real ones) masks
    the rows that see only padding; whatever sits in the padded keys changes nothing."""
    attn = linformer(8)
    with torch.no_grad():
        attn.E[4:].zero_()
        attn.E[4:, 30:34] = torch.eye(4)  # rows 4..7 see only tokens 30..33, padding in row 1
    q, k, v = inputs(2, 36, seed=3)
    real = torch.arange(36)[None] < torch.tensor([36, 20])[:, None]
    out = call(attn, q, k, v, real)
    k2, v2 = k.detach().clone(), v.detach().clone()
    k2[1, :, 20:], v2[1, :, 20:] = 1e3, -1e3
    assert torch.allclose(out, call(attn, q, k2, v2, real), atol=1e-5, rtol=0)
    assert torch.allclose(out, dense_reference(q, k, v, *projections(attn), real), atol=1e-5, rtol=0)
    alone = call(attn, q[1:, :, :20], k[1:, :, :20], v[1:, :, :20])
    assert torch.allclose(out[1:, :, :20], alone, atol=1e-5, rtol=0)


def test_projections_start_as_the_paper_says():
    """k = n: the identity; otherwise a JL projection N(0, 1/k), the same for every fresh mechanism of a shape."""
    assert torch.equal(linformer(N).E, torch.eye(N))
    a, b = linformer(256, n=512), linformer(256, n=512)
    assert torch.equal(a.E, b.E) and not torch.equal(a.E, a.F)
    assert abs(a.E.var().item() * 256 - 1) < 0.02 and abs(a.E.mean().item()) < 1e-3


# ------------------------------------------------------------------------------------------- sharing

def tiny_classifier(share: str, layers: int = 3) -> BertClassifier:
    opts = attention_options("linformer", {"linformer_k": 8, "linformer_share": share})
    return BertClassifier(EncoderConfig(num_layers=layers, hidden_size=32, num_heads=2, intermediate_size=64,
                                        vocab_size=100, max_positions=32, attention="linformer",
                                        attention_options=opts), num_labels=2)


@pytest.mark.parametrize("share, count", [("head", 6), ("kv", 3), ("layer", 1)])
def test_share_modes_count_their_projections_and_a_step_updates_them(share, count):
    """head: E and F per layer; kv: one per layer; layer: one in all (every layer holds the same parameter)."""
    torch.manual_seed(0)
    model = tiny_classifier(share)
    mech = [(n, p) for n, p in model.named_parameters() if ".attn." in n]  # named_parameters: tied ones once
    assert len(mech) == count and all(p.shape == (8, 32) for _, p in mech)
    if share == "layer":
        assert all(b.attn.E is model.encoder.blocks[0].attn.E and b.attn.F is None for b in model.encoder.blocks)
    before = [p.detach().clone() for _, p in mech]
    ids = torch.randint(1, 100, (4, 20))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()(ids, mask, labels=torch.tensor([0, 1, 0, 1])).loss.backward()
    opt.step()
    assert all(not torch.equal(b, p) for b, (_, p) in zip(before, mech))
    if share == "layer":
        assert all(b.attn.E is model.encoder.blocks[0].attn.E for b in model.encoder.blocks)


def test_a_shared_projection_gets_the_gradient_of_every_layer():
    """Layerwise sharing is one parameter: its gradient is the sum of what each layer would give an own copy."""
    torch.manual_seed(0)
    shared = tiny_classifier("layer").eval()
    torch.manual_seed(0)
    own = tiny_classifier("kv").eval()  # the same init (kv: one projection per layer, all equal at first)
    ids = torch.randint(1, 100, (2, 16))
    shared(ids, labels=torch.tensor([0, 1])).loss.backward()
    own(ids, labels=torch.tensor([0, 1])).loss.backward()
    total = sum(b.attn.E.grad for b in own.encoder.blocks)
    assert torch.allclose(shared.encoder.blocks[0].attn.E.grad, total, atol=1e-6, rtol=0)


@pytest.mark.parametrize("share, names", [
    ("head", [f"{i}.attention.mechanism.{p}" for i in range(2) for p in "EF"]),
    ("kv", ["0.attention.mechanism.E", "1.attention.mechanism.E"]),
    ("layer", ["0.attention.mechanism.E"]),
])
def test_projections_are_saved_exported_and_loaded_back(share, names, hf_tokenizer, tmp_path):
    """Every share mode: the export holds each projection once (layer: under layer 0), transformers loads the
    folder (ignoring them), and textcls loads it back to the same parameters and logits; the training checkpoint
    format (safetensors' save_model) keeps the tie."""
    from safetensors.torch import load_model, save_model
    from transformers import BertForSequenceClassification

    cfg = ModelConfig(model="bert-tiny", init="random", attention="linformer")
    opts = attention_options("linformer", {"linformer_k": 32, "linformer_share": share})
    torch.manual_seed(0)
    model, _ = build_classifier(cfg, ["neg", "pos"], 128, attention=opts)
    with torch.no_grad():  # unlike any fresh init
        for n, p in model.named_parameters():
            if ".attn." in n:
                p.add_(torch.randn_like(p))
    exported = [n for n in hf_state_dict(model) if ".attention.mechanism." in n]
    assert exported == ["bert.encoder.layer." + n for n in names]
    save_classifier(model, tmp_path / "model", hf_tokenizer, ["neg", "pos"])
    assert BertForSequenceClassification.from_pretrained(tmp_path / "model").config.num_labels == 2

    loaded, _, report = load_classifier(tmp_path / "model")
    assert report.fresh == [] and loaded.encoder.attention.options == opts
    for (name, a), (_, b) in zip(model.named_parameters(), loaded.named_parameters(), strict=True):
        assert torch.equal(a, b), name
    ids = torch.randint(1000, 2000, (2, 40))
    mask = torch.ones_like(ids)
    mask[0, 30:] = 0
    with torch.no_grad():
        assert torch.equal(model.eval()(ids, mask).logits, loaded.eval()(ids, mask).logits)

    save_model(model, str(tmp_path / "checkpoint.safetensors"))
    torch.manual_seed(1)
    again, _ = build_classifier(cfg, ["neg", "pos"], 128, attention=opts)
    assert load_model(again, str(tmp_path / "checkpoint.safetensors")) == (set(), [])
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True))
    if share == "layer":
        assert all(b.attn.E is again.encoder.blocks[0].attn.E for b in again.encoder.blocks)


# ------------------------------------------------------------------------------------------- MiniLM

def minilm_batch(T: int, padded_to: int):
    """Two rows of random wordpieces, [CLS] first and [SEP] last: one of T tokens, one of `padded_to` real ones."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (2, T), generator=g)
    ids[:, 0] = 101
    ids[0, -1] = ids[1, padded_to - 1] = 102
    mask = torch.ones_like(ids)
    mask[1, padded_to:] = 0
    ids[1, padded_to:] = 0
    return ids, mask


def test_minilm_runs_with_linformer_beyond_its_positions(minilm_path):
    """all-MiniLM-L6-v2 (pretrained) with --attention linformer --extend-positions to 1024 positions: the
    projections (k, 1024) start fresh and are reported so, the positions extended; finite logits on 700 tokens,
    and the padded row gives what it gives alone."""
    torch.manual_seed(0)
    opts = attention_options("linformer", {"linformer_k": 128})
    model, report = build_classifier(ModelConfig(model="minilm-l6", attention="linformer", extend_positions=True),
                                     ["neg", "pos"], 1024, attention=opts)
    assert [n for n in report.fresh if ".attn." in n] == [f"encoder.blocks.{i}.attn.{p}" for i in range(6)
                                                          for p in "EF"]
    assert report.extended_positions == (512, 1024)
    assert model.encoder.blocks[0].attn.E.shape == (128, 1024)
    ids, mask = minilm_batch(700, 450)
    with torch.no_grad():
        logits = model.eval()(ids, mask).logits
        alone = model(ids[1:, :450], mask[1:, :450]).logits
    assert torch.isfinite(logits).all()
    assert torch.allclose(logits[1:], alone, atol=1e-5, rtol=0)


def test_minilm_with_k_equal_to_its_positions_starts_as_full_attention(minilm_path):
    """k = n = 512: identity projections, so the fresh Linformer MiniLM computes full attention's logits."""
    ids, mask = minilm_batch(200, 130)
    logits = {}
    for name, options in (("full", None), ("linformer", {"linformer_k": 512})):
        torch.manual_seed(0)  # the same fresh classifier head
        model, _ = build_classifier(ModelConfig(model="minilm-l6", attention=name), ["neg", "pos"], 512,
                                    attention=attention_options(name, options))
        with torch.no_grad():
            logits[name] = model.eval()(ids, mask).logits
    assert torch.allclose(logits["linformer"], logits["full"], atol=1e-5, rtol=0)


# ------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("flags, message", [
    (["--attention", "linformer", "--linformer-k", "0"], "--linformer-k must be at least 1, got 0"),
    (["--attention", "linformer", "--linformer-share", "heads"],
     "textcls: error: argument --linformer-share: invalid choice: 'heads' (choose from 'head', 'kv', 'layer')"),
    (["--attention", "linformer", "--max-length", "200"], "--max-length 200 exceeds the 128 positions of model"),
    (["--linformer-k", "8"], "--linformer-k (attention.linformer_k) is an option of attention 'linformer', but "
                             "the attention is 'full'; add --attention linformer"),
])
def test_bad_linformer_settings(flags, message, train_argv, cli, tmp_path, capsys):
    from textcls.cli import main

    argv = train_argv(tmp_path / "run", *flags)
    if message.startswith("textcls: error: argument"):  # argparse checks the choices
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and capsys.readouterr().err.startswith(message)
    else:
        assert message in cli.error(*argv)
    assert not (tmp_path / "run").exists()


def test_a_run_longer_than_the_projections_names_the_flag():
    """check_options: E and F cover the model's n positions; a longer run needs --extend-positions (which
    lengthens them) or a shorter --max-length."""
    shape = AttentionShape(num_heads=NH, head_size=HS, max_positions=128)
    LinformerAttention.check_options(LinformerOptions(), shape, 128)
    with pytest.raises(TextclsError, match=r"projects at most 128 positions .* --max-length 200 is longer; lower "
                                           r"--max-length to 128 or add --extend-positions"):
        LinformerAttention.check_options(LinformerOptions(), shape, 200)

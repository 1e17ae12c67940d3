"""Every registered attention mechanism, through one parametrised set of tests, and the registry's strictness.

Tolerance: 1e-5 absolute, float32, against softmax attention written out in the test."""

from __future__ import annotations

import math

import pytest
import torch

from textcls.errors import TextclsError
from textcls.model import Encoder, EncoderConfig
from textcls.model.attention import (_REGISTRY, Attention, AttentionConfig, attention_names, build_attention,
                                     describe_attention, register_attention)
from textcls.model.attention.full import FullAttention, FullAttentionConfig

B, NH, HS = 2, 2, 16


def reference_attention(q, k, v, key_padding_mask):
    """softmax(q kᵀ / √hs) v, padded keys excluded: the definition, materialised."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, T, T)
    if key_padding_mask is not None:
        scores = scores.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
    return scores.softmax(dim=-1) @ v


def mechanism(name: str, seq_len: int, **fields) -> Attention:
    cls, config_class = _REGISTRY[name]
    return cls(config_class(num_heads=NH, head_size=HS, max_length=seq_len, **fields)).eval()


def lengths(name: str) -> tuple[int, int]:
    """A sequence length the mechanism accepts (about 48) and a shorter real length for a padded row (3/4 of it)."""
    m = _REGISTRY[name][0].seq_multiple_of
    T = 4 * m * math.ceil(12 / m)
    return T, T * 3 // 4


def qkv(T: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(B, NH, T, HS, generator=g) for _ in range(3)]


@pytest.mark.parametrize("name", attention_names())
class TestEveryMechanism:
    def test_shape_in_equals_shape_out(self, name):
        T, _ = lengths(name)
        q, k, v = qkv(T)
        out = mechanism(name, T)(q, k, v, None)
        assert out.shape == (B, NH, T, HS)
        assert torch.isfinite(out).all()

    def test_padded_keys_get_no_weight(self, name):
        T, real = lengths(name)
        q, k, v = qkv(T)
        mask = torch.ones(B, T, dtype=torch.bool)
        mask[1, real:] = False
        attn = mechanism(name, T)
        out = attn(q, k, v, mask)
        # Whatever sits in the padded positions must not reach the real ones.
        k2, v2 = k.clone(), v.clone()
        k2[1, :, real:], v2[1, :, real:] = 1e3, -1e3
        out2 = attn(q, k2, v2, mask)
        assert torch.isfinite(out).all()
        assert torch.allclose(out[:, :, :real], out2[:, :, :real], atol=1e-5, rtol=0)
        # And a padded row gives its real positions what the same row gives alone, unpadded.
        alone = attn(q[1:, :, :real], k[1:, :, :real], v[1:, :, :real], None)
        assert torch.allclose(out[1:, :, :real], alone, atol=1e-5, rtol=0)

    def test_matches_full_attention_in_its_limit(self, name):
        T, _ = lengths(name)
        fields = _REGISTRY[name][0].full_limit(T)
        if fields is None:
            pytest.skip(f"{name} has no limit in which it equals full attention")
        q, k, v = qkv(T)
        mask = torch.ones(B, T, dtype=torch.bool)
        mask[0, T // 2:] = False
        attn = mechanism(name, T, **fields)
        for m in (None, mask):
            assert torch.allclose(attn(q, k, v, m), reference_attention(q, k, v, m), atol=1e-5, rtol=0)

    def test_no_dropout_in_eval_mode(self, name):
        T, _ = lengths(name)
        q, k, v = qkv(T)
        with_dropout = mechanism(name, T, dropout=0.5)
        assert torch.equal(with_dropout(q, k, v, None), mechanism(name, T)(q, k, v, None))
        with_dropout.train()
        assert not torch.equal(with_dropout(q, k, v, None), mechanism(name, T)(q, k, v, None))


def test_unknown_mechanism_lists_the_registered_ones():
    with pytest.raises(TextclsError, match="unknown attention 'sparse'; registered mechanisms: full"):
        build_attention("sparse", num_heads=2, head_size=16, max_length=64)


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        register_attention("full", FullAttentionConfig)(FullAttention)


def test_registry_lists_capabilities():
    (full,) = [row for row in describe_attention() if row["name"] == "full"]
    assert full["exact"] and full["supports_padding_mask"] and full["seq_multiple_of"] == 1


class Blocked(FullAttention):
    """Full attention that pretends to work on blocks of 8 tokens and to know nothing of padding."""
    seq_multiple_of = 8
    supports_padding_mask = False


@pytest.fixture
def blocked(monkeypatch):
    monkeypatch.setitem(_REGISTRY, "blocked", (Blocked, AttentionConfig))
    return "blocked"


def test_capabilities_are_checked_when_building(blocked):
    with pytest.raises(TextclsError, match="multiple of 8; --max-length 100 is not \\(use 96 or 104\\)"):
        build_attention(blocked, num_heads=2, head_size=16, max_length=100)


def test_encoder_enforces_capabilities_on_batches(blocked):
    enc = Encoder(EncoderConfig(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=100,
                                max_positions=64, attention=blocked)).eval()
    ids = torch.randint(1, 100, (2, 16))
    assert enc(ids).shape == (2, 16, 32)
    with pytest.raises(TextclsError, match="multiple of 8 tokens, got 12"):
        enc(ids[:, :12])
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    with pytest.raises(TextclsError, match="cannot mask padding"):
        enc(ids, mask)


def test_no_mask_reaches_the_mechanism_when_the_batch_has_no_padding(monkeypatch):
    """The fused kernels are fastest (on CUDA: only usable) without a mask: an all-real batch must pass none."""
    seen = []
    forward = FullAttention.forward
    monkeypatch.setattr(FullAttention, "forward",
                        lambda self, q, k, v, m: seen.append(m) or forward(self, q, k, v, m))
    enc = Encoder(EncoderConfig(num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=100))
    ids = torch.randint(1, 100, (2, 16))
    mask = torch.ones_like(ids)
    enc(ids, mask)
    assert seen == [None, None]
    mask[0, 12:] = 0
    enc(ids, mask)
    assert all(torch.equal(m, mask.bool()) for m in seen[2:]) and len(seen) == 4

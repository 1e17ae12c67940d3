"""Every registered attention mechanism, through one parametrised set of tests, and the registry's strictness.

Tolerance: 1e-5 absolute, float32, against each mechanism's `dense_reference` in its full limit (softmax
attention written out, unless the mechanism computes another one there)."""

from __future__ import annotations

import math

import pytest
import torch

from textcls.errors import TextclsError
from textcls.model import Encoder, EncoderConfig
from textcls.config import AttentionOptions
from textcls.model.attention import (_REGISTRY, Attention, AttentionInputs, AttentionShape, attention_names,
                                     attention_options, describe_attention, register_attention)
from textcls.model.attention.full import FullAttention, FullOptions

B, NH, HS = 2, 2, 16


def mechanism(name: str, seq_len: int, dropout: float = 0.0, **fields) -> Attention:
    cls, options_class = _REGISTRY[name]
    return cls(AttentionShape(num_heads=NH, head_size=HS, max_positions=seq_len, dropout=dropout),
               options_class(**fields)).eval()


def run(attn: Attention, q, k, v, key_padding_mask=None):
    """The mechanism as the encoder calls it: prepare once, then forward."""
    ids = torch.ones(q.shape[0], q.shape[2], dtype=torch.long)  # (B, T)
    return attn(q, k, v, attn.prepare(AttentionInputs(input_ids=ids, key_padding_mask=key_padding_mask)))


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
        out = run(mechanism(name, T), q, k, v)
        assert out.shape == (B, NH, T, HS)
        assert torch.isfinite(out).all()

    def test_padded_keys_get_no_weight(self, name):
        T, real = lengths(name)
        q, k, v = qkv(T)
        mask = torch.ones(B, T, dtype=torch.bool)
        mask[1, real:] = False
        attn = mechanism(name, T)
        out = run(attn, q, k, v, mask)
        # Whatever sits in the padded positions must not reach the real ones.
        k2, v2 = k.clone(), v.clone()
        k2[1, :, real:], v2[1, :, real:] = 1e3, -1e3
        out2 = run(attn, q, k2, v2, mask)
        assert torch.isfinite(out).all()
        assert torch.allclose(out[:, :, :real], out2[:, :, :real], atol=1e-5, rtol=0)
        # And a padded row gives its real positions what the same row gives alone, unpadded.
        alone = run(attn, q[1:, :, :real], k[1:, :, :real], v[1:, :, :real])
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
            real = (torch.ones(B, T, dtype=torch.bool) if m is None else m)[:, None, :, None]  # padded rows: any value
            got, want = run(attn, q, k, v, m), type(attn).dense_reference(q, k, v, m)
            assert torch.allclose(got * real, want * real, atol=1e-5, rtol=0) and torch.isfinite(got).all()

    def test_no_dropout_in_eval_mode(self, name):
        T, _ = lengths(name)
        q, k, v = qkv(T)
        with_dropout = mechanism(name, T, dropout=0.5)
        assert torch.equal(run(with_dropout, q, k, v), run(mechanism(name, T), q, k, v))
        with_dropout.train()
        assert not torch.equal(run(with_dropout, q, k, v), run(mechanism(name, T), q, k, v))


def test_unknown_mechanism_lists_the_registered_ones():
    with pytest.raises(TextclsError, match=r"unknown attention 'sparse'; registered mechanisms: (\w+, )*full\b"):
        attention_options("sparse")


def test_registering_a_name_twice_fails():
    with pytest.raises(ValueError, match="registered twice"):
        register_attention("full", FullOptions)(FullAttention)


def test_options_must_be_named_after_their_mechanism():
    from dataclasses import dataclass

    @dataclass
    class BadOptions(AttentionOptions):
        window: int = 8

    with pytest.raises(ValueError, match="option 'window' must start with 'toy_'"):
        register_attention("toy", BadOptions)(FullAttention)
    assert "toy" not in _REGISTRY


def test_registry_lists_capabilities():
    (full,) = [row for row in describe_attention() if row["name"] == "full"]
    assert full["exact"] and full["supports_padding_mask"] and full["seq_multiple_of"] == 1
    assert full["options"] == [] and not full["shared_qk"] and not full["global_tokens"]


class Blocked(FullAttention):
    """Full attention that pretends to work on blocks of 96 tokens and to know nothing of padding."""
    seq_multiple_of = 96
    supports_padding_mask = False


class BlockedOptions(AttentionOptions):
    pass


def register_for_test(monkeypatch, name: str, cls: type, options: type) -> str:
    """`name` registered for one test, as register_attention would (which refuses a second registration)."""
    options.mechanism = name
    monkeypatch.setattr(cls, "name", name)
    monkeypatch.setitem(_REGISTRY, name, (cls, options))
    return name


@pytest.fixture
def blocked(monkeypatch):
    return register_for_test(monkeypatch, "blocked", Blocked, BlockedOptions)


def test_a_block_multiple_is_checked_against_the_runs_length_not_the_positions(blocked):
    """A mechanism needing multiples of 96 takes --max-length 192 on a 512-position model (batches are padded to
    192); --max-length 500 would be padded to 576, beyond the positions, which the error says."""
    from textcls.config import ModelConfig
    from textcls.model import encoder_config, find_model

    cfg = ModelConfig(model="bert-tiny", init="random", attention=blocked)
    source = find_model("bert-tiny", "random")
    assert encoder_config(cfg, source, 192).max_positions == 512
    with pytest.raises(TextclsError, match="--max-length 500 becomes 576, more than the model's 512 positions; "
                                           "lower --max-length to 480 or add --extend-positions"):
        encoder_config(cfg, source, 500)


def test_encoder_enforces_capabilities_on_batches(blocked):
    enc = Encoder(EncoderConfig(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=100,
                                max_positions=192, attention=blocked)).eval()
    ids = torch.randint(1, 100, (2, 96))
    assert enc(ids).shape == (2, 96, 32)
    with pytest.raises(TextclsError, match="multiple of 96 tokens, got 12"):
        enc(ids[:, :12])
    mask = torch.ones_like(ids)
    mask[1, 10:] = 0
    with pytest.raises(TextclsError, match="cannot mask padding"):
        enc(ids, mask)


def test_the_collator_pads_to_the_mechanisms_multiple(blocked, hf_tokenizer):
    """One collator, made from the model's needs, for training and inference alike."""
    from textcls.config import TokenizeConfig
    from textcls.data.batching import Collator
    from textcls.model import BertClassifier

    model = BertClassifier(EncoderConfig(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64,
                                         max_positions=192, attention=blocked), num_labels=2)
    collate = Collator.for_model(TokenizeConfig(max_length=150), hf_tokenizer, model)
    batch = collate([{"input_ids": [101, 7, 102], "token_type_ids": [0, 0, 0]}])
    assert batch["input_ids"].shape == (1, 96) and batch["attention_mask"].sum() == 3


def test_no_mask_reaches_the_mechanism_when_the_batch_has_no_padding(monkeypatch):
    """The fused kernels are fastest (on CUDA: only usable) without a mask: an all-real batch must pass none."""
    seen = []
    forward = FullAttention.forward
    monkeypatch.setattr(FullAttention, "forward",
                        lambda self, q, k, v, inputs: seen.append(inputs.key_padding_mask) or
                        forward(self, q, k, v, inputs))
    enc = Encoder(EncoderConfig(num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=100))
    ids = torch.randint(1, 100, (2, 16))
    mask = torch.ones_like(ids)
    enc(ids, mask)
    assert seen == [None, None]
    mask[0, 12:] = 0
    enc(ids, mask)
    assert all(torch.equal(m, mask.bool()) for m in seen[2:]) and len(seen) == 4


def test_prepare_runs_once_per_forward_and_every_layer_gets_its_inputs(monkeypatch):
    """Per-forward work (which tokens are global, a block layout) is done once and shared by the layers."""
    calls, seen = [], []
    monkeypatch.setattr(FullAttention, "prepare", lambda self, inputs: calls.append(inputs) or inputs)
    forward = FullAttention.forward
    monkeypatch.setattr(FullAttention, "forward",
                        lambda self, q, k, v, inputs: seen.append(inputs) or forward(self, q, k, v, inputs))
    enc = Encoder(EncoderConfig(num_layers=3, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=100))
    types = torch.zeros(2, 16, dtype=torch.long)
    enc(torch.randint(1, 100, (2, 16)), token_type_ids=types)
    assert len(calls) == 1 and len(seen) == 3 and all(s is calls[0] for s in seen)
    assert torch.equal(calls[0].token_type_ids, types)


def test_a_shared_query_key_mechanism_gets_the_queries_as_keys(monkeypatch):
    seen = []

    class SharedQK(FullAttention):
        shared_qk = True

        def forward(self, q, k, v, inputs):
            seen.append(k is q)
            return super().forward(q, k, v, inputs)

    class SharedOptions(AttentionOptions):
        pass

    enc = Encoder(EncoderConfig(num_layers=2, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=100,
                                attention=register_for_test(monkeypatch, "shared", SharedQK, SharedOptions)))
    enc(torch.randint(1, 100, (2, 16)))
    assert seen == [True, True]


def test_global_tokens_only_for_mechanisms_that_have_them():
    enc = Encoder(EncoderConfig(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64, vocab_size=100))
    ids = torch.randint(1, 100, (2, 16))
    with pytest.raises(TextclsError, match="attention 'full' has no global tokens"):
        enc(ids, global_attention_mask=torch.zeros_like(ids))


class Projected(FullAttention):
    """Full attention on keys and values mixed by a learned (hs, hs) projection: a mechanism with weights of its own,
    as Linformer's projections."""

    exact = False

    def __init__(self, shape, options):
        super().__init__(shape, options)
        self.proj = torch.nn.Linear(shape.head_size, shape.head_size, bias=False)

    def forward(self, q, k, v, inputs):
        return super().forward(q, self.proj(k), self.proj(v), inputs)


class ProjectedOptions(AttentionOptions):
    pass


@pytest.fixture
def projected(monkeypatch):
    return register_for_test(monkeypatch, "projected", Projected, ProjectedOptions)


def test_a_mechanisms_own_weights_are_saved_exported_and_loaded_back(projected, hf_tokenizer, tmp_path, caplog):
    """Mechanism weights go into the export under names transformers does not have (it loads the folder and ignores
    them), and textcls reads them back exactly; a checkpoint without them starts them fresh, said so."""
    from transformers import BertForSequenceClassification

    from textcls.config import ModelConfig
    from textcls.model import build_classifier, hf_state_dict, load_classifier, save_classifier

    cfg = ModelConfig(model="bert-tiny", init="random", attention=projected)
    torch.manual_seed(0)
    model, _ = build_classifier(cfg, ["neg", "pos"], 128)
    names = [n for n in hf_state_dict(model) if ".attention.mechanism." in n]
    assert names == ["bert.encoder.layer.0.attention.mechanism.proj.weight",
                     "bert.encoder.layer.1.attention.mechanism.proj.weight"]
    save_classifier(model, tmp_path / "model", hf_tokenizer, ["neg", "pos"])

    hf = BertForSequenceClassification.from_pretrained(tmp_path / "model")  # loads, ignoring the extra tensors
    assert hf.config.num_labels == 2
    loaded, labels, report = load_classifier(tmp_path / "model")
    assert loaded.encoder.attention.name == projected and report.fresh == [] and labels == ["neg", "pos"]
    for (name, a), (_, b) in zip(model.named_parameters(), loaded.named_parameters()):
        assert torch.equal(a, b), name
    ids = torch.randint(1000, 2000, (2, 16))
    assert torch.equal(model.eval()(ids).logits, loaded.eval()(ids).logits)

    # A checkpoint of full attention has no such weights: they start fresh, and the load report says which.
    plain, _ = build_classifier(ModelConfig(model="bert-tiny", init="random"), ["neg", "pos"], 128)
    save_classifier(plain, tmp_path / "plain", hf_tokenizer, ["neg", "pos"])
    _, _, report = load_classifier(tmp_path / "plain", attention=projected)
    assert report.fresh == ["encoder.blocks.0.attn.proj.weight", "encoder.blocks.1.attn.proj.weight"]
    # And loaded with full attention, the projected model's extra tensors are reported unused, not an error.
    _, _, report = load_classifier(tmp_path / "model", attention="full")
    assert report.unused == names

"""The textcls encoder and heads against transformers' BERT, on real IMDB reviews; building from presets and folders.

Tolerance: 1e-5 absolute, float32, eval mode, over real (unpadded) token positions."""

from __future__ import annotations

import json

import pytest
import torch

from textcls.config import ModelConfig
from textcls.errors import TextclsError
from textcls.model import BertMaskedLM, build_classifier, load_hf_state
from textcls.model.hf import encoder_config_from_hf

LABELS = ["neg", "pos"]
TOL = 1e-5


def tokenize(tokenizer, texts, pairs=None, max_length=128):
    return dict(tokenizer(texts, pairs, padding=True, truncation=True, max_length=max_length, return_tensors="pt"))


@pytest.fixture(scope="module")
def minilm(minilm_path):
    model, _ = build_classifier(ModelConfig(model=str(minilm_path)), LABELS, max_length=512)
    return model.eval()


@pytest.mark.parametrize("pairs", [False, True], ids=["reviews", "pairs"])
def test_hidden_states_equal_transformers(minilm, minilm_path, hf_tokenizer, imdb_rows, pairs):
    from transformers import BertModel

    reference = BertModel.from_pretrained(minilm_path).eval()
    texts = list(imdb_rows.text[15:23])  # neg and pos reviews of different lengths
    second = [t[:300] for t in imdb_rows.text[30:38]] if pairs else None
    batch = tokenize(hf_tokenizer, texts, second, max_length=256)
    real = batch["attention_mask"].bool()
    assert not real.all(), "the batch must be padded"
    assert (batch["token_type_ids"] == 1).any() == pairs
    with torch.no_grad():
        ours = minilm.encoder(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        theirs = reference(**batch).last_hidden_state
    assert (ours - theirs)[real].abs().max() <= TOL


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_logits_do_not_depend_on_padding(minilm_path, hf_tokenizer, imdb_rows, pooling):
    model, _ = build_classifier(ModelConfig(model=str(minilm_path), pooling=pooling), LABELS, max_length=512)
    model.eval()
    texts = sorted(imdb_rows.text[:12], key=len)
    short, longer = texts[0], texts[-3:]
    with torch.no_grad():
        alone = model(**tokenize(hf_tokenizer, [short])).logits[0]
        batch = tokenize(hf_tokenizer, [short] + longer)
        assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # the short review is padded
        batched = model(**batch).logits[0]
    assert (alone - batched).abs().max() <= TOL


@pytest.mark.parametrize("model_name, init", [("bert-tiny", "random"), ("minilm-l6", "pretrained")])
def test_forward_and_backward_on_real_batches(hf_tokenizer, imdb_rows, model_name, init):
    model, report = build_classifier(ModelConfig(model=model_name, init=init), LABELS, max_length=128)
    model.train()
    rows = imdb_rows.iloc[[0, 1, 2, 20, 21, 22]]
    batch = tokenize(hf_tokenizer, list(rows.text))
    out = model(**batch, labels=torch.tensor(rows.label.values, dtype=torch.long))
    assert out.logits.shape == (6, 2) and torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert report.source == "random init" if init == "random" else report.source.endswith("model.safetensors")


def test_random_init_of_a_preset_needs_no_download():
    model, _ = build_classifier(ModelConfig(model="bert-mini", init="random"), LABELS, max_length=512)
    cfg = model.encoder.config
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.intermediate_size) == (4, 256, 4, 1024)


def test_pretrained_weights_offline_fail_at_once_naming_the_ways_out(monkeypatch, tmp_path, network_attempts):
    import huggingface_hub
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached, whatever this machine holds
    downloads, snapshot_download = [], huggingface_hub.snapshot_download
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, **kwargs: downloads.append(repo_id) or snapshot_download(repo_id, **kwargs))
    with pytest.raises(TextclsError) as e:
        build_classifier(ModelConfig(model="bert-tiny"), LABELS, max_length=128)
    assert downloads == ["google/bert_uncased_L-2_H-128_A-2"]  # one look in the cache, not tried again
    assert network_attempts == []  # no request to the hub, so no timeout and no retries
    msg = str(e.value)
    assert "google/bert_uncased_L-2_H-128_A-2" in msg and "local folder" in msg and "--init random" in msg


def test_a_folder_without_weights_needs_init_random(tmp_path, minilm_path):
    (tmp_path / "config.json").write_text((minilm_path / "config.json").read_text())
    with pytest.raises(TextclsError, match="has no weights.*--init random"):
        build_classifier(ModelConfig(model=str(tmp_path)), LABELS, max_length=128)
    model, report = build_classifier(ModelConfig(model=str(tmp_path), init="random"), LABELS, max_length=128)
    assert model.encoder.config.hidden_size == 384 and report.source == "random init"


def test_unsupported_architecture_is_refused(tmp_path, minilm_path):
    config = json.loads((minilm_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_act": "relu"}))
    with pytest.raises(TextclsError, match="hidden_act='relu' is not supported"):
        build_classifier(ModelConfig(model=str(tmp_path), init="random"), LABELS, max_length=128)


def test_positions_extend_only_when_asked(minilm_path):
    with pytest.raises(TextclsError, match="--max-length 1200 exceeds the 512 positions.*--extend-positions"):
        build_classifier(ModelConfig(model=str(minilm_path)), LABELS, max_length=1200)
    model, report = build_classifier(ModelConfig(model=str(minilm_path), extend_positions=True), LABELS, 1200)
    table = model.encoder.embeddings.position.weight
    assert table.shape[0] == 1200 and report.extended_positions == (512, 1200)
    assert torch.equal(table[512:1024], table[:512]) and torch.equal(table[1024:], table[:176])
    ids = torch.randint(1000, 30000, (1, 1200))
    with torch.no_grad():
        assert torch.isfinite(model.eval()(ids).logits).all()


def test_masked_lm_head_matches_transformers():
    from transformers import BertConfig, BertForMaskedLM

    cfg = BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64)
    torch.manual_seed(0)
    reference = BertForMaskedLM(cfg).eval()
    torch.nn.init.normal_(reference.cls.predictions.bias)  # zero at init: make the test see it
    ours = BertMaskedLM(encoder_config_from_hf(cfg.to_dict(), "test config")).eval()
    report = load_hf_state(ours, reference.state_dict(), "reference")
    assert report.fresh == [] and report.unused == []
    ids = torch.randint(1, 500, (3, 20))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    with torch.no_grad():
        a, b = ours(ids, mask, labels=labels), reference(input_ids=ids, attention_mask=mask, labels=labels)
        full = ours(ids, mask).logits  # without labels: every position
    real = mask.bool()
    assert (full - b.logits)[real].abs().max() <= TOL
    assert (a.logits - b.logits[labels != -100]).abs().max() <= TOL  # with labels: the labelled positions only
    assert abs(a.loss - b.loss) <= TOL

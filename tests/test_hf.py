"""Checkpoints: importing transformers-layout BERT weights by explicit names, exporting classifiers that transformers
loads and that compute the same logits (tolerance 1e-5, float32, eval mode), and the CLI over them."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from textcls.cli import main
from textcls.config import ModelConfig, TokenizeConfig
from textcls.errors import TextclsError
from textcls.model import build_classifier, load_classifier, load_hf_state, read_state_dict, save_classifier

LABELS = ["neg", "pos"]
TOL = 1e-5


@pytest.fixture(scope="module")
def minilm_state(minilm_path):
    return read_state_dict(minilm_path / "model.safetensors")


@pytest.fixture(scope="module")
def batch(hf_tokenizer, imdb_rows):
    """Padded pairs of real reviews (token_type_ids 1 on the second text)."""
    texts = list(imdb_rows.text[16:22])
    return dict(hf_tokenizer(texts, texts[::-1], padding=True, truncation=True, max_length=160,
                             return_tensors="pt"))


@pytest.fixture(scope="module")
def exported(tmp_path_factory, minilm_path, hf_tokenizer):
    """A MiniLM-initialised classifier (random head), saved by textcls."""
    torch.manual_seed(0)
    model, _ = build_classifier(ModelConfig(model=str(minilm_path)), LABELS, max_length=512)
    path = tmp_path_factory.mktemp("export") / "clf"
    save_classifier(model, path, hf_tokenizer, LABELS, TokenizeConfig(max_length=256))
    return model.eval(), path


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


def test_exported_classifier_loads_in_transformers_with_the_same_logits(exported, batch, hf_tokenizer):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, path = exported
    reference, loading = AutoModelForSequenceClassification.from_pretrained(path, output_loading_info=True)
    assert not any(loading.values()), loading  # no missing, unexpected or mismatched tensors
    reference.eval()
    assert type(reference).__name__ == "BertForSequenceClassification"
    assert reference.config.id2label == {0: "neg", 1: "pos"} and reference.config.label2id == {"neg": 0, "pos": 1}
    assert reference.config.problem_type == "single_label_classification"
    assert (logits(model, batch) - logits(reference, batch)).abs().max() <= TOL
    tokenizer = AutoTokenizer.from_pretrained(path)
    text = "A gripping, well-acted film; the ending drags."
    assert tokenizer(text).input_ids == hf_tokenizer(text).input_ids


def test_saved_folder_is_safetensors_and_json_only(exported):
    _, path = exported
    files = {p.name for p in path.iterdir()}
    assert {"config.json", "model.safetensors", "textcls.json", "tokenizer.json"} <= files
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    extra = json.loads((path / "textcls.json").read_text())
    assert extra["attention"] == "full" and extra["pooling"] == "cls" and extra["transformers_equivalent"]
    assert extra["tokenize"]["max_length"] == 256


def test_load_classifier_round_trip(exported, batch):
    model, path = exported
    loaded, labels, report = load_classifier(path)
    assert labels == LABELS and report.fresh == [] and report.unused == []
    assert torch.equal(logits(model, batch), logits(loaded.eval(), batch))


def test_a_different_label_count_needs_reinit_head(exported):
    _, path = exported
    three = ["neg", "neutral", "pos"]
    with pytest.raises(TextclsError, match=r"classifier head for labels \['neg', 'pos'\].*--reinit-head"):
        build_classifier(ModelConfig(model=str(path)), three, max_length=128)
    with pytest.raises(TextclsError, match="--reinit-head"):
        load_classifier(path, label_names=three)
    model, labels, report = load_classifier(path, label_names=three, reinit_head=True)
    assert model.num_labels == 3 and labels == three
    assert report.fresh == ["classifier.weight", "classifier.bias"]
    assert report.unused == ["classifier.bias", "classifier.weight"]


def test_same_count_other_label_names_need_reinit_head(exported):
    _, path = exported
    with pytest.raises(TextclsError, match="--reinit-head"):
        build_classifier(ModelConfig(model=str(path)), ["negative", "positive"], max_length=128)


def test_a_base_model_is_not_a_classifier(minilm_path):
    with pytest.raises(TextclsError, match="no label names"):
        load_classifier(minilm_path)


def test_mean_pooling_export_warns_and_says_so(tmp_path, minilm_path, hf_tokenizer, batch, caplog):
    model, _ = build_classifier(ModelConfig(model=str(minilm_path), pooling="mean"), LABELS, max_length=512)
    with caplog.at_level(logging.WARNING):
        save_classifier(model, tmp_path / "mean", hf_tokenizer, LABELS)
    assert "computes different logits" in caplog.text and "pooling 'mean'" in caplog.text
    extra = json.loads((tmp_path / "mean" / "textcls.json").read_text())
    assert not extra["transformers_equivalent"] and extra["pooling"] == "mean"
    loaded, _, _ = load_classifier(tmp_path / "mean")
    assert loaded.pooling == "mean"
    build_classifier(ModelConfig(model=str(tmp_path / "mean")), LABELS, max_length=128)
    assert "saved with pooling 'mean'; building it with 'cls' as asked (--pooling mean keeps" in caplog.text
    assert torch.equal(logits(model.eval(), batch), logits(loaded.eval(), batch))


def test_bin_checkpoint_with_old_names_and_pretraining_heads(tmp_path, minilm_path, minilm_state, batch):
    """A BertForPreTraining-style .bin: `bert.` prefix, TF-era gamma/beta, masked-LM and NSP heads."""
    state = {}
    for key, tensor in minilm_state.items():
        key = key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")
        state[key] = tensor
    state["cls.predictions.bias"] = torch.zeros(30522)
    state["cls.seq_relationship.weight"] = torch.zeros(2, 384)
    torch.save(state, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text((minilm_path / "config.json").read_text())
    model, report = build_classifier(ModelConfig(model=str(tmp_path)), LABELS, max_length=512)
    assert report.unused == ["cls.predictions.bias", "cls.seq_relationship.weight"]
    reference, _ = build_classifier(ModelConfig(model=str(minilm_path)), LABELS, max_length=512)
    with torch.no_grad():
        ours, theirs = (m.eval().encoder(batch["input_ids"], batch["attention_mask"]) for m in (model, reference))
    assert torch.equal(ours, theirs)


def fresh_classifier(minilm_path, pooling="cls"):
    model, _ = build_classifier(ModelConfig(model=str(minilm_path), init="random", pooling=pooling), LABELS, 512)
    return model


def test_a_checkpoint_without_pooler_reports_a_fresh_pooler(minilm_path, minilm_state):
    state = {k: v for k, v in minilm_state.items() if not k.startswith("bert.pooler.")}
    report = load_hf_state(fresh_classifier(minilm_path), state, "no-pooler")
    assert report.fresh == ["pooler.weight", "pooler.bias", "classifier.weight", "classifier.bias"]
    report = load_hf_state(fresh_classifier(minilm_path, "mean"), minilm_state, "minilm")
    assert report.unused == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]


@pytest.mark.parametrize("change, listed", [
    ("drop", "missing 1 tensors: encoder.blocks.3.mlp_out.weight"),
    ("add", "1 unknown tensors: bert.encoder.layer.0.extra.weight"),
    ("reshape", "1 tensors of the wrong shape: bert.encoder.layer.3.output.dense.weight (384, 1000)"),
])
def test_missing_unknown_and_misshapen_tensors_are_listed(minilm_path, minilm_state, change, listed):
    state = dict(minilm_state)
    key = "bert.encoder.layer.3.output.dense.weight"
    if change == "drop":
        del state[key]
    elif change == "add":
        state["bert.encoder.layer.0.extra.weight"] = torch.zeros(3)
    else:
        state[key] = torch.zeros(384, 1000)
    with pytest.raises(TextclsError) as e:
        load_hf_state(fresh_classifier(minilm_path), state, "broken")
    assert listed in str(e.value)


# --------------------------------------------------------------------------------------------- CLI

def test_cli_attention_list(capsys):
    assert main(["attention", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows if r["exact"]] == ["full"]


def test_cli_model_info_of_an_exported_classifier(exported, capsys):
    model, path = exported
    assert main(["model", "info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["labels"] == LABELS and info["weights"].endswith("model.safetensors")
    assert info["parameters"]["total"] == sum(p.numel() for p in model.parameters())
    assert info["saved_settings"]["pooling"] == "cls"


def test_cli_model_info_offline_preset_says_where_weights_would_come_from(capsys, monkeypatch, tmp_path):
    from huggingface_hub import constants
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached, whatever this machine holds
    assert main(["model", "info", "bert-tiny"]) == 0
    out = capsys.readouterr().out
    assert "2 layers, hidden 128, 2 heads" in out and "not available" in out and "--init random" in out


def test_cli_model_info_bad_max_length_exits_2(capsys):
    assert main(["model", "info", "bert-tiny", "--init", "random", "--max-length", "4096"]) == 2
    assert "--extend-positions" in capsys.readouterr().err

"""`textcls pretrain`: BERT's masking, a masked-LM run on real IMDB texts (train + unsupervised), its export as a
transformers BertForMaskedLM folder, fine-tuning from it, resume, and bad input."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from textcls.config import ModelConfig
from textcls.data.batching import Collator
from textcls.model import BertMaskedLM, EncoderConfig, build_classifier, build_masked_lm
from textcls.train.loop import Trainer
from textcls.train.pretrain import MaskingCollator

MLM_HEAD = ["cls.predictions.bias", "cls.predictions.transform.LayerNorm.bias",
            "cls.predictions.transform.LayerNorm.weight", "cls.predictions.transform.dense.bias",
            "cls.predictions.transform.dense.weight"]


@pytest.fixture(scope="module")
def mlm_data(tmp_path_factory, imdb_dir) -> Path:
    """Real IMDB rows: train 120 (validation: 12 of them, carved), test 20, unsupervised 120."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("mlm-data")
    for split, step, per_label in (("train", 211, 60), ("test", 401, 10)):
        df = pd.read_parquet(imdb_dir / f"{split}.parquet")
        df = pd.concat([df[df.label == label].iloc[::step].head(per_label) for label in (0, 1)])
        df.reset_index(drop=True).to_parquet(folder / f"{split}.parquet")
    unsup = pd.read_parquet(imdb_dir / "unsupervised.parquet").iloc[::409].head(120)
    unsup.reset_index(drop=True).to_parquet(folder / "unsupervised.parquet")
    return folder


def pretrain_argv(data: Path, model: Path, cache: Path, output: Path, *extra: str) -> list[str]:
    """Texts of up to 64 tokens, batches of 16: 228 pretraining texts (108 train + 120 unsupervised) = 15 batches."""
    return ["pretrain", "--data", str(data), "--model", str(model), "--init", "random", "--tokenizer", "minilm-l6",
            "--max-length", "64", "--batch-size", "16", "--learning-rate", "5e-3", "--cache-dir", str(cache),
            "--output", str(output), *extra]


@pytest.fixture(scope="module")
def pretrained_run(tmp_path_factory, mlm_data, tiny_model, token_cache) -> Path:
    from textcls.cli import main

    out = tmp_path_factory.mktemp("pretrain") / "run"
    assert main(pretrain_argv(mlm_data, tiny_model, token_cache, out, "--epochs", "2", "--logging-steps", "5")) == 0
    return out


def _rows(tokenizer, texts, pairs=None, max_length=128) -> list[dict]:
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    return [{"input_ids": i, "token_type_ids": t} for i, t in zip(enc["input_ids"], enc["token_type_ids"])]


def test_masking_follows_bert(hf_tokenizer, imdb_rows):
    """-100 where nothing is predicted; special tokens and padding never masked; 15% of the tokens predicted, of
    those 80% [MASK], 10% random, 10% unchanged; masks fixed by (seed, batch) and the global RNG untouched."""
    texts = imdb_rows.text.tolist()
    rows = _rows(hf_tokenizer, texts[:20]) + _rows(hf_tokenizer, texts[20:30], texts[30:], max_length=96)  # + pairs
    collate = MaskingCollator(Collator(hf_tokenizer.pad_token_id), hf_tokenizer, mlm_probability=0.15, seed=0)
    plain = Collator(hf_tokenizer.pad_token_id)(rows)
    rng = torch.get_rng_state()
    batch = collate(rows)
    assert torch.equal(torch.get_rng_state(), rng)  # dropout's RNG is not drawn from

    ids, labels = plain["input_ids"], batch["labels"]  # (B, T)
    assert torch.equal(batch["attention_mask"], plain["attention_mask"])
    assert torch.equal(batch["token_type_ids"], plain["token_type_ids"]) and plain["token_type_ids"].any()
    predicted = labels != -100
    assert torch.equal(labels[predicted], ids[predicted])  # the original token is the target
    assert torch.equal(batch["input_ids"][~predicted], ids[~predicted])  # nothing else changes
    special = torch.isin(ids, torch.tensor(hf_tokenizer.all_special_ids)) | (plain["attention_mask"] == 0)
    assert special.sum() > 100 and not (predicted & special).any()

    real = (~special).sum().item()
    assert 0.13 < predicted.sum().item() / real < 0.17
    got = batch["input_ids"][predicted]
    mask_share = (got == hf_tokenizer.mask_token_id).float().mean().item()
    kept_share = (got == ids[predicted]).float().mean().item()
    assert 0.75 < mask_share < 0.85 and 0.06 < kept_share < 0.14 and 0.06 < 1 - mask_share - kept_share < 0.14

    again = collate(rows)
    assert torch.equal(again["input_ids"], batch["input_ids"]) and torch.equal(again["labels"], labels)
    other = MaskingCollator(Collator(hf_tokenizer.pad_token_id), hf_tokenizer, mlm_probability=0.15, seed=1)(rows)
    assert not torch.equal(other["labels"], labels)


def test_masked_lm_predicts_the_masked_positions_only():
    """With labels, the head runs on the M labelled positions: the same logits and loss as on every position."""
    torch.manual_seed(0)
    model = BertMaskedLM(EncoderConfig(num_layers=1, hidden_size=32, num_heads=2, intermediate_size=64,
                                       vocab_size=300)).eval()
    ids = torch.randint(5, 300, (3, 12))
    labels = torch.full_like(ids, -100)
    labels[0, 2], labels[2, 5:7] = ids[0, 2], ids[2, 5:7]
    with torch.no_grad():
        full, sparse = model(ids).logits, model(ids, labels=labels)
    assert sparse.logits.shape == (3, 300)
    assert torch.allclose(sparse.logits, full[labels != -100], atol=1e-6)
    assert torch.allclose(sparse.loss, F.cross_entropy(full.flatten(0, 1), labels.flatten()), atol=1e-6)
    nothing = model(ids, labels=torch.full_like(ids, -100)).loss
    assert nothing.item() == 0  # a batch without a masked token: no NaN that would stop the run


def test_pretraining_run(pretrained_run, read_jsonl, model_weights):
    """The run directory of a training run; the loss falls; train + unsupervised texts, never validation or test."""
    run_dir = pretrained_run
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["epochs"] == 2  # 2 x 15 batches: 108 train + 120 unsupervised texts
    assert summary["best_validation"]["step"] == 30 and summary["final"] == {}
    records = read_jsonl(run_dir / "metrics.jsonl")
    train = [r["loss"] for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert len(train) == 6 and train[0] > 10 and train[-1] < train[0] - 1.5  # from ln(30522) = 10.3 on
    assert [r["step"] for r in evals] == [15, 30] and evals[1]["loss"] < evals[0]["loss"]
    assert evals[1]["perplexity"] == pytest.approx(math.exp(evals[1]["loss"]))

    config = json.loads((run_dir / "config.json").read_text())
    assert config["pretrain"] == {"mlm_probability": 0.15, "splits": None}
    assert config["train"]["metric_for_best"] == "loss" and config["train"]["eval_splits"] == []
    assert sorted(p.name for p in (run_dir / "plots").iterdir()) == ["eval.png", "loss.png", "lr.png"]  # perplexity
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-0000015", "step-0000030"]

    model_dir = run_dir / "model"
    hf_config = json.loads((model_dir / "config.json").read_text())
    assert hf_config["architectures"] == ["BertForMaskedLM"] and "id2label" not in hf_config
    names = set(model_weights(model_dir))
    assert set(MLM_HEAD) <= names and not any(n.startswith(("bert.pooler", "cls.predictions.decoder")) for n in names)


def test_export_loads_in_transformers_with_the_same_logits(pretrained_run, imdb_rows):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    folder = pretrained_run / "model"
    hf, info = AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True)
    assert type(hf).__name__ == "BertForMaskedLM"
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert hf.cls.predictions.decoder.weight is hf.bert.embeddings.word_embeddings.weight  # tied, as saved
    ours, report = build_masked_lm(ModelConfig(model=str(folder)), max_length=64)
    assert report.fresh == [] and report.unused == []

    tokenizer = AutoTokenizer.from_pretrained(folder)
    texts = imdb_rows.text.tolist()
    batch = tokenizer(texts[:3] + ["A short one."], texts[3:6] + ["Fine."], truncation=True, max_length=64,
                      padding=True, return_tensors="pt")  # pairs: token types
    batch["input_ids"][:, 5] = tokenizer.mask_token_id
    assert (batch["attention_mask"] == 0).any()  # padding in the batch
    with torch.no_grad():
        a = ours.eval()(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]).logits
        b = hf.eval()(**batch).logits
    real = batch["attention_mask"].bool()
    assert (a - b)[real].abs().max() <= 1e-5


def test_fine_tuning_loads_the_pretrained_encoder(pretrained_run, mlm_data, token_cache, cli, tmp_path):
    folder = pretrained_run / "model"
    classifier, report = build_classifier(ModelConfig(model=str(folder)), ["neg", "pos"], max_length=64)
    mlm, _ = build_masked_lm(ModelConfig(model=str(folder)), max_length=64)
    encoder = classifier.encoder.state_dict()
    assert encoder.keys() == mlm.encoder.state_dict().keys()
    assert all(torch.equal(encoder[k], v) for k, v in mlm.encoder.state_dict().items())
    assert report.unused == MLM_HEAD
    assert report.fresh == ["pooler.weight", "pooler.bias", "classifier.weight", "classifier.bias"]

    # the command line: `textcls train --model RUN/model`, whose tokenizer comes with it
    summary = cli.ok(["train", "--data", str(mlm_data), "--model", str(folder), "--max-length", "64", "--batch-size",
                      "8", "--max-steps", "2", "--eval-strategy", "no", "--cache-dir", str(token_cache), "--output",
                      str(tmp_path / "cls")])
    assert summary["initial_weights"]["source"].endswith("model.safetensors")
    assert summary["initial_weights"]["unused"] == MLM_HEAD and summary["final"]["test"]["accuracy"] >= 0


def test_resume_equals_an_uninterrupted_run(mlm_data, tiny_model, token_cache, cli, read_jsonl, model_weights,
                                            tmp_path, caplog, monkeypatch):
    """Stopped at step 7 (the last checkpoint at step 5, mid-epoch), resumed: the same log and weights as a run
    that was never stopped (the masks do not depend on when batches were fetched)."""
    flags = ("--max-steps", "10", "--eval-strategy", "steps", "--eval-steps", "5", "--logging-steps", "1")
    ref, stopped = tmp_path / "ref", tmp_path / "stopped"
    cli.ok(pretrain_argv(mlm_data, tiny_model, token_cache, ref, *flags))

    log_train = Trainer._log_train

    def stop_at_step_7(self, *args):
        log_train(self, *args)
        if self.state.step == 7:
            raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_log_train", stop_at_step_7)
    assert cli.run(pretrain_argv(mlm_data, tiny_model, token_cache, stopped, *flags))[0] == 130
    monkeypatch.undo()
    caplog.set_level(logging.INFO, logger="textcls")
    rc, err = cli.run(["pretrain", "--resume", str(stopped)])
    assert rc == 0, err
    assert f"resume: continuing from {stopped / 'checkpoints' / 'step-0000005'} (step 5; epoch 1, batch 5)" \
        in caplog.text

    def comparable(run_dir):
        return [{k: v for k, v in r.items() if k != "examples_per_s"} for r in read_jsonl(run_dir / "metrics.jsonl")]

    assert comparable(stopped) == comparable(ref)
    ref_weights, weights = model_weights(ref / "model"), model_weights(stopped / "model")
    assert all(torch.equal(weights[k], ref_weights[k]) for k in ref_weights)


@pytest.mark.parametrize("extra, config, message", [
    (("--splits", "train", "nosuch"), None,
     "--splits nosuch: {data!r} has no such split; its splits are: train, validation, test, unsupervised"),
    ((), {"pretrain": {"splits": []}}, "no texts to pretrain on: the list of splits is empty"),
    (("--mlm-probability", "1.5"), None, "--mlm-probability must be between 0 and 1 (exclusive), got 1.5"),
    (("--validation-fraction", "0"), None, "has no validation split to measure the MLM loss on"),
])
def test_bad_input(extra, config, message, mlm_data, tiny_model, token_cache, cli, tmp_path):
    argv = pretrain_argv(mlm_data, tiny_model, token_cache, tmp_path / "run", *extra)
    if config is not None:
        (tmp_path / "config.json").write_text(json.dumps(config))
        argv += ["--config", str(tmp_path / "config.json")]
    rc, err = cli.run(argv)
    assert rc == 2 and "Traceback" not in err
    assert err.splitlines()[-1].startswith("textcls: error: ")
    assert message.format(data=str(mlm_data)) in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_a_tokenizer_beyond_the_model_vocabulary_is_refused(mlm_data, tiny_model, token_cache, cli, tmp_path):
    small = tmp_path / "small-vocab"
    small.mkdir()
    config = json.loads((tiny_model / "config.json").read_text())
    (small / "config.json").write_text(json.dumps({**config, "vocab_size": 1000}))
    rc, err = cli.run(pretrain_argv(mlm_data, small, token_cache, tmp_path / "run"))
    assert rc == 2 and "tokenizer" in err and "has 30522 tokens, more than the 1000 of model" in err
    assert not (tmp_path / "run").exists()

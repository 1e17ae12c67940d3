"""`--tokenizer wordpiece:N`: a WordPiece vocabulary learnt from the run's texts, saved with the model, reused by
fingerprint, and bad specs refused. Data: the session's `small_imdb` (40 train reviews) on a tiny random BERT."""

from __future__ import annotations

import json

import pytest
import torch


def _argv(small_imdb, tiny_model, out, cache, *extra):
    return ["train", "--data", str(small_imdb), "--model", str(tiny_model), "--init", "random", "--max-length", "64",
            "--batch-size", "8", "--max-steps", "2", "--validation-fraction", "0.25", "--cache-dir", str(cache),
            "--output", str(out), "--tokenizer", "wordpiece:600", *extra]


def test_learnt_vocabulary_trains_exports_and_is_reused(cli, small_imdb, tiny_model, tmp_path, caplog):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textcls.infer import load_trained

    cache = tmp_path / "cache"
    with caplog.at_level("INFO", logger="textcls"):
        cli.ok(_argv(small_imdb, tiny_model, tmp_path / "a", cache))
    assert "learning a WordPiece vocabulary of 600 tokens from 30 texts" in caplog.text  # 40 minus validation
    model_dir = tmp_path / "a" / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    size = len(tokenizer)
    assert 100 < size <= 600 and tokenizer.pad_token_id == 0 and tokenizer.mask_token == "[MASK]"
    assert tokenizer.tokenize("The movie was great!") == ["the", "movie", "was", "great", "!"]
    config = json.loads((model_dir / "config.json").read_text())
    assert config["vocab_size"] == size  # an embedding row per learnt token, no more

    # transformers reads the export with its vocabulary and computes the same logits as textcls.
    texts = ["A wonderful film, from the first scene to the last.", "Dull."]
    ours = load_trained(model_dir, precision="no").logits(texts)
    hf = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        theirs = hf(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    assert cli.json("vocab", "--tokenizer", str(model_dir), "--size")["size"] == size

    caplog.clear()
    with caplog.at_level("INFO", logger="textcls"):
        cli.ok(_argv(small_imdb, tiny_model, tmp_path / "b", cache))
    assert "learnt before from these texts" in caplog.text and "learning a WordPiece" not in caplog.text
    assert (tmp_path / "b" / "model" / "tokenizer.json").read_text() == (model_dir / "tokenizer.json").read_text()


@pytest.mark.parametrize("spec, message", [
    ("wordpiece:abc", "--tokenizer wordpiece:abc: N must be a number of tokens, e.g. wordpiece:8000"),
    ("wordpiece:²", "--tokenizer wordpiece:²: N must be a number of tokens, e.g. wordpiece:8000"),  # isdigit, not int
    ("wordpiece:8", "--tokenizer wordpiece:8 is smaller than the alphabet of the texts plus the special tokens"),
])
def test_bad_sizes(cli, small_imdb, tiny_model, tmp_path, spec, message):
    argv = _argv(small_imdb, tiny_model, tmp_path / "run", tmp_path / "cache")
    argv[-1] = spec
    assert message in cli.error(*argv)
    assert not (tmp_path / "run").exists()


def test_needs_random_weights(cli, small_imdb, tmp_path, minilm_path):
    argv = _argv(small_imdb, minilm_path, tmp_path / "run", tmp_path / "cache")
    argv[argv.index("random")] = "pretrained"
    assert "learns a new vocabulary, which pretrained weights do not know" in cli.error(*argv)


def test_looking_at_it_needs_the_run(cli):
    err = cli.error("vocab", "--tokenizer", "wordpiece:8000", "--size")
    assert "is a vocabulary that training learns from a run's data" in err and "--tokenizer RUN/model" in err

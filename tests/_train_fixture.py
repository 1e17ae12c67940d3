"""Models and data for the evaluate / predict / sweep tests, made once per session, and their CLI helpers
(imported by those test modules).

- `trained_run`: a real `textcls train` run (bert-tiny dims, random init, a few steps on real IMDB rows, max length
  64), so its run directory, exported model and saved tokenize settings are the real thing.
- `hf_classifier`: a folder written by transformers' own `save_pretrained` (bert-tiny dims, random weights drawn
  wider than usual so that the predictions differ from text to text), with the uncased WordPiece tokenizer saved beside.
- `small_imdb`: a data folder of real IMDB rows (40 train, 60 test reviews of varied lengths).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest

from textcls.cli import main


def cli_json(capsys, *argv):
    """The JSON that a successful `textcls ... --json` prints."""
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def cli_error(capsys, *argv) -> str:
    """The error line of a command that must fail with exit status 2 and no traceback (progress bars of the work
    done before the error may come first on stderr)."""
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("textcls: error: ") and "Traceback" not in err
    return err.splitlines()[-1]


@functools.cache
def _small_imdb(folder: Path, imdb_dir: Path) -> Path:
    import pandas as pd

    folder.mkdir(parents=True)
    for split, per_label in (("train", 20), ("test", 30)):
        df = pd.read_parquet(imdb_dir / f"{split}.parquet")
        df = pd.concat([df[df.label == label].iloc[::397].head(per_label) for label in (0, 1)])
        df.reset_index(drop=True).to_parquet(folder / f"{split}.parquet")
    return folder


@functools.cache
def _trained_run(folder: Path, data: Path) -> Path:
    from textcls.config import RunConfig
    from textcls.train.loop import train

    cfg = RunConfig.from_dict({
        "data": {"data": str(data)},
        "tokenize": {"tokenizer": "minilm-l6", "max_length": 64, "cache_dir": str(folder / "cache")},
        "model": {"model": "bert-tiny", "init": "random"},
        "train": {"max_steps": 6, "batch_size": 8, "learning_rate": 1e-3, "logging_steps": 2}})
    train(cfg, output=folder / "run")
    return folder / "run"


@functools.cache
def _hf_classifier(folder: Path, tokenizer_path: Path, label_names: tuple[str, ...] | None) -> Path:
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    labels = {"id2label": dict(enumerate(label_names))} if label_names else {}  # none: transformers' LABEL_0, 1
    cfg = BertConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512,
                     initializer_range=0.3, **labels)
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def small_imdb(tmp_path_factory, imdb_dir) -> Path:
    return _small_imdb(tmp_path_factory.getbasetemp() / "small_imdb", imdb_dir)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_imdb) -> Path:
    return _trained_run(tmp_path_factory.getbasetemp() / "trained", small_imdb)


@pytest.fixture(scope="session")
def hf_classifier(tmp_path_factory, minilm_path) -> Path:
    """Labels LABEL_0, LABEL_1: config.json has no id2label, as transformers writes its default labels."""
    return _hf_classifier(tmp_path_factory.getbasetemp() / "hf_classifier", minilm_path, None)


@pytest.fixture(scope="session")
def hf_classifier_named(tmp_path_factory, minilm_path) -> Path:
    """The same weights as `hf_classifier`, with labels neg, pos."""
    return _hf_classifier(tmp_path_factory.getbasetemp() / "hf_classifier_named", minilm_path, ("neg", "pos"))

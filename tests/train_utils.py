"""Shared by the training tests: a tiny BERT architecture, the flags of a small real IMDB run, running the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textcls.cli import main

# Two layers of width 32: a step takes milliseconds. The vocabulary is the uncased WordPiece one (minilm-l6's).
TINY_BERT = {"model_type": "bert", "architectures": ["BertModel"], "vocab_size": 30522, "hidden_size": 32,
             "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "hidden_act": "gelu",
             "max_position_embeddings": 128, "type_vocab_size": 2, "hidden_dropout_prob": 0.1,
             "attention_probs_dropout_prob": 0.1, "layer_norm_eps": 1e-12, "pad_token_id": 0}
TRAIN_ROWS = 64  # 8 batches of 8


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model folder with an architecture and no weights: trained with --init random."""
    folder = tmp_path_factory.mktemp("tiny-bert")
    (folder / "config.json").write_text(json.dumps(TINY_BERT), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory) -> Path:
    """One tokenized-data cache for all training tests: the subsets are tokenized once."""
    return tmp_path_factory.mktemp("token-cache")


def train_argv(imdb_dir: Path, model: Path, cache: Path, output: Path, *extra: str) -> list[str]:
    """`textcls train` on 64 real IMDB reviews (validation and test: 32 each), 64 tokens, batches of 8."""
    return ["train", "--data", str(imdb_dir), "--model", str(model), "--init", "random", "--tokenizer", "minilm-l6",
            "--max-train-samples", str(TRAIN_ROWS), "--max-eval-samples", "32", "--max-length", "64",
            "--batch-size", "8", "--cache-dir", str(cache), "--output", str(output), *extra]


def run(argv: list[str], capsys) -> tuple[int, str]:
    """textcls.cli.main(argv) -> (exit status, stderr)."""
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err


def run_ok(argv: list[str], capsys) -> dict:
    """Run `textcls train`, which must succeed; its summary.json."""
    rc, err = run(argv, capsys)
    assert rc == 0, err
    return json.loads((Path(argv[argv.index("--output") + 1]) / "summary.json").read_text())


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def model_weights(folder: Path) -> dict:
    """The tensors of a checkpoint folder's model.safetensors."""
    from safetensors.torch import load_file
    return load_file(str(folder / "model.safetensors"))

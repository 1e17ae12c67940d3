"""`textcls predict` and `evaluate` under torchrun (2 CPU processes, gloo): each process runs its share of the
batches, and the result is one process's: the same predictions in input order, the same metrics, printed once and
written once. Uneven shares (one process has more batches, or none) and chunked documents (a document's windows
run on both processes) included. Each torchrun costs some 10 s of startup on 2 cores: three of them."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys

import pandas as pd
import pytest

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "textcls"]


def two_processes(*argv: str):
    """The JSON that `textcls ... --json` prints under torchrun: json.loads fails if both processes print."""
    done = subprocess.run([*TORCHRUN, *argv, "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def models(hf_classifier, tmp_path_factory) -> dict:
    """The transformers classifier (wide random weights: predictions differ from text to text, so a reordering
    shows), and the same weights reading texts in windows of 64 tokens (stride 16) averaged per document."""
    chunked = tmp_path_factory.mktemp("chunked") / "model"
    shutil.copytree(hf_classifier, chunked)
    (chunked / "textcls.json").write_text(json.dumps({"tokenize": {"max_length": 64, "truncation": "chunks",
                                                                   "stride": 16}}))
    return {"plain": hf_classifier, "chunked": chunked}


def test_predict_equals_one_process(hf_classifier, small_imdb, tmp_path, cli, read_jsonl):
    """7 texts in batches of 3, 3, 1: the first process runs two, the second one."""
    texts = pd.read_parquet(small_imdb / "test.parquet").text.tolist()
    random.Random(0).shuffle(texts)  # long and short ones alternate: the batches are not in input order
    texts = texts[:7]
    inputs = tmp_path / "texts.jsonl"
    inputs.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    argv = ["predict", str(hf_classifier), "--input", str(inputs), "--batch-size", "3"]

    one = cli.json(*argv, "--output", str(tmp_path / "one" / "predictions.jsonl"))
    two = two_processes(*argv, "--output", str(tmp_path / "two" / "predictions.jsonl"))
    written = read_jsonl(tmp_path / "two" / "predictions.jsonl")
    assert [p.name for p in (tmp_path / "two").iterdir()] == ["predictions.jsonl"]
    assert [r["text"] for r in two] == [r["text"] for r in written] == texts
    assert [r["label"] for r in two] == [r["label"] for r in written] == [r["label"] for r in one]
    for a, b, c in zip(one, two, written):
        assert b["probabilities"] == pytest.approx(a["probabilities"], abs=1e-5)
        assert c["probabilities"] == pytest.approx(a["probabilities"], abs=1e-5)
    assert max(abs(r["probabilities"]["LABEL_0"] - one[0]["probabilities"]["LABEL_0"]) for r in one) > 0.01


@pytest.mark.parametrize("model, batch_size", [
    ("plain", 64),  # 20 reviews in one batch: the second process runs none
    ("chunked", 16),  # some 120 windows: a document's windows on both processes, averaged after the gather
])
def test_evaluate_equals_one_process(model, batch_size, models, small_imdb, tmp_path, cli):
    def argv(cache: str) -> list[str]:  # each tokenizes anew: under torchrun the main process first
        return ["evaluate", str(models[model]), "--data", str(small_imdb), "--max-eval-samples", "20",
                "--batch-size", str(batch_size), "--cache-dir", str(tmp_path / cache)]

    one, two = cli.json(*argv("one")), two_processes(*argv("two"))
    assert one["examples"] == two["examples"] == 20
    assert two["confusion_matrix"] == one["confusion_matrix"] and two["per_class"] == one["per_class"]
    assert (two["accuracy"], two["macro_f1"]) == (one["accuracy"], one["macro_f1"])
    assert two["loss"] == pytest.approx(one["loss"], abs=1e-5)
    assert two["examples_per_s"] > 0

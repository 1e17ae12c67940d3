"""`textcls evaluate`: its metrics equal a direct computation (transformers' model + scikit-learn) on real rows;
run directories, exported folders and transformers folders; labels matched by name; its errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from textcls.cli import main


def evaluate(cli, tmp_path, model, data, *flags) -> dict:
    return cli.json("evaluate", str(model), "--data", str(data), "--cache-dir", str(tmp_path / "cache"), *flags)


def direct_metrics(folder, texts: list[str], labels: list[int]) -> dict:
    """transformers' own model and tokenizer on the folder, counted by scikit-learn."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = model(**tok(texts, truncation=True, max_length=512, padding=True, return_tensors="pt")).logits
    pred = logits.argmax(-1).numpy()
    precision, recall, _, support = precision_recall_fscore_support(labels, pred, labels=[0, 1], zero_division=0)
    return {"accuracy": float((pred == labels).mean()), "macro_f1": f1_score(labels, pred, average="macro"),
            "precision": precision.tolist(), "recall": recall.tolist(), "support": support.tolist(),
            "confusion_matrix": confusion_matrix(labels, pred).tolist(),
            "loss": F.cross_entropy(logits, torch.tensor(labels)).item()}


def test_metrics_equal_a_direct_computation(hf_classifier, small_imdb, tmp_path, cli):
    """A transformers folder (labels LABEL_0, LABEL_1: unnamed, so IMDB's ids 0, 1 are its outputs 0, 1)."""
    test = pd.read_parquet(small_imdb / "test.parquet")
    ref = direct_metrics(hf_classifier, test.text.tolist(), test.label.astype(int).tolist())
    m = evaluate(cli, tmp_path, hf_classifier, small_imdb)
    assert m["split"] == "test" and m["examples"] == len(test) == 60
    assert 0.2 < ref["accuracy"] < 0.8 and min(min(row) for row in ref["confusion_matrix"]) > 0  # every cell counts
    assert m["accuracy"] == pytest.approx(ref["accuracy"]) and m["macro_f1"] == pytest.approx(ref["macro_f1"])
    assert m["confusion_matrix"] == ref["confusion_matrix"]
    assert list(m["per_class"]) == ["LABEL_0", "LABEL_1"]
    for i, c in enumerate(m["per_class"].values()):
        assert (c["precision"], c["recall"], c["support"]) == pytest.approx(
            (ref["precision"][i], ref["recall"][i], ref["support"][i]))
    assert m["loss"] == pytest.approx(ref["loss"], abs=1e-5)
    assert m["examples_per_s"] > 0


def assert_same_metrics(a: dict, b: dict) -> None:
    keys = ("accuracy", "macro_f1", "loss")
    assert a["confusion_matrix"] == b["confusion_matrix"]
    assert [a[k] for k in keys] == pytest.approx([b[k] for k in keys])


def test_named_labels_match_by_name(hf_classifier, hf_classifier_named, small_imdb, tmp_path, cli):
    """A model with labels neg, pos: IMDB's integer labels need names, and names in another order map by name."""
    err = cli.error("evaluate", str(hf_classifier_named), "--data", str(small_imdb))
    assert "labels '0', '1' of" in err and "--label-names neg pos" in err
    unnamed = evaluate(cli, tmp_path, hf_classifier, small_imdb)
    named = evaluate(cli, tmp_path, hf_classifier_named, small_imdb, "--label-names", "neg", "pos")
    assert list(named["per_class"]) == ["neg", "pos"]
    assert_same_metrics(named, unnamed)

    strings = tmp_path / "strings"  # the same rows with string labels, which load_data orders neg, pos
    strings.mkdir()
    for split in ("train", "test"):
        df = pd.read_parquet(small_imdb / f"{split}.parquet")
        df.assign(label=df.label.map({0: "neg", 1: "pos"})).to_parquet(strings / f"{split}.parquet")
    reordered = evaluate(cli, tmp_path, hf_classifier_named, strings, "--label-names", "pos", "neg")
    assert_same_metrics(reordered, unnamed)


def test_run_dir_and_exported_folder_give_the_run_s_own_test_metrics(trained_run, small_imdb, tmp_path, cli):
    """The same data flags give the same carved splits and rows as in training, tokenized with the run's max
    length (64): the metrics equal those the run computed at its end."""
    summary = json.loads((trained_run / "summary.json").read_text())["metrics"]["test"]
    for model in (trained_run, trained_run / "model"):
        m = evaluate(cli, tmp_path, model, small_imdb)
        assert m["model"] == str(trained_run / "model")
        assert m["examples"] == summary["examples"] and m["confusion_matrix"] == summary["confusion_matrix"]
        assert m["loss"] == pytest.approx(summary["loss"], abs=1e-6)
    m = cli.json("evaluate", str(trained_run), "--split", "validation")  # the run's own data settings
    assert m["split"] == "validation" and m["examples"] == 4  # 10% of the 40 train rows, carved as in training
    assert "no data given" in cli.error("evaluate", str(trained_run / "model"))


def test_run_started_elsewhere_with_a_relative_data_path(trained_run, small_imdb, tmp_path, monkeypatch, cli):
    run = Path(shutil.copytree(trained_run, tmp_path / "run"))
    config = json.loads((run / "config.json").read_text())
    config["data"]["data"] = os.path.relpath(small_imdb, tmp_path / "elsewhere")  # the run was started there
    (run / "config.json").write_text(json.dumps(config))
    here = tmp_path / "one" / "level" / "deeper"  # the relative path leads nowhere from here
    here.mkdir(parents=True)
    monkeypatch.chdir(here)
    assert "does not exist from here" in cli.error("evaluate", str(run))
    assert cli.json("evaluate", str(run), "--data", str(small_imdb))["examples"] > 0


def test_human_output(trained_run, small_imdb, tmp_path, capsys):
    assert main(["evaluate", str(trained_run), "--data", str(small_imdb), "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("test: 60 examples, ") and out[1].startswith("accuracy ")
    assert "confusion matrix (rows: true, columns: predicted)" in out


@pytest.mark.parametrize("case", ["no split", "unlabelled split", "unknown label", "too many labels",
                                  "missing model", "batch size"])
def test_bad_input(case, hf_classifier, hf_classifier_named, small_imdb, tmp_path, cli):
    data = tmp_path / "data"
    data.mkdir()
    train = pd.read_parquet(small_imdb / "train.parquet")
    if case == "unlabelled split":
        train.assign(label=-1).head(4).to_parquet(data / "unsupervised.parquet")
    if case in ("unknown label", "too many labels"):  # a third label: 'meh' for strings, 2 for integers
        third = "meh" if case == "unknown label" else 2
        train = train.assign(label=train.label.map({0: "neg", 1: "pos"}) if case == "unknown label" else train.label)
        train.loc[:3, "label"] = third
    train.to_parquet(data / "train.parquet")
    model = hf_classifier_named if case == "unknown label" else hf_classifier
    argv, expected = {
        "no split": (["--split", "holdout"], "has no split 'holdout'; it has: train, validation, test"),
        "unlabelled split": (["--split", "unsupervised"], "has rows without a label"),
        "unknown label": ([], "labels 'meh' of"),
        "too many labels": ([], "has 3 labels (0, 1, 2) but the model has 2 outputs"),
        "missing model": ([], "does not exist"),
        "batch size": (["--batch-size", "0"], "--batch-size must be at least 1"),
    }[case]
    if case == "missing model":
        model = tmp_path / "absent"
    err = cli.error("evaluate", str(model), "--data", str(data), "--cache-dir", str(tmp_path / "cache"), *argv)
    assert expected in err


def test_evaluate_finds_the_runs_tokenized_test_split(trained_run, small_imdb, cli, caplog, tmp_path):
    """The run tokenized its test split for its final evaluation; evaluate reads the same rows with the same
    settings, so it finds them in the run's cache instead of tokenizing again."""
    import logging

    with caplog.at_level(logging.INFO, logger="textcls"):
        cli.json("evaluate", str(trained_run))
    assert "tokenized test: loaded from cache" in caplog.text and "tokenizing test" not in caplog.text

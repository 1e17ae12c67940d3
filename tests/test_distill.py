"""`textcls distill`: the loss, a student trained end to end from the session's `trained_run` teacher on real IMDB
reviews (labelled and unlabelled), the teacher's cached logits, and bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F


@pytest.fixture(scope="module")
def distill_data(tmp_path_factory, small_imdb, imdb_dir):
    """small_imdb (40 train, 60 test reviews) plus 24 unlabelled reviews (IMDB's unsupervised split, label -1)."""
    folder = tmp_path_factory.mktemp("distill-data")
    for split in ("train", "test"):
        (folder / f"{split}.parquet").write_bytes((small_imdb / f"{split}.parquet").read_bytes())
    pd.read_parquet(imdb_dir / "unsupervised.parquet").head(24).to_parquet(folder / "unsupervised.parquet")
    return folder


def _argv(data, teacher, student, out, cache, *extra):
    return ["distill", "--teacher", str(teacher), "--data", str(data), "--model", str(student), "--init", "random",
            "--tokenizer", "minilm-l6", "--max-length", "64", "--batch-size", "8", "--max-steps", "4",
            "--validation-fraction", "0.25", "--cache-dir", str(cache), "--output", str(out), *extra]


def test_loss_is_alpha_ce_plus_t2_kl():
    from textcls.train.distill import distillation_loss

    torch.manual_seed(0)
    logits, teacher = torch.randn(6, 3), torch.randn(6, 3)
    labels = torch.tensor([0, 2, 1, -1, -1, 0])  # two unlabelled rows
    T, a = 2.0, 0.3
    p = F.softmax(teacher / T, -1)
    kl = (p * (p.log() - F.log_softmax(logits / T, -1))).sum(-1).mean()  # KL(teacher || student), per row mean
    ce = F.cross_entropy(logits[labels >= 0], labels[labels >= 0], reduction="sum") / 6
    torch.testing.assert_close(distillation_loss(logits, teacher, labels, T, a), a * ce + (1 - a) * T * T * kl)
    torch.testing.assert_close(distillation_loss(logits, teacher, torch.full((6,), -1), T, a), (1 - a) * T * T * kl)
    full = torch.tensor([0, 2, 1, 1, 0, 0])
    torch.testing.assert_close(distillation_loss(logits, teacher, full, T, 1.0), F.cross_entropy(logits, full))
    # The student that equals the teacher has nothing left to learn from it.
    assert distillation_loss(teacher, teacher, torch.full((6,), -1), T, 0.0).abs() < 1e-6


def test_student_trains_exports_and_the_teacher_runs_once(cli, distill_data, trained_run, tiny_model, tmp_path,
                                                          monkeypatch, caplog):
    from textcls.infer import load_trained
    from textcls.infer.model import TrainedModel

    cache = tmp_path / "cache"
    with caplog.at_level("INFO", logger="textcls"):
        summary = cli.ok(_argv(distill_data, trained_run, tiny_model, tmp_path / "a", cache))
    assert "teacher logits for 30 texts: computing them once" in caplog.text  # train: 40 minus validation
    assert "teacher logits for 24 texts: computing them once" in caplog.text  # unsupervised
    assert "the student learns from train (30), unsupervised (24)" in caplog.text
    assert summary["final"]["test"]["accuracy"] >= 0 and summary["steps"] == 4
    assert json.loads((tmp_path / "a" / "run.json").read_text())["command"] == "distill"
    saved = json.loads((tmp_path / "a" / "config.json").read_text())["distill"]
    assert saved == {"teacher": str(trained_run), "temperature": 2.0, "alpha": 0.5, "unlabelled_splits": None,
                     "teacher_batch_size": 64}
    assert len(list((cache / "teacher").glob("teacher-logits-*.npy"))) == 2
    student = load_trained(tmp_path / "a", precision="no")  # an ordinary textcls model
    assert student.label_names == load_trained(trained_run).label_names
    assert student.logits(["A fine film."]).shape == (1, 2)

    calls = []
    forward = TrainedModel.forward
    monkeypatch.setattr(TrainedModel, "forward", lambda self, *a, **k: calls.append(1) or forward(self, *a, **k))
    caplog.clear()
    with caplog.at_level("INFO", logger="textcls"):
        cli.ok(_argv(distill_data, trained_run, tiny_model, tmp_path / "b", cache, "--alpha", "1"))
    assert calls == [] and caplog.text.count("from the cache") == 2


def test_resume_continues_a_distillation(cli, distill_data, trained_run, tiny_model, tmp_path):
    out, cache = tmp_path / "run", tmp_path / "cache"
    cli.ok(_argv(distill_data, trained_run, tiny_model, out, cache, "--save-steps", "2"))
    rc, err = cli.run(["train", "--resume", str(out)])
    assert rc == 2 and "textcls distill --resume" in err  # the run says which command made it


@pytest.mark.parametrize("extra, message", [
    (["--alpha", "1.5"], "--alpha must be within [0, 1], got 1.5"),
    (["--temperature", "0"], "--temperature must be above 0, got 0.0"),
    (["--label-names", "neg", "pos"], "labels 'neg', 'pos' of"),
    (["--unlabelled-splits", "extra"], "--unlabelled-splits extra: "),
    (["--truncation", "chunks", "--stride", "16"], "--truncation chunks (several windows per text) is not supported"),
])
def test_bad_input(cli, distill_data, trained_run, tiny_model, tmp_path, extra, message):
    err = cli.error(*_argv(distill_data, trained_run, tiny_model, tmp_path / "run", tmp_path / "cache", *extra))
    assert message in err
    assert not (tmp_path / "run").exists()


def test_teacher_with_other_labels(cli, tmp_path, trained_run, tiny_model):
    rows = [{"text": f"text number {i}", "label": ["a", "b", "c"][i % 3]} for i in range(30)]
    for split in ("train", "test"):
        (tmp_path / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    err = cli.error(*_argv(tmp_path, trained_run, tiny_model, tmp_path / "run", tmp_path / "cache"))
    assert "has 2 labels (0, 1) but" in err and "has 3 (a, b, c)" in err


def test_no_teacher(cli, distill_data, tiny_model, tmp_path):
    argv = _argv(distill_data, "x", tiny_model, tmp_path / "run", tmp_path / "cache")
    del argv[1:3]
    assert "no teacher: give --teacher MODEL" in cli.error(*argv)

"""Imbalanced classes: --class-weights balanced|FILE in the training loss (train and distill), and the warning of
`data inspect`. The loss is checked against torch's weighted cross-entropy written out by hand."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from textcls.train.distill import distillation_loss


def test_weighted_distillation_hard_part_is_the_weighted_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits, teacher = torch.randn(6, 3, generator=g), torch.randn(6, 3, generator=g)
    labels = torch.tensor([0, 2, -1, 1, 2, -1])
    w = [1.0, 4.0, 0.5]
    got = distillation_loss(logits, teacher, labels, temperature=2.0, alpha=1.0, class_weights=w)
    rows = labels >= 0
    per_row = -F.log_softmax(logits[rows], -1).gather(1, labels[rows, None])[:, 0]  # (4,)
    want = (per_row * torch.tensor(w)[labels[rows]]).sum() / len(labels)
    assert torch.allclose(got, want, atol=1e-6)


@pytest.fixture(scope="module")
def skewed(tmp_path_factory):
    """60 "neg" and 2 "pos" training rows: pos has 3.3% of neg's rows, under the 5% that inspect warns at."""
    folder = tmp_path_factory.mktemp("skewed")
    rows = [{"text": f"a dull film number {i}", "label": "neg"} for i in range(60)]
    rows += [{"text": f"a great film number {i}", "label": "pos"} for i in range(2)]
    (folder / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    test = [{"text": "dull", "label": "neg"}, {"text": "great", "label": "pos"}]
    (folder / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test), encoding="utf-8")
    return folder


def _argv(data, out, tiny_model, token_cache, *extra):
    return ["train", "--data", str(data), "--model", str(tiny_model), "--init", "random", "--tokenizer", "minilm-l6",
            "--max-length", "16", "--batch-size", "8", "--epochs", "1", "--cache-dir", str(token_cache),
            "--eval-strategy", "no", "--validation-fraction", "0", "--output", str(out), *extra]


def test_balanced_weights_are_logged_saved_and_change_the_loss(skewed, tiny_model, token_cache, tmp_path, cli,
                                                               read_jsonl, caplog):
    plain = cli.ok(_argv(skewed, tmp_path / "plain", tiny_model, token_cache, "--logging-steps", "1"))
    with caplog.at_level("INFO", logger="textcls"):
        weighted = cli.ok(_argv(skewed, tmp_path / "weighted", tiny_model, token_cache, "--logging-steps", "1",
                                "--class-weights", "balanced"))
    # scikit-learn's rule: 62 rows / (2 classes x rows of the class)
    assert weighted["class_weights"] == pytest.approx({"neg": 62 / 120, "pos": 62 / 4})
    assert plain["class_weights"] is None
    assert "class weights (--class-weights balanced): neg 0.517, pos 15.5" in caplog.text
    saved = json.loads((tmp_path / "weighted" / "config.json").read_text())
    assert saved["train"]["class_weights"] == "balanced"
    # Same seed, same batches: a batch of 'neg' alone has the same (weighted mean) loss; the batches that hold a
    # 'pos' row differ.
    losses = [[r["loss"] for r in read_jsonl(tmp_path / run / "metrics.jsonl") if r["kind"] == "train"]
              for run in ("plain", "weighted")]
    assert losses[0][0] == pytest.approx(losses[1][0]) and losses[0] != pytest.approx(losses[1])


def test_weights_from_a_file(skewed, tiny_model, token_cache, tmp_path, cli):
    weights = tmp_path / "w.json"
    weights.write_text(json.dumps({"pos": 3, "neg": 1}))
    summary = cli.ok(_argv(skewed, tmp_path / "run", tiny_model, token_cache, "--class-weights", str(weights)))
    assert summary["class_weights"] == {"neg": 1.0, "pos": 3.0}


@pytest.mark.parametrize("content, message", [
    ({"neg": 1}, "no weight for pos"),
    ({"neg": 1, "pos": 2, "neutral": 1}, "unknown labels neutral"),
    ({"neg": 1, "pos": 0}, "weights must be numbers above 0, got pos: 0"),
    ([1, 2], "expected a JSON object mapping label names to weights"),
    (None, "cannot read"),
])
def test_bad_weight_files(content, message, skewed, tiny_model, token_cache, tmp_path, cli):
    weights = tmp_path / "w.json"
    if content is not None:
        weights.write_text(json.dumps(content))
    err = cli.error(*_argv(skewed, tmp_path / "run", tiny_model, token_cache, "--class-weights", str(weights)))
    assert message in err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_data_inspect_warns_on_a_rare_class(skewed, imdb_dir, cli):
    rc, _ = cli.run(["data", "inspect", "--data", str(skewed)])
    assert rc == 0
    # inspect carves validation from train as training does: train keeps 53 and 2 of the rows
    assert "warning: train: class pos has 2 rows, under 5% of the 53 of class neg" in cli.out
    assert "--class-weights balanced" in cli.out
    assert cli.json("data", "inspect", "--data", str(imdb_dir), "--max-train-samples", "50")["warnings"] == []

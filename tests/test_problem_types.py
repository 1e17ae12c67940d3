"""Problem types beyond single-label classification: regression (STS-B shaped sentence pairs, a float score) and
multi-label (label lists in JSON Lines, a delimited label string in a headerless TSV, 0/1 label columns), end to
end: train -> evaluate -> predict -> transformers' BertForSequenceClassification computes the same logits from the
model folder and reads its problem_type and id2label. Data is small and written by the tests."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

TOL = 1e-4
STSB_COLUMNS = "index,genre,filename,year,old_index,source1,source2,sentence1,sentence2,score"
WORDS = ["cat", "dog", "film", "song", "tree", "car", "book", "game"]


def _stsb_rows(n: int, offset: int) -> str:
    """GLUE STS-B's 10 tab-separated columns, no header; the score grows with the words the sentences share."""
    lines = []
    for i in range(offset, offset + n):
        a, b = WORDS[i % 8], WORDS[(i // 8) % 8]
        score = 5.0 if a == b else 1.25 + (i % 5) / 4
        lines.append(f"{i}\tmain-captions\tMSRvid\t2012test\t{i:04d}\tnone\tnone\tA {a} is here.\tA {b} is "
                     f"there.\t{score:.3f}\n")
    return "".join(lines)


@pytest.fixture(scope="module")
def stsb(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("stsb")
    (folder / "train.tsv").write_text(_stsb_rows(48, 0), encoding="utf-8")
    (folder / "dev.tsv").write_text(_stsb_rows(16, 100), encoding="utf-8")
    return folder


def _train(data: Path, out: Path, tiny_model, token_cache, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--model", str(tiny_model), "--init", "random", "--tokenizer", "minilm-l6",
            "--max-length", "32", "--batch-size", "8", "--epochs", "2", "--cache-dir", str(token_cache),
            "--output", str(out), *extra]


def _hf_logits(folder: Path, texts: list[str], pairs: list[str] | None = None):
    """transformers' own model and tokenizer, loaded from the folder: logits and config."""
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(folder).eval()
    batch = AutoTokenizer.from_pretrained(folder)(texts, pairs, padding=True, truncation=True, max_length=32,
                                                  return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits, model.config


def _textcls_logits(folder: Path, texts: list[str], pairs: list[str] | None = None):
    from textcls.infer import load_trained
    return load_trained(folder, precision="no").logits(texts, pairs)


# ------------------------------------------------------------------------------------------- regression

@pytest.fixture(scope="module")
def regression_run(stsb, tiny_model, token_cache, tmp_path_factory):
    from textcls.cli import main

    out = tmp_path_factory.mktemp("regression") / "run"
    assert main(_train(stsb, out, tiny_model, token_cache, "--columns", STSB_COLUMNS, "--label-column",
                       "score", "--eval-splits", "validation")) == 0
    return out


def test_regression_is_inferred_from_fractions_and_trains_with_mse(regression_run):
    summary = json.loads((regression_run / "summary.json").read_text())
    assert summary["problem_type"] == "regression"
    assert set(summary["final"]["validation"]) == {"loss", "pearson", "spearman", "mse"}
    assert summary["final"]["validation"]["loss"] == pytest.approx(summary["final"]["validation"]["mse"])
    assert "pearson" in summary["best_validation"]  # --metric-for-best's default means pearson here
    saved = json.loads((regression_run / "model" / "textcls.json").read_text())
    assert saved["problem_type"] == "regression"


def test_regression_evaluate_predict_and_transformers_agree(regression_run, stsb, cli):
    from scipy.stats import pearsonr

    result = cli.json("evaluate", str(regression_run), "--split", "dev")
    assert result["examples"] == 16 and set(result) >= {"pearson", "spearman", "mse", "loss"}
    rows = cli.json("predict", str(regression_run), "A cat is here.", "A dog is here.", "--text-pair",
                    "A cat is there.", "--text-pair", "A car is there.")
    assert [set(r) for r in rows] == [{"text", "text_pair", "score"}] * 2
    texts, pairs = ["A cat is here.", "A dog is here."], ["A cat is there.", "A car is there."]
    ours = _textcls_logits(regression_run / "model", texts, pairs)
    theirs, config = _hf_logits(regression_run / "model", texts, pairs)
    assert ours.shape == (2, 1) and (ours - theirs).abs().max() <= TOL
    assert [r["score"] for r in rows] == pytest.approx(ours[:, 0].tolist(), abs=1e-5)
    assert config.problem_type == "regression" and config.num_labels == 1 and config.id2label == {0: "score"}
    # evaluate's pearson is scipy's on the predictions
    dev = [line.split("\t") for line in (stsb / "dev.tsv").read_text().splitlines()]
    preds = _textcls_logits(regression_run / "model", [r[7] for r in dev], [r[8] for r in dev])[:, 0]
    assert result["pearson"] == pytest.approx(pearsonr(preds.numpy(), [float(r[9]) for r in dev])[0], abs=1e-4)


def test_regression_with_explicit_problem_and_num_labels(stsb, tiny_model, token_cache, tmp_path, cli):
    summary = cli.ok(_train(stsb, tmp_path / "run", tiny_model, token_cache, "--columns", STSB_COLUMNS,
                            "--label-column", "score", "--problem", "regression", "--num-labels", "1", "--epochs",
                            "1", "--metric-for-best", "mse", "--eval-splits"))
    assert "mse" in summary["best_validation"]


def test_regression_output_files(regression_run, tmp_path, cli):
    inputs = tmp_path / "in.tsv"
    inputs.write_text("sentence1\tsentence2\nA cat is here.\tA cat is there.\n", encoding="utf-8")
    assert cli.run(["predict", str(regression_run), "--input", str(inputs), "--output", str(tmp_path / "p.csv")])[0] == 0
    header, row = (tmp_path / "p.csv").read_text().splitlines()
    assert header == "text,text_pair,score" and float(row.split(",")[-1]) == pytest.approx(float(row.split(",")[-1]))


@pytest.mark.parametrize("content, message", [
    ("0\tg\tf\t2012\t0\ts\ts\tA cat.\tA dog.\tabc\n", "regression label 'abc' in column 'score' is not a number ("),
])
def test_a_regression_label_that_is_not_a_number(content, message, stsb, tiny_model, token_cache, tmp_path, cli):
    data = tmp_path / "bad"
    data.mkdir()
    (data / "train.tsv").write_text((stsb / "train.tsv").read_text() + content, encoding="utf-8")
    err = cli.error(*_train(data, tmp_path / "run", tiny_model, token_cache, "--columns", STSB_COLUMNS,
                            "--label-column", "score", "--problem", "regression"))
    assert message in err and "train.tsv, line 49)" in err


def test_regression_refuses_class_weights_and_thresholds(stsb, tiny_model, token_cache, tmp_path, cli):
    base = _train(stsb, tmp_path / "run", tiny_model, token_cache, "--columns", STSB_COLUMNS, "--label-column",
                  "score")
    assert "--class-weights works with single-label classification only" in cli.error(
        *base, "--class-weights", "balanced")
    assert "--metric-for-best macro_f1 is not a regression metric" in cli.error(*base, "--metric-for-best",
                                                                                "macro_f1")
    assert "--num-labels 3 does not go with --problem regression" in cli.error(*base, "--problem", "regression",
                                                                                "--num-labels", "3")


# ------------------------------------------------------------------------------------------- multi-label

TOPICS = ["sport", "music", "food"]
TOPIC_WORDS = {"sport": "goal", "music": "guitar", "food": "pasta"}


def _topic_rows(n: int, offset: int) -> list[tuple[str, list[str]]]:
    """Texts that name the words of their labels (1 to 3 of them)."""
    rows = []
    for i in range(offset, offset + n):
        labels = [t for j, t in enumerate(TOPICS) if (i + 1) >> j & 1] or ["food"]
        rows.append((f"item {i}: " + " and ".join(TOPIC_WORDS[t] for t in labels), labels))
    return rows


@pytest.fixture(scope="module")
def lists(tmp_path_factory) -> Path:
    """JSON Lines whose label is a list of names."""
    folder = tmp_path_factory.mktemp("lists")
    for split, n, offset in (("train", 48, 0), ("validation", 16, 100), ("test", 16, 200)):
        (folder / f"{split}.jsonl").write_text("".join(json.dumps({"text": t, "label": labels}) + "\n"
                                                       for t, labels in _topic_rows(n, offset)), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def multilabel_run(lists, tiny_model, token_cache, tmp_path_factory):
    from textcls.cli import main

    out = tmp_path_factory.mktemp("multilabel") / "run"
    assert main(_train(lists, out, tiny_model, token_cache, "--learning-rate", "1e-3")) == 0
    return out


def test_multilabel_is_inferred_from_lists_and_thresholds_are_tuned_and_saved(multilabel_run):
    summary = json.loads((multilabel_run / "summary.json").read_text())
    assert summary["problem_type"] == "multi-label"
    assert set(summary["final"]["test"]) == {"loss", "micro_f1", "macro_f1", "exact_match"}
    assert "micro_f1" in summary["best_validation"]
    thresholds = summary["thresholds"]
    assert list(thresholds) == TOPICS or list(thresholds) == sorted(TOPICS)
    assert all(0 < t < 1 for t in thresholds.values())
    saved = json.loads((multilabel_run / "model" / "textcls.json").read_text())
    assert saved["problem_type"] == "multi-label" and saved["thresholds"] == thresholds


def test_tuned_thresholds_maximise_each_labels_f1():
    from sklearn.metrics import f1_score

    from textcls.metrics import tune_thresholds

    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(40, 3, generator=g) > 0.5).float()
    logits = labels * 1.5 + torch.randn(40, 3, generator=g)
    labels[:, 2] = 0  # no positive row: 0.5 stays
    tuned = tune_thresholds(logits, labels)
    probs = torch.sigmoid(logits).numpy()
    assert tuned[2] == 0.5
    for j in range(2):
        best = max(f1_score(labels[:, j], probs[:, j] > t, zero_division=0) for t in [0.5, *probs[:, j] - 1e-9])
        assert f1_score(labels[:, j], probs[:, j] > tuned[j], zero_division=0) == pytest.approx(best)


def test_multilabel_evaluate_predict_and_transformers_agree(multilabel_run, cli):
    result = cli.json("evaluate", str(multilabel_run))
    assert result["examples"] == 16 and set(result["per_class"]) == set(TOPICS)
    assert {"micro_f1", "macro_f1", "exact_match", "loss"} <= set(result)
    assert all(set(c) == {"precision", "recall", "f1", "support", "threshold"} for c in result["per_class"].values())
    summary = json.loads((multilabel_run / "summary.json").read_text())
    assert result["micro_f1"] == pytest.approx(summary["final"]["test"]["micro_f1"], abs=1e-6)
    texts = ["item 7: goal and guitar", "item 9: pasta"]
    rows = cli.json("predict", str(multilabel_run), *texts)
    thresholds = summary["thresholds"]
    ours = _textcls_logits(multilabel_run / "model", texts)
    for row, logits in zip(rows, ours):
        probs = dict(zip(row["probabilities"], torch.sigmoid(logits).tolist()))
        assert row["probabilities"] == pytest.approx(probs, abs=1e-5)
        assert row["labels"] == pytest.approx({n: p for n, p in probs.items() if p > thresholds[n]}, abs=1e-5)
        assert list(row["labels"].values()) == sorted(row["labels"].values(), reverse=True)
    theirs, config = _hf_logits(multilabel_run / "model", texts)
    assert (ours - theirs).abs().max() <= TOL
    assert config.problem_type == "multi_label_classification"
    assert config.id2label == dict(enumerate(row["probabilities"]))
    # --threshold overrides the saved thresholds
    everything = cli.json("predict", str(multilabel_run), *texts, "--threshold", "0.0001")
    assert all(set(r["labels"]) == set(TOPICS) for r in everything)


def test_multilabel_fixed_threshold_and_goemotions_shape(tiny_model, token_cache, tmp_path, cli):
    """GoEmotions' TSV: no header, text, comma-separated label ids, comment id; names from --label-names."""
    data = tmp_path / "goemotions"
    data.mkdir()
    for split, n, offset in (("train", 48, 0), ("dev", 16, 100)):
        (data / f"{split}.tsv").write_text("".join(f"{t}\t{','.join(str(TOPICS.index(x)) for x in labels)}\tc{i}\n"
                                                   for i, (t, labels) in enumerate(_topic_rows(n, offset))))
    summary = cli.ok(_train(data, tmp_path / "run", tiny_model, token_cache, "--columns", "text,labels,id",
                            "--label-separator", ",", "--label-names", *TOPICS, "--threshold", "0.4",
                            "--eval-splits", "validation", "--epochs", "1"))
    assert summary["thresholds"] == {t: 0.4 for t in TOPICS}
    assert summary["metrics"]["validation"]["per_class"]["music"]["threshold"] == pytest.approx(0.4)


def test_multilabel_from_label_columns(tiny_model, token_cache, tmp_path, cli):
    data = tmp_path / "toxic"
    data.mkdir()
    lines = ["comment,toxic,obscene,insult"]
    for i, (t, labels) in enumerate(_topic_rows(64, 0)):
        lines.append(f"{t},{int('sport' in labels)},{int('music' in labels)},{int('food' in labels and i % 3 > 0)}")
    (data / "train.csv").write_text("\n".join(lines) + "\n")
    summary = cli.ok(_train(data, tmp_path / "run", tiny_model, token_cache, "--text-column", "comment",
                            "--label-columns", "toxic", "obscene", "insult", "--allow-empty-labels", "--epochs", "1"))
    assert summary["problem_type"] == "multi-label" and list(summary["thresholds"]) == ["toxic", "obscene", "insult"]
    _, config = _hf_logits(tmp_path / "run" / "model", ["x"])
    assert config.id2label == {0: "toxic", 1: "obscene", 2: "insult"}
    assert "has no label in column 'toxic/obscene/insult'" in cli.error(
        *_train(data, tmp_path / "run2", tiny_model, token_cache, "--text-column", "comment", "--label-columns",
                "toxic,obscene,insult"))


@pytest.mark.parametrize("rows, extra, message", [
    ([{"text": "a", "label": ["x", 1]}], (), "column 'label' of "),  # "... mixes types in its lists ... (line 21)"
    ([{"text": "a", "label": []}], (), "a row of train has no label in column 'label' ("),
    ([{"text": "a", "label": ["y"]}], ("--label-names", "x", "z"), "label 'y' in column 'label' ("),
    ([{"text": "a", "label": ["x"]}], ("--threshold", "1.5"), "--threshold must be between 0 and 1 (exclusive), "
                                                              "got 1.5"),
    ([{"text": "a", "label": ["x"]}], ("--threshold", "0"), "--threshold must be between 0 and 1"),
    ([{"text": "a", "label": ["x"]}], ("--problem", "regression"), "holds lists of labels, which is --problem "
                                                                   "multi-label, not --problem regression"),
])
def test_bad_multilabel_input(rows, extra, message, tiny_model, token_cache, tmp_path, cli):
    data = tmp_path / "bad"
    data.mkdir()
    good = [{"text": f"t {i}", "label": [["x"], ["z"], ["x", "z"]][i % 3]} for i in range(20)]
    (data / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in good + rows))
    err = cli.error(*_train(data, tmp_path / "run", tiny_model, token_cache, *extra))
    assert message in err
    if "line" in message or "(" in message[-1:]:
        assert "train.jsonl, line 21)" in err


def test_threshold_on_a_single_label_model_is_an_error(regression_run, cli):
    assert "--threshold is the decision threshold of a multi-label model" in cli.error(
        "predict", str(regression_run), "a", "--threshold", "0.3")


def test_a_delimited_label_string_that_mixes_names_and_ids(tiny_model, token_cache, tmp_path, cli):
    data = tmp_path / "mixed"
    data.mkdir()
    (data / "train.tsv").write_text("".join(f"t {i}\tx,z\n" for i in range(20)) + "a\tx,1\n")
    err = cli.error(*_train(data, tmp_path / "run", tiny_model, token_cache, "--columns", "text,labels",
                            "--label-separator", ","))
    assert "the labels in column 'labels' mix numbers and names: " in err and "train.tsv, line 21)" in err


# ------------------------------------------------------------------------------------------- the other commands

def test_baseline_follows_the_problem_type(stsb, lists, cli):
    regression = cli.json("baseline", "--data", str(stsb), "--columns", STSB_COLUMNS, "--label-column", "score",
                          "--split", "dev")
    assert {"pearson", "spearman", "mse"} <= set(regression["metrics"]["validation"])
    multi = cli.json("baseline", "--data", str(lists))
    assert {"micro_f1", "macro_f1", "exact_match"} <= set(multi["metrics"]["test"])
    assert "--method nbsvm is single-label only; the baseline of regression data is --method tfidf-lr" in cli.error(
        "baseline", "--data", str(stsb), "--columns", STSB_COLUMNS, "--label-column", "score", "--method", "nbsvm")


def test_train_with_the_baseline_on_multilabel_data(lists, tiny_model, token_cache, tmp_path, cli):
    summary = cli.ok(_train(lists, tmp_path / "run", tiny_model, token_cache, "--epochs", "1", "--baseline",
                            "tfidf-lr"))
    assert "micro_f1" in summary["baseline"]["metrics"]["test"]
    assert "test tfidf-lr baseline: loss: " in cli.out


def test_distill_a_multilabel_student_with_unlabelled_texts(multilabel_run, lists, tiny_model, token_cache, tmp_path,
                                                             cli):
    """A multi-label student learns from the teacher's sigmoids on the labelled rows and on unlabelled ones (labels
    null): it trains, tunes its thresholds and exports a multi-label model."""
    import shutil

    data = tmp_path / "data"
    shutil.copytree(lists, data)
    (data / "unsupervised.jsonl").write_text("".join(json.dumps({"text": t, "label": None}) + "\n"
                                                     for t, _ in _topic_rows(16, 300)), encoding="utf-8")
    summary = cli.ok(["distill", "--teacher", str(multilabel_run), *_train(data, tmp_path / "run", tiny_model,
                                                                           token_cache)[1:]])
    assert summary["problem_type"] == "multi-label" and set(summary["thresholds"]) == set(summary["metrics"]["test"]
                                                                                          ["per_class"])
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if json.loads(line)["kind"] == "train"]
    assert losses and all(math.isfinite(x) and x >= 0 for x in losses)
    config = json.loads((tmp_path / "run" / "model" / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"


def test_distill_a_regression_student(regression_run, stsb, tiny_model, token_cache, tmp_path, cli):
    summary = cli.ok(["distill", "--teacher", str(regression_run), *_train(
        stsb, tmp_path / "run", tiny_model, token_cache, "--columns", STSB_COLUMNS, "--label-column", "score",
        "--eval-splits", "validation")[1:]])
    assert summary["problem_type"] == "regression" and set(summary["final"]["validation"]) == {
        "loss", "pearson", "spearman", "mse"}


def test_distill_needs_a_teacher_of_the_same_problem_type(regression_run, lists, tiny_model, token_cache, tmp_path,
                                                          cli):
    err = cli.error("distill", "--teacher", str(regression_run), *_train(lists, tmp_path / "run", tiny_model,
                                                                         token_cache)[1:])
    assert "is a regression model and" in err and "is multi-label data" in err


def test_distillation_loss_of_the_other_problem_types():
    """Hard and soft parts written out: multi-label binary cross-entropy and binary KL at T; regression squared
    errors. An unlabelled row adds the teacher's part only."""
    from textcls.train.distill import distillation_loss

    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    y = (torch.rand(4, 3, generator=g) > 0.5).float()
    labelled = torch.tensor([True, True, False, True])
    T, a = 2.0, 0.3
    p, q = torch.sigmoid(t / T), torch.sigmoid(x / T)
    kl = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).mean() * T * T
    bce = -(y * torch.sigmoid(x).log() + (1 - y) * (1 - torch.sigmoid(x)).log()).mean(1)[labelled].sum() / 4
    got = distillation_loss(x, t, y, T, a, problem_type="multi-label", labelled=labelled)
    assert torch.allclose(got, a * bce + (1 - a) * kl, atol=1e-6)
    v, w, target = x[:, :1], t[:, :1], torch.tensor([1.0, 2.0, 0.0, 3.0])
    want = a * ((v[:, 0] - target) ** 2)[labelled].sum() / 4 + (1 - a) * ((v - w) ** 2).mean()
    assert torch.allclose(distillation_loss(v, w, target, T, a, problem_type="regression", labelled=labelled), want,
                          atol=1e-6)


def test_sweep_reports_the_problem_types_metric(stsb, tiny_model, token_cache, tmp_path, cli):
    result = cli.json("sweep", "--set", "learning_rate=1e-4,1e-3", *_train(stsb, tmp_path / "sweep", tiny_model,
                                                                          token_cache, "--columns", STSB_COLUMNS,
                                                                          "--label-column", "score", "--epochs",
                                                                          "1")[1:])
    assert result["metric"] == "pearson" and all(r["best_validation"] is not None for r in result["runs"])


def test_serve_answers_follow_the_problem_type(multilabel_run, regression_run):
    from fastapi.testclient import TestClient

    from textcls.infer import load_trained
    from textcls.serve.app import create_app

    with TestClient(create_app(load_trained(multilabel_run, precision="no"))) as client:
        (answer,) = client.post("/predict", json={"texts": ["goal and guitar"]}).json()["predictions"]
        assert set(answer) == {"labels", "probabilities"} and set(answer["probabilities"]) == set(TOPICS)
        out = client.post("/explain", json={"text": "goal and guitar"}).json()
        assert out["labels"].keys() == answer["labels"].keys()
        assert out["probabilities"] == pytest.approx(answer["probabilities"], abs=1e-5)
        assert out["explained"] == max(answer["probabilities"], key=answer["probabilities"].get)
        assert out["target"] == "log-odds of the explained label" and set(out["thresholds"]) == set(TOPICS)
        assert [w["text"] for w in out["words"]] == ["goal", "and", "guitar"]
        assert client.post("/explain", json={"text": "goal", "label": "music"}).json()["explained"] == "music"
        r = client.post("/explain", json={"text": "goal", "label": "weather"})
        assert r.status_code == 422 and "the model's labels are" in r.json()["error"]
        assert client.get("/info").json()["explain_target"] == "log-odds of the explained label"
    with TestClient(create_app(load_trained(regression_run, precision="no"))) as client:
        (answer,) = client.post("/predict", json={"texts": ["A cat."], "text_pairs": ["A dog."]}).json()["predictions"]
        assert set(answer) == {"score"} and isinstance(answer["score"], float)
        out = client.post("/explain", json={"text": "A cat.", "text_pair": "A dog."}).json()
        assert out["score"] == pytest.approx(answer["score"], abs=1e-5) and "explained" not in out
        assert out["target"] == "predicted score" and {w["segment"] for w in out["words"]} == {0, 1}
        r = client.post("/explain", json={"text": "A cat.", "text_pair": "A dog.", "label": "score"})
        assert r.status_code == 422 and "a regression model has a score" in r.json()["error"]


@pytest.mark.parametrize("kind", ["multi-label", "regression"])
def test_explain_scores_are_gradient_x_input_of_the_log_odds_or_the_score(kind, multilabel_run, regression_run):
    """In float64: scaling every word's embedding vectors by (1 + h) changes the explained output (a label's
    log-odds; the score) by h times the sum of the words' scores, to first order (a central difference)."""
    from textcls.infer import load_trained
    from textcls.serve.explain import explain

    trained = load_trained(multilabel_run if kind == "multi-label" else regression_run, precision="no")
    trained.model.double()
    text, pair = ("goal and guitar", None) if kind == "multi-label" else ("A cat is here.", "A dog is there.")
    out = explain(trained, text, pair, label="music" if kind == "multi-label" else None)
    target = trained.label_names.index("music") if kind == "multi-label" else 0
    special = set(trained.tokenizer.all_special_ids)

    def output(scale: float) -> float:
        def hook(module, args, o):  # scale the word vectors of every non-special token
            rows = torch.tensor([[1.0 if t in special else scale for t in ids] for ids in args[0].tolist()])
            return o * rows[..., None].to(o.dtype)

        encoded = trained.encoder(pair is not None)([text], None if pair is None else [pair])
        row = {"input_ids": encoded["input_ids"][0], "token_type_ids": encoded["token_type_ids"][0]}
        batch = trained.collator()([row])
        handle = trained.model.encoder.embeddings.word.register_forward_hook(hook)
        try:
            with torch.no_grad():  # in float64 throughout (predict's logits are float32: too coarse for this slope)
                return float(trained.model.eval()(**batch).logits[0, target])
        finally:
            handle.remove()

    h = 1e-4
    slope = (output(1 + h) - output(1 - h)) / (2 * h)
    assert slope == pytest.approx(sum(w["score"] for w in out["words"]), rel=1e-3, abs=1e-7)


def test_data_inspect_counts_label_sets_and_describes_targets(stsb, lists, cli):
    multi = cli.json("data", "inspect", "--data", str(lists))
    train = multi["splits"]["train"]
    assert sum(c["count"] for c in train["labels"].values()) > train["rows"]  # a row counts for each of its labels
    assert ", " in multi["examples"][1]["label"] or multi["examples"][0]["label"]
    regression = cli.json("data", "inspect", "--data", str(stsb), "--columns", STSB_COLUMNS, "--label-column", "score")
    assert regression["splits"]["train"]["target"]["max"] == 5


def test_exports_keep_the_problem_type_and_thresholds(multilabel_run, tmp_path, cli):
    pytest.importorskip("onnxruntime")
    texts = ["item 7: goal and guitar", "item 9: pasta"]
    torch_rows = cli.json("predict", str(multilabel_run), *texts)
    assert cli.run(["export", str(multilabel_run), "--format", "transformers", "--output", str(tmp_path / "hf")])[0] == 0
    saved = json.loads((tmp_path / "hf" / "textcls.json").read_text())
    assert saved["thresholds"] == json.loads((multilabel_run / "summary.json").read_text())["thresholds"]
    assert cli.json("predict", str(tmp_path / "hf"), *texts) == torch_rows
    assert cli.run(["export", str(multilabel_run), "--format", "onnx", "--output", str(tmp_path / "onnx")])[0] == 0
    onnx_rows = cli.json("predict", str(tmp_path / "onnx"), *texts, "--backend", "onnx")
    for ours, theirs in zip(onnx_rows, torch_rows):
        assert list(ours["labels"]) == list(theirs["labels"])
        assert ours["probabilities"] == pytest.approx(theirs["probabilities"], abs=1e-4)

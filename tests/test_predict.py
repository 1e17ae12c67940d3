"""`textcls predict`: batched, length-sorted predictions in input order, equal to transformers on the same folder;
every input and output format; and its errors (exit 2, before the model runs)."""

from __future__ import annotations

import json
import random

import pandas as pd
import pytest
import torch

from textcls.cli import main
from textcls.data.files import read_inputs
from textcls.infer import load_trained, predict_probabilities


@pytest.fixture(scope="module")
def reviews(small_imdb) -> list[str]:
    """60 real test reviews (19 to 700+ words), shuffled so that long and short ones alternate."""
    texts = pd.read_parquet(small_imdb / "test.parquet").text.tolist()
    random.Random(0).shuffle(texts)
    return texts


def transformers_probs(folder, texts, max_length, pairs=None) -> torch.Tensor:
    """The reference: transformers' own model and tokenizer on the same folder, one padded batch."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    enc = tok(texts, pairs, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits.softmax(-1)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_batched_predictions_keep_the_input_order_and_equal_one_at_a_time(dtype, hf_classifier, reviews):
    """In float64 padding and sorting change nothing at all; in float32 only the rounding differs."""
    trained = load_trained(hf_classifier)
    trained.model.to(dtype)
    lengths = [len(t) for t in reviews]
    assert lengths != sorted(lengths) and lengths != sorted(lengths, reverse=True)
    batched = predict_probabilities(trained, reviews, batch_size=8)  # (60, 2), padded batches sorted by length
    single = torch.cat([predict_probabilities(trained, [t], batch_size=1) for t in reviews])
    assert batched.shape == (len(reviews), 2)
    torch.testing.assert_close(batched, single, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)
    assert batched[:, 0].std() > 0.1  # the predictions differ from text to text: a reordering would show


@pytest.mark.parametrize("which", ["textcls run", "transformers folder"])
def test_predictions_equal_transformers_on_the_same_folder(which, trained_run, hf_classifier, reviews, cli):
    """A run directory predicts with its exported model and the run's max length (64); a transformers folder with
    its 512 positions. LABEL_0, LABEL_1 are the labels transformers gives a config.json without id2label."""
    model, folder, max_length, names = {
        "textcls run": (trained_run, trained_run / "model", 64, ["0", "1"]),
        "transformers folder": (hf_classifier, hf_classifier, 512, ["LABEL_0", "LABEL_1"])}[which]
    texts = reviews[:12]
    rows = cli.json("predict", str(model), *texts, "--batch-size", "5")
    ref = transformers_probs(folder, texts, max_length)
    assert [r["text"] for r in rows] == texts
    got = torch.tensor([[r["probabilities"][n] for n in names] for r in rows])
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    assert [r["label"] for r in rows] == [names[i] for i in ref.argmax(-1)]


def test_pairs_from_arguments_and_from_a_file_equal_transformers(hf_classifier, reviews, tmp_path, cli):
    texts, pairs = reviews[:4], ["A fine film.", "Terrible.", reviews[10], "Not bad at all, really."]
    args = [*texts] + [a for p in pairs for a in ("--text-pair", p)]
    rows = cli.json("predict", str(hf_classifier), *args)
    pd.DataFrame({"sentence1": texts, "sentence2": pairs}).to_csv(tmp_path / "pairs.csv", index=False)
    from_file = cli.json("predict", str(hf_classifier), "--input", str(tmp_path / "pairs.csv"))
    assert rows == from_file
    assert [r["text_pair"] for r in rows] == pairs
    ref = transformers_probs(hf_classifier, texts, 512, pairs)
    got = torch.tensor([[r["probabilities"][n] for n in ("LABEL_0", "LABEL_1")] for r in rows])
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)


def _write_input(path, texts):
    if path.suffix == ".txt":
        path.write_text("\n".join(texts) + "\n\n", encoding="utf-8")  # a trailing blank line is skipped
    elif path.suffix == ".jsonl":
        pd.DataFrame({"review": texts, "id": range(len(texts))}).to_json(path, orient="records", lines=True)
    elif path.suffix == ".tsv":  # as GLUE writes it: no quoting
        path.write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts)), encoding="utf-8")
    else:
        pd.DataFrame({"id": range(len(texts)), "text": texts}).to_csv(path, index=False)


def _read_output(path, names) -> tuple[list[str], torch.Tensor | None]:
    """(labels, probabilities) from an output file; a .txt output holds labels only."""
    if path.suffix == ".txt":
        return path.read_text(encoding="utf-8").splitlines(), None
    if path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return [r["label"] for r in rows], torch.tensor([[r["probabilities"][n] for n in names] for r in rows])
    df = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", quoting=3 if path.suffix == ".tsv" else 0,
                     keep_default_na=False)
    assert list(df.columns)[:2] == ["text", "label"]
    return df.label.tolist(), torch.tensor(df[[f"p_{n}" for n in names]].to_numpy())


@pytest.mark.parametrize("source,target", [(".txt", ".jsonl"), (".csv", ".tsv"), (".tsv", ".csv"),
                                           (".jsonl", ".txt")])
def test_file_formats_in_and_out(source, target, hf_classifier, reviews, tmp_path, capsys):
    texts = reviews[:9] + ['He said "no", then left.\tTwice.'] * (source != ".tsv")  # quotes, comma, tab
    names = ["LABEL_0", "LABEL_1"]
    _write_input(tmp_path / f"in{source}", texts)
    assert read_inputs(tmp_path / f"in{source}")[0] == texts
    out = tmp_path / f"out{target}"
    out.write_text("an older file, replaced whole\n")
    assert main(["predict", str(hf_classifier), "--input", str(tmp_path / f"in{source}"), "--output", str(out)]) == 0
    assert capsys.readouterr().out == f"wrote {len(texts)} predictions to {out}\n"
    ref = predict_probabilities(load_trained(hf_classifier), texts)
    labels, probs = _read_output(out, names)
    assert labels == [names[i] for i in ref.argmax(-1)]
    if probs is not None:  # .jsonl: the floats as they are; .csv/.tsv: rounded to 6 decimals
        torch.testing.assert_close(probs.float(), ref, rtol=0, atol=0 if target == ".jsonl" else 6e-7)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"in{source}", f"out{target}"])  # no temp left


def test_unknown_output_format_fails_before_the_model_runs(hf_classifier, tmp_path, cli, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("textcls.infer.predict.load_trained", no_model)
    (tmp_path / "in.txt").write_text("a text\n")
    err = cli.error("predict", str(hf_classifier), "a text", "--output", str(tmp_path / "out.xlsx"))
    assert "'.xlsx'" in err and ".csv, .tsv, .jsonl, .txt" in err
    err = cli.error("predict", str(hf_classifier), "--input", str(tmp_path / "in.txt"), "--output",
                    str(tmp_path / "out.parquet"))
    assert "'.parquet'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]


@pytest.mark.parametrize("case", ["empty txt", "blank txt", "header-only csv", "empty jsonl", "missing file", "folder",
                                  "unknown format", "missing column", "no text column", "empty cell",
                                  "texts and input", "pair with input", "column without input",
                                  "pair count", "nothing", "output is input"])
def test_bad_input(case, hf_classifier, tmp_path, cli):
    model = str(hf_classifier)
    files = {"empty.txt": "", "blank.txt": "\n  \n", "header.csv": "id,text\n", "empty.jsonl": "",
             "notes.xlsx": "x", "reviews.csv": "id,review,stars\n1,great,5\n", "ids.csv": "id,stars\n1,5\n",
             "gap.csv": "text\nfine\n\"\"\nok\n"}
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    argv, expected = {
        "empty txt": (["--input", "empty.txt"], "is empty"),
        "blank txt": (["--input", "blank.txt"], "is empty"),
        "header-only csv": (["--input", "header.csv"], "is empty"),
        "empty jsonl": (["--input", "empty.jsonl"], "is empty"),
        "missing file": (["--input", "absent.csv"], "does not exist"),
        "folder": (["--input", "."], "is a folder"),
        "unknown format": (["--input", "notes.xlsx"], "unknown format '.xlsx'"),
        "missing column": (["--input", "reviews.csv", "--text-column", "body"],
                           "column 'body' (--text-column) is not in"),
        "no text column": (["--input", "ids.csv"], "its columns are: id, stars"),
        "empty cell": (["--input", "gap.csv"], "1 rows of"),
        "texts and input": (["a text", "--input", "reviews.csv"], "not both"),
        "pair with input": (["--input", "reviews.csv", "--text-pair", "b"], "--text-pair-column"),
        "column without input": (["a text", "--text-column", "review"], "columns of an --input file"),
        "pair count": (["one", "two", "--text-pair", "b"], "2 texts but 1 second texts"),
        "nothing": ([], "nothing to predict"),
        "output is input": (["--input", "reviews.csv", "--output", "reviews.csv"], "is the --input file"),
    }[case]
    argv = [str(tmp_path / a) if a in files or a.startswith("absent") else a for a in argv]
    err = cli.error("predict", model, *argv)
    assert expected in err
    if case == "missing column":
        assert "its columns are: id, review, stars" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(files)  # nothing written


def test_bad_model_folders(trained_run, hf_classifier, tmp_path, cli):
    (tmp_path / "no_weights").mkdir()
    (tmp_path / "no_weights" / "config.json").write_text((hf_classifier / "config.json").read_text())
    err = cli.error("predict", str(tmp_path / "no_weights"), "a text")
    assert "has no weights (model.safetensors or pytorch_model.bin)" in err

    (tmp_path / "run").mkdir()  # a run killed before its model was exported
    for name in ("config.json", "metrics.jsonl"):
        (tmp_path / "run" / name).write_text((trained_run / name).read_text())
    assert "textcls train --resume" in cli.error("predict", str(tmp_path / "run"), "a text")
    assert "does not exist" in cli.error("predict", str(tmp_path / "absent"), "a text")

    (tmp_path / "no_tokenizer").mkdir()  # transformers' save_pretrained of the model alone
    for name in ("config.json", "model.safetensors"):
        (tmp_path / "no_tokenizer" / name).write_bytes((hf_classifier / name).read_bytes())
    assert "--tokenizer minilm-l6" in cli.error("predict", str(tmp_path / "no_tokenizer"), "a text")
    rows = cli.json("predict", str(tmp_path / "no_tokenizer"), "a text", "--tokenizer", "minilm-l6")
    assert rows == cli.json("predict", str(hf_classifier), "a text")

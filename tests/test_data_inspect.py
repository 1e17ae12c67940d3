"""`textcls data inspect` and `inspect_data`: numbers checked against pandas and transformers' own tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from textcls.cli import main
from textcls.config import DataConfig
from textcls.data.inspect import inspect_data
from textcls.data.sources import load_data


def stats(lengths, max_length=None) -> dict:
    out = {"mean": round(float(np.mean(lengths)), 1), "median": round(float(np.median(lengths)), 1),
           "p90": round(float(np.percentile(lengths, 90)), 1), "p99": round(float(np.percentile(lengths, 99)), 1),
           "max": int(np.max(lengths))}
    if max_length is not None:
        out["over_max_length"] = float(np.mean(np.asarray(lengths) > max_length))
    return out


@pytest.fixture
def imdb_folder(tmp_path, imdb_rows):
    """train.csv (30 real rows) and test.csv (10), labels as words."""
    df = imdb_rows.assign(label=imdb_rows.label.map({0: "neg", 1: "pos"}))
    test_rows = list(range(0, 5)) + list(range(20, 25))
    df.drop(index=test_rows).to_csv(tmp_path / "train.csv", index=False)
    df.loc[test_rows].to_csv(tmp_path / "test.csv", index=False)
    return tmp_path, df.drop(index=test_rows), df.loc[test_rows]


def test_json_matches_pandas_and_the_reference_tokenizer(imdb_folder, minilm_path, hf_tokenizer, capsys):
    folder, train, test = imdb_folder
    assert main(["-q", "data", "inspect", "--data", str(folder), "--validation-fraction", "0",
                 "--tokenizer", str(minilm_path), "--max-length", "128", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)

    assert result["labels"] == ["neg", "pos"] and result["pair"] is False and result["max_length"] == 128
    for split, df in (("train", train), ("test", test)):
        got = result["splits"][split]
        assert got["rows"] == len(df) and got["unlabelled"] == 0
        for name in ("neg", "pos"):
            count = int((df.label == name).sum())
            assert got["labels"][name] == {"count": count, "share": count / len(df)}
        assert got["chars"] == stats(df.text.str.len())
        assert got["tokens"] == stats([len(ids) for ids in hf_tokenizer(list(df.text))["input_ids"]], 128)
    assert result["splits"]["train"]["tokens"]["over_max_length"] > 0  # IMDB reviews run past 128 tokens
    first = train.iloc[0]
    assert result["examples"][0] == {"split": "train", "row": 0, "label": first.label,
                                     "text": first.text[:200].rstrip() + "…"}
    assert result["examples"][1]["label"] != first.label


def test_pairs_count_both_texts(hf_tokenizer):
    import datasets

    pairs = {"text": ["HuggingFace is based in NYC", "A short one", "Yet another sentence here"],
             "text_pair": ["Where is HuggingFace based?", "Two", "And its partner"], "label": [1, 0, 1]}
    dsd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        pairs, features=datasets.Features({"text": datasets.Value("string"), "text_pair": datasets.Value("string"),
                                           "label": datasets.ClassLabel(names=["no", "yes"])}))})
    result = inspect_data(dsd, hf_tokenizer, max_length=12, progress=False)
    lengths = [len(ids) for ids in hf_tokenizer(pairs["text"], pairs["text_pair"])["input_ids"]]
    assert lengths[0] == 15  # [CLS] hugging ##face is based in nyc [SEP] where is hugging ##face based ? [SEP]
    assert result["pair"] is True
    assert result["splits"]["train"]["tokens"] == stats(lengths, 12)
    assert result["splits"]["train"]["chars"] == stats([len(a) + len(b) for a, b in zip(pairs["text"],
                                                                                         pairs["text_pair"])])
    assert [(e["row"], e["label"], e["text_pair"]) for e in result["examples"]] == [
        (0, "yes", "Where is HuggingFace based?"), (1, "no", "Two")]  # the first row of each of the first labels


def test_human_table_on_the_project_imdb(imdb_dir, capsys):
    """Without a tokenizer it is a few seconds on the whole of IMDB: splits, balance, the unlabelled split."""
    assert main(["-q", "data", "inspect", "--data", str(imdb_dir), "--label-names", "neg", "pos"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[:2] == [f"data: {imdb_dir}", "labels: 0=neg, 1=pos"]
    assert lines[3].split() == ["split", "rows", "neg", "pos", "unlabelled"]
    assert lines[5].split() == ["train", "22,500", "11,250", "(50.0%)", "11,250", "(50.0%)", "0"]
    assert lines[8].split() == ["unsupervised", "50,000", "0", "(0.0%)", "0", "(0.0%)", "50,000"]
    assert "tokens" not in out and lines[-2].startswith("train[0] ") and lines[-1].startswith("train[1] ")


def test_inspect_agrees_with_load_data_subsets(imdb_dir):
    dsd = load_data(DataConfig(data=str(imdb_dir), max_train_samples=200, max_eval_samples=50))
    result = inspect_data(dsd, progress=False)
    assert {s: v["rows"] for s, v in result["splits"].items()} == {"train": 200, "validation": 50, "test": 50,
                                                                  "unsupervised": 50000}
    assert result["splits"]["validation"]["labels"]["1"] == {"count": 25, "share": 0.5}
    texts = pd.Series(dsd["train"].with_format("arrow")["text"].to_pylist())
    assert result["splits"]["train"]["chars"] == stats(texts.str.len())  # the subset's rows, not the whole table


def test_max_length_below_one_is_refused(imdb_folder, capsys):
    folder, _, _ = imdb_folder
    assert main(["-q", "data", "inspect", "--data", str(folder), "--max-length", "0"]) == 2
    assert "--max-length must be at least 1, got 0" in capsys.readouterr().err

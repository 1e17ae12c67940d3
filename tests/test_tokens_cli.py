"""`textcls tokens` and `textcls vocab`: what they show, and their errors (exit 2, one clear line)."""

from __future__ import annotations

import json

import pytest

from textcls.cli import main

TOK = ["--tokenizer", "minilm-l6"]


def run_json(capsys, *argv) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def fails(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("textcls: error: ") and "Traceback" not in err
    return err


def test_tokens_of_a_pair_equal_transformers(capsys, hf_tokenizer):
    a, b = "HuggingFace is based in NYC", "Where is HuggingFace based?"
    r = run_json(capsys, "tokens", a, b, *TOK)
    ref = hf_tokenizer(a, b)
    assert [t["id"] for t in r["tokens"]] == ref["input_ids"]
    assert [t["token_type_id"] for t in r["tokens"]] == ref["token_type_ids"]
    assert [t["token"] for t in r["tokens"]][:4] == ["[CLS]", "hugging", "##face", "is"]
    assert [t["position"] for t in r["tokens"]] == list(range(15))
    assert all(t["attention_mask"] == 1 for t in r["tokens"])


def test_tokens_table_with_max_length_padding(capsys):
    assert main(["tokens", "a short text", *TOK, "--max-length", "8", "--padding", "max_length"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("tokenizer: minilm-l6   3 wordpieces -> 5 tokens")
    assert lines[1].split() == ["position", "token", "id", "token_type_id", "attention_mask"]
    assert lines[3].split() == ["0", "[CLS]", "101", "0", "1"]
    assert lines[-1].split() == ["7", "[PAD]", "0", "0", "0"] and len(lines) == 3 + 8


def test_tokens_truncation(capsys, hf_tokenizer):
    text = "one two three four five six seven eight"
    r = run_json(capsys, "tokens", text, *TOK, "--max-length", "6", "--truncation", "head+tail",
                 "--head-tokens", "1")
    assert [t["token"] for t in r["tokens"]] == ["[CLS]", "one", "six", "seven", "eight", "[SEP]"]
    assert r["num_wordpieces"] == 8 and r["dropped_wordpieces"] == 4


def test_tokens_of_a_dataset_row(capsys, hf_tokenizer, imdb_rows, tmp_path):
    for split in ("train", "test"):
        imdb_rows.to_parquet(tmp_path / f"{split}.parquet")
    r = run_json(capsys, "tokens", "--data", str(tmp_path), "--split", "test", "--index", "25", *TOK,
                 "--max-length", "32")
    ref = hf_tokenizer(imdb_rows.text[25], truncation=True, max_length=32)
    assert [t["id"] for t in r["tokens"]] == ref["input_ids"]
    assert (r["split"], r["index"], r["label"]) == ("test", 25, "1")
    assert "--split 'holdout' is not in" in fails(capsys, "tokens", "--data", str(tmp_path), "--split", "holdout", *TOK)
    assert "--index 40 is out of range" in fails(capsys, "tokens", "--data", str(tmp_path), "--split", "test",
                                                 "--index", "40", *TOK)


@pytest.mark.parametrize("argv, message", [
    (["tokens", *TOK], "nothing to tokenize"),
    (["tokens", "text", "--data", "somewhere", *TOK], "not both"),
    (["tokens", "text", *TOK, "--max-length", "2"], "--max-length 2 leaves no room"),
    (["tokens", "text", *TOK, "--truncation", "head+tail", "--head-tokens", "600"], "--head-tokens 600"),
    (["tokens", "text"], "--tokenizer minilm-l6"),  # the default model's tokenizer is on the hub; tests are offline
    (["vocab", "--size"], "--tokenizer minilm-l6"),
    (["vocab", *TOK, "--id", "7592", "30522"], "--id 30522: out of range"),
    (["vocab", *TOK, "--id", "-1"], "--id -1: out of range"),
    (["vocab", *TOK, "--grep", "(unclosed"], "not a valid regular expression"),
])
def test_errors(capsys, argv, message):
    assert message in fails(capsys, *argv)


def test_vocab(capsys):
    r = run_json(capsys, "vocab", *TOK, "--id", "101", "7592")
    assert r["entries"] == [{"id": 101, "token": "[CLS]", "special": True},
                            {"id": 7592, "token": "hello", "special": False}]
    r = run_json(capsys, "vocab", *TOK, "--token", "hello", "HuggingFace")
    assert r["entries"][0]["id"] == 7592
    assert r["entries"][1]["id"] is None
    assert [w["token"] for w in r["entries"][1]["wordpieces"]] == ["hugging", "##face"]
    r = run_json(capsys, "vocab", *TOK, "--grep", "^##ing(s|ly)$")
    assert [e["token"] for e in r["entries"]] == ["##ings", "##ingly"]
    r = run_json(capsys, "vocab", *TOK, "--size")
    assert r["size"] == 30522 and r["special_tokens"]["[PAD]"] == 0
    assert main(["vocab", *TOK, "--grep", "^\\[.*\\]$"]) == 0
    out = capsys.readouterr().out
    assert "[CLS]  (special)" in out and out.rstrip().endswith("entries")


def test_a_folder_without_tokenizer_files(capsys, tmp_path):
    (tmp_path / "config.json").write_text("{}")
    err = fails(capsys, "tokens", "text", "--tokenizer", str(tmp_path))
    assert f"{str(tmp_path)!r} holds no tokenizer: the folder needs tokenizer.json, or vocab.txt" in err

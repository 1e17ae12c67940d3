"""`--tokenizer bytes`: one token per UTF-8 byte (ids 5 + byte, after [PAD] [UNK] [CLS] [SEP] [MASK]), built in,
saved with the model and reloaded by transformers; the embedding sized to it with --init random, and pretrained
weights refused when their embedding has fewer rows than the bytes need. Data: a few dozen short texts, some of
them not ASCII, on a tiny random BERT."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

TEXTS = ["café crème", "naïve façade", "👍 great", "日本語", "tab\tand\nnewline", "[SEP] is text here", "a , b .",
         "\x00nul", "   spaces   ", "Ω≈ç√∫"]


def ids_of(text: str) -> list[int]:
    return [5 + b for b in text.encode("utf-8")]


@pytest.fixture(scope="module")
def tokenizer():
    from textcls.data.tokenize import byte_tokenizer
    return byte_tokenizer()


def test_ids_are_the_utf8_bytes(tokenizer):
    assert len(tokenizer) == 261 and tokenizer.pad_token_id == 0
    assert [tokenizer.convert_tokens_to_ids(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == \
        [0, 1, 2, 3, 4]
    assert tokenizer("café")["input_ids"] == [2, 104, 102, 107, 200, 174, 3]  # é is 2 bytes: 0xC3 0xA9
    assert len(tokenizer("👍", add_special_tokens=False)["input_ids"]) == 4
    for text in TEXTS:
        enc = tokenizer(text)
        assert enc["input_ids"] == [2, *ids_of(text), 3], text
        assert tokenizer.decode(enc["input_ids"], skip_special_tokens=True) == text


def test_pairs_get_token_types(tokenizer):
    enc = tokenizer("é", "[CLS] 👍")
    b = ids_of("[CLS] 👍")
    assert enc["input_ids"] == [2, 200, 174, 3, *b, 3]
    assert enc["token_type_ids"] == [0] * 4 + [1] * (len(b) + 1)


def test_encoder_counts_bytes_and_truncates_them(tokenizer, hf_tokenizer):
    from textcls.config import TokenizeConfig
    from textcls.data.tokenize import ExampleEncoder

    text = "é" * 10 + "abc"  # 23 bytes
    head_tail = ExampleEncoder(tokenizer, TokenizeConfig(max_length=8, truncation="head+tail", head_tokens=2), False)
    out = head_tail([text])
    # Bytes, not characters: the tail starts inside the last é (0xA9 of 0xC3 0xA9).
    assert out["num_wordpieces"] == [23] and out["input_ids"] == [[2, *ids_of("é"), 5 + 0xA9, *ids_of("abc"), 3]]
    chunks = ExampleEncoder(tokenizer, TokenizeConfig(max_length=8, truncation="chunks", stride=2), False)
    rows = chunks([text])["input_ids"]
    assert len(rows) == 6 and rows[0] == [2, *ids_of("ééé"), 3]  # windows of 6 bytes, 4 new each
    # The cache key: another tokenizer than the WordPiece one, and text that spells "[SEP]" stays bytes.
    settings = ExampleEncoder(tokenizer, TokenizeConfig(max_length=8), False).settings()
    assert settings["split_special_tokens"] is True
    assert settings["tokenizer"] != ExampleEncoder(hf_tokenizer, TokenizeConfig(max_length=8), False).settings()[
        "tokenizer"]
    assert ExampleEncoder(tokenizer, TokenizeConfig(max_length=9), False)(["[SEP]"])["input_ids"] == \
        [[2, *ids_of("[SEP]"), 3]]


def test_tokens_and_vocab_commands(cli):
    r = cli.json("tokens", "--tokenizer", "bytes", "café 👍")
    assert r["tokenizer"] == "bytes" and r["num_wordpieces"] == 10 and r["length"] == 12
    assert [t["id"] for t in r["tokens"]] == [2, *ids_of("café 👍"), 3]
    assert [t["token"] for t in r["tokens"]][:6] == ["[CLS]", "c", "a", "f", "Ã", "©"]  # ByteLevel's symbols
    pair = cli.json("tokens", "--tokenizer", "bytes", "a", "b")
    assert [t["token_type_id"] for t in pair["tokens"]] == [0, 0, 0, 1, 1]

    assert cli.json("vocab", "--tokenizer", "bytes", "--size") == {
        "tokenizer": "bytes", "size": 261,
        "special_tokens": {"[UNK]": 1, "[SEP]": 3, "[PAD]": 0, "[CLS]": 2, "[MASK]": 4}}
    entries = cli.json("vocab", "--tokenizer", "bytes", "--id", "0", "5", "37", "260")["entries"]
    assert [(e["token"], e["special"]) for e in entries] == [("[PAD]", True), ("Ā", False), ("Ġ", False),
                                                              ("ÿ", False)]  # bytes 0x00, space, 0xFF
    (entry,) = cli.json("vocab", "--tokenizer", "bytes", "--token", "é")["entries"]
    assert [w["id"] for w in entry["wordpieces"]] == [200, 174]


@pytest.fixture(scope="module")
def short_texts(tmp_path_factory):
    """48 train and 16 test short texts, two labels, many of them not ASCII."""
    folder = tmp_path_factory.mktemp("short_texts")
    good = ["très bon film", "great 👍", "wunderschön", "loved it ❤", "superbe", "名作だ", "bravo!", "so good"]
    bad = ["nul à chier", "awful 👎", "schrecklich", "hated it", "ennuyeux", "退屈だ", "meh...", "so bad"]
    rows = [{"text": f"{t} #{i}", "label": label} for i in range(4) for label, ts in ((1, good), (0, bad)) for t in ts]
    pd.DataFrame(rows[:48]).to_parquet(folder / "train.parquet")
    pd.DataFrame(rows[48:]).to_parquet(folder / "test.parquet")
    return folder


def _train(short_texts, model, out, cache, *extra):
    return ["train", "--data", str(short_texts), "--model", str(model), "--tokenizer", "bytes", "--max-length", "32",
            "--batch-size", "8", "--max-steps", "3", "--validation-fraction", "0.25", "--cache-dir", str(cache),
            "--output", str(out), *extra]


def test_train_evaluate_predict_and_reload(cli, short_texts, tiny_model, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from textcls.infer import load_trained

    summary = cli.ok(_train(short_texts, tiny_model, tmp_path / "run", tmp_path / "cache", "--init", "random"))
    model_dir = tmp_path / "run" / "model"
    assert json.loads((model_dir / "config.json").read_text())["vocab_size"] == 261  # not the tiny BERT's 30522
    assert json.loads((model_dir / "textcls.json").read_text())["tokenize"]["tokenizer"] == "bytes"
    assert "test" in summary["final"]

    metrics = cli.json("evaluate", str(tmp_path / "run"), "--data", str(short_texts), "--split", "test",
                       "--cache-dir", str(tmp_path / "cache"))
    assert metrics["split"] == "test" and metrics["examples"] == 16 and 0 <= metrics["accuracy"] <= 1
    texts = ["un film génial 👍", "[SEP] ennuyeux"]
    rows = cli.json("predict", str(tmp_path / "run"), *texts)
    assert [r["text"] for r in rows] == texts and all(r["label"] in ("0", "1") for r in rows)

    # transformers reloads the folder: the same ids, and the same logits as textcls.
    reloaded = AutoTokenizer.from_pretrained(model_dir)
    for text in TEXTS:
        assert reloaded(text)["input_ids"] == [2, *ids_of(text), 3]
    assert reloaded("a", "é")["token_type_ids"] == [0, 0, 0, 1, 1, 1]
    ours = load_trained(model_dir, precision="no").logits(texts)
    hf = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    with torch.no_grad():
        theirs = hf(**reloaded(texts, padding=True, return_tensors="pt")).logits
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)
    got = torch.tensor([[r["probabilities"][n] for n in ("0", "1")] for r in rows])
    torch.testing.assert_close(got, theirs.softmax(-1), atol=1e-5, rtol=0)


def _pretrained(folder, vocab_size: int):
    """A tiny BERT with (random) weights saved as a pretrained checkpoint, with `vocab_size` embedding rows."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    return folder


def test_pretrained_weights_need_the_rows(cli, short_texts, tmp_path):
    small = _pretrained(tmp_path / "small", 200)
    err = cli.error(*_train(short_texts, small, tmp_path / "run", tmp_path / "cache", "--init", "pretrained"))
    assert err == (f"textcls: error: --tokenizer bytes needs 261 rows of word embedding (5 special tokens and 256 "
                   f"bytes), and the pretrained model '{small}' has 200; add --init random to train one sized to "
                   f"the bytes, or leave out --tokenizer")
    assert not (tmp_path / "run").exists()


def test_pretrained_weights_are_reused_with_a_warning(cli, short_texts, tmp_path, caplog):
    big = _pretrained(tmp_path / "big", 300)
    with caplog.at_level("WARNING", logger="textcls"):
        cli.ok(_train(short_texts, big, tmp_path / "run", tmp_path / "cache", "--init", "pretrained",
                      "--max-steps", "1", "--eval-strategy", "no"))
    assert "byte ids 0-260 reuse rows 0-260 of the word embedding" in caplog.text
    assert json.loads((tmp_path / "run" / "model" / "config.json").read_text())["vocab_size"] == 300  # as it was

    # A model trained on bytes already: its rows are bytes, nothing to warn about.
    caplog.clear()
    with caplog.at_level("WARNING", logger="textcls"):
        cli.ok(_train(short_texts, tmp_path / "run" / "model", tmp_path / "again", tmp_path / "cache", "--init",
                      "pretrained", "--max-steps", "1", "--eval-strategy", "no"))
    assert "reuse rows" not in caplog.text

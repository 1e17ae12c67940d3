"""Tokenization against transformers' own tokenizer on real IMDB reviews, truncation strategies, and the cache."""

from __future__ import annotations

import hashlib
import logging
from types import SimpleNamespace

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from textcls.config import TokenizeConfig
from textcls.data import tokenize
from textcls.data.tokenize import ExampleEncoder, content_hash, default_cache_dir, load_tokenizer, tokenize_data
from textcls.errors import TextclsError

PAIR = ("HuggingFace is based in NYC", "Where is HuggingFace based?")


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("minilm-l6")


@pytest.fixture(scope="module")
def texts(imdb_rows) -> list[str]:
    return imdb_rows.text.tolist()


def imdb_dsd(imdb_rows) -> datasets.DatasetDict:
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    rows = imdb_rows[["text", "label"]].astype({"label": "int64"})
    ds = datasets.Dataset.from_pandas(rows, features=features, preserve_index=False)
    return datasets.DatasetDict({"train": ds.select(range(0, 40, 2)), "test": ds.select(range(1, 40, 2))})


def wordpieces(hf_tokenizer, text: str) -> list[int]:
    return hf_tokenizer(text, add_special_tokens=False)["input_ids"]


# --------------------------------------------------------------------------------------------- loading

def test_load_tokenizer_from_preset_and_folder(minilm_path):
    for name in ("minilm-l6", str(minilm_path)):
        tok = load_tokenizer(name)
        assert tok.is_fast and tok.convert_tokens_to_ids("[CLS]") == 101


def test_load_tokenizer_offline_names_the_way_out():
    with pytest.raises(TextclsError, match="--tokenizer minilm-l6"):
        load_tokenizer("bert-tiny")  # a hub download, and the tests run with HF_HUB_OFFLINE=1


def test_slow_tokenizer_is_an_error(minilm_path, tmp_path):
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    BertTokenizerLegacy.from_pretrained(minilm_path).save_pretrained(tmp_path)
    with pytest.raises(TextclsError, match="slow"):
        load_tokenizer(str(tmp_path))


# --------------------------------------------------------------------------------------------- encoding

def test_pair_equals_transformers(tokenizer, hf_tokenizer):
    ref = hf_tokenizer(*PAIR)
    out = ExampleEncoder(tokenizer, TokenizeConfig(), pair=True)([PAIR[0]], [PAIR[1]])
    assert out["input_ids"][0] == ref["input_ids"]
    assert out["token_type_ids"][0] == ref["token_type_ids"]
    assert out["token_type_ids"][0] == [0] * 8 + [1] * 7  # [CLS] a(6) [SEP] | b(6) [SEP]
    assert out["num_wordpieces"][0] == 12 and out["length"][0] == 15


@pytest.mark.parametrize("max_length", [16, 128, 512])
def test_head_equals_transformers_truncation(tokenizer, hf_tokenizer, texts, max_length):
    out = ExampleEncoder(tokenizer, TokenizeConfig(max_length=max_length), pair=False)(texts)
    ref = hf_tokenizer(texts, truncation=True, max_length=max_length)
    assert out["input_ids"] == ref["input_ids"]
    assert out["token_type_ids"] == ref["token_type_ids"]
    assert out["length"] == [len(ids) for ids in ref["input_ids"]]
    assert out["num_wordpieces"] == [len(wordpieces(hf_tokenizer, t)) for t in texts]
    assert sum(n > max_length - 2 for n in out["num_wordpieces"]) >= 2  # real long reviews were cut


@pytest.mark.parametrize("truncation, head", [("tail", 0), ("head+tail", 10), ("head+tail", 0)])
def test_tail_and_head_tail_keep_the_right_wordpieces(tokenizer, hf_tokenizer, texts, truncation, head):
    max_length = 64
    budget = max_length - 2
    cfg = TokenizeConfig(max_length=max_length, truncation=truncation, head_tokens=head)
    out = ExampleEncoder(tokenizer, cfg, pair=False)(texts)
    for text, ids in zip(texts, out["input_ids"]):
        full = wordpieces(hf_tokenizer, text)
        kept = full if len(full) <= budget else full[:head] + full[len(full) - (budget - head):]
        assert ids == [101, *kept, 102]


@pytest.mark.parametrize("max_length", [6, 7, 64, 127])
def test_pair_longest_first_equals_transformers(tokenizer, hf_tokenizer, texts, max_length):
    # First texts long and short against second texts of every length, and pairs of equal length.
    if max_length < 10:  # transformers keeps every overflow of both texts: short texts keep that small
        texts = [t[:120] for t in texts]
    firsts = texts[:20] + [t[:200] for t in texts[20:30]] + texts[30:]
    seconds = [t[: 25 * i] or "x" for i, t in enumerate(texts[20:] + texts[:20])]
    seconds[-10:] = firsts[-10:]
    ref = hf_tokenizer(firsts, seconds, truncation="longest_first", max_length=max_length)
    out = ExampleEncoder(tokenizer, TokenizeConfig(max_length=max_length), pair=True)(firsts, seconds)
    assert out["input_ids"] == ref["input_ids"]
    assert out["token_type_ids"] == ref["token_type_ids"]


def test_pair_tail_keeps_the_end_of_each_text(tokenizer, hf_tokenizer, texts):
    a, b = texts[0], texts[1]
    out = ExampleEncoder(tokenizer, TokenizeConfig(max_length=40, truncation="tail"), pair=True)([a], [b])
    head = hf_tokenizer(a, b, truncation="longest_first", max_length=40)
    n_a = head["token_type_ids"].count(0) - 2  # the same budget split as head, less [CLS] and the first [SEP]
    n_b = head["token_type_ids"].count(1) - 1
    assert out["input_ids"][0] == [101, *wordpieces(hf_tokenizer, a)[-n_a:], 102,
                                   *wordpieces(hf_tokenizer, b)[-n_b:], 102]


@pytest.mark.parametrize("settings, pair, message", [
    (dict(max_length=2), False, "--max-length 2 leaves no room"),
    (dict(max_length=3), True, "--max-length 3 leaves no room"),
    (dict(max_length=64, truncation="head+tail", head_tokens=62), False, "--head-tokens 62"),
    (dict(max_length=64, truncation="head+tail", head_tokens=-1), False, "--head-tokens must be at least 0, got -1"),
])
def test_bad_settings(tokenizer, settings, pair, message):
    with pytest.raises(TextclsError, match=message):
        ExampleEncoder(tokenizer, TokenizeConfig(**settings), pair=pair)


# --------------------------------------------------------------------------------------------- the cache

def count_wordpiece_calls(monkeypatch) -> list[int]:
    """Count the tokenizer calls of this process (num_proc=1 maps in-process)."""
    calls = []
    real = tokenize._wordpieces

    def counting(backend, texts):
        calls.append(len(texts))
        return real(backend, texts)
    monkeypatch.setattr(tokenize, "_wordpieces", counting)
    return calls


def rows(dsd: datasets.DatasetDict) -> dict:
    return {s: ds.to_dict() for s, ds in dsd.items()}


def test_tokenize_data_columns(tokenizer, imdb_rows, tmp_path):
    dsd = imdb_dsd(imdb_rows)
    cfg = TokenizeConfig(max_length=128, cache_dir=str(tmp_path))
    out = tokenize_data(dsd, tokenizer, cfg)
    train = out["train"]
    assert train.column_names == ["label", "input_ids", "token_type_ids", "length", "num_wordpieces"]
    assert train.features["label"].names == ["neg", "pos"]
    assert train["label"][:] == dsd["train"]["label"][:]
    expected = ExampleEncoder(tokenizer, cfg, pair=False)(dsd["train"]["text"][:])
    assert {k: train[k][:] for k in expected} == expected


def test_tokenize_data_errors(tokenizer, imdb_rows, tmp_path):
    dsd = imdb_dsd(imdb_rows)
    with pytest.raises(TextclsError, match="--num-proc must be at least 1, got 0"):
        tokenize_data(dsd, tokenizer, TokenizeConfig(num_proc=0, cache_dir=str(tmp_path)))
    renamed = datasets.DatasetDict({"train": dsd["train"].rename_column("text", "review")})
    with pytest.raises(TextclsError, match="no 'text' column to tokenize; its columns are: review, label"):
        tokenize_data(renamed, tokenizer, TokenizeConfig(cache_dir=str(tmp_path)))


@pytest.mark.parametrize("level, shown", [(logging.INFO, True), (logging.WARNING, False)])
def test_progress_bars_follow_the_log_level(level, shown, tokenizer, imdb_rows, tmp_path, caplog, capsys):
    """`textcls -q` (log level WARNING) hides datasets' own bars, and the global switch is put back."""
    before = datasets.are_progress_bars_disabled()
    with caplog.at_level(level, logger="textcls"):
        tokenize_data(imdb_dsd(imdb_rows), tokenizer, TokenizeConfig(max_length=32, cache_dir=str(tmp_path)))
    assert ("tokenizing train" in capsys.readouterr().err) == shown
    assert datasets.are_progress_bars_disabled() == before


def test_second_run_loads_the_cache_without_tokenizing(tokenizer, imdb_rows, tmp_path, monkeypatch, caplog):
    dsd = imdb_dsd(imdb_rows)
    cfg = TokenizeConfig(max_length=128, cache_dir=str(tmp_path))
    first = tokenize_data(dsd, tokenizer, cfg)

    def fail(backend, texts):
        raise AssertionError("tokenized again")
    monkeypatch.setattr(tokenize, "_wordpieces", fail)
    with caplog.at_level(logging.INFO, logger="textcls"):
        second = tokenize_data(imdb_dsd(imdb_rows), tokenizer, cfg)
    assert "tokenized train: loaded from cache" in caplog.text
    assert "tokenized test: loaded from cache" in caplog.text
    assert rows(second) == rows(first)


def test_any_change_tokenizes_again(tokenizer, imdb_rows, tmp_path, monkeypatch):
    dsd = imdb_dsd(imdb_rows)
    base = TokenizeConfig(max_length=128, cache_dir=str(tmp_path))
    tokenize_data(dsd, tokenizer, base)
    calls = count_wordpiece_calls(monkeypatch)

    def tokenizes(dsd, tok, cfg) -> bool:
        calls.clear()
        tokenize_data(dsd, tok, cfg)
        return bool(calls)

    # head_tokens means nothing to head truncation, and num_proc does not change the result
    assert not tokenizes(dsd, tokenizer, TokenizeConfig(max_length=128, cache_dir=str(tmp_path), head_tokens=5))
    assert tokenizes(dsd, tokenizer, TokenizeConfig(max_length=64, cache_dir=str(tmp_path)))
    assert tokenizes(dsd, tokenizer, TokenizeConfig(max_length=128, cache_dir=str(tmp_path), truncation="tail"))
    for head in (64, 32):
        assert tokenizes(dsd, tokenizer, TokenizeConfig(max_length=128, cache_dir=str(tmp_path),
                                                        truncation="head+tail", head_tokens=head))
    other_vocab = load_tokenizer("minilm-l6")
    other_vocab.add_tokens(["hugginface"])
    assert tokenizes(dsd, other_vocab, base)
    edited = dsd["train"].map(lambda r, i: {"text": r["text"] + "!" * (i == 3)}, with_indices=True)
    assert tokenizes(datasets.DatasetDict({"train": edited}), tokenizer, base)
    relabelled = dsd["train"].map(lambda r, i: {"label": 1 - r["label"] if i == 3 else r["label"]},
                                  with_indices=True)
    assert tokenizes(datasets.DatasetDict({"train": relabelled}), tokenizer, base)
    pairs = dsd["train"].add_column("text_pair", dsd["test"]["text"][:])
    assert tokenizes(datasets.DatasetDict({"train": pairs}), tokenizer, base)
    assert not tokenizes(dsd, tokenizer, base)  # and the first cache is still there


def test_killed_run_leaves_nothing_trusted(tokenizer, imdb_dir, tmp_path, monkeypatch, caplog):
    # 2,400 reviews: each of the two workers maps more than one batch of 1,000 rows
    table = pq.read_table(imdb_dir / "train.parquet", columns=["text", "label"])
    dsd = datasets.DatasetDict({"train": datasets.Dataset(table.slice(11300, 2400)),
                                "test": datasets.Dataset(table.slice(0, 10))})
    cfg = TokenizeConfig(max_length=128, cache_dir=str(tmp_path), num_proc=2)
    last = dsd["train"][len(dsd["train"]) - 1]["text"]
    real = tokenize._wordpieces

    def crash_on_last_row(backend, texts):  # runs in the second worker, on its second batch
        if last in texts:
            raise RuntimeError("killed")
        return real(backend, texts)
    monkeypatch.setattr(tokenize, "_wordpieces", crash_on_last_row)
    with pytest.raises(RuntimeError, match="killed"):  # a failure that Python sees removes what it wrote
        tokenize_data(dsd, tokenizer, cfg)
    cache = tmp_path / "tokenized"
    assert not list(cache.iterdir())
    # A kill leaves what was written: the cleanup (removing the work folder) cannot run then.
    rmtree = tokenize.shutil.rmtree
    monkeypatch.setattr(tokenize.shutil, "rmtree", lambda *args, **kwargs: None)
    with pytest.raises(RuntimeError, match="killed"):
        tokenize_data(dsd, tokenizer, cfg)
    monkeypatch.setattr(tokenize.shutil, "rmtree", rmtree)
    assert list(cache.glob(".train-*.tmp/train-*_00000_of_00002.arrow"))  # the first worker finished its shard
    assert not list(cache.glob("train-*"))  # but nothing reached the cache, and no manifest: nothing to trust

    monkeypatch.setattr(tokenize, "_wordpieces", real)
    with caplog.at_level(logging.INFO, logger="textcls"):
        out = tokenize_data(dsd, tokenizer, cfg)
    assert "tokenizing train" in caplog.text
    expected = ExampleEncoder(tokenizer, cfg, pair=False)(dsd["train"]["text"][:])
    assert out["train"]["input_ids"][:] == expected["input_ids"]

    # A manifest whose files are not all there is not trusted either.
    next(cache.glob("train-*_00001_of_00002.arrow")).unlink()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="textcls"):
        out = tokenize_data(dsd, tokenizer, TokenizeConfig(max_length=128, cache_dir=str(tmp_path)))
    assert "tokenizing train" in caplog.text and "tokenized test: loaded from cache" in caplog.text
    assert out["train"]["input_ids"][:] == expected["input_ids"]


def test_default_cache_dir_follows_xdg(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "textcls"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir().parts[-2:] == (".cache", "textcls")


def test_content_hash_sees_rows_not_buffers(imdb_rows):
    ds = imdb_dsd(imdb_rows)["train"].flatten_indices()
    # contiguous selections share one buffer: the hash must still tell them apart
    assert content_hash(ds.select(range(0, 5)), ["text"]) != content_hash(ds.select(range(5, 10)), ["text"])
    assert content_hash(ds.select([0, 1, 2]), ["text"]) == content_hash(ds.select([0, 1, 2]), ["text"])
    assert content_hash(ds, ["text", "label"]) != content_hash(ds, ["text"])


def test_content_hash_reads_whole_arrow_buffers(imdb_dir, monkeypatch):
    """content_hash feeds the hash whole Arrow buffers, not rows (IMDB's 50k reviews hash in about a tenth of a
    second): the same few hash updates per column whatever the number of rows, the texts' bytes in one Buffer."""
    updates = []  # (type, size in bytes) of what each hash update was given

    class CountingBlake2b:
        def __init__(self, *args, **kwargs):
            self._hash = hashlib.blake2b(*args, **kwargs)

        def update(self, data):
            updates.append((type(data), memoryview(data).nbytes))
            self._hash.update(data)

        def hexdigest(self):
            return self._hash.hexdigest()

    monkeypatch.setattr(tokenize, "hashlib", SimpleNamespace(blake2b=CountingBlake2b))
    test = datasets.Dataset(pq.read_table(imdb_dir / "test.parquet"))
    carved = datasets.Dataset(pq.read_table(imdb_dir / "train.parquet")).train_test_split(test_size=0.1, seed=0)
    splits = [carved["train"], carved["test"], test]  # a random selection of rows, as a carved validation split
    counts = []
    for ds in splits:
        updates.clear()
        content_hash(ds, ["text", "label"])
        counts.append(len(updates))
        text_bytes = pc.sum(pc.binary_length(ds.with_format("arrow")[:]["text"])).as_py()
        assert max(n for kind, n in updates if kind is pa.Buffer) >= text_bytes  # all the texts, in one update
    # per column: its name and type, its one chunk's offset and length, then each of a string column's 3 buffers
    # (validity, offsets, data) as its size and its bytes: at most 8, for 2,500 rows as for 25,000
    assert len(set(counts)) == 1 and counts[0] <= 2 * 8, counts

"""Padding invariants of the collator, the length-grouped sampler, and length-sorted inference."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from textcls.config import TokenizeConfig
from textcls.data.batching import (Collator, LengthGroupedBatchSampler, ShuffledBatchSampler, make_dataloader,
                                   restore_order, sorted_batches)
from textcls.data.tokenize import load_tokenizer, tokenize_data


@pytest.fixture(scope="module")
def tokenized(imdb_rows, tmp_path_factory) -> datasets.Dataset:
    """The 40 real reviews as tokenize_data writes them (max length 128)."""
    ds = datasets.Dataset.from_pandas(imdb_rows[["text", "label"]], preserve_index=False)
    cfg = TokenizeConfig(max_length=128, cache_dir=str(tmp_path_factory.mktemp("cache")))
    return tokenize_data(datasets.DatasetDict({"train": ds}), load_tokenizer("minilm-l6"), cfg)["train"]


def rows_of(ds, indices):
    return [ds[i] for i in indices]


def test_dynamic_padding(tokenized):
    rows = rows_of(tokenized, [0, 1, 2, 3])
    batch = Collator(pad_token_id=0)(rows)
    T = max(r["length"] for r in rows)
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels"}
    for name in ("input_ids", "token_type_ids", "attention_mask"):
        assert batch[name].shape == (4, T) and batch[name].dtype == torch.long
    for i, row in enumerate(rows):
        n = row["length"]
        assert batch["input_ids"][i, :n].tolist() == row["input_ids"]
        assert batch["token_type_ids"][i, :n].tolist() == row["token_type_ids"]
        assert batch["attention_mask"][i].tolist() == [1] * n + [0] * (T - n)
        assert (batch["input_ids"][i, n:] == 0).all() and (batch["token_type_ids"][i, n:] == 0).all()
    assert batch["labels"].tolist() == [r["label"] for r in rows]


def test_max_length_padding_and_multiple_of(tokenized):
    rows = rows_of(tokenized, [5, 6])
    cfg = TokenizeConfig(max_length=128, padding="max_length")
    tok = load_tokenizer("minilm-l6")
    assert Collator.from_config(cfg, tok)(rows)["input_ids"].shape == (2, 128)
    short = [{"input_ids": [101, 7, 102], "token_type_ids": [0, 0, 0]}]
    batch = Collator(pad_token_id=0, pad_to_multiple_of=8)(short)
    assert batch["input_ids"].shape == (1, 8) and batch["attention_mask"].sum() == 3
    assert "labels" not in batch  # rows without a label column make batches without labels
    with pytest.raises(ValueError, match="more than max_length"):
        Collator(pad_token_id=0, padding="max_length", max_length=2)(short)


def rows_of_lengths(lengths):
    return [{"input_ids": [101] + [7] * (n - 2) + [102], "token_type_ids": [0] * n} for n in lengths]


def test_batch_length_rounded_within_max_length():
    """round_to (PAD_MULTIPLE for a model's batches): the length goes up to the multiple where max_length allows,
    stays as it is where it does not, and stays a multiple of what the mechanism needs; real tokens are unchanged."""
    def length(n, **kw):
        return Collator(pad_token_id=0, **kw)(rows_of_lengths([n]))["input_ids"].shape[1]

    assert length(3, max_length=128, round_to=32) == 32
    assert length(33, max_length=128, round_to=32) == 64
    assert length(100, max_length=100, round_to=32) == 100  # 128 would pass max_length
    assert length(90, max_length=100, round_to=32) == 96
    assert length(90, max_length=95, round_to=32) == 90
    assert length(90, max_length=192, pad_to_multiple_of=96, round_to=96) == 96  # lcm(96, 32) = 96
    assert length(97, max_length=192, pad_to_multiple_of=96, round_to=96) == 192
    batch = Collator(pad_token_id=0, max_length=128, round_to=32)(rows_of_lengths([5]))
    assert batch["attention_mask"].sum() == 5 and batch["input_ids"][0, 5:].eq(0).all()


def test_model_batches_rounded_to_pad_multiple():
    from textcls.data.batching import PAD_MULTIPLE
    from textcls.model.attention import attention_class

    cfg = TokenizeConfig(max_length=512)
    collator = Collator.for_attention(cfg, load_tokenizer("minilm-l6"), attention_class("full")[0])
    assert collator.round_to == PAD_MULTIPLE
    assert collator(rows_of_lengths([3, 40]))["input_ids"].shape == (2, -(-40 // PAD_MULTIPLE) * PAD_MULTIPLE)


def test_tokenizer_without_pad_token_is_an_error():
    from textcls.errors import TextclsError

    tok = load_tokenizer("minilm-l6")
    tok.pad_token = None
    with pytest.raises(TextclsError, match="no padding token"):
        Collator.from_config(TokenizeConfig(), tok)


def total_padding(batches, lengths) -> int:
    return sum(int(lengths[b].max()) * len(b) - int(lengths[b].sum()) for b in map(np.asarray, batches))


def test_length_grouped_sampler():
    lengths = np.random.default_rng(0).integers(10, 512, size=1000)
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, seed=3, mega_batch_mult=8)
    epoch0 = list(sampler)
    assert len(epoch0) == len(sampler) == 63
    assert sorted(i for b in epoch0 for i in b) == list(range(1000))  # every index once
    assert all(len(b) == 16 for b in epoch0[:-1]) and len(epoch0[-1]) == 1000 % 16
    assert lengths[epoch0[0]].max() == lengths.max()  # the longest batch first
    assert list(LengthGroupedBatchSampler(lengths, 16, seed=3, mega_batch_mult=8)) == epoch0  # deterministic
    sampler.set_epoch(1)
    epoch1 = list(sampler)
    assert epoch1 != epoch0 and sorted(i for b in epoch1 for i in b) == list(range(1000))
    random = list(ShuffledBatchSampler(1000, 16, seed=3))
    assert total_padding(epoch0, lengths) < 0.2 * total_padding(random, lengths)
    # still random: the batch order is not sorted by length
    maxima = [lengths[b].max() for b in epoch0[1:-1]]
    assert maxima != sorted(maxima) and maxima != sorted(maxima, reverse=True)
    dropped = LengthGroupedBatchSampler(lengths, 16, seed=3, mega_batch_mult=8, drop_last=True)
    assert len(list(dropped)) == len(dropped) == 62 and all(len(b) == 16 for b in dropped)


def test_shuffled_sampler_epochs():
    sampler = ShuffledBatchSampler(10, batch_size=4, seed=1)
    first = list(sampler)
    assert [len(b) for b in first] == [4, 4, 2] and sorted(sum(first, [])) == list(range(10))
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_sorted_batches_and_restore_order():
    lengths = [5, 9, 1, 9, 3, 7, 2]
    batches = sorted_batches(lengths, batch_size=3)
    assert batches == [[1, 3, 5], [0, 4, 6], [2]]  # longest first; ties keep input order
    outputs = np.array([lengths[i] for b in batches for i in b]) * 10  # one result per row, in batch order
    assert restore_order(batches, outputs).tolist() == [50, 90, 10, 90, 30, 70, 20]
    assert restore_order(batches, torch.from_numpy(outputs)).tolist() == [50, 90, 10, 90, 30, 70, 20]


def test_make_dataloader(tokenized):
    collator = Collator(pad_token_id=0)
    train = make_dataloader(tokenized, 8, collator, shuffle=True, group_by_length=True, seed=0)
    batches = list(train)
    assert len(batches) == 5 and sum(b["labels"].shape[0] for b in batches) == 40
    train.batch_sampler.set_epoch(1)
    assert [b["labels"].tolist() for b in train] != [b["labels"].tolist() for b in batches]

    infer = make_dataloader(tokenized, 8, collator, shuffle=False, group_by_length=True)
    lengths = torch.cat([b["attention_mask"].sum(1) for b in infer])
    assert (lengths[:-1] >= lengths[1:]).all()  # longest first
    assert restore_order(infer.batch_sampler, lengths).tolist() == tokenized["length"][:]

    plain = make_dataloader(tokenized, 8, collator, shuffle=False, group_by_length=False)
    assert torch.cat([b["labels"] for b in plain]).tolist() == tokenized["label"][:]

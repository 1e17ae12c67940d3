"""From tokenized rows to batches of tensors: padding, length-grouped shuffling, length-sorted inference.

Padding costs compute in every layer, so batches are built from examples of similar length: for training, a
seeded shuffle cut into mega-batches that are sorted by length (as Hugging Face's `group_by_length`), so that the
order is still random; for inference, one sort by length, with `restore_order` to give results back in input order.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import numpy as np
import torch

from textcls.config import TokenizeConfig
from textcls.data.sources import multi_hot
from textcls.errors import TextclsError

# Batches of a model are padded to a multiple of this many tokens where max_length allows (a preference; an attention
# mechanism's seq_multiple_of is a requirement). With dynamic padding every batch length is a new shape, and a CPU's
# oneDNN bf16 matmuls build (and cache) a kernel per shape; AMX multiplies tiles of 32 bf16 values along the reduced
# dimension, which is the tokens in a weight's gradient. On a CPU with AMX (benchmarks/bench_pad_multiple.py): a single
# IMDB review in bf16 took 6.3 ms with exact lengths and 3.1 ms rounded to 32, the main job's bf16 training ran 1.15x
# faster; fp32 gained 0-14%.
PAD_MULTIPLE = 32

if TYPE_CHECKING:
    from datasets import Dataset
    from torch.utils.data import DataLoader
    from transformers import PreTrainedTokenizerFast


class Collator:
    """Rows with input_ids / token_type_ids (and label) → {"input_ids", "token_type_ids", "attention_mask",
    "labels"} as (B, T) / (B,) long tensors. T is the longest row of the batch (`padding="dynamic"`) or
    `max_length` (`padding="max_length"`), rounded up to `pad_to_multiple_of` (what the model needs), and further up
    to `round_to` where that stays within `max_length` (what the hardware prefers).
    Regression labels (floats) are (B,) float32; multi-label ones (lists of label ids) (B, num_labels) float32 0/1."""

    num_labels: Optional[int] = None  # the width of multi-label targets (the model's outputs)

    def __init__(self, pad_token_id: int, padding: str = "dynamic", max_length: Optional[int] = None,
                 pad_to_multiple_of: Optional[int] = None, round_to: Optional[int] = None):
        if padding not in ("dynamic", "max_length"):
            raise ValueError(f"padding must be 'dynamic' or 'max_length', got {padding!r}")
        if padding == "max_length" and max_length is None:
            raise ValueError("padding='max_length' needs max_length")
        self.pad_token_id = pad_token_id
        self.padding = padding
        self.max_length = max_length
        self.pad_to_multiple_of = pad_to_multiple_of
        self.round_to = round_to

    @classmethod
    def from_config(cls, cfg: TokenizeConfig, tokenizer: "PreTrainedTokenizerFast") -> "Collator":
        if tokenizer.pad_token_id is None:
            raise TextclsError(f"tokenizer {tokenizer.name_or_path!r} has no padding token, so batches cannot be "
                               f"padded; use a tokenizer that defines pad_token (all BERT-style ones do)")
        return cls(tokenizer.pad_token_id, padding=cfg.padding, max_length=cfg.max_length)

    @classmethod
    def for_model(cls, cfg: TokenizeConfig, tokenizer: "PreTrainedTokenizerFast", model: torch.nn.Module) -> "Collator":
        """The collator of a model's batches, in training and inference alike: padding as `cfg` says, rounded up to
        the multiple that the model's attention mechanism needs."""
        collator = cls.for_attention(cfg, tokenizer, model.encoder.attention)
        collator.num_labels = getattr(model, "num_labels", None)
        return collator

    @classmethod
    def for_attention(cls, cfg: TokenizeConfig, tokenizer: "PreTrainedTokenizerFast", attention) -> "Collator":
        """As for_model, from the attention mechanism (its class or a module) alone: for a model that is not a torch
        module (an ONNX export)."""
        collator = cls.from_config(cfg, tokenizer)
        collator.pad_to_multiple_of = attention.seq_multiple_of
        collator.round_to = math.lcm(attention.seq_multiple_of, PAD_MULTIPLE)
        return collator

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        lengths = [len(row["input_ids"]) for row in rows]
        T = self.max_length if self.padding == "max_length" else max(lengths)
        if max(lengths) > T:
            raise ValueError(f"a row has {max(lengths)} tokens, more than max_length={T}")
        if self.pad_to_multiple_of:
            T = -(-T // self.pad_to_multiple_of) * self.pad_to_multiple_of
        if self.round_to:
            rounded = -(-T // self.round_to) * self.round_to
            T = rounded if rounded <= (self.max_length or T) else T
        input_ids = np.full((len(rows), T), self.pad_token_id, dtype=np.int64)  # (B, T)
        token_type_ids = np.zeros((len(rows), T), dtype=np.int64)  # (B, T)
        for i, (row, n) in enumerate(zip(rows, lengths)):
            input_ids[i, :n] = row["input_ids"]
            token_type_ids[i, :n] = row["token_type_ids"]
        attention_mask = np.arange(T)[None, :] < np.array(lengths)[:, None]  # (B, T): 1 = real token
        batch = {"input_ids": torch.from_numpy(input_ids), "token_type_ids": torch.from_numpy(token_type_ids),
                 "attention_mask": torch.from_numpy(attention_mask.astype(np.int64))}
        # A regression's or multi-label row without a label holds None: such a batch has no labels.
        if "label" in rows[0] and all(row["label"] is not None for row in rows):
            batch["labels"] = self.labels([row["label"] for row in rows])
        if "doc_id" in rows[0]:  # windows of chunked documents: which document each row is a window of
            batch["doc_ids"] = torch.tensor([row["doc_id"] for row in rows], dtype=torch.long)  # (B,)
        return batch

    def labels(self, labels: list) -> torch.Tensor:
        """(B,) long class ids, (B,) float32 regression targets, or (B, num_labels) float32 multi-hot rows."""
        if isinstance(labels[0], float):
            return torch.tensor(labels, dtype=torch.float32)  # (B,)
        if not isinstance(labels[0], list):
            return torch.tensor(labels, dtype=torch.long)  # (B,)
        width = self.num_labels if self.num_labels is not None else 1 + max((max(r) for r in labels if r), default=0)
        return torch.from_numpy(multi_hot(labels, width))  # (B, L)


class ShuffledBatchSampler:
    """Batches of random indices; `set_epoch` gives a new order per epoch, the same one for the same seed and
    epoch (so a resumed run sees the batches an uninterrupted one would have)."""

    def __init__(self, num_rows: int, batch_size: int, seed: int, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.num_rows = num_rows
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch])

    def _chunks(self, order: np.ndarray) -> list[np.ndarray]:
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def batches(self) -> list[np.ndarray]:
        return self._chunks(self._rng().permutation(self.num_rows))

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches():
            if len(batch) == self.batch_size or not self.drop_last:
                yield batch.tolist()

    def __len__(self) -> int:
        full, rest = divmod(self.num_rows, self.batch_size)
        return full + (rest > 0 and not self.drop_last)


class LengthGroupedBatchSampler(ShuffledBatchSampler):
    """Random batches of similar length: shuffle, cut into mega-batches of `mega_batch_mult` batches, sort each
    by length, cut into batches, shuffle the batches. The batch holding the longest example goes first, so an
    out-of-memory error shows at once rather than hours in."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, drop_last: bool = False,
                 mega_batch_mult: int = 50):
        super().__init__(len(lengths), batch_size, seed, drop_last)
        self.lengths = np.asarray(lengths)
        self.mega_batch_size = mega_batch_mult * batch_size

    def batches(self) -> list[np.ndarray]:
        rng = self._rng()
        order = rng.permutation(self.num_rows)
        batches = []
        for start in range(0, self.num_rows, self.mega_batch_size):
            mega = order[start:start + self.mega_batch_size]
            batches += self._chunks(mega[np.argsort(-self.lengths[mega], kind="stable")])
        # Only the very last batch can be short; it stays last, where drop_last looks for it.
        short = [batches.pop()] if batches and len(batches[-1]) < self.batch_size else []
        batches = [batches[i] for i in rng.permutation(len(batches))]
        if batches:
            longest = int(np.argmax([self.lengths[b].max() for b in batches]))
            batches.insert(0, batches.pop(longest))
        return batches + short


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches for inference, longest first: the least padding, and memory trouble shows on the first batch.
    `restore_order(batches, outputs)` puts the per-row outputs back in input order."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i:i + batch_size].tolist() for i in range(0, len(order), batch_size)]


class SortedBatchSampler:
    """`sorted_batches` as a batch sampler: its `batch_size` and `drop_last` let accelerate shard it over processes
    and drop the duplicates that even out the last batch (`gather_for_metrics` needs them)."""

    def __init__(self, lengths: Sequence[int], batch_size: int):
        self.batch_size = batch_size
        self.drop_last = False
        self.batches = sorted_batches(lengths, batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def restore_order(batches: Sequence[Sequence[int]], outputs):
    """`outputs` (numpy array or tensor, one row per example in batch order) in the order of the input rows."""
    order = np.concatenate([np.asarray(b, dtype=np.int64) for b in batches])
    inverse = np.argsort(order)
    return outputs[torch.from_numpy(inverse)] if isinstance(outputs, torch.Tensor) else outputs[inverse]


def lengths_of(dataset: "Dataset") -> np.ndarray:
    """The token count of every row (the `length` column tokenize_data writes), read in one go."""
    return np.asarray(dataset.with_format("numpy")["length"][:])


def make_dataloader(dataset: "Dataset", batch_size: int, collator: Collator, shuffle: bool,
                    group_by_length: bool, seed: int = 0, num_workers: int = 0,
                    drop_last: bool = False) -> "DataLoader":
    """A DataLoader over tokenized rows. Training: shuffle=True (its batch sampler has `set_epoch`). Inference:
    shuffle=False keeps the input order, or with group_by_length the `sorted_batches` order (restore it with
    `restore_order(loader.batch_sampler, outputs)`)."""
    from torch.utils.data import BatchSampler, DataLoader, SequentialSampler

    if shuffle and group_by_length:
        sampler = LengthGroupedBatchSampler(lengths_of(dataset), batch_size, seed, drop_last)
    elif shuffle:
        sampler = ShuffledBatchSampler(len(dataset), batch_size, seed, drop_last)
    elif group_by_length:
        sampler = SortedBatchSampler(lengths_of(dataset), batch_size)
    else:
        sampler = BatchSampler(SequentialSampler(range(len(dataset))), batch_size, drop_last)
    # Its own generator: starting an iteration then draws from it, not from the global torch RNG that dropout uses
    # (a resumed run must see the same dropout masks as an uninterrupted one).
    return DataLoader(dataset, batch_sampler=sampler, collate_fn=collator, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(seed))

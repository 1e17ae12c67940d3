"""What a dataset holds: its splits, label balance, text lengths in characters and in tokens, two examples."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from textcls.data.sources import label_names, problem_type

if TYPE_CHECKING:
    from datasets import DatasetDict
    from transformers import PreTrainedTokenizerFast

EXAMPLE_CHARS = 200  # an example's text is cut here
TOKENIZE_BATCH = 1000


def inspect_data(dsd: "DatasetDict", tokenizer: Optional["PreTrainedTokenizerFast"] = None, max_length: int = 512,
                 progress: bool = True) -> dict:
    """Statistics of every split of a `load_data` result, as plain JSON-ready values.

    Lengths count the characters of the text (both texts of a pair) and, with a tokenizer, the tokens of the whole
    example, special tokens included and nothing truncated, so that `over_max_length` is the share of examples that
    `max_length` would cut."""
    names = label_names(dsd)
    problem = problem_type(dsd)
    splits = {}
    for split, ds in dsd.items():
        table = ds.with_format("arrow")[:]  # the rows as the dataset sees them (after any select)
        counts, unlabelled = _label_counts(table["label"], len(names), problem)
        rows = table.num_rows
        stats = {"rows": rows,
                 "labels": {n: {"count": int(c), "share": float(c / rows)} for n, c in zip(names, counts)},
                 "unlabelled": unlabelled,
                 "chars": length_stats(_chars(table))}
        if problem == "regression" and rows > unlabelled:
            stats["target"] = length_stats(table["label"].drop_null().to_numpy())  # mean, median, p90, p99, max
        if tokenizer is not None:
            stats["tokens"] = length_stats(token_lengths(tokenizer, table, f"tokenizing {split}", progress),
                                           max_length)
        splits[split] = stats
    return {"labels": names, "pair": "text_pair" in next(iter(dsd.values())).column_names,
            "max_length": max_length if tokenizer is not None else None, "splits": splits,
            "examples": examples(dsd, names), "warnings": imbalance_warnings(splits)}


def _label_counts(column: pa.ChunkedArray, num_labels: int, problem: str) -> tuple[np.ndarray, int]:
    """(rows of each label, unlabelled rows): a multi-label row counts for each of its labels; a regression's one
    'label' counts the rows that have a value."""
    if problem == "single-label":
        ids = column.to_numpy()
        return np.bincount(ids[ids >= 0], minlength=num_labels), int((ids < 0).sum())
    if problem == "regression":
        return np.array([len(column) - column.null_count]), column.null_count
    ids = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.int64)
    return np.bincount(ids, minlength=num_labels), column.null_count


IMBALANCE = 0.05  # a class under this share of the largest one is worth a warning


def imbalance_warnings(splits: dict) -> list[str]:
    """A warning for each split whose smallest class has under IMBALANCE of the largest class's rows."""
    out = []
    for split, stats in splits.items():
        counts = {n: c["count"] for n, c in stats["labels"].items()}
        if len(counts) < 2 or not any(counts.values()):
            continue
        small, large = min(counts, key=counts.get), max(counts, key=counts.get)
        if counts[small] < IMBALANCE * counts[large]:
            out.append(f"{split}: class {small} has {counts[small]:,} rows, under {IMBALANCE:.0%} of the "
                       f"{counts[large]:,} of class {large}; accuracy hides how it fares: read the per-class figures "
                       f"of `textcls evaluate`, and consider training with --class-weights balanced")
    return out


def _chars(table: pa.Table) -> np.ndarray:
    chars = pc.utf8_length(table["text"])
    if "text_pair" in table.column_names:
        chars = pc.add(chars, pc.utf8_length(table["text_pair"]))
    return chars.to_numpy()


def length_stats(lengths: np.ndarray, max_length: Optional[int] = None) -> dict:
    """mean, median, p90, p99 (to 0.1) and max of `lengths`; with `max_length`, the share of them above it."""
    mean, p50, p90, p99 = (round(float(x), 1) for x in (lengths.mean(), *np.percentile(lengths, [50, 90, 99])))
    out = {"mean": mean, "median": p50, "p90": p90, "p99": p99, "max": int(lengths.max())}
    if max_length is not None:
        out["over_max_length"] = float((lengths > max_length).mean())
    return out


def token_lengths(tokenizer: "PreTrainedTokenizerFast", table: pa.Table, desc: str, progress: bool) -> np.ndarray:
    """Tokens per example, special tokens included, without truncation: batched through the fast tokenizer, which
    spreads each batch over the cores."""
    from tqdm.auto import tqdm

    texts = table["text"].to_pylist()
    pairs = table["text_pair"].to_pylist() if "text_pair" in table.column_names else None
    lengths = []
    with tqdm(total=len(texts), desc=desc, unit=" texts", disable=not progress) as bar:
        for i in range(0, len(texts), TOKENIZE_BATCH):
            batch = slice(i, i + TOKENIZE_BATCH)
            # verbose=False: the "longer than the maximum length" warning is what we are measuring here
            enc = tokenizer(texts[batch], pairs[batch] if pairs else None, return_attention_mask=False,
                            return_token_type_ids=False, verbose=False)
            lengths += map(len, enc["input_ids"])
            bar.update(len(enc["input_ids"]))
    return np.array(lengths)


def examples(dsd: "DatasetDict", names: list[str], n: int = 2) -> list[dict]:
    """The first row of each of the first `n` labels of the first split (any rows if it has no labels), the text
    cut at EXAMPLE_CHARS."""
    split, ds = next(iter(dsd.items()))
    if problem_type(dsd) != "single-label":  # the first rows, with their labels (or value)
        out = []
        for row, example in enumerate(ds.select(range(min(n, len(ds))))):
            label = example["label"]
            shown = label if label is None else round(label, 6) if isinstance(label, float) else \
                ", ".join(names[i] for i in label)
            out.append({"split": split, "row": row, "label": shown}
                       | {c: _cut(example[c]) for c in ("text", "text_pair") if c in example})
        return out
    ids = ds.with_format("arrow")["label"].to_numpy()
    firsts = {}
    for row, label in enumerate(ids):
        firsts.setdefault(int(label), row)
        if len(firsts) == n:
            break
    out = []
    for label, row in firsts.items():
        example = ds[row]
        out.append({"split": split, "row": row, "label": names[label] if label >= 0 else None}
                   | {c: _cut(example[c]) for c in ("text", "text_pair") if c in example})
    return out


def _cut(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS].rstrip() + "…"

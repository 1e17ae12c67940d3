"""Any supported data source → the standard `datasets.DatasetDict` the rest of textcls reads.

Splits: train, validation and test (carved from train, stratified and seeded, when the source lacks them), and
unsupervised when the source has it. Columns: text, text_pair (pair datasets only), label (a ClassLabel whose names
are the label map, in id order; -1 = unlabelled) and the source's other columns as they are.
"""

from __future__ import annotations

import logging
import math
import re
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from textcls.config import DataConfig
from textcls.data.readers import RawSplit, read_source
from textcls.errors import TextclsError

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

log = logging.getLogger("textcls")

SPLITS = ("train", "validation", "test", "unsupervised")
# Column names the field uses, tried in order; pairs first, so that sentence1+sentence2 is not read as one text.
PAIR_COLUMNS = (("sentence1", "sentence2"), ("question1", "question2"), ("premise", "hypothesis"),
                ("question", "sentence"), ("text", "text_pair"))
TEXT_COLUMNS = ("text", "sentence", "review", "content", "document")
LABEL_COLUMNS = ("label", "labels")
MUST_BE_LABELLED = ("train", "validation")  # test may be unlabelled as a whole (GLUE), not in part
# Settings that shape the rows of a split before any sampling (sampling updates datasets' fingerprint itself).
CONTENT_SETTINGS = ("columns", "text_column", "text_separator", "text_pair_column", "label_column", "label_names",
                    "drop_empty", "encoding")


class Columns(NamedTuple):
    text: tuple[str, ...]  # one column, or several joined by separator (a title and a body)
    pair: Optional[str]
    label: str
    separator: str  # between the texts of several columns

    def describe_text(self) -> str:
        return " + ".join(map(repr, self.text))


def load_data(cfg: DataConfig) -> "DatasetDict":
    """Read `cfg.data` into the standard splits and columns; carve validation and test from train when the source
    has none; take the stratified subsets that `max_train_samples` / `max_eval_samples` ask for."""
    import datasets

    if not cfg.data:
        raise TextclsError("no data given: pass --data SPEC (a folder or file, or a hub name such as 'imdb')")
    raw = read_source(cfg.data, cfg.encoding, cfg.columns)
    if "train" not in raw:
        raise TextclsError(f"{cfg.data!r} has no train split (it has: {', '.join(raw)}); name the training file "
                           f"train.EXT (or the folder train/)")
    for split, r in raw.items():
        if r.table.num_rows == 0:
            raise TextclsError(f"split {split!r} of {r.origin} has no rows; fill it or remove it")
    columns = _pick_columns(cfg, raw["train"])
    tables = {s: _check_texts(_standard_columns(raw[s], s, columns), raw[s].origin, s, columns, cfg.drop_empty)
              for s in SPLITS if s in raw}
    names, tables = _encode_labels(tables, raw, columns.label, cfg.label_names)

    features_label = datasets.ClassLabel(names=names)
    settings = {k: getattr(cfg, k) for k in CONTENT_SETTINGS}
    dsd = datasets.DatasetDict()
    for split, table in tables.items():
        features = datasets.Features.from_arrow_schema(table.schema)
        features["label"] = features_label
        fingerprint = raw[split].fingerprint
        if fingerprint is not None:
            fingerprint = datasets.fingerprint.Hasher.hash([fingerprint, split, settings])
        dsd[split] = datasets.Dataset(table, info=datasets.DatasetInfo(features=features), fingerprint=fingerprint)

    source_train = len(dsd["train"])  # both fractions are shares of the source's train
    for split, fraction in (("test", cfg.test_fraction), ("validation", cfg.validation_fraction)):
        if split not in dsd and fraction > 0:
            n = math.ceil(fraction * source_train)  # rounded as train_test_split(test_size=fraction) does
            dsd["train"], dsd[split] = _stratified_sample(dsd["train"], n, cfg.data_seed, "train")
            log.info("the source has no %s split: carved %d rows (%g of train, stratified by label, seed %d) from "
                     "train", split, n, fraction, cfg.data_seed)
    for split, limit in (("train", cfg.max_train_samples), ("validation", cfg.max_eval_samples),
                         ("test", cfg.max_eval_samples)):
        if split in dsd and limit is not None and limit < len(dsd[split]):
            log.info("kept a stratified sample of %d of the %d %s rows (seed %d)", limit, len(dsd[split]), split,
                     cfg.data_seed)
            dsd[split] = _stratified_sample(dsd[split], limit, cfg.data_seed, split)[1]
    dsd = datasets.DatasetDict({s: dsd[s] for s in SPLITS if s in dsd})
    log.info("data %s: %s; labels: %s", cfg.data, ", ".join(f"{s} {len(d):,}" for s, d in dsd.items()),
             ", ".join(names))
    return dsd


def label_names(dsd: "DatasetDict") -> list[str]:
    """The label map of a dataset from `load_data`: names in id order."""
    return list(next(iter(dsd.values())).features["label"].names)


# ------------------------------------------------------------------------------------------- columns and texts

def text_columns(have: list[str], text: Optional[str], pair: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """The text and pair columns of a table with columns `have`: `text` when named, else the first usual pair of
    columns (`pair`, when named, must be its second), else the first usual text column (None if there is none)."""
    if text is not None:
        return text, pair
    return next(((a, b) for a, b in PAIR_COLUMNS if a in have and b in have and pair in (None, b)),
                (next((c for c in TEXT_COLUMNS if c in have), None), pair))


def _pick_columns(cfg: DataConfig, train: RawSplit) -> Columns:
    """The text, pair and label columns: the ones named in `cfg`, else the first of the usual names in train."""
    have = train.table.column_names
    text, pair = text_columns(have, cfg.text_column, cfg.text_pair_column)
    label = cfg.label_column or next((c for c in LABEL_COLUMNS if c in have), None)
    for value, flag, usual in ((text, "--text-column", TEXT_COLUMNS), (label, "--label-column", LABEL_COLUMNS)):
        if value is None:
            raise TextclsError(f"{train.origin} has none of the usual columns {', '.join(usual)}; its columns are: "
                               f"{', '.join(have)}; name the one to use with {flag}")
    return Columns(tuple(c.strip() for c in text.split(",")), pair, label, cfg.text_separator)


def _missing_column(name: str, flag: str, r: RawSplit) -> TextclsError:
    return TextclsError(f"column {name!r} ({flag}) is not in {r.origin}; its columns are: "
                        f"{', '.join(r.table.column_names)}")


def _standard_columns(r: RawSplit, split: str, columns: Columns) -> pa.Table:
    """text, [text_pair,] label (the source's values; null where the split has no label column), then the rest."""
    table, n = r.table, r.table.num_rows
    for name, flag in [(c, "--text-column") for c in columns.text] + [(columns.pair, "--text-pair-column")]:
        if name is not None and name not in table.column_names:
            raise _missing_column(name, flag, r)
    if columns.label not in table.column_names and split in MUST_BE_LABELLED:
        raise _missing_column(columns.label, "--label-column", r)
    texts = [table[c].cast(pa.string()) for c in columns.text]
    # A part that is missing on a row is left out, not a reason to lose the row's other parts.
    out = {"text": texts[0] if len(texts) == 1 else
           pc.binary_join_element_wise(*texts, columns.separator, null_handling="skip")}
    if columns.pair is not None:
        out["text_pair"] = table[columns.pair].cast(pa.string())
    out["label"] = table[columns.label] if columns.label in table.column_names else pa.nulls(n)
    chosen = {*columns.text, columns.pair, columns.label}
    replaced = [c for c in out if c in table.column_names and c not in chosen]
    if replaced:
        log.info("%s: dropped the source's own column(s) %s, replaced by the chosen ones", r.origin, replaced)
    return pa.table(out | {c: table[c] for c in table.column_names if c not in chosen and c not in out})


# A text with nothing to read: only white space (ASCII and Unicode's spaces and separators), zero-width characters
# and bidirectional marks. A tokenizer makes [CLS] [SEP] of any of them. Written as explicit ranges because pyarrow's
# regular expressions (RE2) and Python's disagree on what \\s covers.
BLANK = ("^[\\s\u0085\u00a0\u1680\u2000-\u200f\u2028-\u202f\u205f-\u2064\u2066-\u2069\u3000\ufeff]*$")


def is_blank(text: Optional[str]) -> bool:
    """Whether a text is missing or has nothing to read (see BLANK)."""
    return text is None or re.match(BLANK, text) is not None


def _empty(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where the text is missing or has nothing to read."""
    return pc.fill_null(pc.match_substring_regex(column, BLANK), True)


def _first(mask: pa.ChunkedArray) -> int:
    return pc.index(mask, True).as_py()


def _check_texts(table: pa.Table, origin: str, split: str, columns: Columns, drop_empty: bool) -> pa.Table:
    """Every row needs its text (and, in a pair dataset, its second text): fail with the count, or drop them."""
    empty = _empty(table["text"])
    if columns.pair is not None:
        pair_empty = _empty(table["text_pair"])
        n_pair = pc.sum(pair_empty).as_py()
        if n_pair and not drop_empty:
            raise TextclsError(f"pair column {columns.pair!r} is empty on {n_pair} of {table.num_rows} rows of "
                               f"{origin} (first: row index {_first(pair_empty)}); a pair dataset needs both texts "
                               f"on every row: fill them in, drop those rows with --drop-empty, or classify single "
                               f"texts by giving only --text-column")
        empty = pc.or_(empty, pair_empty)
    n_empty = pc.sum(empty).as_py()
    if n_empty and not drop_empty:
        raise TextclsError(f"{n_empty} of {table.num_rows} rows of {origin} have an empty or missing text in column "
                           f"{columns.describe_text()} (first: row index {_first(empty)}); fill them in or drop them "
                           f"with --drop-empty")
    if n_empty:
        log.info("dropped %d rows with an empty text from %s (--drop-empty)", n_empty, split)
        table = table.filter(pc.invert(empty))
        if table.num_rows == 0:
            raise TextclsError(f"split {split!r} of {origin} has no rows left after --drop-empty")
    return table


# ------------------------------------------------------------------------------------------- labels

def _label_values(column: pa.ChunkedArray, origin: str, name: str) -> pa.ChunkedArray:
    """Labels as strings or int64 ids, null where a row has none ('' or -1 or NaN): pandas categoricals are
    decoded, booleans and whole floats read as ids."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    t = column.type
    if pa.types.is_null(t):
        return column.cast(pa.int64())
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        column = column.cast(pa.string())
        return pc.if_else(pc.equal(pc.utf8_trim_whitespace(column), ""), None, column)
    if pa.types.is_floating(t):
        column = pc.if_else(pc.is_nan(column), None, column)
        if not pc.all(pc.equal(pc.floor(column), column)).as_py():
            raise TextclsError(f"label column {name!r} of {origin} holds fractions (e.g. "
                               f"{column.filter(pc.not_equal(pc.floor(column), column))[0]}); textcls classifies: "
                               f"give class labels as integers or strings")
    elif not (pa.types.is_integer(t) or pa.types.is_boolean(t)):
        raise TextclsError(f"label column {name!r} of {origin} holds {t} values; give class labels as integers or "
                           f"strings")
    column = column.cast(pa.int64())
    return pc.if_else(pc.equal(column, -1), None, column)


def _encode_labels(tables: dict[str, pa.Table], raw: dict[str, RawSplit], name: str,
                   given: Optional[list[str]]) -> tuple[list[str], dict[str, pa.Table]]:
    """The label names, and every split's label column as int64 ids (-1 = unlabelled)."""
    values = {s: _label_values(t["label"], raw[s].origin, name) for s, t in tables.items()}
    train = values["train"]
    names, to_ids = _label_map(train, raw["train"].class_names.get(name), given)
    ids = {}
    for split, v in values.items():
        if v.null_count == len(v):  # no labels at all: an unlabelled split, or one without the label column
            ids[split] = pa.chunked_array([pa.nulls(len(v), pa.int64())])
        elif v.type != train.type:
            raise TextclsError(f"labels of {raw[split].origin} are {v.type} but those of train are {train.type}; "
                               f"write them the same way in every split")
        else:
            ids[split] = to_ids(v).cast(pa.int64())
    _check_labels(values, ids, names, given, raw, name)
    return names, {s: t.set_column(t.column_names.index("label"), "label", pc.fill_null(ids[s], -1))
                   for s, t in tables.items()}


def _label_map(train: pa.ChunkedArray, class_names: Optional[list[str]], given: Optional[list[str]]):
    """(names, values → ids; null where a value has no id). String labels: `given` in its order, else train's
    labels sorted (as HF's run_classification does). Integer labels are the ids, named by `given`, by the source's
    ClassLabel names, or by their numbers; integers other than 0..N-1 (ratings 1..5) map to ids in sorted order."""
    if pa.types.is_string(train.type):
        _check_one_kind(train)
        names = given or sorted(pc.unique(train.drop_null()).to_pylist())
        return names, lambda v: pc.index_in(v, value_set=pa.array(names, pa.string()))
    if given is not None and class_names is not None and len(given) != len(class_names):
        raise TextclsError(f"--label-names gives {len(given)} names but the source has {len(class_names)} labels: "
                           f"{', '.join(class_names)}")
    if given is None and class_names is None:
        values = sorted(pc.unique(train.drop_null()).to_pylist())
        if values != list(range(len(values))):  # e.g. ratings 1..5: ids by sorted value, as run_classification does
            return [str(v) for v in values], lambda v: pc.index_in(v, value_set=pa.array(values, pa.int64()))
    names = given or class_names or [str(i) for i in range((pc.max(train).as_py() or 0) + 1)]
    return names, lambda v: pc.if_else(pc.and_(pc.greater_equal(v, 0), pc.less(v, len(names))), v, None)


def _label_counts(labels: pa.ChunkedArray) -> str:
    counts = pc.value_counts(labels.drop_null()).to_pylist()
    return ", ".join(f"{c['values']}: {c['counts']:,}" for c in sorted(counts, key=lambda c: str(c["values"])))


def _check_one_kind(train: pa.ChunkedArray) -> None:
    """String labels that are partly numbers and partly names (0/1 beside neg/pos) would make a class of each: a
    4-class model of a 2-class task. Refused, with the counts."""
    numeric = pc.match_substring_regex(train.drop_null(), r"^\s*-?[0-9]+\s*$")
    if pc.any(numeric).as_py() and not pc.all(numeric).as_py():
        raise TextclsError(f"the train labels mix numbers and names ({_label_counts(train)}): each spelling would be "
                           f"a class of its own; write every label the same way (all names, or all ids 0..N-1)")


def _check_labels(values: dict[str, pa.ChunkedArray], ids: dict[str, pa.ChunkedArray], names: list[str],
                  given: Optional[list[str]], raw: dict[str, RawSplit], name: str) -> None:
    """Every label has an id and occurs in train; train has two labels at least; train and validation have a
    label on every row, test on all rows or on none."""
    present = pc.unique(ids["train"].drop_null())
    train_labels = ", ".join(names[i] for i in sorted(present.to_pylist()))
    for split, v in values.items():
        known = ids[split] if split == "train" else pc.if_else(pc.is_in(ids[split], present), ids[split], None)
        bad = pc.and_(pc.is_valid(v), pc.is_null(known))
        if not pc.any(bad).as_py():
            continue
        value, origin = v.filter(bad)[0].as_py(), raw[split].origin
        if split != "train":
            raise TextclsError(f"label {value!r} in {split} ({origin}) does not occur in train, whose labels are: "
                               f"{train_labels}; a model cannot learn it: fix the label, or drop those rows")
        if given is not None:
            raise TextclsError(f"label {value!r} in train ({origin}) has no name in --label-names {' '.join(given)}")
        raise TextclsError(f"label {value!r} in train ({origin}) is not a class id; integer labels are ids 0, 1, ... "
                           f"(-1 for an unlabelled row)")
    if len(present) < 2:
        raise TextclsError(f"train ({raw['train'].origin}) has {len(present)} label{'' if len(present) == 1 else 's'}"
                           f" ({train_labels}) in column {name!r}; classification needs at least two")
    absent = [n for i, n in enumerate(names) if i not in set(present.to_pylist())]
    if absent:  # kept (its id may matter, e.g. to match a model's head), but said: the model never learns it
        log.warning("label%s %s %s no rows in train (%s); the model gets an output for %s that it never learns; "
                    "leave %s out of --label-names unless the ids must stay as they are", "s" * (len(absent) > 1),
                    ", ".join(map(repr, absent)), "have" if len(absent) > 1 else "has", train_labels,
                    "them" if len(absent) > 1 else "it", "them" if len(absent) > 1 else "it")
    for split, split_ids in ids.items():
        missing, n = split_ids.null_count, len(split_ids)
        if missing and (split in MUST_BE_LABELLED or (split == "test" and missing < n)):
            raise TextclsError(f"{missing} of {n} rows of {raw[split].origin} have no label in column {name!r} "
                               f"(first: row index {_first(pc.is_null(split_ids))}); every {split} row needs one")


# ------------------------------------------------------------------------------------------- sampling

def _stratified_sample(ds: "Dataset", n: int, seed: int, split: str) -> tuple["Dataset", "Dataset"]:
    """(the rest of `ds`, `n` of its rows), each label keeping its share. This is the sampler that datasets'
    `train_test_split(stratify_by_column="label", seed=seed)` uses, with the same result; called directly because
    train_test_split reads the label column row by row in datasets 5 (0.8 s per 25k rows)."""
    from datasets.utils.stratify import stratified_shuffle_split_generate_indices

    labels = ds.with_format("arrow")["label"].to_numpy()
    classes, counts = np.unique(labels, return_counts=True)
    if counts.min() < 2:
        rare = int(classes[counts.argmin()])
        raise TextclsError(f"cannot take a stratified sample of {split}: label "
                           f"{ds.features['label'].int2str(rare) if rare >= 0 else 'unlabelled'!r} has a single row "
                           f"there; add rows of that label or remove it")
    try:
        rest, taken = next(stratified_shuffle_split_generate_indices(labels, len(ds) - n, n,
                                                                     rng=np.random.default_rng(seed)))
    except ValueError as e:
        raise TextclsError(f"cannot take a stratified sample of {n} of the {len(ds)} rows of {split} with "
                           f"{len(classes)} labels: {e}; choose a size that leaves at least one row per label on "
                           f"each side") from None
    return ds.select(rest), ds.select(taken)

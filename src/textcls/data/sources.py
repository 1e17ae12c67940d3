"""Any supported data source → the standard `datasets.DatasetDict` the rest of textcls reads.

Splits: train, validation and test (carved from train, stratified and seeded, when the source lacks them), and
unsupervised when the source has it. Columns: text, text_pair (pair datasets only), label and the source's other
columns as they are. The label column's feature says the problem type (`problem_type`):
- single-label: a ClassLabel whose names are the label map, in id order; -1 = unlabelled;
- multi-label: a List of that ClassLabel, each row its sorted label ids ([] = no label); null = unlabelled;
- regression: a float32 Value whose `id` is the source's label column name (the name of the one output); null =
  unlabelled.
"""

from __future__ import annotations

import logging
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from textcls.config import PROBLEM_TYPES, DataConfig
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
# Added with multi-label and regression: hashed only when set, so that single-label data keeps its cache entries.
PROBLEM_SETTINGS = {"problem": None, "label_separator": None, "label_columns": None, "allow_empty_labels": False,
                    "num_labels": None}
SINGLE, MULTI, REGRESSION = PROBLEM_TYPES


class Columns(NamedTuple):
    text: tuple[str, ...]  # one column, or several joined by separator (a title and a body)
    pair: Optional[tuple[str, ...]]  # the second text of a pair: one column or several joined, or None
    label: str
    separator: str  # between the texts of several columns
    label_columns: tuple[str, ...] = ()  # multi-label: one 0/1 column per label (--label-columns)

    def describe_text(self) -> str:
        return " + ".join(map(repr, self.text))

    def describe_pair(self) -> str:
        return " + ".join(map(repr, self.pair or ()))


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
    problem = _problem(cfg, tables["train"], raw["train"].origin, columns.label)
    if problem == SINGLE:
        names, tables = _encode_labels(tables, raw, columns.label, cfg.label_names)
        features_label = datasets.ClassLabel(names=names)
    elif problem == REGRESSION:
        tables = _encode_numbers(tables, raw, columns.label, cfg)
        names, features_label = [columns.label], datasets.Value("float32", id=columns.label)
    else:
        names, tables = _encode_label_sets(tables, raw, columns, cfg)
        features_label = datasets.List(datasets.ClassLabel(names=names))
    if cfg.num_labels is not None and cfg.num_labels != len(names):
        raise TextclsError(f"--num-labels {cfg.num_labels}, but the {problem} labels of {cfg.data!r} are "
                           f"{len(names)}: {', '.join(names)}")
    settings = {k: getattr(cfg, k) for k in CONTENT_SETTINGS} | {
        k: getattr(cfg, k) for k, default in PROBLEM_SETTINGS.items() if getattr(cfg, k) != default}
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
            log.info("the source has no %s split: carved %d rows (%g of train, %s, seed %d) from train", split, n,
                     fraction, "stratified by label" if problem == SINGLE else "at random", cfg.data_seed)
    for split, limit in (("train", cfg.max_train_samples), ("validation", cfg.max_eval_samples),
                         ("test", cfg.max_eval_samples)):
        if split in dsd and limit is not None and limit < len(dsd[split]):
            log.info("kept a stratified sample of %d of the %d %s rows (seed %d)", limit, len(dsd[split]), split,
                     cfg.data_seed)
            dsd[split] = _stratified_sample(dsd[split], limit, cfg.data_seed, split)[1]
    dsd = datasets.DatasetDict({s: dsd[s] for s in SPLITS if s in dsd})
    log.info("data %s: %s; %s: %s", cfg.data, ", ".join(f"{s} {len(d):,}" for s, d in dsd.items()),
             "regression target" if problem == REGRESSION else f"{problem} labels", ", ".join(names))
    return dsd


def _label_feature(data) -> object:
    """The label feature of a DatasetDict or Dataset from `load_data` (or tokenized from one)."""
    ds = next(iter(data.values())) if hasattr(data, "values") else data
    return ds.features["label"]


def label_names(dsd: "DatasetDict") -> list[str]:
    """The label map of a dataset from `load_data`: names in id order (regression: the one target's name)."""
    feature = _label_feature(dsd)
    if hasattr(feature, "names"):
        return list(feature.names)
    if hasattr(feature, "feature"):  # multi-label: a List of ClassLabel
        return list(feature.feature.names)
    return [feature.id or "score"]


def problem_type(data) -> str:
    """single-label, multi-label or regression: what the label column of a DatasetDict or Dataset holds."""
    feature = _label_feature(data)
    return SINGLE if hasattr(feature, "names") else MULTI if hasattr(feature, "feature") else REGRESSION


def multi_hot(label_ids: list, width: int) -> np.ndarray:
    """(N, width) float32 0/1 rows from each row's list of label ids (a multi-label split's label column)."""
    out = np.zeros((len(label_ids), width), dtype=np.float32)
    for i, ids in enumerate(label_ids):
        out[i, ids] = 1.0
    return out


def is_labelled(ds: "Dataset") -> bool:
    """Whether every row of a split from `load_data` has a label."""
    if "label" not in ds.column_names or not len(ds):
        return False
    column = ds.with_format("arrow")["label"]
    if problem_type(ds) == SINGLE:
        return pc.min(column).as_py() >= 0
    return column.null_count == 0


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
        if value is None and not (flag == "--label-column" and cfg.label_columns is not None):
            raise TextclsError(f"{train.origin} has none of the usual columns {', '.join(usual)}; its columns are: "
                               f"{', '.join(have)}; name the one to use with {flag}")
    texts, pairs = split_columns(text), split_columns(pair) if pair is not None else None
    if cfg.label_columns is not None:
        return Columns(texts, pairs, cfg.label_columns[0], cfg.text_separator, tuple(cfg.label_columns))
    return Columns(texts, pairs, label, cfg.text_separator)


def split_columns(names: str) -> tuple[str, ...]:
    """--text-column / --text-pair-column: one column, or several separated by commas (joined into one text)."""
    return tuple(c.strip() for c in names.split(","))


def join_columns(table: pa.Table, names: tuple[str, ...], separator: str) -> pa.ChunkedArray:
    """The texts of `names` as one string column, `separator` between them. A part missing on a row is left out,
    not a reason to lose the row's other parts."""
    texts = [table[c].cast(pa.string()) for c in names]  # numbers read as text, not as missing
    return texts[0] if len(texts) == 1 else pc.binary_join_element_wise(*texts, separator, null_handling="skip")


def _missing_column(name: str, flag: str, r: RawSplit) -> TextclsError:
    return TextclsError(f"column {name!r} ({flag}) is not in {r.origin}; its columns are: "
                        f"{', '.join(r.table.column_names)}")


def _standard_columns(r: RawSplit, split: str, columns: Columns) -> pa.Table:
    """text, [text_pair,] label (the source's values; null where the split has no label column), then the rest."""
    table, n = r.table, r.table.num_rows
    for name, flag in [(c, "--text-column") for c in columns.text] + \
            [(c, "--text-pair-column") for c in columns.pair or ()]:
        if name not in table.column_names:
            raise _missing_column(name, flag, r)
    for label in columns.label_columns or (columns.label,):
        if label not in table.column_names and (split in MUST_BE_LABELLED or columns.label_columns):
            raise _missing_column(label, "--label-columns" if columns.label_columns else "--label-column", r)
    out = {"text": join_columns(table, columns.text, columns.separator)}
    if columns.pair is not None:
        out["text_pair"] = join_columns(table, columns.pair, columns.separator)
    if columns.label_columns:
        out["label"] = _label_columns_as_lists(table, columns.label_columns, r.origin)
    else:
        out["label"] = table[columns.label] if columns.label in table.column_names else pa.nulls(n)
    chosen = {*columns.text, *(columns.pair or ()), columns.label, *columns.label_columns}
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
            raise TextclsError(f"pair column {columns.describe_pair()} is empty on {n_pair} of {table.num_rows} rows of "
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
                               f"{column.filter(pc.not_equal(pc.floor(column), column))[0]}); give class labels as "
                               f"integers or strings, or predict the numbers with --problem regression")
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
    _warn_unlearnt(names, set(present.to_pylist()))
    for split, split_ids in ids.items():
        _check_all_labelled(split_ids, split, raw[split].origin, name)


def _check_all_labelled(column: pa.ChunkedArray, split: str, origin: str, name: str) -> None:
    """train and validation have a label on every row, test on all rows or on none."""
    missing, n = column.null_count, len(column)
    if missing and (split in MUST_BE_LABELLED or (split == "test" and missing < n)):
        raise TextclsError(f"{missing} of {n} rows of {origin} have no label in column {name!r} (first: row index "
                           f"{_first(pc.is_null(column))}); every {split} row needs one")


# ------------------------------------------------------------------------------------------- multi-label, regression

def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _problem(cfg: DataConfig, train: pa.Table, origin: str, name: str) -> str:
    """--problem, or the problem the train labels show when it is not given: lists (or --label-separator,
    --label-columns) are multi-label, numbers with fractions regression, anything else single-label."""
    column = train["label"]
    kind = column.type.value_type if pa.types.is_dictionary(column.type) else column.type
    listed = _is_list(kind) or cfg.label_separator is not None or cfg.label_columns is not None
    if cfg.problem is None:
        if listed:
            return MULTI
        if cfg.num_labels == 1:  # one output: a regression, as transformers reads num_labels=1
            return REGRESSION
        fractions = pa.types.is_floating(kind) and not pc.all(pc.fill_null(pc.equal(
            pc.floor(column), column), True)).as_py()
        return REGRESSION if fractions else SINGLE
    if listed and cfg.problem != MULTI:
        raise TextclsError(f"label column {name!r} of {origin} holds lists of labels, which is --problem "
                           f"multi-label, not --problem {cfg.problem}")
    if cfg.problem == MULTI and not listed:
        raise TextclsError(f"--problem multi-label: label column {name!r} of {origin} holds {kind} values, not lists; "
                           f"give the labels of a row as a list (JSON Lines, parquet), as one string with "
                           f"--label-separator SEP, or as 0/1 columns with --label-columns")
    return cfg.problem


def _place(origin: str, index: int, headerless: bool) -> str:
    """Where row `index` of a table read from `origin` is, for a person: a line of a text file, else the row."""
    suffix = Path(origin).suffix if ", " not in origin else ""
    if suffix in (".csv", ".tsv"):
        return f"{origin}, line {index + (1 if headerless else 2)}"
    if suffix in (".jsonl", ".json"):
        return f"{origin}, line {index + 1}"
    return f"{origin}, row index {index}"


def _encode_numbers(tables: dict[str, pa.Table], raw: dict[str, RawSplit], name: str,
                    cfg: DataConfig) -> dict[str, pa.Table]:
    """Regression: every split's label column as float32, null where a row has none (null, '', NaN). A label that
    is not a number is an error that names the file and the line."""
    out = {}
    for split, table in tables.items():
        column, origin = table["label"], raw[split].origin
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            values = []
            for i, v in enumerate(column.to_pylist()):
                try:
                    values.append(None if v is None or not v.strip() else float(v))
                except ValueError:
                    raise TextclsError(f"regression label {v!r} in column {name!r} is not a number "
                                       f"({_place(origin, i, cfg.columns is not None)}); give every label as a "
                                       f"number") from None
            column = pa.chunked_array([pa.array(values, pa.float64())])
        elif not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type) or
                  pa.types.is_null(column.type) or pa.types.is_boolean(column.type)):
            raise TextclsError(f"label column {name!r} of {origin} holds {column.type} values; a regression label is "
                               f"a number")
        column = column.cast(pa.float64())
        column = pc.if_else(pc.is_nan(column), None, column).cast(pa.float32())
        if not pc.all(pc.fill_null(pc.is_finite(column), True)).as_py():
            i = pc.index(pc.is_finite(column), False).as_py()
            raise TextclsError(f"regression label {column[i].as_py()} in column {name!r} is not a finite number "
                               f"({_place(origin, i, cfg.columns is not None)})")
        _check_all_labelled(column, split, origin, name)
        out[split] = table.set_column(table.column_names.index("label"), "label", column)
    return out


def _label_columns_as_lists(table: pa.Table, names: tuple[str, ...], origin: str) -> pa.ChunkedArray:
    """--label-columns: each row's list of the names of the columns that hold 1 (0/1, true/false, 0.0/1.0)."""
    flags = []
    for name in names:
        column = table[name]
        try:
            values = column.cast(pa.float64()) if not pa.types.is_boolean(column.type) else column.cast(pa.int8())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise TextclsError(f"label column {name!r} (--label-columns) of {origin} holds {column.type} values; "
                               f"give each label column as 0 or 1") from None
        bad = pc.invert(pc.fill_null(pc.is_in(values.cast(pa.float64()), pa.array([0.0, 1.0])), False))
        if pc.any(bad).as_py():
            i = _first(bad)
            raise TextclsError(f"label column {name!r} (--label-columns) of {origin} holds {column[i].as_py()!r} at "
                               f"row index {i}; give each label column as 0 or 1")
        flags.append(values.cast(pa.float64()).to_numpy(zero_copy_only=False) == 1)
    on = np.stack(flags, axis=1) if flags else np.zeros((table.num_rows, 0), bool)  # (N, L)
    return pa.chunked_array([pa.array([[names[j] for j in np.flatnonzero(row)] for row in on],
                                      pa.list_(pa.string()))])


def _label_items(column: pa.ChunkedArray, separator: Optional[str], origin: str, name: str) -> list:
    """Each row's labels as a Python list (None: unlabelled): list columns as they are, strings split on
    `separator` (items stripped; an empty string is a row without labels)."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    if _is_list(column.type):
        return column.to_pylist()
    if pa.types.is_null(column.type):  # a split without labels (unsupervised)
        return [None] * len(column)
    if separator is None or not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise TextclsError(f"label column {name!r} of {origin} holds {column.type} values; give a multi-label row's "
                           f"labels as a list or as one string with --label-separator")
    return [None if v is None else [x.strip() for x in v.split(separator) if x.strip()] for v in column.to_pylist()]


def _item_kind(item) -> str:
    if isinstance(item, bool):
        return "boolean"
    if isinstance(item, int) or (isinstance(item, str) and re.fullmatch(r"-?[0-9]+", item)):
        return "number"
    return "name" if isinstance(item, str) else type(item).__name__


def _encode_label_sets(tables: dict[str, pa.Table], raw: dict[str, RawSplit], columns: Columns,
                       cfg: DataConfig) -> tuple[list[str], dict[str, pa.Table]]:
    """Multi-label: the label names, and every split's label column as sorted lists of ids. Labels are names
    (named in sorted order, or by --label-names in its order), ids 0..N-1 (named by --label-names, by the source's
    ClassLabel, or by their numbers), or the --label-columns. A list that mixes names and numbers, an unknown label
    and (without --allow-empty-labels) a row without labels are errors that say where."""
    name = "/".join(columns.label_columns) if columns.label_columns else columns.label
    headerless = cfg.columns is not None
    items = {s: _label_items(t["label"], cfg.label_separator, raw[s].origin, name) for s, t in tables.items()}
    kinds = {}
    for split, rows in items.items():
        for i, row in enumerate(rows):
            for item in row or ():
                kind = _item_kind(item)
                if kind not in ("number", "name"):
                    raise TextclsError(f"label {item!r} in column {name!r} ({_place(raw[split].origin, i, headerless)})"
                                       f" is a {kind}; give labels as names or as ids 0, 1, ...")
                first = kinds.setdefault(kind, (split, i, item))
                other = kinds.get("name" if kind == "number" else "number")
                if other is not None:
                    places = [f"{v!r} ({_place(raw[s].origin, j, headerless)})" for s, j, v in (other, first)]
                    raise TextclsError(f"the labels in column {name!r} mix numbers and names: {places[0]}, "
                                       f"{places[1]}; write every label the same way (all names, or all ids 0..N-1)")
    numeric = "number" in kinds
    if columns.label_columns:
        names = list(columns.label_columns)
    elif numeric:
        class_names = raw["train"].class_names.get(columns.label)
        top = max((int(x) for rows in items.values() for row in rows for x in row or ()), default=0)
        names = list(cfg.label_names or class_names or [str(i) for i in range(top + 1)])
    else:
        names = list(cfg.label_names or sorted({x for row in items["train"] for x in row or ()}))
    if len(names) < 2:
        raise TextclsError(f"train ({raw['train'].origin}) has {len(names)} label(s) ({', '.join(names)}) in column "
                           f"{name!r}; multi-label classification needs at least two")
    to_id = {n: i for i, n in enumerate(names)}
    out = {}
    for split, rows in items.items():
        origin, ids = raw[split].origin, []
        for i, row in enumerate(rows):
            if row is None:
                ids.append(None)
                continue
            row_ids = set()
            for x in row:
                j = int(x) if numeric else to_id.get(x)
                if j is None or not 0 <= j < len(names):
                    known = f"ids 0..{len(names) - 1}" if numeric else f"labels {', '.join(names)}"
                    raise TextclsError(f"label {x!r} in column {name!r} ({_place(origin, i, headerless)}) is not "
                                       f"one of the {known}" + (" (--label-names)" if cfg.label_names else "")
                                       + "; fix the label or name every label")
                row_ids.add(j)
            if not row_ids and not cfg.allow_empty_labels:
                raise TextclsError(f"a row of {split} has no label in column {name!r} "
                                   f"({_place(origin, i, headerless)}); give every row one label at least, or add "
                                   f"--allow-empty-labels if a row may have none")
            ids.append(sorted(row_ids))
        column = pa.chunked_array([pa.array(ids, pa.list_(pa.int64()))])
        _check_all_labelled(column, split, origin, name)
        out[split] = tables[split].set_column(tables[split].column_names.index("label"), "label", column)
    _warn_unlearnt(names, {j for row in out["train"]["label"].to_pylist() for j in row or ()})
    return names, out


def _warn_unlearnt(names: list[str], seen: set[int]) -> None:
    """Labels with no train rows are kept (an id may matter, e.g. to match a model's head), but said: the model
    never learns them."""
    absent = [repr(n) for j, n in enumerate(names) if j not in seen]
    if absent:
        many = len(absent) > 1
        log.warning("label%s %s %s no rows in train; the model gets an output for %s that it never learns; leave %s "
                    "out of --label-names unless the ids must stay as they are", "s" * many, ", ".join(absent),
                    "have" if many else "has", "them" if many else "it", "them" if many else "it")


# ------------------------------------------------------------------------------------------- sampling

def _stratified_sample(ds: "Dataset", n: int, seed: int, split: str) -> tuple["Dataset", "Dataset"]:
    """(the rest of `ds`, `n` of its rows), each label keeping its share. This is the sampler that datasets'
    `train_test_split(stratify_by_column="label", seed=seed)` uses, with the same result; called directly because
    train_test_split reads the label column row by row in datasets 5 (0.8 s per 25k rows)."""
    from datasets.utils.stratify import stratified_shuffle_split_generate_indices

    if problem_type(ds) != SINGLE:  # numbers and label sets have no classes to stratify by: a seeded shuffle
        order = np.random.default_rng(seed).permutation(len(ds))
        return ds.select(np.sort(order[n:])), ds.select(np.sort(order[:n]))
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

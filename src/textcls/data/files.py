"""Files of texts to predict, and files of predictions: the formats `textcls predict` reads and writes.

Inputs: .txt (one text per line), .csv, .tsv, .jsonl, .parquet (the text column, and a pair column if there is one,
detected as `load_data` detects them, or named). Outputs: .jsonl, .csv, .tsv, .txt (one label per line), written
beside and renamed.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path
from typing import Optional

from textcls.data.readers import decode, read_table
from textcls.data.sources import TEXT_COLUMNS, is_blank, join_columns, split_columns, text_columns
from textcls.errors import TextclsError
from textcls.io import atomic_write_text, reading

log = logging.getLogger("textcls")

INPUT_FORMATS = (".txt", ".csv", ".tsv", ".jsonl", ".parquet")
OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl", ".txt")


# --------------------------------------------------------------------------------------------- input files

def read_inputs(path: Path, text_column: Optional[str] = None, text_pair_column: Optional[str] = None,
                encoding: str = "utf-8", text_separator: str = " ") -> tuple[list[str], Optional[list[str]]]:
    """Texts (and second texts) from an input file. Blank lines of a .txt file are skipped; in a table the text
    column is detected as in `load_data` (pairs first) unless named — several named columns ("title,text") are
    joined with `text_separator`, as training joined them — and an empty text is an error."""
    if not path.is_file():
        problem = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        raise TextclsError(f"input file {str(path)!r} {problem}; give a {', '.join(INPUT_FORMATS)} file")
    if path.suffix not in INPUT_FORMATS:
        raise TextclsError(f"input file {str(path)!r}: unknown format {path.suffix!r}; use one of "
                           f"{', '.join(INPUT_FORMATS)}")
    if path.suffix == ".txt":
        if text_column or text_pair_column:
            raise TextclsError("a .txt input has one text per line and no columns; use a .csv, .tsv or .jsonl file "
                               "for --text-column / --text-pair-column")
        texts, pairs = _read_lines(path, encoding), None
    else:
        texts, pairs = _read_columns(path, text_column, text_pair_column, encoding, text_separator)
    if not texts:
        raise TextclsError(f"input file {str(path)!r} is empty: it holds no text to predict")
    return texts, pairs


def _read_lines(path: Path, encoding: str) -> list[str]:
    with reading(path):  # split on line feeds only: splitlines() would also cut a text at a form feed or U+2028
        lines = [line.removesuffix("\r") for line in decode(path.read_bytes(), str(path), encoding).split("\n")]
    texts = [line for line in lines if not is_blank(line)]
    blank = sum(1 for line in lines[:-1] if is_blank(line))  # the last "line" is what follows the final newline
    if blank:
        log.info("%s: skipped %d blank lines", path, blank)
    return texts


def _read_columns(path: Path, text_column: Optional[str], text_pair_column: Optional[str],
                  encoding: str, separator: str) -> tuple[list[str], Optional[list[str]]]:
    table = read_table(path, encoding) if path.stat().st_size else None
    if table is None or table.num_rows == 0:
        raise TextclsError(f"input file {str(path)!r} is empty: it has no rows")
    have = table.column_names
    if text_column is None:
        text_column, text_pair_column = text_columns(have, None, text_pair_column)
        if text_column is None:
            raise TextclsError(f"input file {str(path)!r} has none of the usual text columns "
                               f"({', '.join(TEXT_COLUMNS)}); its columns are: {', '.join(have)}; name one with "
                               f"--text-column")
    columns = {}
    for names, flag in ((text_column, "--text-column"), (text_pair_column, "--text-pair-column")):
        if names is None:
            continue
        for name in split_columns(names):
            if name not in have:
                raise TextclsError(f"column {name!r} ({flag}) is not in {str(path)!r}; its columns are: "
                                   f"{', '.join(have)}")
        values = join_columns(table, split_columns(names), separator).to_pylist()
        empty = [i for i, t in enumerate(values) if is_blank(t)]
        if empty:
            raise TextclsError(f"{len(empty)} rows of {str(path)!r} have an empty text in column {names!r} (first: "
                               f"row {empty[0]}); fill them in or remove them")
        columns[flag] = values
    return columns["--text-column"], columns.get("--text-pair-column")


# --------------------------------------------------------------------------------------------- output files

def check_output(path: Path) -> None:
    """Fail on an output format we cannot write, before any work is done."""
    if path.suffix not in OUTPUT_FORMATS:
        raise TextclsError(f"output file {str(path)!r}: unknown format {path.suffix!r}; use one of "
                           f"{', '.join(OUTPUT_FORMATS)}")
    if path.is_dir():
        raise TextclsError(f"output file {str(path)!r} is a folder; give a file name")


def write_predictions(rows: list[dict], path: Path, label_names: list[str]) -> None:
    """.jsonl: one object per row; .csv/.tsv: text, [text_pair,] label, p_<label>...; .txt: one label per line.
    A multi-label model's rows have `labels` (joined by commas in .csv/.tsv/.txt) and a regression's `score` (no
    probabilities) in place of the label. Written beside and renamed, so a failure leaves no half file."""
    check_output(path)
    key = "labels" if rows and "labels" in rows[0] else "score" if rows and "score" in rows[0] else "label"
    shown = {"labels": lambda r: ",".join(r["labels"]), "score": lambda r: repr(r["score"]),
             "label": lambda r: r["label"]}[key]
    probabilities = label_names if rows and "probabilities" in rows[0] else []
    if path.suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    elif path.suffix == ".txt":
        text = "".join(shown(r) + "\n" for r in rows)
    else:
        pair = ["text_pair"] if rows and "text_pair" in rows[0] else []
        table = [["text", *pair, key, *(f"p_{n}" for n in probabilities)]]
        table += [[r["text"], *(r[c] for c in pair), shown(r),
                   *(f"{r['probabilities'][n]:.6f}" for n in probabilities)] for r in rows]
        text = _tsv(table) if path.suffix == ".tsv" else _csv(table)
    atomic_write_text(path, text)


def _csv(table: list[list[str]]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(table)
    return buf.getvalue()


def _tsv(table: list[list[str]]) -> str:
    """TSV as GLUE writes it and `read_table` reads it: no quoting, so a tab or line break inside a text becomes
    a space."""
    return "".join("\t".join(re.sub(r"[\t\r\n]", " ", cell) for cell in row) + "\n" for row in table)

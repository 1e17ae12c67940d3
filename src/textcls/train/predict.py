"""Using a trained classifier: load it with its tokenizer and settings, and predict labels for new texts.

Texts are tokenized exactly as in training (the TokenizeConfig saved in textcls.json), run in batches sorted by
length (least padding), and returned in the input order.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import torch

from textcls.config import TokenizeConfig, section_from_dict
from textcls.errors import TextclsError
from textcls.io import atomic_write_text

if TYPE_CHECKING:
    from textcls.data.tokenize import ExampleEncoder

log = logging.getLogger("textcls")

INPUT_FORMATS = (".txt", ".csv", ".tsv", ".jsonl", ".parquet")
OUTPUT_FORMATS = (".csv", ".tsv", ".jsonl", ".txt")


@dataclass
class TrainedModel:
    model: torch.nn.Module
    tokenizer: object
    label_names: list[str]
    tokenize_cfg: TokenizeConfig
    folder: Path
    _encoders: dict = field(default_factory=dict, repr=False)

    def encoder(self, pair: bool) -> "ExampleEncoder":
        """The ExampleEncoder for single texts or pairs, made once: texts are tokenized as in training."""
        from textcls.data.tokenize import ExampleEncoder

        if pair not in self._encoders:
            self._encoders[pair] = ExampleEncoder(self.tokenizer, self.tokenize_cfg, pair)
        return self._encoders[pair]


def model_folder(path: Path) -> Path:
    """A run directory's exported model, or the folder itself; either must hold weights."""
    from textcls.hub import WEIGHT_FILES
    from textcls.train.rundir import MODEL, is_run_dir

    if not path.exists():
        raise TextclsError(f"model {str(path)!r} does not exist; give a run directory or an exported model folder")
    if is_run_dir(path):
        if not (path / MODEL).is_dir():
            raise TextclsError(f"run {str(path)!r} has no exported model yet (it did not finish); resume it with "
                               f"`textcls train --resume {path}`")
        path = path / MODEL
    if path.is_dir() and not any((path / name).is_file() for name in WEIGHT_FILES):
        raise TextclsError(f"model folder {str(path)!r} has no weights ({' or '.join(WEIGHT_FILES)}); give a run "
                           f"directory, or a folder written by `textcls train` or by transformers' save_pretrained")
    return path


def load_trained(path: Path, tokenizer: Optional[str] = None, device: Optional[torch.device] = None) -> TrainedModel:
    """A classifier folder (a textcls run or its exported model, or a transformers BERT classifier) ready for
    inference, with its own tokenizer unless `tokenizer` names another (for a folder saved without one)."""
    from textcls.data.tokenize import has_tokenizer, load_tokenizer
    from textcls.model import load_classifier
    from textcls.model.hf import TEXTCLS_JSON, read_json

    folder = model_folder(Path(path))
    if tokenizer is None and not has_tokenizer(folder):
        raise TextclsError(f"model folder {str(folder)!r} holds no tokenizer (tokenizer.json or vocab.txt); give the "
                           f"one it was trained with, e.g. --tokenizer minilm-l6 (the bert-* presets' vocabulary)")
    model, label_names, _ = load_classifier(folder)
    saved = read_json(folder / TEXTCLS_JSON).get("tokenize") if (folder / TEXTCLS_JSON).is_file() else None
    if saved:
        tokenize_cfg = section_from_dict(TokenizeConfig, saved, "tokenize")
    else:  # a transformers folder: texts are cut to what the model can see, from the head, as transformers does
        tokenize_cfg = TokenizeConfig(max_length=model.encoder.config.max_positions)
    # The machine that trained the model kept its tokenized data there; here the default cache is the place.
    tokenize_cfg.cache_dir, tokenize_cfg.num_proc = None, 1
    model.to(device or torch.device("cuda" if torch.cuda.is_available() else "cpu")).eval()
    return TrainedModel(model, load_tokenizer(tokenizer or str(folder)), label_names, tokenize_cfg, folder)


def _check_texts(texts: Sequence[str], pairs: Optional[Sequence[str]]) -> None:
    if not texts:
        raise TextclsError("nothing to predict: give one or more texts")
    if pairs is not None and len(pairs) != len(texts):
        raise TextclsError(f"{len(texts)} texts but {len(pairs)} second texts; give one --text-pair per text")


@torch.inference_mode()
def predict_probabilities(trained: TrainedModel, texts: Sequence[str], pairs: Optional[Sequence[str]] = None,
                          batch_size: int = 64) -> torch.Tensor:
    """Class probabilities (N, num_labels) for `texts` (and their `pairs`), in the input order."""
    from textcls.data.batching import Collator, restore_order, sorted_batches

    if batch_size < 1:
        raise TextclsError(f"--batch-size must be at least 1, got {batch_size}")
    _check_texts(texts, pairs)
    encoded = trained.encoder(pair=pairs is not None)(texts, pairs)
    rows = [{"input_ids": ids, "token_type_ids": types}
            for ids, types in zip(encoded["input_ids"], encoded["token_type_ids"])]
    collate = Collator(trained.tokenizer.pad_token_id, pad_to_multiple_of=trained.model.encoder.pad_to_multiple_of)
    batches = sorted_batches(encoded["length"], batch_size)
    device = next(trained.model.parameters()).device
    probs = []
    for batch in batches:
        inputs = {k: v.to(device) for k, v in collate([rows[i] for i in batch]).items()}  # (b, T) each
        probs.append(trained.model(**inputs).logits.float().softmax(-1).cpu())  # (b, num_labels)
    return restore_order(batches, torch.cat(probs))


def prediction_rows(texts: Sequence[str], pairs: Optional[Sequence[str]], probs: torch.Tensor,
                    label_names: list[str]) -> list[dict]:
    """One dict per text: text, [text_pair,] label (the most probable) and probabilities {label: p}."""
    best = probs.argmax(-1).tolist()
    out = []
    for i, p in enumerate(probs.tolist()):
        row = {"text": texts[i]} | ({"text_pair": pairs[i]} if pairs is not None else {})
        out.append(row | {"label": label_names[best[i]], "probabilities": dict(zip(label_names, p))})
    return out


def predict_texts(model_path: Path, texts: Sequence[str], pairs: Optional[Sequence[str]] = None,
                  batch_size: int = 64, output: Optional[Path] = None, tokenizer: Optional[str] = None) -> list[dict]:
    """Label and probabilities for each text (or pair), in order; also written to `output` when given. Every
    check on the arguments comes before the model is loaded."""
    _check_texts(texts, pairs)
    if output is not None:
        check_output(output)
    trained = load_trained(model_path, tokenizer)
    rows = prediction_rows(texts, pairs, predict_probabilities(trained, texts, pairs, batch_size),
                           trained.label_names)
    if output is not None:
        write_predictions(rows, output, trained.label_names)
    return rows


def predict_files(model_path: Path, input_path: Path, output: Optional[Path] = None,
                  text_column: Optional[str] = None, text_pair_column: Optional[str] = None,
                  batch_size: int = 64, tokenizer: Optional[str] = None) -> list[dict]:
    """Predict for every text of a .txt (one per line), .csv, .tsv, .jsonl or .parquet file."""
    if output is not None:
        check_output(output)
        if output.resolve() == input_path.resolve():
            raise TextclsError(f"--output {str(output)!r} is the --input file; write the predictions elsewhere")
    texts, pairs = read_inputs(input_path, text_column, text_pair_column)
    return predict_texts(model_path, texts, pairs, batch_size, output, tokenizer)


# --------------------------------------------------------------------------------------------- input files

def read_inputs(path: Path, text_column: Optional[str] = None,
                text_pair_column: Optional[str] = None) -> tuple[list[str], Optional[list[str]]]:
    """Texts (and second texts) from an input file. Blank lines of a .txt file are skipped; in a table the text
    column is detected as in `load_data` (pairs first) unless named, and an empty text is an error."""
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
        texts, pairs = _read_lines(path), None
    else:
        texts, pairs = _read_columns(path, text_column, text_pair_column)
    if not texts:
        raise TextclsError(f"input file {str(path)!r} is empty: it holds no text to predict")
    return texts, pairs


def _read_lines(path: Path) -> list[str]:
    try:  # split on line feeds only: splitlines() would also cut a text at a form feed or U+2028
        lines = [line.removesuffix("\r") for line in path.read_text(encoding="utf-8").split("\n")]
    except UnicodeDecodeError as e:
        raise TextclsError(f"input file {str(path)!r} is not valid UTF-8 ({e.reason} at byte {e.start})") from None
    texts = [line for line in lines if line.strip()]
    blank = sum(1 for line in lines[:-1] if not line.strip())  # the last "line" is what follows the final newline
    if blank:
        log.info("%s: skipped %d blank lines", path, blank)
    return texts


def _read_columns(path: Path, text_column: Optional[str],
                  text_pair_column: Optional[str]) -> tuple[list[str], Optional[list[str]]]:
    import pyarrow as pa

    from textcls.data.readers import read_table
    from textcls.data.sources import PAIR_COLUMNS, TEXT_COLUMNS

    table = read_table(path, "utf-8") if path.stat().st_size else None
    if table is None or table.num_rows == 0:
        raise TextclsError(f"input file {str(path)!r} is empty: it has no rows")
    have = table.column_names
    if text_column is None:
        pair = next(((a, b) for a, b in PAIR_COLUMNS if a in have and b in have and text_pair_column in (None, b)),
                    None)
        text_column, text_pair_column = pair or (next((c for c in TEXT_COLUMNS if c in have), None), text_pair_column)
        if text_column is None:
            raise TextclsError(f"input file {str(path)!r} has none of the usual text columns "
                               f"({', '.join(TEXT_COLUMNS)}); its columns are: {', '.join(have)}; name one with "
                               f"--text-column")
    columns = {}
    for name, flag in ((text_column, "--text-column"), (text_pair_column, "--text-pair-column")):
        if name is None:
            continue
        if name not in have:
            raise TextclsError(f"column {name!r} ({flag}) is not in {str(path)!r}; its columns are: "
                               f"{', '.join(have)}")
        values = table[name].cast(pa.string()).to_pylist()  # numbers read as text, not as missing
        empty = [i for i, t in enumerate(values) if t is None or not t.strip()]
        if empty:
            raise TextclsError(f"{len(empty)} rows of {str(path)!r} have an empty text in column {name!r} (first: "
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
    Written beside and renamed, so a failure leaves no half file."""
    check_output(path)
    if path.suffix == ".jsonl":
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    elif path.suffix == ".txt":
        text = "".join(r["label"] + "\n" for r in rows)
    else:
        pair = ["text_pair"] if rows and "text_pair" in rows[0] else []
        table = [["text", *pair, "label", *(f"p_{n}" for n in label_names)]]
        table += [[r["text"], *(r[c] for c in pair), r["label"],
                   *(f"{r['probabilities'][n]:.6f}" for n in label_names)] for r in rows]
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

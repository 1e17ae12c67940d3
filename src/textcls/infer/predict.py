"""`textcls predict`: labels and probabilities for new texts, from arguments or files.

Texts are tokenized exactly as in training (the TokenizeConfig saved in textcls.json), run in batches sorted by
length (least padding), and returned in the input order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from textcls.data.files import check_output, read_inputs, write_predictions
from textcls.data.sources import is_blank
from textcls.errors import TextclsError
from textcls.infer.model import TrainedModel, load_trained, process_rank


def _check_texts(texts: Sequence[str], pairs: Optional[Sequence[str]]) -> None:
    if not texts:
        raise TextclsError("nothing to predict: give one or more texts")
    if pairs is not None and len(pairs) != len(texts):
        raise TextclsError(f"{len(texts)} texts but {len(pairs)} second texts; give one --text-pair per text")
    blank = [i for i, t in enumerate(texts) if is_blank(t)] + [i for i, t in enumerate(pairs or []) if is_blank(t)]
    if blank:
        raise TextclsError(f"text {blank[0] + 1} has nothing to read (it is empty, or only spaces and invisible "
                           f"characters); give a text")


def predict_probabilities(trained: TrainedModel, texts: Sequence[str], pairs: Optional[Sequence[str]] = None,
                          batch_size: int = 64) -> torch.Tensor:
    """Class probabilities (N, num_labels) for `texts` (and their `pairs`), in the input order (multi-label: each
    label's own probability; regression: the predicted values, (N, 1))."""
    _check_texts(texts, pairs)
    return trained.scores(trained.logits(texts, pairs, batch_size))


def prediction_rows(texts: Sequence[str], pairs: Optional[Sequence[str]], probs: torch.Tensor,
                    label_names: list[str], problem_type: str = "single-label",
                    thresholds: Optional[Sequence[float]] = None) -> list[dict]:
    """One dict per text: text, [text_pair,] label (the most probable) and probabilities {label: p}. Multi-label:
    labels {label: p} (every label above its threshold, the most probable first) and probabilities; regression:
    score (the predicted value)."""
    limits = [0.5] * len(label_names) if thresholds is None else list(thresholds)
    best = probs.argmax(-1).tolist()
    out = []
    for i, p in enumerate(probs.tolist()):
        row = {"text": texts[i]} | ({"text_pair": pairs[i]} if pairs is not None else {})
        if problem_type == "regression":
            row["score"] = p[0]
        elif problem_type == "multi-label":
            above = sorted(((n, q) for n, q, t in zip(label_names, p, limits) if q > t), key=lambda x: -x[1])
            row |= {"labels": dict(above), "probabilities": dict(zip(label_names, p))}
        else:
            row |= {"label": label_names[best[i]], "probabilities": dict(zip(label_names, p))}
        out.append(row)
    return out


def load_backend(model_path: Path, backend: str = "torch", tokenizer: Optional[str] = None,
                 attention: Optional[str] = None, attention_overrides: Optional[dict] = None,
                 precision: str = "auto") -> TrainedModel:
    """The model as `backend` runs it: "torch" loads it with load_trained (and these settings); "onnx" runs an ONNX
    export folder (`textcls export MODEL --format onnx`) in ONNX Runtime, as it was exported."""
    from textcls.infer.onnx import BACKENDS, load_onnx

    if backend not in BACKENDS:
        raise TextclsError(f"--backend {backend!r} is not one of: {', '.join(BACKENDS)}")
    if backend == "torch":
        return load_trained(model_path, tokenizer, attention=attention, attention_overrides=attention_overrides,
                            precision=precision)
    if attention or attention_overrides:
        raise TextclsError("--attention and its options go with --backend torch: an ONNX export runs the attention "
                           "it was exported with (export again with --attention to change it)")
    if precision == "bf16":
        raise TextclsError("--mixed-precision bf16 goes with --backend torch: an ONNX export runs in fp32, or with "
                           "the int8 weights it was exported with")
    return load_onnx(model_path, tokenizer)


def predict_texts(model_path: Path, texts: Sequence[str], pairs: Optional[Sequence[str]] = None,
                  batch_size: int = 64, output: Optional[Path] = None, tokenizer: Optional[str] = None,
                  attention: Optional[str] = None, attention_overrides: Optional[dict] = None,
                  precision: str = "auto", backend: str = "torch", threshold: Optional[float] = None) -> list[dict]:
    """Label and probabilities for each text (or pair), in order; also written to `output` when given. Every
    check on the arguments comes before the model is loaded. `precision`: as load_trained's; `backend`: as
    load_backend's. Under several processes (an initialised process group) every process must call it: each runs a
    share of the batches and gets all the rows; the main process alone writes `output`."""
    _check_texts(texts, pairs)
    if output is not None:
        check_output(output)
    trained = load_backend(model_path, backend, tokenizer, attention, attention_overrides,
                           precision).with_threshold(threshold)
    rows = prediction_rows(texts, pairs, predict_probabilities(trained, texts, pairs, batch_size),
                           trained.label_names, trained.problem_type, trained.thresholds)
    if output is not None and process_rank()[0] == 0:
        write_predictions(rows, output, trained.label_names)
    return rows


def predict_files(model_path: Path, input_path: Path, output: Optional[Path] = None,
                  text_column: Optional[str] = None, text_pair_column: Optional[str] = None,
                  batch_size: int = 64, tokenizer: Optional[str] = None,
                  attention: Optional[str] = None, attention_overrides: Optional[dict] = None,
                  encoding: str = "utf-8", precision: str = "auto", backend: str = "torch",
                  threshold: Optional[float] = None, text_separator: str = " ") -> list[dict]:
    """Predict for every text of a .txt (one per line), .csv, .tsv, .jsonl or .parquet file (text files in
    `encoding`); several text columns ("title,text") are joined with `text_separator`."""
    if output is not None:
        check_output(output)
        if output.resolve() == input_path.resolve():
            raise TextclsError(f"--output {str(output)!r} is the --input file; write the predictions elsewhere")
    texts, pairs = read_inputs(input_path, text_column, text_pair_column, encoding, text_separator)
    return predict_texts(model_path, texts, pairs, batch_size, output, tokenizer, attention, attention_overrides,
                         precision, backend, threshold)

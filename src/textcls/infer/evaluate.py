"""`textcls evaluate`: the metrics of a trained classifier on a labelled split of any data source."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from textcls.config import DataConfig
from textcls.errors import TextclsError

log = logging.getLogger("textcls")


def model_label_ids(data_labels: list[str], model_labels: list[str], data: str) -> np.ndarray:
    """For each label id of the data, the model's output id. Labels are matched by name. A model whose labels
    are transformers' defaults (LABEL_0, LABEL_1, ...) has no names to match: the data's ids are taken as they are."""
    from textcls.model.hf import has_label_names

    if not has_label_names(model_labels):
        if len(data_labels) > len(model_labels):
            raise TextclsError(f"{data!r} has {len(data_labels)} labels ({', '.join(data_labels)}) but the model has "
                               f"{len(model_labels)} outputs")
        log.info("the model's labels are unnamed (%s): data label %s is output %s", ", ".join(model_labels),
                 ", ".join(f"{n!r}" for n in data_labels), ", ".join(map(str, range(len(data_labels)))))
        return np.arange(len(data_labels))
    unknown = [n for n in data_labels if n not in model_labels]
    if unknown:
        hint = (f"the data stores its labels as numbers: name them in the model's order with --label-names "
                f"{' '.join(model_labels)}" if all(n.isdigit() for n in data_labels) else
                "evaluate the model on data with its labels")
        raise TextclsError(f"labels {', '.join(map(repr, unknown))} of {data!r} are not among the model's labels "
                           f"({', '.join(model_labels)}); {hint}")
    return np.array([model_labels.index(n) for n in data_labels])


def evaluate_model(model_path: Path, data_cfg: DataConfig, split: str = "test", batch_size: int = 64,
                   tokenizer: Optional[str] = None, cache_dir: Optional[str] = None,
                   attention: Optional[str] = None, attention_overrides: Optional[dict] = None,
                   precision: str = "auto", threshold: Optional[float] = None) -> dict:
    """Accuracy, macro-F1, per-class precision/recall, confusion matrix, loss and examples/s of the model at
    `model_path` (a run directory or a model folder) on `split` of `data_cfg.data`, tokenized as in training
    (with `attention`, another mechanism or other options). Carved splits (validation; test of per-class files) are
    those of training when the data flags are the same. The tokenized split is cached in `cache_dir` (default:
    ~/.cache/textcls): the same rows as training's, so a run's own test split is found there. `precision`: as
    load_trained's (the result says which was used). Under several processes (an initialised process group) every
    process must call it: each runs a share of the batches, and each gets the metrics of the whole split.
    A multi-label model: micro/macro-F1, exact match and per-label figures at its saved thresholds (or
    `threshold`); a regression: Pearson, Spearman and MSE (`textcls.metrics.problem_metrics`)."""
    import dataclasses

    from datasets import DatasetDict

    from textcls.data.batching import lengths_of
    from textcls.data.sources import is_labelled, label_names, load_data, multi_hot, problem_type
    from textcls.data.tokenize import tokenize_data
    from textcls.infer.model import document_labels, load_trained, main_process_first, process_rank
    from textcls.metrics import problem_metrics

    trained = load_trained(model_path, tokenizer, attention=attention, attention_overrides=attention_overrides,
                           precision=precision).with_threshold(threshold)
    dsd = load_data(data_cfg)
    problem = trained.problem_type
    if problem_type(dsd) != problem:
        if data_cfg.problem is not None:
            raise TextclsError(f"the model is {problem} but --problem {data_cfg.problem} was given for "
                               f"{data_cfg.data!r}; evaluate it on {problem} data")
        dsd = load_data(dataclasses.replace(data_cfg, problem=problem))  # integer scores of a regression, say
    if split not in dsd:
        raise TextclsError(f"{data_cfg.data!r} has no split {split!r}; it has: {', '.join(dsd)}")
    trained.check_data(pairs="text_pair" in dsd[split].column_names)
    to_model = (np.zeros(1, dtype=np.int64) if problem == "regression" else
                model_label_ids(label_names(dsd), trained.label_names, data_cfg.data))
    if len(dsd[split]) and not is_labelled(dsd[split]):
        raise TextclsError(f"split {split!r} of {data_cfg.data!r} has rows without a label; evaluate needs labels "
                           f"(use `textcls predict` for unlabelled texts)")
    tokenize_cfg = dataclasses.replace(trained.tokenize_cfg, cache_dir=cache_dir)
    with main_process_first():  # under several processes the main one tokenizes; the others find its cache
        tokenized = tokenize_data(DatasetDict({split: dsd[split]}), trained.tokenizer, tokenize_cfg)[split]
    if process_rank()[1] > 1:
        torch.distributed.barrier()  # the clock starts when all are ready: examples/s is all examples over wall time
    start = time.perf_counter()
    logits = trained.forward(tokenized, lengths_of(tokenized), batch_size)  # (documents, num_labels)
    seconds = time.perf_counter() - start
    columns = tokenized.with_format("numpy")
    doc_ids = columns["doc_id"][:] if "doc_id" in tokenized.column_names else None
    if problem == "multi-label":  # each row's label ids → a 0/1 row over the model's outputs
        rows = [to_model[ids] for ids in tokenized.with_format("arrow")["label"].to_pylist()]
        labels = document_labels(multi_hot(rows, len(trained.label_names)), doc_ids)  # (docs, L)
    elif problem == "regression":
        labels = document_labels(columns["label"][:].astype(np.float32), doc_ids)
    else:
        labels = to_model[document_labels(columns["label"][:], doc_ids)]
    metrics = problem_metrics(problem, logits, torch.from_numpy(labels), trained.label_names, trained.thresholds)
    metrics["examples_per_s"] = metrics["examples"] / seconds if seconds else None
    return {"model": str(trained.folder), "data": data_cfg.data, "split": split,
            "precision": "bf16" if trained.precision == "bf16" else "fp32", **metrics}

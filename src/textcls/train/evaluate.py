"""`textcls evaluate`: the metrics of a trained classifier on a labelled split of any data source."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from textcls.config import DataConfig, TrainConfig
from textcls.errors import TextclsError

log = logging.getLogger("textcls")


def model_label_ids(data_labels: list[str], model_labels: list[str], data: str) -> np.ndarray:
    """For each label id of the data, the model's output id. Labels are matched by name. A model whose labels
    are transformers' defaults (LABEL_0, LABEL_1, ...) has no names to match: the data's ids are taken as they are."""
    if model_labels == [f"LABEL_{i}" for i in range(len(model_labels))]:
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
                   tokenizer: Optional[str] = None, cache_dir: Optional[str] = None) -> dict:
    """Accuracy, macro-F1, per-class precision/recall, confusion matrix, loss and examples/s of the model at
    `model_path` (a run directory or a model folder) on `split` of `data_cfg.data`, tokenized as in training.
    Carved splits (validation; test of per-class files) are those of training when the data flags are the same.
    The tokenized split is cached in `cache_dir` (default: ~/.cache/textcls)."""
    from datasets import DatasetDict

    from textcls.data.batching import Collator, make_dataloader
    from textcls.data.sources import label_names, load_data
    from textcls.data.tokenize import tokenize_data
    from textcls.train.loop import evaluate_loader, make_accelerator
    from textcls.train.predict import load_trained

    if batch_size < 1:
        raise TextclsError(f"--batch-size must be at least 1, got {batch_size}")
    trained = load_trained(model_path, tokenizer)
    dsd = load_data(data_cfg)
    if split not in dsd:
        raise TextclsError(f"{data_cfg.data!r} has no split {split!r}; it has: {', '.join(dsd)}")
    to_model = model_label_ids(label_names(dsd), trained.label_names, data_cfg.data)
    labels = np.asarray(dsd[split].with_format("numpy")["label"][:])
    if (labels < 0).any():
        raise TextclsError(f"split {split!r} of {data_cfg.data!r} has rows without a label; evaluate needs labels "
                           f"(use `textcls predict` for unlabelled texts)")
    ds = dsd[split].remove_columns("label").add_column("label", to_model[labels])
    tokenize_cfg = dataclasses.replace(trained.tokenize_cfg, cache_dir=cache_dir)
    tokenized = tokenize_data(DatasetDict({split: ds}), trained.tokenizer, tokenize_cfg)[split]
    collator = Collator(trained.tokenizer.pad_token_id, pad_to_multiple_of=trained.model.encoder.pad_to_multiple_of)
    # In full precision, whatever an earlier run in this process used: the metrics of the weights as they are.
    accelerator = make_accelerator(TrainConfig(mixed_precision="no"), trained.folder)
    loader = accelerator.prepare(make_dataloader(tokenized, batch_size, collator, shuffle=False, group_by_length=True))
    metrics = evaluate_loader(accelerator, accelerator.prepare(trained.model), loader, trained.label_names)
    return {"model": str(trained.folder), "data": data_cfg.data, "split": split, **metrics}

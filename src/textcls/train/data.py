"""The data side of a run: read the source, tokenize it (cached), and hand out batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textcls.config import RunConfig, TokenizeConfig
from textcls.errors import TextclsError
from textcls.data.batching import Collator, make_dataloader
from textcls.data.sources import is_labelled, label_names, load_data, problem_type
from textcls.data.tokenize import tokenize_data, tokenizer_for_run

if TYPE_CHECKING:
    import torch
    from datasets import DatasetDict
    from torch.utils.data import DataLoader
    from transformers import PreTrainedTokenizerFast


@dataclass
class PreparedData:
    tokenized: "DatasetDict"
    tokenizer: "PreTrainedTokenizerFast"
    label_names: list[str]
    tokenize_cfg: TokenizeConfig
    num_workers: int = 0
    problem_type: str = "single-label"  # or multi-label, regression (textcls.data.sources.problem_type)

    def collator(self, model: "torch.nn.Module"):
        """The collator of `model`'s batches (padded as its attention mechanism needs)."""
        return Collator.for_model(self.tokenize_cfg, self.tokenizer, model)

    def labelled_splits(self) -> list[str]:
        """Splits with a label on every row (validation and test usually; not unsupervised)."""
        return [s for s, ds in self.tokenized.items() if s != "train" and is_labelled(ds)]

    def class_weights(self, spec: str) -> list[float]:
        """The weight of each class in the training loss for --class-weights `spec`: "balanced" gives each class
        rows / (classes * its rows) of the training split (scikit-learn's rule: every class then weighs as much in
        total), a JSON file gives {label name: weight}."""
        if spec == "balanced":
            import numpy as np

            train = self.tokenized["train"].with_format("arrow")
            labels = train["label"].to_numpy()
            if "doc_id" in train.column_names:  # chunks: count documents, not windows
                labels = labels[np.unique(train["doc_id"].to_numpy(), return_index=True)[1]]
            counts = np.bincount(labels[labels >= 0], minlength=len(self.label_names))
            empty = [n for n, c in zip(self.label_names, counts) if c == 0]
            if empty:
                raise TextclsError(f"--class-weights balanced: no training rows of {', '.join(empty)}, so no weight "
                                   f"can balance them; give the weights in a file")
            return [float(counts.sum() / (len(counts) * c)) for c in counts]
        return read_class_weights(spec, self.label_names)

    def train_loader(self, batch_size: int, seed: int, group_by_length: bool, collator) -> "DataLoader":
        """Shuffled (and length-grouped) training batches of `batch_size` examples, in an order fixed by (seed, epoch).
        Under several processes `batch_size` is the global batch: accelerate gives each process its slice. Windows
        of chunked documents train as examples of their own, with their document's label."""
        train = self.tokenized["train"]
        if "doc_id" in train.column_names:
            train = train.remove_columns("doc_id")
        return make_dataloader(train, batch_size, collator, shuffle=True, group_by_length=group_by_length, seed=seed,
                               num_workers=self.num_workers)

    def eval_loader(self, split: str, batch_size: int, collator) -> "DataLoader":
        """Length-sorted batches (the least padding; metrics do not depend on the order), global as in training."""
        return make_dataloader(self.tokenized[split], batch_size, collator, shuffle=False, group_by_length=True,
                               num_workers=self.num_workers)


def prepare_training_data(cfg: RunConfig) -> PreparedData:
    """load_data + the model's (or --tokenizer's, or one learnt from train and unsupervised: wordpiece:N)
    tokenizer + cached tokenize_data."""
    from textcls.model.attention import attention_class

    dsd = load_data(cfg.data)
    # Options that depend on the data (sliding attention's global first segment needs pairs): before tokenizing.
    attention_class(cfg.model.attention)[0].check_data(cfg.attention, pairs="text_pair" in dsd["train"].column_names)
    tokenizer = tokenizer_for_run(cfg.tokenize, cfg.model, {s: dsd[s] for s in ("train", "unsupervised") if s in dsd})
    if "unsupervised" in dsd:  # fine-tuning has no use for unlabelled rows: don't tokenize them
        del dsd["unsupervised"]
    return PreparedData(tokenize_data(dsd, tokenizer, cfg.tokenize), tokenizer, label_names(dsd), cfg.tokenize,
                        num_workers=cfg.train.num_workers, problem_type=problem_type(dsd))


def read_class_weights(path: str, label_names: list[str]) -> list[float]:
    """Weights in label order from a JSON file {label name: weight}: every label once, each weight above 0."""
    from pathlib import Path

    from textcls.model.hf import read_json

    weights = read_json(Path(path))
    if not isinstance(weights, dict):
        raise TextclsError(f"--class-weights {path}: expected a JSON object mapping label names to weights, e.g. "
                           f"{{{', '.join(f'{n!r}: 1.0' for n in label_names)}}}".replace("'", '"'))
    unknown, missing = set(weights) - set(label_names), [n for n in label_names if n not in weights]
    if unknown or missing:
        raise TextclsError(f"--class-weights {path}: " + "; ".join(
            part for part in (f"unknown labels {', '.join(sorted(unknown))}" if unknown else "",
                              f"no weight for {', '.join(missing)}" if missing else "") if part)
            + f" (the labels are {', '.join(label_names)})")
    bad = {n: w for n, w in weights.items() if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0}
    if bad:
        raise TextclsError(f"--class-weights {path}: weights must be numbers above 0, got "
                           f"{', '.join(f'{n}: {w!r}' for n, w in bad.items())}")
    return [float(weights[n]) for n in label_names]

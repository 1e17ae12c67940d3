"""The data side of a run: read the source, tokenize it (cached), and hand out batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from textcls.config import RunConfig, TokenizeConfig
from textcls.data.batching import Collator, make_dataloader
from textcls.data.sources import label_names, load_data
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

    def collator(self, model: "torch.nn.Module"):
        """The collator of `model`'s batches (padded as its attention mechanism needs)."""
        return Collator.for_model(self.tokenize_cfg, self.tokenizer, model)

    def labelled_splits(self) -> list[str]:
        """Splits with a label on every row (validation and test usually; not unsupervised)."""
        return [s for s, ds in self.tokenized.items()
                if s != "train" and "label" in ds.column_names and len(ds) and min(ds["label"]) >= 0]

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
                        num_workers=cfg.train.num_workers)

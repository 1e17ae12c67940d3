"""Masked-language-model pretraining: the fine-tuning loop (loop.py) with a masked LM instead of a classifier.

An encoder trained from scratch on 25k labelled reviews overfits; BERT's own objective on the task's texts first
(train and unlabelled splits, never test: "don't stop pretraining", Gururangan et al. 2020) gives the classifier an
encoder that already knows the domain's language. Any encoder preset or folder, random or pretrained, on the texts of
any data source; pairs are pretrained as pairs ([CLS] a [SEP] b [SEP]).

The run directory is a training run's (config.json, metrics.jsonl, checkpoints, plots, summary.json, --resume); its
model/ is a transformers BertForMaskedLM folder with the tokenizer, for `textcls train --model RUN/model`.
Evaluation is the MLM loss on the validation split's texts, which also picks the best checkpoint.

Masks are BERT's (Devlin et al. 2019): --mlm-probability of the tokens, special tokens and padding never; of those,
80% [MASK], 10% a random token, 10% unchanged (transformers' DataCollatorForLanguageModeling draws them). Each
batch's masks are drawn from a seed made of the run's seed and the batch's tokens, not from the global RNG: the
DataLoader collates a batch ahead of the step, so a global draw would tie the masks to when batches were fetched, and
a resumed run would mask differently from an uninterrupted one. A text gets new masks every epoch (it lands in
another batch), and the validation texts the same masks at every evaluation, so their losses compare.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import torch
import torch.nn.functional as F

from textcls.config import PRETRAIN_FIXED, RunConfig
from textcls.data.batching import Collator
from textcls.data.sources import load_data
from textcls.data.tokenize import tokenize_data, tokenizer_for_run
from textcls.errors import TextclsError
from textcls.model import LoadReport, build_masked_lm, save_masked_lm
from textcls.train.data import PreparedData
from textcls.train.loop import Trainer, run_recipe

if TYPE_CHECKING:
    from datasets import DatasetDict
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger("textcls")

HELD_OUT = ("validation", "test")  # never pretrained on unless named: validation measures, test is the final exam


# ------------------------------------------------------------------------------------------------- masking

class MaskingCollator:
    """Tokenized rows → a padded batch (`Collator`: input_ids, token_type_ids, attention_mask) with BERT's masks:
    input_ids masked, labels (B, T) = the original token where a prediction is due, -100 everywhere else."""

    def __init__(self, collator: Collator, tokenizer: "PreTrainedTokenizerFast", mlm_probability: float, seed: int):
        from transformers import DataCollatorForLanguageModeling

        if tokenizer.mask_token is None:
            raise TextclsError(f"tokenizer {tokenizer.name_or_path!r} has no mask token; masked-LM pretraining "
                               f"needs a BERT-style tokenizer with [MASK]")
        self.collator = collator
        self.masker = DataCollatorForLanguageModeling(tokenizer, mlm_probability=mlm_probability)
        self.special_ids = torch.tensor(tokenizer.all_special_ids)  # [CLS], [SEP], [PAD], [UNK], [MASK]
        self.seed = seed

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(rows)
        ids = batch["input_ids"]  # (B, T)
        never = torch.isin(ids, self.special_ids) | ~batch["attention_mask"].bool()  # (B, T)
        # The batch's own seed (see the module docstring); the global RNG is forked, so dropout's is untouched.
        digest = hashlib.blake2b(f"{self.seed}|".encode(), digest_size=8)
        digest.update(ids.numpy().tobytes())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int.from_bytes(digest.digest(), "little"))
            batch["input_ids"], batch["labels"] = self.masker.torch_mask_tokens(ids, special_tokens_mask=never)
        return batch


# ------------------------------------------------------------------------------------------------- data

@dataclass
class PretrainingData(PreparedData):
    """Tokenized texts without labels: "train" (the pretraining splits, concatenated) and "validation"."""
    mlm_probability: float = 0.15
    seed: int = 0

    def collator(self, model: torch.nn.Module) -> MaskingCollator:
        return MaskingCollator(super().collator(model), self.tokenizer, self.mlm_probability, self.seed)


def pretraining_splits(dsd: "DatasetDict", wanted: Optional[list[str]], data: str) -> list[str]:
    """The splits whose texts are pretrained on: `wanted`, else every split but validation and test."""
    if wanted is None:
        return [s for s in dsd if s not in HELD_OUT]
    if not wanted:
        raise TextclsError(f"no texts to pretrain on: the list of splits is empty; name some with --splits (the "
                           f"splits of {data!r} are: {', '.join(dsd)})")
    unknown = [s for s in wanted if s not in dsd]
    if unknown:
        raise TextclsError(f"--splits {' '.join(unknown)}: {data!r} has no such split; its splits are: "
                           f"{', '.join(dsd)}")
    for split in (s for s in HELD_OUT if s in wanted):
        log.warning("pretraining on the %s texts: a model evaluated on them later has seen them", split)
    return list(dict.fromkeys(wanted))  # each split once


def prepare_pretraining_data(cfg: RunConfig) -> PretrainingData:
    """load_data, then the chosen splits' texts (cached tokenize_data, labels dropped) as one training set, and the
    validation texts when the run evaluates."""
    from datasets import DatasetDict, concatenate_datasets

    dsd = load_data(cfg.data)
    splits = pretraining_splits(dsd, cfg.pretrain.splits, cfg.data.data)
    evaluates = cfg.train.eval_strategy != "no"
    if evaluates and "validation" not in dsd:
        raise TextclsError(f"{cfg.data.data!r} has no validation split to measure the MLM loss on; set "
                           f"--validation-fraction above 0 to carve one from train, or --eval-strategy no")
    tokenizer = tokenizer_for_run(cfg.tokenize, cfg.model, {s: dsd[s] for s in splits})
    needed = [s for s in dsd if s in splits or (evaluates and s == "validation")]
    tokenized = tokenize_data(DatasetDict({s: dsd[s] for s in needed}), tokenizer, cfg.tokenize)
    # Labels are not needed, nor which document a window of a chunked text comes from.
    texts = {s: tokenized[s].remove_columns([c for c in ("label", "doc_id") if c in tokenized[s].column_names])
             for s in needed}
    train = concatenate_datasets([texts[s] for s in splits])  # load_data leaves no split empty
    log.info("pretraining on %d texts (%s)%s", len(train), ", ".join(f"{s} {len(texts[s]):,}" for s in splits),
             f"; MLM loss on validation ({len(texts['validation']):,})" if evaluates else "")
    out = DatasetDict({"train": train, **({"validation": texts["validation"]} if evaluates else {})})
    return PretrainingData(out, tokenizer, label_names=[], tokenize_cfg=cfg.tokenize,
                           num_workers=cfg.train.num_workers, mlm_probability=cfg.pretrain.mlm_probability,
                           seed=cfg.train.seed)


# ------------------------------------------------------------------------------------------------- evaluation

@torch.no_grad()
def mlm_metrics(accelerator, model: torch.nn.Module, loader) -> dict:
    """Mean cross-entropy over the masked tokens of `loader` (each token counts once, whatever its batch), its
    perplexity, and the counts; padding duplicates that accelerate adds under several processes are dropped."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=accelerator.device)
    masked = torch.zeros((), dtype=torch.long, device=accelerator.device)
    examples = 0
    start = time.perf_counter()
    for batch in loader:
        labels = batch["labels"]  # (B, T)
        predict = labels != -100  # (B, T)
        logits = model(**batch).logits  # (M, V): the predicted positions, row by row
        token_loss = F.cross_entropy(logits.float(), labels[predict], reduction="none")  # (M,)
        row = predict.nonzero()[:, 0]  # (M,) the example of each predicted token
        per_example = torch.zeros(len(labels), device=logits.device).index_add_(0, row, token_loss)  # (B,)
        per_example, counts = accelerator.gather_for_metrics((per_example, predict.sum(dim=1)))
        loss_sum += per_example.sum()
        masked += counts.sum()
        examples += len(counts)
    seconds = time.perf_counter() - start
    loss = (loss_sum / masked.clamp(min=1)).item()
    return {"loss": loss, "perplexity": math.exp(loss), "masked_tokens": int(masked), "examples": examples,
            "examples_per_s": examples / seconds if seconds else None}


# ------------------------------------------------------------------------------------------------- the recipe

class PretrainTrainer(Trainer):
    """The training loop of Trainer on a masked LM: the MLM loss is both the objective and the evaluation."""

    command = "pretrain"
    logged_metrics = ("loss", "perplexity")

    def prepare_data(self) -> PretrainingData:
        return prepare_pretraining_data(self.cfg)

    def build_model(self) -> tuple[torch.nn.Module, LoadReport]:
        model, report = build_masked_lm(self.cfg.model, max_length=self.cfg.tokenize.max_length,
                                        source=self.model_source, attention=self.cfg.attention)
        vocab = len(self.data.tokenizer)
        if vocab > model.encoder.config.vocab_size:
            raise TextclsError(f"tokenizer {self.data.tokenizer.name_or_path!r} has {vocab} tokens, more than the "
                               f"{model.encoder.config.vocab_size} of model {self.cfg.model.model!r}; give the "
                               f"model's own tokenizer (leave out --tokenizer) or one with its vocabulary")
        return model, report

    def make_eval_loaders(self, batch_size: int, collator) -> dict:
        if "validation" not in self.data.tokenized:  # --eval-strategy no
            return {}
        return {"validation": self.accelerator.prepare(self.data.eval_loader("validation", batch_size, collator))}

    def evaluate(self, split: str) -> dict:
        return mlm_metrics(self.accelerator, self.model, self.eval_loaders[split])

    def export(self, model: torch.nn.Module, folder: Path) -> None:
        save_masked_lm(model, folder, self.data.tokenizer, tokenize_cfg=self.cfg.tokenize)


def pretrain(cfg: RunConfig, output: Optional[Path] = None, resume: Optional[Path] = None) -> dict:
    """Pretrain `cfg.model` with masked-LM on the texts of `cfg.data` (splits: cfg.pretrain.splits) into a new run
    directory, or continue the one at `resume`, as `textcls.train.loop.train` does; returns the summary. The
    exported RUN/model is a transformers BertForMaskedLM folder. cfg's PRETRAIN_FIXED settings are replaced."""
    cfg = RunConfig.from_dict({"train": copy.deepcopy(PRETRAIN_FIXED)}, base=cfg)
    return run_recipe(PretrainTrainer, cfg, output, resume)

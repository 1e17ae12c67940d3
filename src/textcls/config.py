"""Typed configuration: one run = one `RunConfig`, saved as JSON in the run directory.

Each section is a dataclass whose fields carry their help text, their choices and their bounds (`opt(..., ge=0,
lt=1)`). Every section checks every field when it is made, whether by the CLI, from a config file or in Python, and
the error names the flag and the config key. The CLI builds its flags from these fields (`--max-length` for
`max_length`), so a setting has one name, one type, one default and one range everywhere. Flag names are unique
across sections.

The `attention` section holds the options of the chosen mechanism (`model.attention`): each mechanism declares them
in its own file (`textcls/model/attention/`), named after it (`sliding_window`, flag `--sliding-window`).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional

from textcls.errors import TextclsError

# What a label is (--problem); the names every module uses.
PROBLEM_TYPES = ("single-label", "multi-label", "regression")


def opt(default: Any, help: str, choices: tuple | None = None, metavar: str | None = None, group: str | None = None,
        ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None):
    """A config field: its default, its help line, for a closed set of values the choices, the heading it is listed
    under in --help (default: "<section> options"), and its bounds: ge/gt/le/lt as in `value >= ge`."""
    metadata = {"help": help, "choices": choices, "metavar": metavar, "group": group,
                "bounds": {k: v for k, v in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)) if v is not None}}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


# --------------------------------------------------------------------------------------------- checking a value

def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _bounds_text(bounds: dict) -> str:
    """How a value must be, in the words of the messages users already know ("at least 1", "within [0, 1)")."""
    low = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    high = ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    if low and high:
        if low[0] == "(" and high[0] == ")":
            return f"between {low[1]} and {high[1]} (exclusive)"
        return f"within {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"at least {low[1]}" if low[0] == "[" else f"above {low[1]}"
    return f"at most {high[1]}" if high[0] == "]" else f"below {high[1]}"


def _in_bounds(value: float, bounds: dict) -> bool:
    return (value >= bounds.get("ge", value) and value <= bounds.get("le", value)
            and ("gt" not in bounds or value > bounds["gt"]) and ("lt" not in bounds or value < bounds["lt"]))


def check_value(section: str, f: dataclasses.Field, tp: Any, value: Any) -> Any:
    """`value` as the field's type, within its choices and bounds, or a TextclsError that names the flag and the
    config key and quotes the value."""
    base, optional = _unwrap_optional(tp)
    where = f"{section}.{f.name}" if section else f.name
    if value is None:
        if optional:
            return None
        raise TextclsError(f"config value {where} must not be null")
    ok = True
    if base is bool:
        ok = isinstance(value, bool)
    elif base is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif base is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif base is str:
        ok = isinstance(value, str)
    elif typing.get_origin(base) is list:
        (item,) = typing.get_args(base)
        ok = isinstance(value, list) and all(isinstance(v, item) for v in value)
    elif typing.get_origin(base) is dict:
        ok = isinstance(value, dict)
    if not ok:
        name = getattr(base, "__name__", str(base))
        raise TextclsError(f"config value {where}={value!r} has the wrong type: expected {name}"
                           f"{' or null' if optional else ''}")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise TextclsError(f"config value {where}={value!r} is not one of: {', '.join(map(str, choices))}")
    bounds = f.metadata.get("bounds")
    if bounds and not _in_bounds(value, bounds):
        # A command's own settings (baseline, serve) have flags only; a run's are keys of config files too.
        key = f" ({where} in a config file)" if section in SECTIONS else ""
        raise TextclsError(f"{flag_name(f.name)} must be {_bounds_text(bounds)}, got {value}{key}")
    return value


class Section:
    """Base of the config sections (and of the attention mechanisms' options): every field is checked when a
    section is made, then `check()` looks at the settings that depend on each other."""

    section: ClassVar[str] = ""  # its key in a RunConfig

    def __post_init__(self):
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, check_value(self.section, f, hints[f.name], getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Settings that only make sense together; a TextclsError when they do not."""


# --------------------------------------------------------------------------------------------- the sections

@dataclass
class DataConfig(Section):
    section: ClassVar[str] = "data"
    data: Optional[str] = opt(None, "dataset: a folder of SPLIT.{parquet,csv,tsv,jsonl} files, one such file, an "
                                    "aclImdb folder or aclImdb_v1.tar.gz, a folder of per-class .txt files, or a hub "
                                    "name such as 'imdb' or 'glue:sst2'", metavar="SPEC")
    columns: Optional[list[str]] = opt(None, "names of the columns of CSV/TSV files that have no header row, in "
                                             "order, e.g. --columns label,title,text (AG News, DBpedia, Yelp); the "
                                             "first row is then data")
    text_column: Optional[str] = opt(None, "column with the text, or several joined by --text-separator, e.g. "
                                           "title,text (default: detect 'text', 'sentence', 'sentence1', ...)")
    text_separator: str = opt(" ", "put between the texts of the columns of --text-column (or --text-pair-column) "
                                   "when it names several", metavar="SEP")
    text_pair_column: Optional[str] = opt(None, "column with the second text of a pair (default: detect 'sentence2', "
                                                "...), or several joined, e.g. --text-pair-column title,body")
    label_column: Optional[str] = opt(None, "column with the label (default: 'label')")
    label_names: Optional[list[str]] = opt(None, "names for integer labels 0..N-1, e.g. --label-names neg pos "
                                                 "(default: the labels as they are)")
    problem: Optional[str] = opt(None, "what a label is: one class (single-label), a set of classes (multi-label: "
                                       "lists, --label-separator or --label-columns) or a number (regression); "
                                       "default: inferred from the label column (lists: multi-label, fractions: "
                                       "regression, else single-label)",
                                 choices=PROBLEM_TYPES)
    label_separator: Optional[str] = opt(None, "multi-label: the labels of a row are one string joined by SEP, e.g. "
                                               "--label-separator , for '2,17'", metavar="SEP")
    label_columns: Optional[list[str]] = opt(None, "multi-label: one 0/1 column per label, e.g. --label-columns toxic "
                                                   "obscene insult (the column names are the label names)")
    num_labels: Optional[int] = opt(None, "outputs of the model: 1 is a regression (transformers' rule); for "
                                          "classification it must be the number of labels (default: from the data)",
                                    ge=1)
    allow_empty_labels: bool = opt(False, "multi-label: a row may have no label at all (an empty list or string, "
                                          "all label columns 0); default: such a row is an error")
    validation_fraction: float = opt(0.1, "share of train carved out (stratified) as validation when the source has "
                                          "none", ge=0, lt=1)
    test_fraction: float = opt(0.2, "share of train carved out (stratified) as test when the source has none",
                               ge=0, lt=1)
    max_train_samples: Optional[int] = opt(None, "keep a stratified, seeded subset of this many train rows", ge=1)
    max_eval_samples: Optional[int] = opt(None, "keep a stratified, seeded subset of this many validation/test rows",
                                          ge=1)
    drop_empty: bool = opt(False, "drop rows whose text is empty or missing instead of failing")
    encoding: str = opt("utf-8", "text encoding of the source files")
    data_seed: int = opt(42, "seed for the validation split and the subsets")

    def check(self) -> None:
        if self.columns is not None:  # `--columns label,title,text` and `--columns label title text` alike
            self.columns = [name.strip() for value in self.columns for name in value.split(",") if name.strip()]
            if len(set(self.columns)) != len(self.columns) or not self.columns:
                raise TextclsError(f"--columns must name every column of the file once, got: {','.join(self.columns)}")
        if self.validation_fraction + self.test_fraction >= 1:
            raise TextclsError(f"--validation-fraction {self.validation_fraction} and --test-fraction "
                               f"{self.test_fraction} leave nothing of train; their sum must be below 1")
        if self.label_names is not None and len(set(self.label_names)) != len(self.label_names):
            raise TextclsError(f"--label-names {' '.join(self.label_names)} repeats a name; give each label one name")
        if self.label_columns is not None:  # `--label-columns a,b` and `--label-columns a b` alike
            self.label_columns = [n.strip() for value in self.label_columns for n in value.split(",") if n.strip()]
            if len(set(self.label_columns)) != len(self.label_columns) or len(self.label_columns) < 2:
                raise TextclsError(f"--label-columns must name two or more columns, each once, got: "
                                   f"{','.join(self.label_columns)}")
        multi = [f for f, v in (("--label-separator", self.label_separator), ("--label-columns", self.label_columns))
                 if v is not None]
        if len(multi) == 2 or (multi and self.label_column is not None and self.label_columns is not None):
            raise TextclsError("give the labels of a multi-label dataset one way: --label-separator (with "
                               "--label-column) or --label-columns")
        if multi and self.problem not in (None, "multi-label"):
            raise TextclsError(f"{multi[0]} gives several labels per row, which is --problem multi-label, not "
                               f"--problem {self.problem}")
        if self.num_labels is not None and (self.num_labels == 1) != (self.problem in (None, "regression")) \
                and (self.num_labels == 1 or self.problem == "regression"):
            raise TextclsError(f"--num-labels {self.num_labels} does not go with --problem {self.problem}: a "
                               f"regression has one output, a classifier two or more")
        if self.num_labels == 1 and multi:
            raise TextclsError(f"--num-labels 1 is a regression, but {multi[0]} gives several labels per row")
        if self.label_separator == "":
            raise TextclsError("--label-separator must not be empty")


# --tokenizer wordpiece:N: a vocabulary of N tokens that training learns from the run's texts (data/tokenize.py).
WORDPIECE_SPEC = re.compile(r"wordpiece:([0-9]+)")


def wordpiece_size(name: Optional[str]) -> Optional[int]:
    """N of a `wordpiece:N` tokenizer spec; None for any other name."""
    match = WORDPIECE_SPEC.fullmatch(name or "")
    return int(match.group(1)) if match else None


# --tokenizer bytes: UTF-8 bytes as tokens, built in (data/tokenize.py byte_tokenizer); nothing to learn or download.
BYTES_SPEC = "bytes"


def own_vocabulary(name: Optional[str]) -> bool:
    """Whether a tokenizer spec names a vocabulary of textcls's own (wordpiece:N, bytes) rather than a checkpoint's:
    with --init random the embedding is sized to it."""
    return name == BYTES_SPEC or wordpiece_size(name) is not None


@dataclass
class TokenizeConfig(Section):
    section: ClassVar[str] = "tokenize"
    tokenizer: Optional[str] = opt(None, "fast tokenizer: a model preset, a local folder or a hub id (default: the "
                                         "model's own); wordpiece:N learns an uncased WordPiece vocabulary of N tokens "
                                         "from the training (and unlabelled) texts, for --init random; bytes: one "
                                         "token per UTF-8 byte (256 + 5 special tokens, cased, no normalisation)",
                                   metavar="T")
    max_length: int = opt(512, "maximum tokens per example, special tokens included", ge=1)
    truncation: str = opt("head", "which wordpieces a long text keeps; chunks: all of them, in overlapping windows "
                                  "of --max-length that each train with the text's label and whose logits are "
                                  "averaged per text in evaluate and predict",
                          choices=("head", "tail", "head+tail", "chunks"))
    head_tokens: int = opt(128, "with --truncation head+tail: wordpieces kept from the start; the rest of the "
                                "budget comes from the end (Sun et al. 2019: 128 + 382)", ge=0)
    stride: int = opt(128, "with --truncation chunks: wordpieces that consecutive windows share (transformers' "
                           "stride)", ge=0)
    padding: str = opt("dynamic", "pad each batch to its longest example, or every example to --max-length",
                       choices=("dynamic", "max_length"))
    num_proc: int = opt(1, "processes for tokenizing", ge=1)
    cache_dir: Optional[str] = opt(None, "where tokenized Arrow files are cached (default: ~/.cache/textcls)")

    def check(self) -> None:
        if self.tokenizer and self.tokenizer.startswith("wordpiece:") and (wordpiece_size(self.tokenizer) or 0) < 8:
            raise TextclsError(f"--tokenizer {self.tokenizer}: N must be a number of tokens, e.g. wordpiece:8000")
        if self.truncation == "chunks" and self.stride >= self.max_length:
            raise TextclsError(f"--stride {self.stride} must be below --max-length {self.max_length}: consecutive "
                               f"windows share --stride wordpieces, so each moves on by the rest")


@dataclass
class ModelConfig(Section):
    section: ClassVar[str] = "model"
    model: str = opt("bert-tiny", "a preset (bert-tiny, bert-mini, bert-small, bert-medium, minilm-l6), a local "
                                  "folder or a hub id", metavar="M")
    init: str = opt("pretrained", "start from the checkpoint's weights or from random ones",
                    choices=("pretrained", "random"))
    attention: str = opt("full", "attention mechanism (see `textcls attention list`); its options are the "
                                 "--<mechanism>-* flags")
    pooling: str = opt("cls", "classifier input: BERT's pooler over [CLS], or the mean of the token states",
                       choices=("cls", "mean"))
    extend_positions: bool = opt(False, "allow --max-length beyond the checkpoint's positions by copying the learned "
                                        "position embeddings forward (as Longformer did)")
    hidden_dropout: Optional[float] = opt(None, "dropout on hidden states (default: the checkpoint's)", ge=0, lt=1)
    attention_dropout: Optional[float] = opt(None, "dropout on attention probabilities (default: 0.0, which keeps "
                                                   "the fused attention kernels in use)", ge=0, lt=1)
    reinit_head: bool = opt(False, "train a fresh classifier head when the loaded one has a different label count")


@dataclass
class AttentionOptions(Section):
    """Base of every mechanism's options (a mechanism without options, such as `full`, uses it as it is). A
    mechanism's fields are named after it (`sliding_window`), so that its flags are (`--sliding-window`)."""
    section: ClassVar[str] = "attention"
    mechanism: ClassVar[str] = ""  # set by register_attention


@dataclass
class TrainConfig(Section):
    """Fine-tuning: schedule, optimizer, evaluation and checkpoints, the run directory."""
    section: ClassVar[str] = "train"
    epochs: int = opt(3, "passes over the training data", metavar="N", group="schedule", ge=1)
    max_steps: Optional[int] = opt(None, "stop after this many optimizer steps (overrides --epochs)", metavar="N",
                                   group="schedule", ge=1)
    warmup_steps: Optional[int] = opt(None, "optimizer steps of linear warmup, then linear decay to 0 (the "
                                            "practice's num_warmup_steps)", metavar="N", group="schedule", ge=0)
    warmup_ratio: Optional[float] = opt(None, "warmup as a share of all steps (default when neither is given: 0.06)",
                                        metavar="X", group="schedule", ge=0, le=1)
    batch_size: int = opt(32, "examples per batch on each process (the global batch is this x processes)",
                          metavar="N", group="optimization", ge=1)
    gradient_accumulation_steps: int = opt(1, "batches whose gradients are summed before each optimizer step",
                                           metavar="N", group="optimization", ge=1)
    learning_rate: float = opt(1e-4, "peak learning rate of AdamW", metavar="LR", group="optimization", ge=0)
    weight_decay: float = opt(0.01, "AdamW weight decay (never applied to biases and LayerNorm weights)",
                              metavar="X", group="optimization", ge=0)
    class_weights: Optional[str] = opt(None, "weight of each class in the training loss: balanced (rows / (classes "
                                             "x the class's rows), scikit-learn's rule), or a JSON file mapping "
                                             "each label name to its weight", metavar="balanced|FILE",
                                       group="optimization")
    adam_beta1: float = opt(0.9, "AdamW beta1", metavar="X", group="optimization", ge=0, lt=1)
    adam_beta2: float = opt(0.999, "AdamW beta2", metavar="X", group="optimization", ge=0, lt=1)
    adam_epsilon: float = opt(1e-8, "AdamW epsilon", metavar="X", group="optimization", ge=0)
    max_grad_norm: Optional[float] = opt(1.0, "clip the gradient norm to this (0: no clipping)",
                                         metavar="X", group="optimization", ge=0)
    mixed_precision: str = opt("auto", "autocast dtype; auto = bf16 on a GPU that supports it or on a CPU that "
                                       "computes it natively (AVX512-BF16, AMX), else fp32 (no)",
                               choices=("auto", "no", "bf16", "fp16"), group="optimization")
    group_by_length: bool = opt(True, "batch examples of similar length together (less padding, same randomness)",
                                group="optimization")
    compile: bool = opt(False, "torch.compile each encoder layer (dynamic shapes: one compilation serves every batch "
                               "length); the first steps wait for the compiler", group="optimization")
    eval_strategy: str = opt("epoch", "when to evaluate on validation (also after the last step)",
                             choices=("epoch", "steps", "no"), group="evaluation and checkpoints")
    eval_steps: Optional[int] = opt(None, "with --eval-strategy steps: evaluate every N optimizer steps", metavar="N",
                                    group="evaluation and checkpoints", ge=1)
    eval_batch_size: Optional[int] = opt(None, "examples per evaluation batch on each process (default: 2 x "
                                               "--batch-size)", metavar="N", group="evaluation and checkpoints", ge=1)
    metric_for_best: str = opt("accuracy", "validation metric that picks the best checkpoint; multi-label: "
                                           "micro_f1, macro_f1 or loss (accuracy, the default, means micro_f1); "
                                           "regression: pearson, spearman, mse or loss (accuracy means pearson)",
                               choices=("accuracy", "macro_f1", "loss", "micro_f1", "pearson", "spearman", "mse"),
                               group="evaluation and checkpoints")
    threshold: Optional[float] = opt(None, "multi-label: a label is predicted when its probability is above this "
                                           "(default: tuned per label on validation, the threshold of its best F1; "
                                           "0.5 without validation); saved with the model",
                                     metavar="X", group="evaluation and checkpoints", gt=0, lt=1)
    load_best_at_end: bool = opt(True, "export the best checkpoint's weights rather than the last ones",
                                 group="evaluation and checkpoints")
    early_stopping_patience: Optional[int] = opt(None, "stop after this many evaluations without improvement",
                                                 metavar="N", group="evaluation and checkpoints", ge=1)
    baseline: Optional[str] = opt(None, "also fit this classical baseline (`textcls baseline`) on the same training "
                                        "rows and report its metrics on --eval-splits beside the model's",
                                  choices=("tfidf-lr", "nbsvm"), group="evaluation and checkpoints")
    eval_splits: list[str] = opt(["test"], "splits evaluated with the final model, those that exist and have labels "
                                           "(default: test)", metavar="SPLIT", group="evaluation and checkpoints")
    save_steps: Optional[int] = opt(None, "also checkpoint every N optimizer steps (always at each evaluation and "
                                          "at the end)", metavar="N", group="evaluation and checkpoints", ge=1)
    save_total_limit: Optional[int] = opt(2, "keep at most this many checkpoints (the best one is always kept)",
                                          metavar="N", group="evaluation and checkpoints", ge=1)
    output: Optional[str] = opt(None, "run directory, new or empty (default: runs/<timestamp>-<name>)", metavar="DIR",
                                group="run and logging")
    name: Optional[str] = opt(None, "run name (default: <model>-<data>)", group="run and logging")
    logging_steps: int = opt(20, "log loss, learning rate, grad norm and throughput every N optimizer steps",
                             metavar="N", group="run and logging", ge=1)
    seed: int = opt(42, "seed for weights, dropout and batch order", metavar="N", group="run and logging")
    deterministic: bool = opt(False, "deterministic algorithms only, so a resumed run equals an uninterrupted one "
                                     "(slower on a GPU)", group="run and logging")
    tensorboard: bool = opt(False, "also log to RUN/tensorboard (needs the tensorboard package)",
                            group="run and logging")
    num_workers: int = opt(0, "DataLoader worker processes", metavar="N", group="run and logging", ge=0)

    def check(self) -> None:
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise TextclsError(f"give --warmup-steps ({self.warmup_steps}) or --warmup-ratio ({self.warmup_ratio}), "
                               f"not both")
        if self.eval_strategy == "steps" and self.eval_steps is None:
            raise TextclsError("--eval-strategy steps needs --eval-steps N")
        if self.early_stopping_patience is not None and self.eval_strategy == "no":
            raise TextclsError("--early-stopping-patience needs evaluations: set --eval-strategy epoch or steps")


@dataclass
class PretrainConfig(Section):
    """Masked-LM pretraining (`textcls pretrain`): what TrainConfig has no setting for."""
    section: ClassVar[str] = "pretrain"
    mlm_probability: float = opt(0.15, "share of the tokens to predict; of those, 8 in 10 become [MASK], 1 in 10 a "
                                       "random token, 1 in 10 stay as they are (BERT's recipe)", metavar="X",
                                 gt=0, lt=1)
    splits: Optional[list[str]] = opt(None, "splits whose texts are pretrained on, labels ignored (default: every "
                                            "split but validation, which measures the MLM loss, and test)",
                                      metavar="SPLIT")


@dataclass
class DistillConfig(Section):
    """Knowledge distillation (`textcls distill`): what TrainConfig has no setting for."""
    section: ClassVar[str] = "distill"
    teacher: Optional[str] = opt(None, "the teacher: a fine-tuned classifier (a run, its model/ folder or a "
                                       "transformers folder) whose softened probabilities the student learns",
                                 metavar="MODEL")
    temperature: float = opt(2.0, "softmax temperature T of teacher and student in the distillation term",
                             metavar="T", gt=0)
    alpha: float = opt(0.5, "weight A of the cross-entropy with the labels; the teacher's term gets 1 - A (loss = "
                            "A CE + (1 - A) T^2 KL)", metavar="A", ge=0, le=1)
    unlabelled_splits: Optional[list[str]] = opt(None, "splits of unlabelled texts the student also learns from the "
                                                       "teacher (default: unsupervised, when the data has it)",
                                                 metavar="SPLIT")
    teacher_batch_size: int = opt(64, "texts per teacher forward pass (its logits are computed once and cached)",
                                  metavar="N", ge=1)


@dataclass
class BaselineConfig(Section):
    """`textcls baseline`: a linear model on word n-grams (not part of a run's config; `train --baseline` uses its
    defaults)."""
    section: ClassVar[str] = "baseline"
    method: str = opt("tfidf-lr", "TF-IDF (sublinear tf) + logistic regression, or NBSVM: a linear SVM on binary "
                                  "n-grams scaled by their naive Bayes log-count ratios (Wang & Manning 2012)",
                      choices=("tfidf-lr", "nbsvm"))
    ngrams: int = opt(2, "word n-grams from 1 to N (punctuation marks count as words)", metavar="N", ge=1, le=5)
    c: Optional[float] = opt(None, "inverse regularization strength C (default: 10 for tfidf-lr, 0.01 for nbsvm, "
                                   "chosen on IMDB validation)", metavar="X", gt=0)


# Training settings that pretraining fixes (its one metric is the MLM loss, and it evaluates nothing at the end:
# no test, no baseline, no class weights), and classifier settings that mean nothing to a masked LM: `textcls
# pretrain` has no flags for them.
PRETRAIN_FIXED = {"metric_for_best": "loss", "eval_splits": [], "baseline": None, "class_weights": None}
CLASSIFIER_ONLY = ("pooling", "reinit_head")

# The sections of a RunConfig, in the order they are read (the attention options depend on model.attention).
SECTIONS: dict[str, type[Section]] = {"data": DataConfig, "tokenize": TokenizeConfig, "model": ModelConfig,
                                      "attention": AttentionOptions, "train": TrainConfig, "pretrain": PretrainConfig,
                                      "distill": DistillConfig}


def options_class(mechanism: str) -> type[AttentionOptions]:
    """The options class of a registered attention mechanism; an unknown name is a TextclsError."""
    from textcls.model.attention import attention_class
    return attention_class(mechanism)[1]


def attention_option_classes() -> dict[str, type[AttentionOptions]]:
    """Every registered mechanism's options class, by mechanism name."""
    from textcls.model.attention import attention_names
    return {name: options_class(name) for name in attention_names()}


def _section_fields(name: str) -> dict[str, dataclasses.Field]:
    """A section's fields by name; for `attention`, every mechanism's options."""
    if name != "attention":
        return {f.name: f for f in dataclasses.fields(SECTIONS[name])}
    return {f.name: f for cls in attention_option_classes().values() for f in dataclasses.fields(cls)}


def _option_owner(key: str) -> Optional[str]:
    """The mechanism whose option `key` is, or None."""
    return next((m for m, cls in attention_option_classes().items()
                 if key in {f.name for f in dataclasses.fields(cls)}), None)


# --------------------------------------------------------------------------------------------- building sections

def _unknown_key_error(key: str, section: str) -> TextclsError:
    """Suggest near keys from every section: a key is often right but filed under the wrong section."""
    known = {f"{name}.{f}": f for name in SECTIONS for f in _section_fields(name)}
    near = difflib.get_close_matches(key, list(known.values()), n=3, cutoff=0.6)
    qualified = [q for n in near for q, k in known.items() if k == n]  # closest first
    where = f"{section}.{key}" if section else key
    if qualified:
        return TextclsError(f"unknown config key {where!r}; did you mean {' or '.join(map(repr, qualified))}?")
    if not section:
        return TextclsError(f"unknown config key {where!r}: no section ({', '.join(SECTIONS)}) has it; the keys are "
                            f"the long flags of `textcls train --help`, with _ for -")
    own = [k for q, k in known.items() if q.startswith(f"{section}.")]
    return TextclsError(f"unknown config key {where!r}; the keys of {section!r} are: {', '.join(own)}")


def _wrong_mechanism_error(key: str, owner: str, mechanism: str) -> TextclsError:
    return TextclsError(f"{flag_name(key)} (attention.{key}) is an option of attention {owner!r}, but the attention "
                        f"is {mechanism!r}; add --attention {owner}, or leave the option out")


def section_from_dict(cls: type[Section], values: dict, base: Optional[Section] = None) -> Section:
    """A section from a dict, checking every key, type and bound; keys not given keep `base`'s values."""
    if not isinstance(values, dict):
        raise TextclsError(f"config section {cls.section!r} must be a mapping, got {values!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            owner = _option_owner(key) if cls.section == "attention" else None
            if owner is not None:
                raise _wrong_mechanism_error(key, owner, cls.mechanism)
            raise _unknown_key_error(key, cls.section)
    merged = dataclasses.asdict(base) if base is not None else {}
    return cls(**(merged | values))


@dataclass
class RunConfig:
    """Every setting of one run, by section. `attention` holds the options of the mechanism `model.attention`."""
    data: DataConfig = field(default_factory=DataConfig)
    tokenize: TokenizeConfig = field(default_factory=TokenizeConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    attention: Optional[AttentionOptions] = None  # None: the mechanism's defaults
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self):
        cls = options_class(self.model.attention)
        if self.attention is None:
            self.attention = cls()
        elif type(self.attention) is not cls:
            raise TextclsError(f"attention options {type(self.attention).__name__} do not belong to attention "
                               f"{self.model.attention!r} (its options are {cls.__name__})")

    def to_dict(self) -> dict:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    @classmethod
    def from_dict(cls, values: dict, base: "RunConfig | None" = None) -> "RunConfig":
        """A RunConfig from `values` ({section: {key: value}}) on top of `base` (or the defaults)."""
        if not isinstance(values, dict):
            raise TextclsError(f"a config must be a mapping of sections ({', '.join(SECTIONS)}) to settings")
        for name in values:
            if name not in SECTIONS:
                near = difflib.get_close_matches(name, list(SECTIONS), n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                raise TextclsError(f"unknown config section {name!r}; {hint}sections are: {', '.join(SECTIONS)}")
        base = base or RunConfig()
        out = {}
        for name, section_cls in SECTIONS.items():
            old = getattr(base, name)
            if name == "attention":  # options of another mechanism than the base's start from their defaults
                section_cls = options_class(out["model"].attention)
                old = old if type(old) is section_cls else None
            out[name] = section_from_dict(section_cls, values.get(name, {}), old)
        return cls(**out)

    def save(self, path: str | os.PathLike) -> None:
        from textcls.io import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunConfig":
        path = Path(path)
        if path.is_dir():
            raise TextclsError(f"config file {str(path)!r} is a folder; give a JSON or YAML file (a run's config is "
                               f"{path / 'config.json'})")
        if not path.is_file():
            raise TextclsError(f"config file {str(path)!r} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix in (".yaml", ".yml"):
                import yaml
                values = yaml.safe_load(text)
            else:
                values = json.loads(text)
        except OSError as e:
            raise TextclsError(f"config file {str(path)!r} cannot be read: {e.strerror or e}") from None
        except Exception as e:  # both parsers' errors say where the file is broken
            mark = getattr(e, "problem_mark", None)  # YAML's own message spans lines and draws a caret
            where = f"{e.problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else e
            raise TextclsError(f"config file {str(path)!r} cannot be parsed: {where}") from None
        return cls.from_dict(values or {})


def find_key(key: str) -> tuple[str, str]:
    """(section, field) for `key`, given as `field` (field names are unique across sections) or `section.field`."""
    section, _, name = key.rpartition(".")
    for sec in SECTIONS:
        if (not section or section == sec) and name in _section_fields(sec):
            return sec, name
    raise _unknown_key_error(name, section) if section in SECTIONS else _unknown_key_error(key, "")


def parse_value(key: str, text: str) -> Any:
    """A value typed on the command line (`--set warmup_steps=100`) as its field's type: int, float, bool
    (true/false), null, or a string."""
    section, name = find_key(key)
    f = _section_fields(section)[name]
    owner = SECTIONS[section] if section != "attention" else options_class(_option_owner(name))
    tp = typing.get_type_hints(owner)[name]
    base, optional = _unwrap_optional(tp)
    if optional and text.lower() in ("null", "none"):
        return None
    try:
        if base is bool:
            if text.lower() not in ("true", "false"):
                raise ValueError
            value: Any = text.lower() == "true"
        elif base in (int, float):
            value = base(text)
        elif typing.get_origin(base) is list:
            value = text.split("+")
        else:
            value = text
    except ValueError:
        raise TextclsError(f"{section}.{name}={text!r}: expected {getattr(base, '__name__', base)}") from None
    return check_value(section, f, tp, value)


# --------------------------------------------------------------------------------------------- CLI flags

def add_arguments(parser: argparse.ArgumentParser, *section_names: str, exclude: tuple[str, ...] = (),
                  only: Optional[tuple[str, ...]] = None, defaults: Optional[dict[str, Any]] = None) -> None:
    """Add one flag per field of the named sections (`attention`: every mechanism's options, one group each),
    but those in `exclude` (or only those in `only`). Unset flags stay absent from the namespace (SUPPRESS), so
    that a config file's values are overridden only by what the user typed; `defaults` gives a command its own
    default for a field (evaluate's --batch-size 64), which then always applies.

    The mechanisms' options need the mechanisms (and torch) imported: on a parser that can defer work (the CLI's),
    they are added when that command is parsed, so that `textcls --help` and other commands stay fast."""
    defaults = defaults or {}
    for name in section_names:
        if name == "attention" and hasattr(parser, "defer"):
            parser.defer(lambda p: _add_fields(p, "attention", attention_option_classes(), exclude, only, defaults))
        elif name == "attention":
            _add_fields(parser, name, attention_option_classes(), exclude, only, defaults)
        else:
            _add_fields(parser, name, {"": SECTIONS[name]}, exclude, only, defaults)


def _add_fields(parser: argparse.ArgumentParser, section: str, owners: dict[str, type], exclude: tuple[str, ...],
                only: Optional[tuple[str, ...]], defaults: dict[str, Any]) -> None:
    """Flags for the fields of `owners` ({mechanism or "": class}), grouped by their heading."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for mechanism, cls in owners.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in exclude or (only is not None and f.name not in only):
                continue
            own = f"attention options: {mechanism}" if mechanism else f"{section} options"
            title = f.metadata.get("group") or own
            group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
            group.add_argument(flag_name(f.name), **_flag_kwargs(f, hints[f.name], defaults))


def _flag_kwargs(f: dataclasses.Field, tp: Any, defaults: dict[str, Any]) -> dict[str, Any]:
    base, _ = _unwrap_optional(tp)
    default = defaults.get(f.name, f.default)
    kw: dict[str, Any] = dict(dest=f.name, default=defaults.get(f.name, argparse.SUPPRESS), help=f.metadata["help"])
    if default is not dataclasses.MISSING and default is not None:
        if isinstance(default, str) and default != default.strip():  # a separator " " would print as nothing
            default = repr(default)
        kw["help"] += f" (default: {('on' if default else 'off') if base is bool else default})"
    if base is bool:
        kw["action"] = argparse.BooleanOptionalAction
        return kw
    if typing.get_origin(base) is list:
        kw["nargs"] = "*"  # `--eval-splits` with nothing after it: evaluate no split
        (base,) = typing.get_args(base)
    kw["type"] = base
    if f.metadata.get("choices"):
        kw["choices"] = f.metadata["choices"]
    if f.metadata.get("metavar"):
        kw["metavar"] = f.metadata["metavar"]
    elif not f.metadata.get("choices"):  # short placeholders keep --help readable
        kw["metavar"] = {int: "N", float: "X"}.get(base, "NAME")
    return kw


def add_section_arguments(parser: argparse.ArgumentParser, cls: type[Section]) -> None:
    """One flag per field of a section that is not part of a run's config (a command's own settings)."""
    _add_fields(parser, cls.section, {"": cls}, (), None, {})


def section_from_args(cls: type[Section], args: argparse.Namespace) -> Section:
    """A section of a command's own settings from its flags (unset ones keep their defaults), checked."""
    given = vars(args)
    return section_from_dict(cls, {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given})


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None,
                     sections: tuple[str, ...] = tuple(SECTIONS)) -> RunConfig:
    """A RunConfig from `base` (or the defaults, or `--config FILE` when the parser has it) with the typed flags of
    `sections` on top. An option flag of another mechanism than the chosen one is an error."""
    if base is None:
        path = getattr(args, "config", None)
        base = RunConfig.load(path) if path else RunConfig()
    given = vars(args)
    overrides = {}
    for name in sections:
        sub = {key: given[key] for key in _section_fields(name) if key in given}
        if sub:
            overrides[name] = sub
    return RunConfig.from_dict(overrides, base)


def attention_from_args(args: argparse.Namespace) -> tuple[Optional[str], dict]:
    """What a command that runs a trained model was asked to run it with: --attention (None: the model's own
    mechanism) and the mechanism options given (applied over the model's own options)."""
    given = vars(args)
    return given.get("attention"), {key: given[key] for key in _section_fields("attention") if key in given}

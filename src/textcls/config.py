"""Typed configuration: one run = one `RunConfig`, saved as JSON in the run directory.

Each section is a dataclass whose fields carry their help text. The CLI builds its flags from these fields
(`--max-length` for `max_length`), so a setting has one name, one type and one default everywhere: in the
CLI, in a config file and in the Python API. Flag names are unique across sections.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from textcls.errors import TextclsError


def opt(default: Any, help: str, choices: tuple | None = None, metavar: str | None = None, group: str | None = None):
    """A config field: its default, its help line, for a closed set of values the choices, and the heading it is
    listed under in --help (default: "<section> options")."""
    metadata = {"help": help, "choices": choices, "metavar": metavar, "group": group}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class DataConfig:
    data: Optional[str] = opt(None, "dataset: a folder of SPLIT.{parquet,csv,tsv,jsonl} files, one such file, an "
                                    "aclImdb folder or aclImdb_v1.tar.gz, a folder of per-class .txt files, or a hub "
                                    "name such as 'imdb' or 'glue:sst2'", metavar="SPEC")
    text_column: Optional[str] = opt(None, "column with the text (default: detect 'text', 'sentence', 'sentence1', ...)")
    text_pair_column: Optional[str] = opt(None, "column with the second text of a pair (default: detect 'sentence2', ...)")
    label_column: Optional[str] = opt(None, "column with the label (default: 'label')")
    label_names: Optional[list[str]] = opt(None, "names for integer labels 0..N-1, e.g. --label-names neg pos "
                                                 "(default: the labels as they are)")
    validation_fraction: float = opt(0.1, "share of train carved out (stratified) as validation when the source has none")
    test_fraction: float = opt(0.2, "share of train carved out (stratified) as test when the source has none")
    max_train_samples: Optional[int] = opt(None, "keep a stratified, seeded subset of this many train rows")
    max_eval_samples: Optional[int] = opt(None, "keep a stratified, seeded subset of this many validation/test rows")
    drop_empty: bool = opt(False, "drop rows whose text is empty or missing instead of failing")
    encoding: str = opt("utf-8", "text encoding of the source files")
    data_seed: int = opt(42, "seed for the validation split and the subsets")


@dataclass
class TokenizeConfig:
    tokenizer: Optional[str] = opt(None, "fast tokenizer: a model preset, a local folder or a hub id "
                                         "(default: the model's own)", metavar="T")
    max_length: int = opt(512, "maximum tokens per example, special tokens included")
    truncation: str = opt("head", "which wordpieces a long text keeps", choices=("head", "tail", "head+tail"))
    head_tokens: int = opt(128, "with --truncation head+tail: wordpieces kept from the start; the rest of the "
                                "budget comes from the end (Sun et al. 2019: 128 + 382)")
    padding: str = opt("dynamic", "pad each batch to its longest example, or every example to --max-length",
                       choices=("dynamic", "max_length"))
    num_proc: int = opt(1, "processes for tokenizing")
    cache_dir: Optional[str] = opt(None, "where tokenized Arrow files are cached (default: ~/.cache/textcls)")


@dataclass
class ModelConfig:
    model: str = opt("bert-tiny", "a preset (bert-tiny, bert-mini, bert-small, bert-medium, minilm-l6), a local "
                                  "folder or a hub id", metavar="M")
    init: str = opt("pretrained", "start from the checkpoint's weights or from random ones",
                    choices=("pretrained", "random"))
    attention: str = opt("full", "attention mechanism (see `textcls attention list`)")
    pooling: str = opt("cls", "classifier input: BERT's pooler over [CLS], or the mean of the token states",
                       choices=("cls", "mean"))
    extend_positions: bool = opt(False, "allow --max-length beyond the checkpoint's positions by copying the learned "
                                        "position embeddings forward (as Longformer did)")
    hidden_dropout: Optional[float] = opt(None, "dropout on hidden states (default: the checkpoint's)")
    attention_dropout: Optional[float] = opt(None, "dropout on attention probabilities (default: 0.0, which keeps "
                                                   "the fused attention kernels in use)")
    reinit_head: bool = opt(False, "train a fresh classifier head when the loaded one has a different label count")


@dataclass
class TrainConfig:
    """Fine-tuning: schedule, optimizer, evaluation and checkpoints, the run directory."""
    epochs: int = opt(3, "passes over the training data", metavar="N", group="schedule")
    max_steps: Optional[int] = opt(None, "stop after this many optimizer steps (overrides --epochs)", metavar="N",
                                   group="schedule")
    warmup_steps: Optional[int] = opt(None, "optimizer steps of linear warmup, then linear decay to 0 (the "
                                            "practice's num_warmup_steps)", metavar="N", group="schedule")
    warmup_ratio: Optional[float] = opt(None, "warmup as a share of all steps (default when neither is given: 0.06)",
                                        metavar="X", group="schedule")
    batch_size: int = opt(32, "examples per batch on each process (the global batch is this x processes)",
                          metavar="N", group="optimization")
    gradient_accumulation_steps: int = opt(1, "batches whose gradients are summed before each optimizer step",
                                           metavar="N", group="optimization")
    learning_rate: float = opt(1e-4, "peak learning rate of AdamW", metavar="LR", group="optimization")
    weight_decay: float = opt(0.01, "AdamW weight decay (never applied to biases and LayerNorm weights)",
                              metavar="X", group="optimization")
    adam_beta1: float = opt(0.9, "AdamW beta1", metavar="X", group="optimization")
    adam_beta2: float = opt(0.999, "AdamW beta2", metavar="X", group="optimization")
    adam_epsilon: float = opt(1e-8, "AdamW epsilon", metavar="X", group="optimization")
    max_grad_norm: Optional[float] = opt(1.0, "clip the gradient norm to this (0: no clipping)",
                                         metavar="X", group="optimization")
    mixed_precision: str = opt("auto", "autocast dtype; auto = bf16 on a GPU that supports it, else fp32",
                               choices=("auto", "no", "bf16", "fp16"), group="optimization")
    group_by_length: bool = opt(True, "batch examples of similar length together (less padding, same randomness)",
                                group="optimization")
    eval_strategy: str = opt("epoch", "when to evaluate on validation (also after the last step)",
                             choices=("epoch", "steps", "no"), group="evaluation and checkpoints")
    eval_steps: Optional[int] = opt(None, "with --eval-strategy steps: evaluate every N optimizer steps", metavar="N",
                                    group="evaluation and checkpoints")
    eval_batch_size: Optional[int] = opt(None, "examples per evaluation batch on each process (default: 2 x "
                                               "--batch-size)", metavar="N", group="evaluation and checkpoints")
    metric_for_best: str = opt("accuracy", "validation metric that picks the best checkpoint",
                               choices=("accuracy", "macro_f1", "loss"), group="evaluation and checkpoints")
    load_best_at_end: bool = opt(True, "export the best checkpoint's weights rather than the last ones",
                                 group="evaluation and checkpoints")
    early_stopping_patience: Optional[int] = opt(None, "stop after this many evaluations without improvement",
                                                 metavar="N", group="evaluation and checkpoints")
    eval_splits: list[str] = opt(["test"], "splits evaluated with the final model, those that exist and have labels "
                                           "(default: test)", metavar="SPLIT", group="evaluation and checkpoints")
    save_steps: Optional[int] = opt(None, "also checkpoint every N optimizer steps (always at each evaluation and "
                                          "at the end)", metavar="N", group="evaluation and checkpoints")
    save_total_limit: Optional[int] = opt(2, "keep at most this many checkpoints (the best one is always kept)",
                                          metavar="N", group="evaluation and checkpoints")
    output: Optional[str] = opt(None, "run directory, new or empty (default: runs/<timestamp>-<name>)", metavar="DIR",
                                group="run and logging")
    name: Optional[str] = opt(None, "run name (default: <model>-<data>)", group="run and logging")
    logging_steps: int = opt(20, "log loss, learning rate, grad norm and throughput every N optimizer steps",
                             metavar="N", group="run and logging")
    seed: int = opt(42, "seed for weights, dropout and batch order", metavar="N", group="run and logging")
    deterministic: bool = opt(False, "deterministic algorithms only, so a resumed run equals an uninterrupted one "
                                     "(slower on a GPU)", group="run and logging")
    tensorboard: bool = opt(False, "also log to RUN/tensorboard (needs the tensorboard package)",
                            group="run and logging")
    num_workers: int = opt(0, "DataLoader worker processes", metavar="N", group="run and logging")


@dataclass
class PretrainConfig:
    """Masked-LM pretraining (`textcls pretrain`): what TrainConfig has no setting for."""
    mlm_probability: float = opt(0.15, "share of the tokens to predict; of those, 8 in 10 become [MASK], 1 in 10 a "
                                       "random token, 1 in 10 stay as they are (BERT's recipe)", metavar="X")
    splits: Optional[list[str]] = opt(None, "splits whose texts are pretrained on, labels ignored (default: every "
                                            "split but validation, which measures the MLM loss, and test)",
                                      metavar="SPLIT")


SECTIONS: dict[str, type] = {"data": DataConfig, "tokenize": TokenizeConfig, "model": ModelConfig,
                             "train": TrainConfig, "pretrain": PretrainConfig}


# --------------------------------------------------------------------------------------------- value checking

def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def _check_value(section: str, f: dataclasses.Field, tp: Any, value: Any) -> Any:
    """Return `value` as the field's type, or raise a TextclsError that quotes it."""
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
    return value


def _unknown_key_error(key: str, section: str) -> TextclsError:
    """Suggest near keys from every section: a key is often right but filed under the wrong section."""
    known = {f"{name}.{f.name}": f.name for name, cls in SECTIONS.items() for f in dataclasses.fields(cls)}
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


def section_from_dict(cls: type, values: dict, section: str = "", base: Any = None) -> Any:
    """Build a section from a dict, checking every key and type; keys not given keep `base`'s values."""
    fs = {f.name: f for f in dataclasses.fields(cls)}
    tps = _field_types(cls)
    out = dataclasses.replace(base) if base is not None else cls()
    for key, value in values.items():
        if key not in fs:
            raise _unknown_key_error(key, section)
        setattr(out, key, _check_value(section, fs[key], tps[key], value))
    return out


@dataclass
class RunConfig:
    """Every setting of one run, by section (data, tokenize, model, train, pretrain)."""
    sections: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        for name, cls in SECTIONS.items():
            self.sections.setdefault(name, cls())

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["sections"][name]
        except KeyError:
            raise AttributeError(name) from None

    def to_dict(self) -> dict:
        return {name: dataclasses.asdict(sec) for name, sec in self.sections.items()}

    @classmethod
    def from_dict(cls, values: dict, base: "RunConfig | None" = None) -> "RunConfig":
        if not isinstance(values, dict):
            raise TextclsError(f"a config must be a mapping of sections ({', '.join(SECTIONS)}) to settings")
        out = RunConfig({k: dataclasses.replace(v) for k, v in base.sections.items()}) if base else RunConfig()
        for name, sub in values.items():
            if name not in SECTIONS:
                near = difflib.get_close_matches(name, list(SECTIONS), n=1)
                hint = f"did you mean {near[0]!r}? " if near else ""
                raise TextclsError(f"unknown config section {name!r}; {hint}sections are: {', '.join(SECTIONS)}")
            if not isinstance(sub, dict):
                raise TextclsError(f"config section {name!r} must be a mapping, got {sub!r}")
            out.sections[name] = section_from_dict(SECTIONS[name], sub, name, out.sections[name])
        return out

    def save(self, path: str | os.PathLike) -> None:
        from textcls.io import atomic_write_text
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunConfig":
        path = Path(path)
        if not path.is_file():
            raise TextclsError(f"config file {str(path)!r} does not exist")
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix in (".yaml", ".yml"):
                import yaml
                values = yaml.safe_load(text)
            else:
                values = json.loads(text)
        except Exception as e:  # both parsers' errors say where the file is broken
            mark = getattr(e, "problem_mark", None)  # YAML's own message spans lines and draws a caret
            where = f"{e.problem} (line {mark.line + 1}, column {mark.column + 1})" if mark else e
            raise TextclsError(f"config file {str(path)!r} cannot be parsed: {where}") from None
        return cls.from_dict(values or {})


def find_key(key: str) -> tuple[str, str]:
    """(section, field) for `key`, given as `field` (field names are unique across sections) or `section.field`."""
    section, _, name = key.rpartition(".")
    for sec, cls in SECTIONS.items():
        if (not section or section == sec) and name in {f.name for f in dataclasses.fields(cls)}:
            return sec, name
    raise _unknown_key_error(name, section) if section in SECTIONS else _unknown_key_error(key, "")


def parse_value(key: str, text: str) -> Any:
    """A value typed on the command line (`--set warmup_steps=100`) as its field's type: int, float, bool
    (true/false), null, or a string."""
    section, name = find_key(key)
    cls = SECTIONS[section]
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    base, optional = _unwrap_optional(_field_types(cls)[name])
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
    return _check_value(section, f, _field_types(cls)[name], value)


# --------------------------------------------------------------------------------------------- CLI flags

def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def add_arguments(parser: argparse.ArgumentParser, *section_names: str, exclude: tuple[str, ...] = ()) -> None:
    """Add one flag per field of the named sections. Unset flags stay absent from the namespace (SUPPRESS),
    so that a config file's values are overridden only by what the user typed."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for name in section_names:
        cls = SECTIONS[name]
        tps = _field_types(cls)
        for f in dataclasses.fields(cls):
            if f.name in exclude:
                continue
            title = f.metadata.get("group") or f"{name} options"
            group = groups.get(title) or groups.setdefault(title, parser.add_argument_group(title))
            base, _ = _unwrap_optional(tps[f.name])
            kw: dict[str, Any] = dict(dest=f.name, default=argparse.SUPPRESS, help=f.metadata["help"])
            if f.default is not dataclasses.MISSING and f.default is not None:
                kw["help"] += f" (default: {('on' if f.default else 'off') if base is bool else f.default})"
            if base is bool:
                kw["action"] = argparse.BooleanOptionalAction
            else:
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
            group.add_argument(flag_name(f.name), **kw)


def config_from_args(args: argparse.Namespace, base: RunConfig | None = None) -> RunConfig:
    """A RunConfig from `base` (or the defaults, or `--config FILE` when the parser has it) with the typed flags on top."""
    if base is None:
        path = getattr(args, "config", None)
        base = RunConfig.load(path) if path else RunConfig()
    given = vars(args)
    overrides = {}
    for name, cls in SECTIONS.items():
        sub = {f.name: given[f.name] for f in dataclasses.fields(cls) if f.name in given}
        if sub:
            overrides[name] = sub
    return RunConfig.from_dict(overrides, base)

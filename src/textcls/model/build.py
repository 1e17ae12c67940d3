"""The one way from settings to a model: `build_classifier(ModelConfig, label_names, max_length, attention=...)`.

`ModelConfig.model` is a preset, a local folder or a hub id (`textcls.hub.resolve`). With `init="random"` only the
architecture is needed: a preset's dimensions are known without any download, a folder or hub id gives config.json.
Two lengths: `max_length` is the run's (the longest tokenized input), `max_positions` the model's position table; a
model is built with the checkpoint's positions, extended to `max_length` only with `extend_positions`.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from textcls import hub
from textcls.config import AttentionOptions, ModelConfig
from textcls.errors import TextclsError
from textcls.model.attention import (
    attention_class,
    attention_options,
    override_attention,
)
from textcls.model.encoder import BertClassifier, BertMaskedLM, EncoderConfig
from textcls.model.hf import (
    TEXTCLS_JSON,
    LoadReport,
    default_label_names,
    encoder_config_from_hf,
    has_label_names,
    hf_label_names,
    hf_problem_type,
    load_hf_state,
    read_json,
    read_state_dict,
)
from textcls.model.presets import PRESETS

log = logging.getLogger(__name__)


@dataclass
class ModelSource:
    """Where a model's architecture and weights come from."""
    name: str  # as given: preset, folder or hub id
    config: EncoderConfig  # the checkpoint's architecture, with its own dropout and positions
    folder: Optional[Path] = None  # the local folder with config.json; None for a preset's dimensions alone
    weights: Optional[Path] = None  # the weights file, when pretrained weights were asked for
    label_names: Optional[list[str]] = None  # a fine-tuned classifier's labels (config.json id2label)
    extra: Optional[dict] = None  # textcls.json of a folder textcls saved
    problem_type: str = "single-label"  # a fine-tuned classifier's (config.json problem_type)

    def saved_attention(self) -> Optional[AttentionOptions]:
        """The attention (mechanism and options) a folder textcls saved was trained with; None for others."""
        if not self.extra or "attention" not in self.extra:
            return None
        return attention_options(self.extra["attention"], self.extra.get("attention_options"))

    def with_vocabulary(self, vocab_size: int, pad_token_id: int) -> "ModelSource":
        """This architecture with another vocabulary: for random weights and a tokenizer of its own (a vocabulary
        learnt with --tokenizer wordpiece:N), the embedding is sized to the tokenizer."""
        return dataclasses.replace(self, config=dataclasses.replace(self.config, vocab_size=vocab_size,
                                                                    pad_token_id=pad_token_id))

    def describe(self) -> str:
        preset = PRESETS.get(self.name)
        where = f"preset {self.name} ({preset.hub_id})" if preset else self.name
        return where + (f" at {self.folder}" if self.folder and str(self.folder) != self.name else "")


def find_model(name: str, init: str = "pretrained") -> ModelSource:
    """Resolve `name` to its architecture and, for init="pretrained", its weights file. Offline and not on disk:
    a TextclsError at once, naming the ways out (a local folder, --init random)."""
    preset = PRESETS.get(name)
    if init == "random" and preset is not None and not Path(name).exists():
        return ModelSource(name=name, config=preset.config)
    from textcls.train.rundir import model_of  # a run folder stands for the model it exported

    folder = hub.resolve(str(model_of(Path(name).expanduser())) if Path(name).exists() else name, "model",
                         need_weights=init == "pretrained")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise TextclsError(f"model folder {str(folder)!r} has no config.json; give a transformers BERT folder")
    hf = read_json(config_path)
    extra = read_json(folder / TEXTCLS_JSON) if (folder / TEXTCLS_JSON).is_file() else None
    return ModelSource(name=name, config=encoder_config_from_hf(hf, str(config_path)), folder=folder,
                       weights=hub.weights_file(folder) if init == "pretrained" else None,
                       label_names=hf_label_names(hf), extra=extra, problem_type=hf_problem_type(hf))


def _attention(cfg: ModelConfig, attention: Optional[AttentionOptions]) -> AttentionOptions:
    """The options of cfg.attention's mechanism: `attention` when given (it must be that mechanism's), else its
    defaults."""
    if attention is None:
        return attention_options(cfg.attention)
    if attention.mechanism != cfg.attention:
        raise TextclsError(f"options of attention {attention.mechanism!r} given for attention {cfg.attention!r}")
    return attention


def encoder_config(cfg: ModelConfig, source: ModelSource, max_length: int,
                   attention: Optional[AttentionOptions] = None) -> EncoderConfig:
    """The checkpoint's architecture with the run's settings: attention and its options, dropouts, and positions
    for inputs of up to `max_length` tokens (the checkpoint's, extended only with cfg.extend_positions). Whether
    the mechanism can take such inputs is checked here, before any data is read."""
    positions = source.config.max_positions
    if max_length > positions and not cfg.extend_positions:
        raise TextclsError(f"--max-length {max_length} exceeds the {positions} positions of model {cfg.model!r}; "
                           f"add --extend-positions to copy the learned position embeddings forward (as Longformer "
                           f"did), or lower --max-length to {positions}")
    hidden = source.config.hidden_dropout if cfg.hidden_dropout is None else cfg.hidden_dropout
    out = dataclasses.replace(source.config, attention=cfg.attention, attention_options=_attention(cfg, attention),
                              max_positions=max(positions, max_length), hidden_dropout=hidden,
                              attention_dropout=cfg.attention_dropout or 0.0)
    attention_class(cfg.attention)[0].check_options(out.attention_options, out.attention_shape(), max_length)
    return out


def _load(model: torch.nn.Module, cfg: ModelConfig, state: Optional[dict], source: ModelSource,
          fresh_head: bool = False) -> LoadReport:
    if state is None:
        report = LoadReport(source="random init")
    else:
        report = load_hf_state(model, state, str(source.weights), fresh_head=fresh_head,
                               extend_positions=cfg.extend_positions)
    report.log()
    return report


def _read_weights(cfg: ModelConfig, source: ModelSource) -> Optional[dict[str, torch.Tensor]]:
    return read_state_dict(source.weights) if cfg.init == "pretrained" else None


def _head_differs(rows: int, saved: Optional[list[str]], wanted: list[str]) -> bool:
    """Whether a checkpoint's classifier head (`rows` outputs, labels `saved`) would mean something else here."""
    return rows != len(wanted) or (has_label_names(saved) and saved != wanted)


def _warn_if_other_than_saved(cfg: ModelConfig, attention: AttentionOptions, source: ModelSource) -> None:
    saved = source.saved_attention()
    if saved is not None and saved != attention:
        log.warning("model %s was saved with attention %r %s; building it with %r %s as asked", cfg.model,
                    saved.mechanism, dataclasses.asdict(saved), attention.mechanism, dataclasses.asdict(attention))
    saved_pooling = (source.extra or {}).get("pooling", cfg.pooling)
    if saved_pooling != cfg.pooling:
        log.warning("model %s was saved with pooling %r; building it with %r as asked (--pooling %s keeps the saved "
                    "one)", cfg.model, saved_pooling, cfg.pooling, saved_pooling)


def build_classifier(cfg: ModelConfig, label_names: Sequence[str], max_length: int,
                     source: Optional[ModelSource] = None,
                     attention: Optional[AttentionOptions] = None,
                     problem_type: str = "single-label") -> tuple[BertClassifier, LoadReport]:
    """A sequence classifier for `label_names` over inputs of up to `max_length` tokens, from `cfg` (`source`: its
    `find_model` result, when the caller already has it; `attention`: the options of cfg.attention's mechanism,
    default its defaults). `problem_type` picks the loss; a regression has one output, named by `label_names`."""
    label_names = list(label_names)
    if problem_type == "regression" and len(label_names) != 1:
        raise TextclsError(f"a regression model has one output (--num-labels 1), got {len(label_names)} names: "
                           f"{label_names}")
    if problem_type != "regression" and len(label_names) < 2:
        raise TextclsError(f"a classifier needs at least two labels, got {label_names}")
    source = find_model(cfg.model, cfg.init) if source is None else source
    encoder = encoder_config(cfg, source, max_length, attention)
    _warn_if_other_than_saved(cfg, encoder.attention_options, source)
    model = BertClassifier(encoder, len(label_names), cfg.pooling, problem_type)
    state = _read_weights(cfg, source)
    head = None if state is None else state.get("classifier.weight")
    fresh_head = head is not None and _head_differs(head.shape[0], source.label_names, label_names)
    if fresh_head and not cfg.reinit_head:
        saved = f"labels {source.label_names}" if source.label_names else f"{head.shape[0]} outputs"
        raise TextclsError(f"model {cfg.model!r} has a classifier head for {saved}, but the data has "
                           f"{len(label_names)} labels {label_names}; pass --reinit-head to train a fresh head")
    return model, _load(model, cfg, state, source, fresh_head)


def build_masked_lm(cfg: ModelConfig, max_length: int, source: Optional[ModelSource] = None,
                    attention: Optional[AttentionOptions] = None) -> tuple[BertMaskedLM, LoadReport]:
    """A masked language model (the pretraining objective) from `cfg` (`source`, `attention` as in
    build_classifier)."""
    source = find_model(cfg.model, cfg.init) if source is None else source
    model = BertMaskedLM(encoder_config(cfg, source, max_length, attention))
    return model, _load(model, cfg, _read_weights(cfg, source), source)


def load_classifier(path: str | Path, label_names: Optional[Sequence[str]] = None, reinit_head: bool = False,
                    attention: Optional[str] = None,
                    attention_overrides: Optional[dict] = None) -> tuple[BertClassifier, list[str], LoadReport]:
    """A fine-tuned classifier folder (saved by textcls or transformers) as it was saved: attention and its options,
    pooling, positions and labels. `attention` runs it with another mechanism and `attention_overrides` with other
    options (over the saved ones); other `label_names` need `reinit_head` (a fresh head)."""
    source = find_model(str(path), "pretrained")
    saved = source.label_names
    if saved is None and label_names is None:
        raise TextclsError(f"model {str(path)!r} has no label names (config.json id2label); is it a fine-tuned "
                           f"classifier? Train one with `textcls train`")
    labels = list(label_names or saved)
    options = override_attention(source.saved_attention() or attention_options("full"), attention,
                                 attention_overrides)
    cfg = ModelConfig(model=str(path), attention=options.mechanism,
                      pooling=(source.extra or {}).get("pooling", "cls"), reinit_head=reinit_head)
    model, report = build_classifier(cfg, labels, max_length=source.config.max_positions, source=source,
                                     attention=options, problem_type=source.problem_type)
    if any(name.startswith("classifier.") for name in report.fresh) and not reinit_head:
        raise TextclsError(f"model {str(path)!r} holds no classifier weights (a base model?); fine-tune it first")
    return model, labels, report


def describe_model(cfg: ModelConfig, max_length: int, attention: Optional[AttentionOptions] = None) -> dict:
    """What `cfg` builds, without reading any weights: where architecture and weights come from, the architecture,
    parameter counts. Pretrained weights that cannot be had are reported, not raised, when the architecture is known."""
    weights_error = None
    try:
        source = find_model(cfg.model, cfg.init)
    except TextclsError as e:
        if cfg.init != "pretrained":
            raise
        source, weights_error = find_model(cfg.model, "random"), str(e)  # a preset's or a cached config's dims
    labels = source.label_names or default_label_names(2)
    with torch.device("meta"):  # shapes only, no memory
        model = BertClassifier(encoder_config(cfg, source, max_length, attention), len(labels), cfg.pooling)
    total, encoder = _num_params(model), _num_params(model.encoder)
    attention = model.encoder.blocks[0].attn
    return {
        "model": cfg.model,
        "source": source.describe(),
        "init": cfg.init,
        "weights": ("random init" if cfg.init == "random" else str(source.weights) if source.weights else None),
        "weights_error": weights_error,
        "architecture": dataclasses.asdict(model.encoder.config),
        "attention": {"name": attention.name, "options": dataclasses.asdict(attention.options),
                      "exact": attention.exact, "supports_padding_mask": attention.supports_padding_mask,
                      "seq_multiple_of": attention.seq_multiple_of},
        "pooling": cfg.pooling,
        "labels": source.label_names,
        "saved_settings": source.extra,
        "parameters": {"total": total, "embeddings": _num_params(model.encoder.embeddings),
                       "blocks": _num_params(model.encoder.blocks), "head": total - encoder},
    }


def _num_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

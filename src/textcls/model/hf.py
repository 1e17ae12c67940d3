"""BERT checkpoints in the transformers layout: reading config.json and weights into textcls, writing them back.

The parameter names are mapped explicitly (`hf_names`), in the spirit of nanoGPT's from_pretrained: every tensor of
the checkpoint is accounted for, every shape is checked, and what is left over or missing is an error that lists it,
except the heads a model trains fresh (pooler, classifier, masked-LM head), which are reported.

A saved textcls classifier IS a transformers folder (config.json, model.safetensors, tokenizer files) plus
`textcls.json`, which holds what transformers has no field for (attention mechanism and its options, pooling, the
tokenize settings). A mechanism's own weights are saved as `bert.encoder.layer.N.attention.mechanism.*`: tensors
transformers' BERT does not have, so it ignores them (and says so), and textcls reads them back.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from torch import nn

from textcls.config import PROBLEM_TYPES
from textcls.errors import TextclsError
from textcls.io import atomic_dir
from textcls.model.encoder import BertClassifier, BertMaskedLM, EncoderConfig

log = logging.getLogger(__name__)

TEXTCLS_JSON = "textcls.json"
FORMAT_VERSION = 1

# Checkpoint tensors that hold nothing a textcls model needs: the position-id buffer older transformers saved, and
# the masked-LM decoder, whose weight is the word embedding matrix and whose bias is `cls.predictions.bias` (tied).
_REDUNDANT = ("bert.embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
# Heads a checkpoint may carry that the model being loaded may not use: reported, never an error.
_HEADS = ("bert.pooler.", "classifier.", "cls.")
# textcls parameters that may start fresh when the checkpoint lacks them (a base model has no classifier).
_FRESH_OK = ("pooler.", "classifier.", "transform.", "transform_ln.", "decoder_bias")
# Where an attention mechanism's own weights go in the transformers layout, and its textcls name, for layer i.
_MECHANISM = "bert.encoder.layer.{i}.attention.mechanism."
_OURS_MECHANISM = "encoder.blocks.{i}.attn."


def default_label_names(n: int) -> list[str]:
    """transformers' names for the labels of a classifier without id2label: LABEL_0 .. LABEL_{n-1}."""
    return [f"LABEL_{i}" for i in range(n)]


def has_label_names(names: Optional[Sequence[str]]) -> bool:
    """Whether a model's labels have names of their own (not None, not transformers' LABEL_i defaults)."""
    return names is not None and list(names) != default_label_names(len(names))


def _is_mechanism_weight(hf_name: str) -> bool:
    return ".attention.mechanism." in hf_name


# --------------------------------------------------------------------------------------------- config.json

def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TextclsError(f"cannot read {str(path)!r}: {e}") from None


def encoder_config_from_hf(hf: dict, source: str) -> EncoderConfig:
    """The architecture in a transformers BERT config.json (`source` names it in messages)."""
    checks = {"model_type": ("bert", None), "hidden_act": ("gelu",), "position_embedding_type": ("absolute", None)}
    for key, allowed in checks.items():
        if hf.get(key, allowed[-1]) not in allowed:
            raise TextclsError(f"{source}: {key}={hf[key]!r} is not supported; textcls loads BERT checkpoints "
                               f"({key} {' or '.join(map(str, filter(None, allowed)))})")
    try:
        return EncoderConfig(
            num_layers=hf["num_hidden_layers"], hidden_size=hf["hidden_size"], num_heads=hf["num_attention_heads"],
            intermediate_size=hf["intermediate_size"], vocab_size=hf["vocab_size"],
            max_positions=hf.get("max_position_embeddings", 512), type_vocab_size=hf.get("type_vocab_size", 2),
            pad_token_id=hf.get("pad_token_id", 0) or 0, layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
            hidden_dropout=hf.get("hidden_dropout_prob", 0.1), initializer_range=hf.get("initializer_range", 0.02))
    except KeyError as e:
        raise TextclsError(f"{source}: config.json has no {e.args[0]!r}; is it a BERT checkpoint?") from None


def hf_label_names(hf: dict) -> Optional[list[str]]:
    """The label names of a config.json's id2label, in id order; None when it has none. transformers writes no
    id2label for its default labels: a sequence classifier without one has LABEL_0 .. LABEL_{num_labels-1}."""
    id2label = {int(i): str(n) for i, n in hf.get("id2label", {}).items()}
    if not id2label and any(a.endswith("ForSequenceClassification") for a in hf.get("architectures") or []):
        return default_label_names(hf.get("num_labels", 2))
    return [id2label[i] for i in sorted(id2label)] or None


# textcls's problem types (--problem) and transformers' config.json problem_type, which picks its loss.
HF_PROBLEM_TYPES = dict(zip(PROBLEM_TYPES, ("single_label_classification", "multi_label_classification",
                                            "regression")))


def hf_problem_type(hf: dict) -> str:
    """The textcls problem type of a config.json: its problem_type, else transformers' own rule (one output is a
    regression, more a single-label classifier)."""
    ours = {v: k for k, v in HF_PROBLEM_TYPES.items()}.get(hf.get("problem_type") or "")
    if ours is not None:
        return ours
    return "regression" if hf.get("num_labels", len(hf.get("id2label") or {}) or 2) == 1 else "single-label"


def hf_config(cfg: EncoderConfig, architecture: str, label_names: Sequence[str] = (),
              problem_type: str = "single-label"):
    """A transformers BertConfig for `architecture`: BertForSequenceClassification with these labels (and
    `problem_type`, as transformers names it), or BertForMaskedLM (its decoder tied to the word embeddings:
    transformers' default, tie_word_embeddings)."""
    from transformers import BertConfig
    labels = {"problem_type": HF_PROBLEM_TYPES[problem_type], "id2label": dict(enumerate(label_names)),
              "label2id": {n: i for i, n in enumerate(label_names)}} if label_names else {}
    return BertConfig(
        vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size, hidden_act="gelu",
        hidden_dropout_prob=cfg.hidden_dropout, attention_probs_dropout_prob=cfg.attention_dropout,
        max_position_embeddings=cfg.max_positions, type_vocab_size=cfg.type_vocab_size,
        initializer_range=cfg.initializer_range, layer_norm_eps=cfg.layer_norm_eps, pad_token_id=cfg.pad_token_id,
        architectures=[architecture], **labels)


# --------------------------------------------------------------------------------------------- the name mapping

def hf_names(model: nn.Module) -> dict[str, list[str]]:
    """For every parameter of a textcls model, the transformers names it is made of, in transformers'
    BertForSequenceClassification / BertForMaskedLM layout. Several names = concatenated along dim 0 (q, k, v)."""
    names: dict[str, list[str]] = {}
    wb = ("weight", "bias")
    emb = {"word": "word_embeddings", "position": "position_embeddings", "token_type": "token_type_embeddings"}
    for ours, theirs in emb.items():
        names[f"encoder.embeddings.{ours}.weight"] = [f"bert.embeddings.{theirs}.weight"]
    for p in wb:
        names[f"encoder.embeddings.ln.{p}"] = [f"bert.embeddings.LayerNorm.{p}"]
    tied: set[int] = set()  # mechanism parameters already named
    for i in range(len(model.encoder.blocks)):
        ours, theirs = f"encoder.blocks.{i}.", f"bert.encoder.layer.{i}."
        for p in wb:
            names[f"{ours}qkv.{p}"] = [f"{theirs}attention.self.{n}.{p}" for n in ("query", "key", "value")]
            names[f"{ours}attn_out.{p}"] = [f"{theirs}attention.output.dense.{p}"]
            names[f"{ours}attn_ln.{p}"] = [f"{theirs}attention.output.LayerNorm.{p}"]
            names[f"{ours}mlp_in.{p}"] = [f"{theirs}intermediate.dense.{p}"]
            names[f"{ours}mlp_out.{p}"] = [f"{theirs}output.dense.{p}"]
            names[f"{ours}mlp_ln.{p}"] = [f"{theirs}output.LayerNorm.{p}"]
        mechanism = model.encoder.blocks[i].attn
        for p, tensor in mechanism.named_parameters():  # the mechanism's own weights (e.g. Linformer's projections)
            if id(tensor) not in tied:  # one shared by layers (Linformer's layerwise sharing): under its first layer
                tied.add(id(tensor))
                names[_OURS_MECHANISM.format(i=i) + p] = [_MECHANISM.format(i=i) + p]
    heads = {"pooler": "bert.pooler.dense", "classifier": "classifier", "transform": "cls.predictions.transform.dense",
             "transform_ln": "cls.predictions.transform.LayerNorm"}
    for ours, theirs in heads.items():
        if getattr(model, ours, None) is not None:
            for p in wb:
                names[f"{ours}.{p}"] = [f"{theirs}.{p}"]
    if isinstance(model, BertMaskedLM):
        names["decoder_bias"] = ["cls.predictions.bias"]
    missed = sorted(set(n for n, _ in model.named_parameters()) - set(names))
    assert not missed, f"hf_names does not map {missed}"
    return names


def _canonical(key: str) -> str:
    """A checkpoint key in BertForSequenceClassification's naming: bare BertModel names get the `bert.` prefix,
    TF-era LayerNorm names (gamma, beta) become weight, bias."""
    if key.startswith(("embeddings.", "encoder.", "pooler.")):
        key = "bert." + key
    if key.endswith(("LayerNorm.gamma", "LayerNorm.beta")):
        key = key.rsplit(".", 1)[0] + (".weight" if key.endswith("gamma") else ".bias")
    return key


# --------------------------------------------------------------------------------------------- reading weights

def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file, names canonical. `.bin` files are read with weights_only=True (no pickled code)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: each library raises its own type
        raise TextclsError(f"cannot read weights {str(path)!r}: {e}") from None
    canonical = {_canonical(k): v for k, v in state.items()}
    if len(canonical) != len(state):
        raise TextclsError(f"weights {str(path)!r} hold both bare and `bert.`-prefixed copies of some tensors")
    return canonical


@dataclass
class LoadReport:
    """What loading did beyond copying tensors one to one; logged, and returned to the caller."""
    source: str  # the weights file, or "random init"
    fresh: list[str] = field(default_factory=list)  # model parameters initialised fresh (heads the checkpoint lacks)
    unused: list[str] = field(default_factory=list)  # checkpoint tensors of heads this model does not have
    extended_positions: Optional[tuple[int, int]] = None  # (checkpoint positions, model positions)

    def to_dict(self) -> dict:
        return asdict(self)

    def log(self) -> None:
        log.info("weights: %s", self.source)
        if self.fresh:
            log.info("initialised fresh (not in the checkpoint): %s", ", ".join(self.fresh))
        if self.unused:
            log.info("checkpoint tensors not used by this model: %s", ", ".join(self.unused))
        if self.extended_positions:
            log.info("position embeddings extended from %d to %d by copying them forward", *self.extended_positions)


def _extend_positions(table: torch.Tensor, n: int) -> torch.Tensor:
    """Repeat the learned position embeddings (P, C) until there are n rows (Longformer, Beltagy et al. 2020)."""
    reps = -(-n // table.shape[0])  # ceil
    return table.repeat(reps, 1)[:n]


def load_hf_state(model: nn.Module, state: dict[str, torch.Tensor], source: str, fresh_head: bool = False,
                  extend_positions: bool = False) -> LoadReport:
    """Copy a checkpoint (canonical names) into a textcls model. With `fresh_head` the checkpoint's classifier is
    not loaded; with `extend_positions` a shorter position table is copied forward to fill the model's."""
    report = LoadReport(source=source)
    left = {k: v for k, v in state.items() if k not in _REDUNDANT}
    if fresh_head:
        report.unused += [k for k in sorted(left) if k.startswith("classifier.")]
        left = {k: v for k, v in left.items() if not k.startswith("classifier.")}
    params = dict(model.named_parameters())
    missing, bad_shapes, loaded = [], [], {}
    for ours, theirs in hf_names(model).items():
        if not all(t in left for t in theirs):
            fresh_ok = ours.startswith(_FRESH_OK) or _is_mechanism_weight(theirs[0])
            (report.fresh if fresh_ok else missing).append(ours)
            continue
        tensor = torch.cat([left.pop(t) for t in theirs])  # q, k, v stacked as our fused qkv
        want = params[ours].shape
        if ours == "encoder.embeddings.position.weight" and extend_positions and tensor.shape[0] < want[0]:
            report.extended_positions = (tensor.shape[0], want[0])
            tensor = _extend_positions(tensor, want[0])
        if tensor.shape != want:
            bad_shapes.append(f"{'+'.join(theirs)} {tuple(tensor.shape)} (model: {ours} {tuple(want)})")
        loaded[ours] = tensor
    # Heads, and another mechanism's weights (a Linformer model loaded with full attention), are not errors.
    unused = [k for k in left if k.startswith(_HEADS) or _is_mechanism_weight(k)]
    unknown = sorted(k for k in left if k not in unused)
    report.unused += sorted(unused)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors: {', '.join(missing)}")
    if unknown:
        problems.append(f"{len(unknown)} unknown tensors: {', '.join(unknown)}")
    if bad_shapes:
        problems.append(f"{len(bad_shapes)} tensors of the wrong shape: {'; '.join(bad_shapes)}")
    if problems:
        raise TextclsError(f"weights {source!r} do not fit this BERT model: {'; '.join(problems)}. Is it a BERT "
                           f"checkpoint with the same dimensions as its config.json?")
    with torch.no_grad():
        for name, tensor in loaded.items():
            params[name].copy_(tensor)
    return report


# --------------------------------------------------------------------------------------------- writing

def hf_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters under transformers' names (fused q, k, v split back), contiguous, ready to save."""
    params = dict(model.named_parameters())
    state = {}
    for ours, theirs in hf_names(model).items():
        for name, part in zip(theirs, params[ours].detach().chunk(len(theirs))):
            state[name] = part.contiguous().cpu()
    return state


def transformers_differences(model: nn.Module) -> list[str]:
    """Why transformers' BertForSequenceClassification / BertForMaskedLM would compute other logits from this
    model's weights."""
    out = []
    pooling = getattr(model, "pooling", "cls")  # a masked LM pools nothing
    if pooling != "cls":
        out.append(f"pooling {pooling!r} (transformers pools with the [CLS] pooler)")
    attention = model.encoder.attention
    if not attention.exact:  # the instance knows: a window that covers every position is exact
        out.append(f"attention {attention.name!r} (transformers computes full attention)")
    return out


def _save_folder(model: nn.Module, path: str | Path, hf_cfg: Any, tokenizer: Any, extra: dict,
                 tokenize_cfg: Optional[Any]) -> Path:
    """config.json, model.safetensors (transformers' names), the tokenizer, and textcls.json (what transformers
    has no field for, and the TokenizeConfig the model was trained with); written beside and renamed: never half a
    folder."""
    from safetensors.torch import save_file

    differences = transformers_differences(model)
    cfg = model.encoder.config
    extra = {"format_version": FORMAT_VERSION, "attention": cfg.attention,
             "attention_options": asdict(cfg.attention_options), **extra,
             "transformers_equivalent": not differences, "differences": differences,
             "tokenize": None if tokenize_cfg is None else asdict(tokenize_cfg)}
    with atomic_dir(path) as tmp:
        hf_cfg.save_pretrained(tmp)
        save_file(hf_state_dict(model), tmp / "model.safetensors", metadata={"format": "pt"})
        tokenizer.save_pretrained(tmp)
        (tmp / TEXTCLS_JSON).write_text(json.dumps(extra, indent=2) + "\n", encoding="utf-8")
    if differences:
        log.warning("%s loads in transformers but computes different logits there: %s. Load it with textcls "
                    "(textcls.json records this).", path, "; ".join(differences))
    return Path(path)


def save_classifier(model: BertClassifier, path: str | Path, tokenizer: Any, label_names: Sequence[str],
                    tokenize_cfg: Optional[Any] = None, thresholds: Optional[Sequence[float]] = None) -> Path:
    """Write `model` as a folder that transformers' AutoModelForSequenceClassification and AutoTokenizer load, plus
    textcls.json (attention, pooling, tokenize settings, so that predictions tokenize alike; for a multi-label
    model, the decision threshold of each label)."""
    if len(label_names) != model.num_labels:
        raise TextclsError(f"{len(label_names)} label names for a classifier with {model.num_labels} outputs")
    problem = getattr(model, "problem_type", "single-label")
    hf_cfg = hf_config(model.encoder.config, "BertForSequenceClassification", label_names, problem)
    extra: dict[str, Any] = {"pooling": model.pooling}
    if problem != "single-label":  # a single-label model's textcls.json stays as it was
        extra["problem_type"] = problem
    if problem == "multi-label":
        extra["thresholds"] = dict(zip(label_names, [0.5] * len(label_names) if thresholds is None else
                                       [float(t) for t in thresholds]))
    return _save_folder(model, path, hf_cfg, tokenizer, extra, tokenize_cfg)


def save_masked_lm(model: BertMaskedLM, path: str | Path, tokenizer: Any, tokenize_cfg: Optional[Any] = None) -> Path:
    """Write a masked LM as a folder that transformers' AutoModelForMaskedLM loads (BertForMaskedLM: the MLM head as
    cls.predictions.*, the decoder tied to the word embeddings, so not stored, as transformers saves it). Fine-tune
    it with `textcls train --model FOLDER`: the encoder is loaded, the MLM head reported unused."""
    hf_cfg = hf_config(model.encoder.config, "BertForMaskedLM")
    return _save_folder(model, path, hf_cfg, tokenizer, {}, tokenize_cfg)

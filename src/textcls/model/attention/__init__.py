"""Attention mechanisms, chosen by name from a strict registry: `build_attention("sliding", options, shape)`.

A mechanism is one file in this folder: its options (a dataclass subclassing `AttentionOptions`, fields named after
the mechanism, so `sliding_window` is the flag `--sliding-window` and the config key `attention.sliding_window`) and
a module registered with `@register_attention(name, OptionsClass)`. Every file here is imported (and so registered)
with this package. Every mechanism has the same call signature

    prepare(inputs) -> inputs          once per forward, shared by every layer (e.g. which tokens are global)
    forward(q, k, v, inputs) -> out
        q, k, v, out: (B, nh, T, hs)
        inputs: AttentionInputs (the key padding mask, token types, global tokens)

The projections to q, k, v and back live in the transformer block: a mechanism mixes values across positions, and may
hold weights of its own (saved and loaded with the model). What a mechanism can do is declared as class attributes,
checked once when the model is built.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
import pkgutil
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch
from torch import nn

from textcls.config import AttentionOptions, flag_name
from textcls.errors import TextclsError


@dataclass
class AttentionShape:
    """What every mechanism is built for: the model's dimensions, not the run's."""
    num_heads: int
    head_size: int
    max_positions: int  # the longest sequence the model takes (its position table): fixed-size projections need it
    dropout: float = 0.0  # on the attention probabilities, in training only


@dataclass
class AttentionInputs:
    """What a mechanism gets besides q, k and v; made once per forward by the encoder, completed by the mechanism's
    `prepare`, and passed to every layer."""
    input_ids: Optional[torch.Tensor] = None  # (B, T) the tokens (where the special ones are, the batch's shape)
    key_padding_mask: Optional[torch.Tensor] = None  # (B, T) bool, True = real token; None: the batch has no padding
    token_type_ids: Optional[torch.Tensor] = None  # (B, T) segment of each token (0: first text, 1: second)
    global_mask: Optional[torch.Tensor] = None  # (B, T) bool, True = a global token (mechanisms that have them)
    state: Optional[object] = None  # what the mechanism's prepare made for every layer (a block layout, a mask)


class Attention(nn.Module):
    """Base of every mechanism: its capabilities, as class attributes (an instance may refine them from its options)."""

    name: str = ""  # set by register_attention
    supports_padding_mask: bool = True  # padded keys get no weight; if False, batches must not be padded
    seq_multiple_of: int = 1  # batches are padded to a multiple of this (by the collator the model asks for)
    exact: bool = False  # computes BERT's full softmax attention, so an export computes the same in transformers
    shared_qk: bool = False  # queries and keys are one projection (Reformer's LSH): the block passes k = q
    global_tokens: bool = False  # uses AttentionInputs.global_mask (set by `prepare`, or given to the model)

    def __init__(self, shape: AttentionShape, options: AttentionOptions):
        super().__init__()
        self.shape = shape
        self.options = options

    def prepare(self, inputs: AttentionInputs) -> AttentionInputs:
        """Per-forward work shared by all layers (called on the first layer's mechanism)."""
        return inputs

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def check_options(cls, options: AttentionOptions, shape: AttentionShape, max_length: int) -> None:
        """Raise a TextclsError when these options cannot work for inputs of up to `max_length` tokens on a model
        of this shape (the run's length, not the model's positions). The base checks the padded length fits."""
        padded = -(-max_length // cls.seq_multiple_of) * cls.seq_multiple_of
        if padded > shape.max_positions:
            raise TextclsError(f"attention {cls.name!r} pads batches to a multiple of {cls.seq_multiple_of} tokens: "
                               f"--max-length {max_length} becomes {padded}, more than the model's "
                               f"{shape.max_positions} positions; lower --max-length to "
                               f"{shape.max_positions // cls.seq_multiple_of * cls.seq_multiple_of} or add "
                               f"--extend-positions")

    @classmethod
    def check_data(cls, options: AttentionOptions, pairs: bool) -> None:
        """Raise a TextclsError when these options cannot work on this data (single texts or pairs), once the data
        is known: in training, evaluation and prediction."""

    @classmethod
    def tie_layers(cls, mechanisms: Sequence["Attention"]) -> None:
        """Share weights across layers (e.g. Linformer's layerwise projection): called by the encoder once its
        layers are built, with every layer's mechanism; set the same nn.Parameter on each. The default shares
        nothing."""

    @classmethod
    def full_limit(cls, seq_len: int) -> Optional[dict]:
        """Options under which this mechanism must equal full attention on sequences of `seq_len` tokens (e.g. a
        window at least as long as the sequence), or None if it has no such limit. The tests use it."""
        return None

    @classmethod
    def dense_reference(cls, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                        key_padding_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """What this mechanism computes in its `full_limit`, materialised, (B, nh, T, hs) -> (B, nh, T, hs): by
        default full attention, softmax(q kᵀ / √hs) v over the real keys (key_padding_mask: (B, T) bool, True = real).
        A mechanism whose limit is another attention (Reformer's shared query-key one) overrides it. The tests use
        it."""
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, nh, T, T)
        if key_padding_mask is not None:
            scores = scores.masked_fill(~key_padding_mask[:, None, None, :], float("-inf"))
        return scores.softmax(dim=-1) @ v


def layout_dtype(device: torch.device) -> torch.dtype:
    """The dtype the attention will run in on `device` (autocast's, else the default): the one a `prepare` builds
    its additive masks in, so that no layer casts them again."""
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else \
        torch.get_default_dtype()


_REGISTRY: dict[str, tuple[type[Attention], type[AttentionOptions]]] = {}


def register_attention(name: str,
                       options_class: type[AttentionOptions]) -> Callable[[type[Attention]], type[Attention]]:
    """Class decorator: `@register_attention("sliding", SlidingOptions) class SlidingAttention(Attention): ...`."""
    def register(cls: type[Attention]) -> type[Attention]:
        # Programming errors, not user errors: they fail at import, before anyone runs a command.
        if name in _REGISTRY:
            raise ValueError(f"attention {name!r} is registered twice ({_REGISTRY[name][0].__name__}, {cls.__name__})")
        if not (issubclass(cls, Attention) and issubclass(options_class, AttentionOptions)):
            raise TypeError(f"attention {name!r}: {cls.__name__} must subclass Attention and "
                            f"{options_class.__name__} AttentionOptions")
        if "mechanism" in vars(options_class):
            raise ValueError(f"attention {name!r}: {options_class.__name__} already belongs to "
                             f"{options_class.mechanism!r}; give each mechanism its own options class")
        for f in dataclasses.fields(options_class):
            if not f.name.startswith(f"{name}_"):  # flags are named after their mechanism, and unique
                raise ValueError(f"attention {name!r}: option {f.name!r} must start with {name + '_'!r}")
        cls.name = name
        options_class.mechanism = name
        _REGISTRY[name] = (cls, options_class)
        return cls
    return register


def attention_names() -> list[str]:
    return sorted(_REGISTRY)


def attention_class(name: str) -> tuple[type[Attention], type[AttentionOptions]]:
    """The mechanism registered as `name` and its options class; an unknown name is a TextclsError listing the
    known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TextclsError(f"unknown attention {name!r}; registered mechanisms: {', '.join(attention_names())} "
                           f"(see `textcls attention list`)") from None


def describe_attention() -> list[dict]:
    """Every registered mechanism with its capabilities, options (flag, default, help) and the first line of its
    docstring."""
    out = []
    for name, (cls, options_class) in sorted(_REGISTRY.items()):
        options = [{"flag": flag_name(f.name), "key": f"attention.{f.name}", "default": f.default,
                    "help": f.metadata["help"]} for f in dataclasses.fields(options_class)]
        out.append({"name": name, "exact": cls.exact, "supports_padding_mask": cls.supports_padding_mask,
                    "seq_multiple_of": cls.seq_multiple_of, "shared_qk": cls.shared_qk,
                    "global_tokens": cls.global_tokens, "options": options,
                    "description": (cls.__doc__ or "").strip().splitlines()[0]})
    return out


def attention_options(name: str, values: Optional[dict] = None) -> AttentionOptions:
    """Options of mechanism `name` from a dict of its fields (a saved textcls.json), checked; None: its defaults."""
    from textcls.config import section_from_dict
    return section_from_dict(attention_class(name)[1], values or {})


def override_attention(saved: AttentionOptions, name: Optional[str] = None,
                       options: Optional[dict] = None) -> AttentionOptions:
    """A model's attention `saved`, run with mechanism `name` (None: the same) and `options` on top: on the saved
    options when the mechanism stays, else on the new mechanism's defaults. An option of another mechanism is an
    error."""
    from textcls.config import section_from_dict

    name = name or saved.mechanism
    return section_from_dict(attention_class(name)[1], options or {}, saved if name == saved.mechanism else None)


def build_attention(options: AttentionOptions, shape: AttentionShape) -> Attention:
    """Build the mechanism that `options` belong to, for a model of this shape."""
    cls, _ = attention_class(options.mechanism)
    return cls(shape, options)


# Import every mechanism file in this folder: each registers itself, so adding one is adding one file.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

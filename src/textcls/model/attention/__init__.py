"""Attention mechanisms, chosen by name from a strict registry: `build_attention("full", ...)`.

A mechanism is one file in this folder: a config dataclass (its own hyperparameters, on top of `AttentionConfig`) and
a module registered with `@register_attention(name, ConfigClass)`. Every file here is imported (and so registered)
with this package. Every mechanism has the same call signature

    forward(q, k, v, key_padding_mask) -> out
        q, k, v, out: (B, nh, T, hs)
        key_padding_mask: (B, T) bool, True = real token; None when the batch has no padding

The projections to q, k, v and back live in the transformer block: a mechanism only mixes values across positions.
What a mechanism can do is declared as class attributes, checked once when the model is built.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from textcls.errors import TextclsError


@dataclass
class AttentionConfig:
    """What every mechanism is given; a mechanism's own config subclasses this and adds fields with defaults."""
    num_heads: int
    head_size: int
    max_length: int  # the longest sequence the model is built for (fixed-size projections such as Linformer's need it)
    dropout: float = 0.0  # on the attention probabilities, in training only


class Attention(nn.Module):
    """Base of every mechanism: its capabilities, as class attributes (an instance may refine them from its config)."""

    name: str = ""  # set by register_attention
    supports_padding_mask: bool = True  # padded keys get no weight; if False, batches must not be padded
    seq_multiple_of: int = 1  # sequence lengths must be a multiple of this (block-wise mechanisms)
    exact: bool = False  # computes BERT's full softmax attention, so an export computes the same in transformers

    def __init__(self, config: AttentionConfig):
        super().__init__()
        self.config = config

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_padding_mask: Optional[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    @classmethod
    def full_limit(cls, seq_len: int) -> Optional[dict]:
        """Config fields under which this mechanism must equal full attention on sequences of `seq_len` tokens
        (e.g. a window at least as long as the sequence), or None if it has no such limit. The tests use it."""
        return None


_REGISTRY: dict[str, tuple[type[Attention], type[AttentionConfig]]] = {}


def register_attention(name: str, config_class: type[AttentionConfig]) -> Callable[[type[Attention]], type[Attention]]:
    """Class decorator: `@register_attention("full", FullAttentionConfig) class FullAttention(Attention): ...`."""
    def register(cls: type[Attention]) -> type[Attention]:
        # Programming errors, not user errors: they fail at import, before anyone runs a command.
        if name in _REGISTRY:
            raise ValueError(f"attention {name!r} is registered twice ({_REGISTRY[name][0].__name__}, {cls.__name__})")
        if not (issubclass(cls, Attention) and issubclass(config_class, AttentionConfig)):
            raise TypeError(f"attention {name!r}: {cls.__name__} must subclass Attention and "
                            f"{config_class.__name__} AttentionConfig")
        cls.name = name
        _REGISTRY[name] = (cls, config_class)
        return cls
    return register


def attention_names() -> list[str]:
    return sorted(_REGISTRY)


def attention_class(name: str) -> tuple[type[Attention], type[AttentionConfig]]:
    """The mechanism registered as `name` and its config class; an unknown name is a TextclsError listing the known."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TextclsError(f"unknown attention {name!r}; registered mechanisms: {', '.join(attention_names())} "
                           f"(see `textcls attention list`)") from None


def describe_attention() -> list[dict]:
    """Every registered mechanism with its capabilities and the first line of its docstring."""
    return [{"name": name, "exact": cls.exact, "supports_padding_mask": cls.supports_padding_mask,
             "seq_multiple_of": cls.seq_multiple_of, "description": (cls.__doc__ or "").strip().splitlines()[0]}
            for name, (cls, _) in sorted(_REGISTRY.items())]


def build_attention(name: str, num_heads: int, head_size: int, max_length: int, dropout: float = 0.0) -> Attention:
    """Build mechanism `name` and check, once, that its capabilities fit the model being built."""
    cls, config_class = attention_class(name)
    mechanism = cls(config_class(num_heads=num_heads, head_size=head_size, max_length=max_length, dropout=dropout))
    m, r = mechanism.seq_multiple_of, max_length % mechanism.seq_multiple_of
    if r:
        raise TextclsError(f"attention {name!r} needs sequence lengths that are a multiple of {m}; --max-length "
                           f"{max_length} is not (use {max_length - r} or {max_length - r + m})")
    return mechanism


# Import every mechanism file in this folder: each registers itself, so adding one is adding one file.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

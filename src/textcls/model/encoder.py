"""A BERT encoder (Devlin et al. 2019) with pluggable attention, and its two heads: sequence classification and
masked language modelling.

Shapes: B batch, T tokens, C hidden size, nh heads, hs head size (C = nh * hs), I intermediate size, V vocabulary.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from textcls.config import PROBLEM_TYPES, AttentionOptions
from textcls.errors import TextclsError
from textcls.model.attention import (
    AttentionInputs,
    AttentionShape,
    attention_options,
    build_attention,
)


@dataclass
class EncoderConfig:
    """The architecture: what a checkpoint's config.json fixes, plus the attention mechanism and dropouts.
    `max_positions` is the model's position table: the longest input it takes (a run's --max-length is at most
    that)."""
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    vocab_size: int = 30522
    max_positions: int = 512
    type_vocab_size: int = 2
    pad_token_id: int = 0
    layer_norm_eps: float = 1e-12
    hidden_dropout: float = 0.1
    attention_dropout: float = 0.0
    attention: str = "full"
    attention_options: Optional[AttentionOptions] = None  # the mechanism's options; None: its defaults
    initializer_range: float = 0.02

    def __post_init__(self):
        if self.hidden_size % self.num_heads:
            raise TextclsError(f"hidden size {self.hidden_size} is not a multiple of the {self.num_heads} heads")
        if self.attention_options is None:
            self.attention_options = attention_options(self.attention)
        elif self.attention_options.mechanism != self.attention:
            raise TextclsError(f"options of attention {self.attention_options.mechanism!r} given for attention "
                               f"{self.attention!r}")

    def attention_shape(self) -> AttentionShape:
        return AttentionShape(num_heads=self.num_heads, head_size=self.hidden_size // self.num_heads,
                              max_positions=self.max_positions, dropout=self.attention_dropout)


@dataclass
class ModelOutput:
    logits: torch.Tensor  # (B, num_labels) for the classifier, (B, T, V) for the masked LM ((M, V) with labels)
    loss: Optional[torch.Tensor] = None  # when labels are given


class Dropout(nn.Dropout):
    """nn.Dropout whose mask on a CPU comes from 16-bit slices of random integers: torch's CPU `bernoulli_` costs
    about one Mersenne Twister draw and a float conversion per element, and on the main job's step (hidden dropout,
    five calls per step) the draw was the largest element-wise cost. One 31-bit `random_()` integer gives two
    elements their bits (16 and 15), so a mask costs half a draw per element. An element is kept with a probability
    that differs from 1 - p by under 2^-15. Same module, same state (none), same flag; on a GPU, and for p so close to
    1 that 15 bits cannot tell it from 1, it is nn.Dropout itself."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu" or round(self.p * 2 ** 15) >= 2 ** 15:
            return super().forward(x)
        return x * keep_mask(x.shape, self.p) * (1 / (1 - self.p))


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """A bool tensor of `shape`, each element True with probability 1 - p (to 2^-15), from half a 31-bit random
    integer per element: the integer's low 16 bits, read as a signed int16 (uniform on [-2^15, 2^15)), and its high
    15 bits (uniform on [0, 2^15)), each against its own threshold."""
    n = shape.numel()
    bits = torch.empty((n + 1) // 2, dtype=torch.int32).random_().view(torch.int16).view(-1, 2)  # (n/2, 2)
    low, high = (0, 1) if sys.byteorder == "little" else (1, 0)  # which int16 of each int32 holds its low bits
    thresholds = torch.empty(2, dtype=torch.int16)
    thresholds[low], thresholds[high] = round(p * 2 ** 16) - 2 ** 15, round(p * 2 ** 15)
    return (bits >= thresholds).view(-1)[:n].view(shape)


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        # padding_idx: the [PAD] vector gets no gradient, as in BERT
        self.word = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position = nn.Embedding(cfg.max_positions, cfg.hidden_size)
        self.token_type = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.ln = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.drop = Dropout(cfg.hidden_dropout)

    def forward(self, input_ids: torch.Tensor, token_type_ids: Optional[torch.Tensor]) -> torch.Tensor:
        T = input_ids.shape[1]
        if T > self.position.num_embeddings:
            raise TextclsError(f"a batch of {T} tokens is longer than the model's {self.position.num_embeddings} "
                               f"positions; lower --max-length or build the model with --extend-positions")
        tt = self.token_type.weight[0] if token_type_ids is None else self.token_type(token_type_ids)
        x = self.word(input_ids) + tt + self.position.weight[:T]  # (B, T, C); same summation order as BERT
        return self.drop(self.ln(x))


class Block(nn.Module):
    """A post-LN transformer layer as in BERT: x = LN(x + attention(x)); x = LN(x + MLP(x))."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        C, self.num_heads = cfg.hidden_size, cfg.num_heads
        self.qkv = nn.Linear(C, 3 * C)  # query, key and value projections in one matmul
        self.attn = build_attention(cfg.attention_options, cfg.attention_shape())
        self.attn_out = nn.Linear(C, C)
        self.attn_ln = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.mlp_in = nn.Linear(C, cfg.intermediate_size)
        self.mlp_out = nn.Linear(cfg.intermediate_size, C)
        self.mlp_ln = nn.LayerNorm(C, eps=cfg.layer_norm_eps)
        self.drop = Dropout(cfg.hidden_dropout)

    def forward(self, x: torch.Tensor, inputs: AttentionInputs) -> torch.Tensor:
        B, T, C = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.num_heads, C // self.num_heads)  # (B, T, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, nh, T, hs)
        if self.attn.shared_qk:  # Reformer: keys are the queries (the key projection stays, unused, for loading)
            k = q
        y = self.attn(q, k, v, inputs)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(B, T, C)  # heads side by side again
        x = self.attn_ln(x + self.drop(self.attn_out(y)))
        h = F.gelu(self.mlp_in(x))  # exact (erf) GELU, as BERT
        return self.mlp_ln(x + self.drop(self.mlp_out(h)))


class Encoder(nn.Module):
    """Token ids to contextual token vectors, (B, T) -> (B, T, C)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.config = cfg
        self.embeddings = Embeddings(cfg)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        type(self.blocks[0].attn).tie_layers([block.attn for block in self.blocks])  # weights shared by layers

    @property
    def attention(self):
        """The mechanism (the same kind in every layer): its capabilities tell the collator how to pad."""
        return self.blocks[0].attn

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None,
                global_attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """`global_attention_mask` (B, T), as Longformer's: which tokens are global, for mechanisms that have global
        tokens (by default the mechanism decides, e.g. [CLS])."""
        # No mask for a batch without padding: the attention kernels are then at their fastest (flash on CUDA
        # takes no mask). One check per forward, not per layer. An exported graph serves every batch: it always masks
        # (an all-ones mask computes the same).
        attn = self.attention
        has_padding = attention_mask is not None and (torch.compiler.is_exporting() or not bool(attention_mask.all()))
        key_padding_mask = attention_mask.bool() if has_padding else None  # (B, T), True = real token
        if has_padding and not attn.supports_padding_mask:
            raise TextclsError(f"attention {attn.name!r} cannot mask padding; pad nothing (equal-length batches) or "
                               f"choose another mechanism")
        if input_ids.shape[1] % attn.seq_multiple_of:
            raise TextclsError(f"attention {attn.name!r} needs batches padded to a multiple of "
                               f"{attn.seq_multiple_of} tokens, got {input_ids.shape[1]}")
        if global_attention_mask is not None and not attn.global_tokens:
            raise TextclsError(f"attention {attn.name!r} has no global tokens; leave out global_attention_mask")
        inputs = attn.prepare(AttentionInputs(
            input_ids=input_ids, key_padding_mask=key_padding_mask, token_type_ids=token_type_ids,
            global_mask=None if global_attention_mask is None else global_attention_mask.bool()))
        x = self.embeddings(input_ids, token_type_ids)  # (B, T, C)
        for block in self.blocks:
            x = block(x, inputs)
        return x


def init_weights(model: nn.Module, std: float) -> None:
    """BERT's initialisation: normal(0, std) for matrices and embeddings, zero biases, unit LayerNorms."""
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, mean=0.0, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)
        if isinstance(m, nn.Embedding) and m.padding_idx is not None:
            with torch.no_grad():
                m.weight[m.padding_idx].zero_()
        if isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def classifier_loss(logits: torch.Tensor, labels: torch.Tensor, problem_type: str = "single-label") -> torch.Tensor:
    """The loss transformers' BertForSequenceClassification computes for its problem_type: cross-entropy with class
    ids (N,); binary cross-entropy of each output's sigmoid with 0/1 targets (N, L); the squared error of the one
    output (N, 1) with targets (N,)."""
    if problem_type == "multi-label":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    if problem_type == "regression":
        return F.mse_loss(logits.squeeze(-1), labels.to(logits.dtype))
    return F.cross_entropy(logits, labels)


class BertClassifier(nn.Module):
    """Sequence classification: pool the encoder's output, dropout, one linear layer to the labels.

    pooling "cls": BERT's pooler, dense + tanh on the [CLS] vector (what transformers' BertForSequenceClassification
    does); "mean": the mean of the real tokens' vectors (as sentence-transformers does), no pooler."""

    def __init__(self, cfg: EncoderConfig, num_labels: int, pooling: str = "cls", problem_type: str = "single-label"):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise TextclsError(f"pooling {pooling!r} is not one of: cls, mean")
        if problem_type not in PROBLEM_TYPES:
            raise TextclsError(f"problem type {problem_type!r} is not one of: {', '.join(PROBLEM_TYPES)}")
        self.pooling = pooling
        self.problem_type = problem_type  # the loss: cross-entropy, binary cross-entropy per label, squared error
        self.encoder = Encoder(cfg)
        self.pooler = nn.Linear(cfg.hidden_size, cfg.hidden_size) if pooling == "cls" else None
        self.drop = Dropout(cfg.hidden_dropout)
        self.classifier = nn.Linear(cfg.hidden_size, num_labels)
        init_weights(self, cfg.initializer_range)

    @property
    def num_labels(self) -> int:
        return self.classifier.out_features

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                global_attention_mask: Optional[torch.Tensor] = None) -> ModelOutput:
        h = self.encoder(input_ids, attention_mask, token_type_ids, global_attention_mask)  # (B, T, C)
        if self.pooler is not None:
            pooled = torch.tanh(self.pooler(h[:, 0]))  # (B, C) from [CLS]
        elif attention_mask is None:
            pooled = h.mean(dim=1)  # (B, C)
        else:
            m = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            pooled = (h * m).sum(dim=1) / m.sum(dim=1)  # (B, C): mean over real tokens only
        logits = self.classifier(self.drop(pooled))  # (B, num_labels)
        loss = None if labels is None else classifier_loss(logits, labels, self.problem_type)
        return ModelOutput(logits=logits, loss=loss)


class BertMaskedLM(nn.Module):
    """Masked language modelling, as BERT was pretrained: dense + GELU + LayerNorm, then the word embedding matrix
    (tied) plus a bias, to logits over the vocabulary. Labels are token ids, -100 where nothing is predicted.

    With labels, only the labelled positions go through the head, and `logits` holds just their rows, (M, V) in
    the order of `logits_without_labels[labels != -100]`: the vocabulary projection is most of a small model's
    compute, and 85% of the positions have nothing to predict (ModernBERT's sparse prediction)."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.encoder = Encoder(cfg)
        self.transform = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.transform_ln = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.decoder_bias = nn.Parameter(torch.zeros(cfg.vocab_size))
        init_weights(self, cfg.initializer_range)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                global_attention_mask: Optional[torch.Tensor] = None) -> ModelOutput:
        h = self.encoder(input_ids, attention_mask, token_type_ids, global_attention_mask)  # (B, T, C)
        if labels is None:
            return ModelOutput(logits=self._head(h))  # (B, T, V)
        predict = labels != -100  # (B, T)
        logits = self._head(h[predict])  # (M, V)
        # the mean over the M predicted tokens; a batch without any (M = 0) gives 0, not NaN
        loss = F.cross_entropy(logits, labels[predict], reduction="sum") / predict.sum().clamp(min=1)
        return ModelOutput(logits=logits, loss=loss)

    def _head(self, h: torch.Tensor) -> torch.Tensor:
        """(..., C) hidden states -> (..., V) logits."""
        h = self.transform_ln(F.gelu(self.transform(h)))
        return F.linear(h, self.encoder.embeddings.word.weight, self.decoder_bias)

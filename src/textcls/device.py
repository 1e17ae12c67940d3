"""Where the work runs: the device, the precision, and accelerate's setup, shared by training and inference."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from textcls.config import TrainConfig
from textcls.errors import TextclsError

log = logging.getLogger("textcls")


def no_gpu() -> bool:
    """accelerate runs several processes on CPUs (gloo) only when told `cpu=True`: without it, processes that
    torchrun starts on a machine without a GPU would each train alone."""
    return not (torch.cuda.is_available() or torch.backends.mps.is_available())


def default_device() -> torch.device:
    """The device inference runs on: the GPU when there is one, the current one (under torchrun or accelerate
    launch, accelerate's PartialState makes it the process's own)."""
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 matmuls natively (AVX512-BF16 or AMX): there bf16 runs at several times the fp32
    rate (2048^3 matmul on the project's AMD EPYC: ~390 against ~140 GFLOP/s); elsewhere torch emulates it, hundreds
    of times slower. TEXTCLS_NATIVE_BF16=0 (or 1) overrides the check: the same numbers on every kind of CPU."""
    override = os.environ.get("TEXTCLS_NATIVE_BF16")
    if override in ("0", "1"):
        return override == "1"
    cpu = torch.cpu
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def resolve_mixed_precision(choice: str) -> str:
    """"auto": bf16 on a GPU that has it, or on a CPU that computes it natively, else fp32 ("no"). An explicit bf16 on
    a CPU without it, or fp16 without a GPU, is a TextclsError: emulated, either would be far slower than fp32."""
    if torch.cuda.is_available():
        if choice == "auto":
            return "bf16" if torch.cuda.is_bf16_supported() else "no"
        return choice
    if choice == "auto":
        return "bf16" if cpu_has_native_bf16() else "no"
    if choice == "fp16":
        raise TextclsError("--mixed-precision fp16 needs a GPU; use bf16 (on a CPU with AVX512-BF16 or AMX) or no on "
                           "a CPU")
    if choice == "bf16" and not cpu_has_native_bf16():
        raise TextclsError("--mixed-precision bf16: this CPU has no native bf16 (no AVX512-BF16 or AMX), so torch would "
                           "emulate it, far slower than fp32; use --mixed-precision no, or auto (which picks fp32 here)")
    return choice


def describe_precision(resolved: str, inference: bool = False) -> str:
    """The precision a run (autocast, fp32 master weights) or a model call (`inference`: the weights cast) uses, and
    why, for the log."""
    if resolved == "no":
        return "fp32"
    where = "the GPU" if torch.cuda.is_available() else "this CPU (native bf16: AVX512-BF16/AMX)"
    return f"{resolved} weights on {where}" if inference else f"{resolved} autocast on {where}, weights fp32"


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
    precision = resolve_mixed_precision(tc.mixed_precision)
    log.info("precision: %s", describe_precision(precision))
    return Accelerator(cpu=no_gpu(), mixed_precision=precision,
                       gradient_accumulation_steps=tc.gradient_accumulation_steps,
                       dataloader_config=DataLoaderConfiguration(split_batches=True),
                       log_with="tensorboard" if tc.tensorboard else None, project_dir=str(run_dir))

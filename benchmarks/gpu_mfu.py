"""Model FLOPs utilisation of the training step on a GPU: bert-small's dimensions (4 layers, hidden 512, 8 heads) at
512 tokens, bf16 autocast, against the card's peak bf16 rate.

    python benchmarks/gpu_mfu.py [--model bert-small] [--length 512] [--batch-size 32] [--steps 50]
                                 [--peak-tflops X] [--device cuda]

One training step is textcls's: the classifier's forward under bf16 autocast, backward, gradient clipping, AdamW
(fused on CUDA); random token ids of the full length (no padding, so every token counts). Its FLOPs come from the
model's dims (`bench_precision.step_flops`: 3 x forward; the embeddings and the head are left out, so the figure is
slightly low). Timed: `--steps` steps after 10 warm-up steps, synchronised. The peak is --peak-tflops, or the card's
dense bf16 figure from its maker's sheet for the cards named in PEAK_TFLOPS; on a CPU (`--device cpu`, for a check
of the script) the peak is the measured 2048^3 bf16 matmul rate.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_precision import matmul_rate, step_flops  # noqa: E402

# Dense (no sparsity) bf16 tensor-core TFLOP/s from NVIDIA's data sheets.
PEAK_TFLOPS = {"H200": 989.4, "H100 80GB HBM3": 989.4, "H100 PCIe": 756.0, "A100": 312.0, "L40S": 362.1,
               "L4": 121.0}


def card_peak(name: str) -> float | None:
    return next((v for k, v in PEAK_TFLOPS.items() if k in name), None)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="bert-small", help="a preset's dimensions (default: bert-small)")
    p.add_argument("--length", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--peak-tflops", type=float, help="the device's peak bf16 TFLOP/s (default: from its name)")
    p.add_argument("--device", default="cuda")
    args = p.parse_args(argv)

    from textcls.config import ModelConfig
    from textcls.model import build_classifier

    device = torch.device(args.device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name()
        peak = args.peak_tflops or card_peak(name)
        if peak is None:
            sys.exit(f"unknown card {name!r}: give its peak bf16 TFLOP/s with --peak-tflops")
        sync = torch.cuda.synchronize
    else:
        name, peak = "CPU (peak: measured bf16 matmul rate)", args.peak_tflops or matmul_rate(torch.bfloat16) / 1e3
        sync = lambda: None  # noqa: E731
    torch.manual_seed(0)
    model, _ = build_classifier(ModelConfig(model=args.model, init="random"), ["neg", "pos"], max_length=args.length)
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    B, T = args.batch_size, args.length
    ids = torch.randint(1000, model.encoder.config.vocab_size, (B, T), device=device)  # (B, T)
    labels = torch.randint(0, 2, (B,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    tflops = step_flops(model.encoder.config, B, T) / seconds / 1e12
    print(f"{args.model} dims, {B} x {T} tokens, bf16 autocast, {name}: {seconds * 1e3:.1f} ms per step, "
          f"{B / seconds:.0f} examples/s, {tflops:.1f} TFLOP/s = {tflops / peak:.1%} of the peak {peak:.1f} TFLOP/s")


if __name__ == "__main__":
    main()

"""fp32 against bf16 autocast on a CPU that computes bf16 natively: the README's main job end to end, and inference.

    python benchmarks/bench_precision.py [--data ../shared/data/imdb] [--out runs/bench-precision] [--output FILE]
                                         [--skip-training]  # rates and predict only, with an earlier run's models

1. The main job (recipes/imdb-bert-tiny.yaml), as the README runs it, twice: `--mixed-precision no` (fp32) and
   `--mixed-precision bf16`, each from an empty tokenization cache, one after the other. Timed: the whole command
   (tokenizing, training, evaluating validation each epoch and the 25,000 test reviews, writing the run).
2. Inference: `textcls predict` of the 25,000 test reviews with the fp32-trained model, in fp32 and in bf16 (the
   tokenized inputs are not cached by predict: both tokenize the same way): time, label agreement, the largest
   probability difference, and the test accuracy of each.
3. The training step's achieved rate: the main job's model and optimizer, 12 steps on length-grouped batches of 32
   real training reviews (head+tail 512) in each precision, its FLOPs from the model's dims and each batch's real
   (padded) shape: 3 x forward, forward = layers x (2BT(4C^2 + 2CI) + 4BT^2C) (projections, MLP, QK^T and AV);
   beside the matmul rate of this CPU (2048^3) in the same precision.

Needs a CPU with native bf16 (AVX512-BF16 or AMX): elsewhere `--mixed-precision bf16` is refused.
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def run(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "textcls", "-q", *argv], check=True, cwd=REPO)
    return time.perf_counter() - start


def matmul_rate(dtype, n: int = 2048, reps: int = 10) -> float:
    """GFLOP/s of an n^3 matmul in `dtype` on this process's threads."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - start) / 1e9


def step_flops(e, B: int, T: int) -> float:
    """FLOPs of one training step of an encoder with config `e` on a (B, T) batch: 3 x forward (the backward is
    twice the forward), forward = layers x (2BT(4C^2 + 2CI) + 4BT^2C): projections, MLP, QK^T and AV."""
    L, C, I = e.num_layers, e.hidden_size, e.intermediate_size
    return 3 * L * (2 * B * T * (4 * C * C + 2 * C * I) + 4 * B * T * T * C)


def step_rate(data: str, bf16: bool, batches: int = 12, batch_size: int = 32) -> float:
    """GFLOP/s of the main job's training step (model, AdamW, clipping) on real, length-grouped IMDB batches."""
    import pandas as pd
    import torch

    from textcls.config import RunConfig
    from textcls.data.batching import Collator
    from textcls.data.tokenize import ExampleEncoder, load_tokenizer
    from textcls.model import build_classifier
    from textcls.train.loop import adamw

    cfg = RunConfig.load(REPO / "recipes" / "imdb-bert-tiny.yaml")
    torch.manual_seed(0)
    model, _ = build_classifier(cfg.model, ["neg", "pos"], max_length=cfg.tokenize.max_length)
    model.train()
    opt = adamw(model, cfg.train)
    tokenizer = load_tokenizer(cfg.tokenize.tokenizer)
    texts = pd.read_parquet(Path(data) / "train.parquet")["text"].sample(batches * batch_size, random_state=0)
    encoded = ExampleEncoder(tokenizer, cfg.tokenize, pair=False)(texts.tolist())
    rows = sorted((dict(zip(encoded, v)) for v in zip(*encoded.values())), key=lambda r: r["length"])
    collate = Collator.for_model(cfg.tokenize, tokenizer, model)
    loader = [collate([{**r, "label": 0} for r in rows[i:i + batch_size]]) for i in range(0, len(rows), batch_size)]

    def flops(batch) -> float:
        return step_flops(model.encoder.config, *batch["input_ids"].shape)

    def step(batch) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for batch in loader[:2]:  # warm up
        step(batch)
    start = time.perf_counter()
    for batch in loader:
        step(batch)
    return sum(map(flops, loader)) / (time.perf_counter() - start) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "imdb"))
    ap.add_argument("--out", default=str(REPO / "runs" / "bench-precision"))
    ap.add_argument("--output", help="also write the markdown table here")
    ap.add_argument("--skip-training", action="store_true",
                    help="keep the main jobs an earlier run left in --out (OUT/main-no is the model predict runs) and "
                         "measure only the rates and predict")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    from textcls.allocator import keep_freed_memory
    keep_freed_memory()  # as the textcls command does first thing: the step rates below are those training sees
    rates = {"no": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    steps = {mp: step_rate(args.data, mp == "bf16") for mp in ("no", "bf16")}
    jobs = {}
    for mp in () if args.skip_training else ("no", "bf16"):
        run_dir = out / f"main-{mp}"
        wall = run(["train", "--config", "recipes/imdb-bert-tiny.yaml", "--data", args.data, "--mixed-precision", mp,
                    "--cache-dir", str(out / f"cache-{mp}"), "--output", str(run_dir)])
        summary = json.loads((run_dir / "summary.json").read_text())
        jobs[mp] = {"wall": wall, "train_seconds": summary["train_seconds"],
                    "accuracy": summary["final"]["test"]["accuracy"],
                    "examples_per_s": summary["train_examples_per_s"]}

    model = out / "main-no"
    preds = {}
    for mp in ("no", "bf16"):
        file = out / f"predict-{mp}.jsonl"
        seconds = run(["predict", str(model), "--input", str(Path(args.data) / "test.parquet"), "--output", str(file),
                       "--mixed-precision", mp])
        # split on newlines only: splitlines() would also cut at the U+2028 that some reviews hold
        rows = [json.loads(line) for line in file.read_text(encoding="utf-8").split("\n") if line]
        preds[mp] = {"seconds": seconds, "labels": [r["label"] for r in rows],
                     "p": np.array([r["probabilities"]["pos"] for r in rows])}
    import pandas as pd
    truth = np.array(["pos" if y == 1 else "neg" for y in pd.read_parquet(Path(args.data) / "test.parquet")["label"]])
    agree = np.mean(np.array(preds["no"]["labels"]) == np.array(preds["bf16"]["labels"]))
    max_diff = float(np.abs(preds["no"]["p"] - preds["bf16"]["p"]).max())
    acc = {mp: float(np.mean(np.array(p["labels"]) == truth)) for mp, p in preds.items()}

    lines = [
        f"python benchmarks/bench_precision.py {shlex.join(sys.argv[1:])}  # {platform.processor() or 'cpu'}",
        "",
        f"matmul 2048^3: fp32 {rates['no']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s "
        f"({rates['bf16'] / rates['no']:.2f}x)",
        "",
        "| training step, main job's model, batches of 32 real reviews | GFLOP/s | share of the matmul rate |",
        "|---|---|---|",
        *[f"| {name} | {steps[mp]:.1f} | {steps[mp] / rates[mp]:.0%} |" for mp, name in (("no", "fp32"),
                                                                                     ("bf16", "bf16 autocast"))],
    ]
    if jobs:
        f, b = jobs["no"], jobs["bf16"]
        lines += ["", "| main job | wall time (whole command) | training time | training examples/s | test accuracy |",
                  "|---|---|---|---|---|"]
        for name, j in (("fp32", f), ("bf16 autocast", b)):
            lines.append(f"| {name} | {j['wall']:.0f} s | {j['train_seconds']:.0f} s | {j['examples_per_s']:.1f} | "
                         f"{j['accuracy']:.2%} |")
        lines += ["", f"bf16 / fp32: **{f['wall'] / b['wall']:.2f}x** end to end, "
                      f"{f['train_seconds'] / b['train_seconds']:.2f}x training; test accuracy "
                      f"{100 * (b['accuracy'] - f['accuracy']):+.2f} points"]
    lines += ["",
              "| predict, 25,000 test reviews (fp32-trained model) | time | test accuracy |", "|---|---|---|"]
    for mp, name in (("no", "fp32"), ("bf16", "bf16 (weights cast)")):
        lines.append(f"| {name} | {preds[mp]['seconds']:.1f} s | {acc[mp]:.2%} |")
    lines += ["", f"bf16 / fp32 predict: **{preds['no']['seconds'] / preds['bf16']['seconds']:.2f}x**; labels agree "
                  f"on {agree:.2%} of the reviews; largest probability difference {max_diff:.4f}"]
    table = "\n".join(lines)
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n")


if __name__ == "__main__":
    main()

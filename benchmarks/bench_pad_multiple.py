"""What rounding batch lengths up to a multiple of tokens (textcls.data.batching.PAD_MULTIPLE) does to training and
inference, in fp32 and in bf16, against exact lengths (multiple 1).

    python benchmarks/bench_pad_multiple.py --model RUN_OR_FOLDER [--data PATH] [--multiples 1 32] [--steps 200]
                                            [--calls 400] [--rounds 1] [--output FILE]

With dynamic padding every batch has its own length, so every batch is a new shape for the matmul library; oneDNN's
bf16 kernels are built (and cached) per shape, and AMX multiplies tiles of 32 bf16 values. Each case runs in a child
process of its own (a fresh kernel cache, as a new `textcls` command has), cases alternating, `--rounds` times, the
fastest kept:

- training: the first --steps steps of the main job (recipes/imdb-bert-tiny.yaml: bert-tiny dims from random
  weights, batch 32, 512 tokens head+tail, length-grouped batches), no evaluation; examples/s of the training loop
  (tokenization excluded: the data is tokenized once, into a cache shared by all cases);
- serving: --calls calls of one IMDB test review each (a fresh seeded sample; `TrainedModel.logits`, as `textcls
  serve` runs a request with batching off), then --calls / 8 calls of 16 reviews (a batch of 16 concurrent
  requests, forward batches of 8); milliseconds per review.

Prints a markdown table (and writes it to --output).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "imdb"
PRECISIONS = {"no": "fp32", "bf16": "bf16"}


def child_train(multiple: int, precision: str, steps: int, data: Path, cache: Path, out: Path) -> dict:
    import textcls.data.batching as batching
    from textcls.config import RunConfig
    from textcls.train.loop import train

    batching.PAD_MULTIPLE = multiple
    cfg = RunConfig.from_dict({
        "data": {"data": str(data)}, "tokenize": {"cache_dir": str(cache)},
        "train": {"max_steps": steps, "eval_strategy": "no", "eval_splits": [], "mixed_precision": precision,
                  "output": str(out)}}, base=RunConfig.load(ROOT / "recipes" / "imdb-bert-tiny.yaml"))
    summary = train(cfg)
    return {"train_examples_per_s": summary["train_examples_per_s"], "train_seconds": summary["train_seconds"]}


def child_serve(multiple: int, precision: str, calls: int, data: Path, model: Path) -> dict:
    import pyarrow.parquet as pq

    import textcls.data.batching as batching
    from textcls.infer import load_trained

    batching.PAD_MULTIPLE = multiple
    trained = load_trained(model, precision=precision)
    texts = pq.read_table(data / "test.parquet", columns=["text"])["text"].to_pylist()
    rng = random.Random(0)
    out = {}
    for n, count in ((1, calls), (16, max(1, calls // 8))):
        seconds = 0.0
        for _ in range(count):
            sample = rng.sample(texts, n)
            start = time.perf_counter()
            trained.logits(sample, batch_size=8)
            seconds += time.perf_counter() - start
        out[f"ms_per_review_{n}"] = 1000 * seconds / (count * n)
    return out


def run_child(args: argparse.Namespace, kind: str, multiple: int, precision: str, tmp: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--data", str(args.data), "--multiples", str(multiple),
           "--precision", precision, "--steps", str(args.steps), "--calls", str(args.calls), "--tmp", str(tmp)]
    if args.model:
        cmd += ["--model", str(args.model)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{kind} case (multiple {multiple}, {precision}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, help="a trained classifier (run or model folder) for the serving cases; "
                                              "without it, training only")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="IMDB's folder (train.parquet, test.parquet)")
    p.add_argument("--multiples", type=int, nargs="+", default=[1, 32])
    p.add_argument("--precisions", nargs="+", default=["no", "bf16"], choices=list(PRECISIONS))
    p.add_argument("--steps", type=int, default=200, help="training steps per case (default: 200)")
    p.add_argument("--calls", type=int, default=400, help="single-review calls per case (default: 400)")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--output", help="also write the markdown table here")
    p.add_argument("--child", choices=["train", "serve"], help=argparse.SUPPRESS)
    p.add_argument("--precision", help=argparse.SUPPRESS)
    p.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from textcls.allocator import keep_freed_memory

    keep_freed_memory()  # as the textcls command does
    if args.child:
        multiple = args.multiples[0]
        if args.child == "train":
            row = child_train(multiple, args.precision, args.steps, args.data, args.tmp / "cache",
                              args.tmp / f"run-{multiple}-{args.precision}-{time.monotonic_ns()}")
        else:
            row = child_serve(multiple, args.precision, args.calls, args.data, args.model)
        print(json.dumps(row))
        return

    from textcls.device import cpu_has_native_bf16

    precisions = [p for p in args.precisions if p != "bf16" or cpu_has_native_bf16()]
    best: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for _ in range(args.rounds):
            for precision in precisions:
                for multiple in args.multiples:
                    row = best.setdefault((precision, multiple), {})
                    kinds = ["train"] + (["serve"] if args.model else [])
                    for kind in kinds:
                        for k, v in run_child(args, kind, multiple, precision, tmp).items():
                            better = max if k.endswith("per_s") else min
                            row[k] = better(row[k], v) if k in row else v

    lines = [f"`python benchmarks/bench_pad_multiple.py {shlex.join(sys.argv[1:])}`", "",
             f"CPU ({platform.processor() or platform.machine()}), native bf16: {cpu_has_native_bf16()}; "
             f"{args.steps} training steps, "
             f"{args.calls} single-review calls, {args.rounds} round(s), the best kept", "",
             "| precision | multiple | training examples/s | vs exact | ms per review, alone | vs exact "
             "| ms per review, 16 together | vs exact |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (precision, multiple), row in best.items():
        exact = best.get((precision, 1), row)
        cells = [f"{row['train_examples_per_s']:.1f}", f"{row['train_examples_per_s'] / exact['train_examples_per_s']:.2f}x"]
        for n in (1, 16):
            key = f"ms_per_review_{n}"
            cells += [f"{row[key]:.2f}", f"{exact[key] / row[key]:.2f}x"] if key in row else ["—", "—"]
        lines.append(f"| {PRECISIONS[precision]} | {multiple} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()

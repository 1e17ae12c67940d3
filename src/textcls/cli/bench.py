"""`textcls bench attention`: the cost of each attention mechanism in a training step, by length."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from textcls.cli.output import add_json_flag, emit
from textcls.config import add_arguments, attention_from_args
from textcls.errors import TextclsError

EXAMPLE = """example:
  textcls bench attention --lengths 512 4096 16384 --attention full sliding --batch-size 2 --sliding-window 256 \\
      --reference --output runs/bench-attention
"""


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks: what a choice costs on this machine")
    bench_sub = bench.add_subparsers(dest="bench_command", metavar="COMMAND", required=True)
    p = bench_sub.add_parser(
        "attention", help="training-step time and peak memory of attention mechanisms by input length",
        description="One training step (forward, backward, AdamW step) of a classifier with bert-tiny's dimensions "
                    "(or --model's) on random token sequences, per mechanism and length: best of --repeats after "
                    "warm-up; each measurement in a child process, so that running out of memory or time is a row "
                    "that says so. Writes bench.json, bench.md and attention.png (log-log) into --output.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lengths", type=int, nargs="+", required=True, metavar="N", help="tokens per sequence")
    p.add_argument("--attention", nargs="+", default=["full"], metavar="NAME",
                   help="mechanisms to measure (default: full; see `textcls attention list`)")
    p.add_argument("--batch-size", type=int, default=2, help="sequences per step (default: 2)")
    p.add_argument("--model", default="bert-tiny", help="a preset whose dimensions are used (default: bert-tiny)")
    p.add_argument("--reference", action="store_true",
                   help="also transformers' models of the same dimensions, on the same batches: Longformer "
                        "(--sliding-window), BERT, BigBird (block_sparse, --bigbird-block, --bigbird-random) and "
                        "Reformer (LSH layers, --lsh-buckets, --lsh-rounds, --lsh-chunk)")
    p.add_argument("--repeats", type=int, default=5, help="timed steps; the best counts (default: 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first (default: 2)")
    p.add_argument("--rounds", type=int, default=1, help="measure every case this many times, round-robin, and "
                                                         "keep its fastest (default: 1)")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when there is a GPU)")
    p.add_argument("--timeout", type=float, default=900, help="seconds one measurement may take (default: 900)")
    p.add_argument("--output", metavar="DIR", help="where bench.json, bench.md and attention.png go "
                                                   "(default: runs/bench-attention-<time>)")
    add_arguments(p, "attention")
    add_json_flag(p)
    p.set_defaults(func=bench_attention)


def bench_attention(args: argparse.Namespace) -> int:
    import torch

    from textcls.bench import attention as bench
    from textcls.config import options_class
    from textcls.io import atomic_write_text
    from textcls.model.presets import PRESETS

    for name in args.attention:
        options_class(name)  # an unknown mechanism fails before anything runs
    if args.model not in PRESETS:
        raise TextclsError(f"--model {args.model!r} is not a preset ({', '.join(PRESETS)}): the benchmark builds "
                           f"a preset's dimensions from random weights")
    for flag, value, low in (("--lengths", min(args.lengths), 2), ("--batch-size", args.batch_size, 1),
                             ("--repeats", args.repeats, 1), ("--warmup", args.warmup, 0),
                             ("--rounds", args.rounds, 1)):
        if value < low:
            raise TextclsError(f"{flag} must be at least {low}, got {value}")
    _, options = attention_from_args(args)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(args.output or f"runs/bench-attention-{time.strftime('%Y%m%d-%H%M%S')}")

    def progress(row: dict) -> None:
        took = f"{row['step_seconds']:.3f} s, {row['peak_memory_mb']:,.0f} MB" if row["step_seconds"] else row["status"]
        print(f"{row['attention']} at {row['length']:,} x {row['batch_size']}: {took}", file=sys.stderr)

    rows = bench.bench_attention(sorted(args.lengths), args.attention, args.batch_size, args.model, options,
                                 args.reference, args.repeats, args.warmup, device, args.timeout, args.rounds,
                                 progress=None if args.quiet else progress)
    atomic_write_text(out / "bench.json", json.dumps(rows, indent=2) + "\n")
    atomic_write_text(out / "bench.md", bench.table(rows) + "\n")
    bench.plot(rows, out / "attention.png")
    emit(rows, args.json, lambda r: f"{bench.table(r)}\n\nplot: {out / 'attention.png'}\nrows: {out / 'bench.json'}")
    return 0

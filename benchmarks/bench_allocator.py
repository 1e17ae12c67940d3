"""What keeping freed memory in the process (textcls/allocator.py) is worth: one training step (forward, backward,
AdamW) of a bert-tiny-dims classifier, in a child process with TEXTCLS_KEEP_FREED_MEMORY=0 (glibc's defaults) and
=1 (textcls's default), rounds alternating, each case's fastest round kept.

    python benchmarks/bench_allocator.py [--cases full:512:32 sliding:4096:2 sliding:16384:2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os

from textcls.bench.attention import Case, measure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", nargs="+", default=["full:512:32", "sliding:4096:2", "sliding:16384:2"],
                   help="ATTENTION:LENGTH:BATCH each (default: the main job's step, and sliding at 4k and 16k)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    best: dict[tuple[str, str], dict] = {}
    for _ in range(args.rounds):
        for spec in args.cases:
            name, length, batch = spec.split(":")
            options = {"sliding_window": 256} if name == "sliding" else {}
            for keep in ("0", "1"):
                os.environ["TEXTCLS_KEEP_FREED_MEMORY"] = keep  # the child reads it
                row = measure(Case(name, int(length), int(batch), options=options, repeats=args.repeats), 900)
                if row["step_seconds"] is None:
                    raise SystemExit(f"{spec} with TEXTCLS_KEEP_FREED_MEMORY={keep}: {row['status']}")
                old = best.get((spec, keep))
                if old is None or row["step_seconds"] < old["step_seconds"]:
                    best[spec, keep] = row
    print("| step | glibc defaults (s) | freed memory kept (s) | speed-up | peak memory, defaults / kept (MB) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for spec in args.cases:
        off, on = best[spec, "0"], best[spec, "1"]
        name, length, batch = spec.split(":")
        print(f"| `{name}`, {int(length):,} tokens × {batch} | {off['step_seconds']:.3f} | {on['step_seconds']:.3f} | "
              f"{off['step_seconds'] / on['step_seconds']:.2f}× | {off['peak_memory_mb']:,.0f} / "
              f"{on['peak_memory_mb']:,.0f} |")
    print(f"\n`python benchmarks/bench_allocator.py --cases {' '.join(args.cases)} --rounds {args.rounds}`")


if __name__ == "__main__":
    main()

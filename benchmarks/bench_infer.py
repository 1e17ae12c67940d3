"""`textcls predict`'s fast paths on one model and the same reviews: torch fp32 (the reference), torch bf16
(the weights cast, as `--mixed-precision bf16`; only on a CPU that computes bf16 natively), ONNX Runtime fp32 and
ONNX Runtime with int8 weights.

    python benchmarks/bench_infer.py [--data PATH] [--n 2000] [--batch-size 32] [--model RUN_OR_FOLDER]
                                     [--repeat 2] [--with-accuracy] [--output FILE]

The model is --model (a run directory or model folder: give a trained one, e.g. runs/imdb; random weights say little
about int8's accuracy) or, by default, bench_predict's bert-tiny dims with seeded random weights (std 0.3) at 512
tokens. It is exported twice into a temporary folder, as `textcls export MODEL --format onnx [--quantize int8]`
does. Every variant predicts the same seeded sample of IMDB test reviews the way `textcls predict` does
(`predict_probabilities`: tokenizing as in training, length-sorted batches, input order restored), on the CPU with
torch's threads (the ONNX Runtime sessions get as many). The variants take turns, `--repeat` times each after a
warm-up, and the best time of each is kept. Reported: seconds, texts/s, the speed against torch fp32, the share of
labels equal to torch fp32's and the largest probability difference from it, and with --with-accuracy the accuracy
on the reviews' labels (the model's label i taken as IMDB's label i: 0 negative, 1 positive). Prints a markdown
table (and writes it to --output).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
from pathlib import Path

import torch

from bench_predict import DEFAULT_DATA, export_tiny_classifier, timed

REFERENCE = "torch fp32"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding IMDB's test.parquet")
    p.add_argument("--n", type=int, default=2000, help="test reviews, a seeded sample (default: 2000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", help="a run directory or classifier folder (default: a bert-tiny-sized textcls "
                                   "export with random weights)")
    p.add_argument("--repeat", type=int, default=2, help="timed runs of each, alternating (default: 2)")
    p.add_argument("--with-accuracy", action="store_true", help="also the accuracy of each on the reviews' labels")
    p.add_argument("--output", help="also write the markdown table here")
    return p.parse_args(argv)


def variants(folder: Path, tmp: Path) -> dict:
    """name -> the model as predict runs it, torch fp32 first."""
    from textcls.device import cpu_has_native_bf16
    from textcls.infer import export_model, load_onnx, load_trained

    cpu = torch.device("cpu")
    out = {REFERENCE: load_trained(folder, device=cpu, precision="no")}
    if cpu_has_native_bf16():
        out["torch bf16"] = load_trained(folder, device=cpu, precision="bf16")
    for quantize in (None, "int8"):
        name = f"onnx {quantize or 'fp32'}"
        export_model(folder, tmp / name.replace(" ", "-"), "onnx", quantize=quantize)
        out[name] = load_onnx(tmp / name.replace(" ", "-"))
    return out


def bench(args, folder: Path, tmp: Path) -> str:
    import pandas as pd

    from textcls.infer import predict_probabilities

    reviews = pd.read_parquet(Path(args.data) / "test.parquet").sample(args.n, random_state=0)
    texts, labels = reviews.text.tolist(), torch.tensor(reviews.label.to_numpy())
    models = variants(folder, tmp)
    for trained in models.values():  # warm-up: the first calls allocate and pick kernels
        predict_probabilities(trained, texts[:64], batch_size=args.batch_size)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    probs = {}
    for _ in range(args.repeat):
        for name, trained in models.items():
            t, probs[name] = timed(lambda: predict_probabilities(trained, texts, batch_size=args.batch_size))
            seconds[name].append(t)
    best = {name: min(ts) for name, ts in seconds.items()}

    ref = probs[REFERENCE]
    where = f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"
    cfg = models[REFERENCE].tokenize_cfg
    lines = [f"`{' '.join(map(shlex.quote, ['python', 'benchmarks/bench_infer.py', *sys.argv[1:]]))}`", "",
             f"{args.n} IMDB test reviews (seeded sample), batch size {args.batch_size}, max length {cfg.max_length} "
             f"({cfg.truncation}); model {args.model or 'bert-tiny dims, random weights (std 0.3)'}; torch "
             f"{torch.__version__}, {where}; best of {args.repeat} alternating runs", ""]
    header = ["variant", "seconds", "texts/s", f"speed vs {REFERENCE}", "labels = fp32", "max |Δp| vs fp32"]
    header += ["accuracy"] if args.with_accuracy else []
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, t in best.items():
        p = probs[name]
        row = [name, f"{t:.2f}", f"{args.n / t:.0f}", f"{best[REFERENCE] / t:.2f}x",
               f"{(p.argmax(-1) == ref.argmax(-1)).float().mean().item():.2%}", f"{(p - ref).abs().max().item():.1e}"]
        row += [f"{(p.argmax(-1) == labels).float().mean().item():.2%}"] if args.with_accuracy else []
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.model) if args.model else export_tiny_classifier(Path(tmp) / "bert-tiny-imdb")
        table = bench(args, folder, Path(tmp))
    print(table)
    if args.output:
        from textcls.io import atomic_write_text
        atomic_write_text(args.output, table + "\n")


if __name__ == "__main__":
    main()

"""`textcls predict` throughput against `transformers.pipeline("text-classification")`: the same model folder, the
same batch size, the same real IMDB test reviews, the same process.

    python benchmarks/bench_predict.py [--data PATH] [--n 2000] [--batch-size 32] [--model FOLDER] [--device cpu]

The model is an exported textcls classifier (bert-tiny dimensions, seeded random weights, saved by
`save_classifier`; or --model FOLDER, e.g. a run's model/), which the pipeline loads from the same folder. Both cut
each review to 512 tokens (the pipeline: `truncation=True, max_length=512`). textcls tokenizes the whole list at
once, sorts it by length and pads each batch to its longest review; the pipeline pads each batch of the reviews in
their given order. Both give every class's probability (the pipeline: `top_k=None`). The two take turns,
`--repeat` times each, and the fastest time of each is reported, so that load from other processes hits both alike.
Their predictions must agree (same weights): the agreement rate and the largest probability difference are printed.
Prints a markdown table (and writes it to --output).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "imdb"
MAX_LENGTH = 512


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="folder holding IMDB's test.parquet")
    p.add_argument("--n", type=int, default=2000, help="test reviews, a seeded sample (default: 2000)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--model", help="a run directory or classifier folder trained at max length 512 (default: a "
                                   "bert-tiny-sized textcls export with random weights)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--repeat", type=int, default=2, help="timed runs of each, alternating (default: 2)")
    p.add_argument("--output", help="also write the markdown table here")
    return p.parse_args(argv)


def export_tiny_classifier(folder: Path) -> Path:
    """bert-tiny's dimensions, seeded random weights, IMDB's labels, saved as `textcls train` saves its model. The
    weights are drawn with std 0.3 instead of BERT's 0.02, so that the predictions differ from review to review and
    the agreement check means something (at 0.02 every review gets the same label)."""
    from textcls.config import ModelConfig, TokenizeConfig
    from textcls.data.tokenize import load_tokenizer
    from textcls.model import build_classifier, save_classifier
    from textcls.model.encoder import init_weights

    torch.manual_seed(0)
    model, _ = build_classifier(ModelConfig(model="bert-tiny", init="random"), ["neg", "pos"], MAX_LENGTH)
    init_weights(model, std=0.3)
    return save_classifier(model, folder, tokenizer=load_tokenizer("minilm-l6"), label_names=["neg", "pos"],
                           tokenize_cfg=TokenizeConfig(max_length=MAX_LENGTH))


def timed(fn):
    """(seconds, result) of `fn()`, waiting for the GPU (if any) to finish."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start = time.perf_counter()
    result = fn()
    sync()
    return time.perf_counter() - start, result


def bench(args, folder: Path) -> str:
    import pandas as pd
    from transformers import pipeline

    from textcls.infer import load_trained, predict_probabilities, prediction_rows

    texts = pd.read_parquet(Path(args.data) / "test.parquet").sample(args.n, random_state=0).text.tolist()
    device = torch.device(args.device)
    trained = load_trained(folder, device=device)
    if trained.tokenize_cfg.max_length != MAX_LENGTH or trained.tokenize_cfg.truncation != "head":
        sys.exit(f"{folder} was trained with max length {trained.tokenize_cfg.max_length} and truncation "
                 f"{trained.tokenize_cfg.truncation!r}; this benchmark compares at {MAX_LENGTH}, head")
    pipe = pipeline("text-classification", model=str(trained.folder), device=device, top_k=None)
    names = trained.label_names

    # Both end with one dict of label probabilities per text, turned into the same (N, C) tensor.
    def run_textcls(batch: list[str]) -> torch.Tensor:
        rows = prediction_rows(batch, None, predict_probabilities(trained, batch, batch_size=args.batch_size), names)
        return torch.tensor([[r["probabilities"][n] for n in names] for r in rows])

    def run_pipeline(batch: list[str]) -> torch.Tensor:
        out = pipe(batch, batch_size=args.batch_size, truncation=True, max_length=MAX_LENGTH)
        return torch.tensor([[{d["label"]: d["score"] for d in row}[n] for n in names] for row in out])

    runs = {"transformers pipeline": run_pipeline, "textcls predict": run_textcls}
    for fn in runs.values():  # warm-up: the first calls allocate and pick kernels
        fn(texts[:64])
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    probs = {}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            t, probs[name] = timed(lambda: fn(texts))
            seconds[name].append(t)
    best = {name: min(ts) for name, ts in seconds.items()}

    ours, theirs = probs["textcls predict"], probs["transformers pipeline"]
    agree = (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item()
    max_diff = (ours - theirs).abs().max().item()
    where = torch.cuda.get_device_name() if device.type == "cuda" else \
        f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"
    base = best["transformers pipeline"]
    lines = [f"`{' '.join(map(shlex.quote, ['python', 'benchmarks/bench_predict.py', *sys.argv[1:]]))}`", "",
             f"{args.n} IMDB test reviews (seeded sample), batch size {args.batch_size}, truncated to {MAX_LENGTH} "
             f"tokens; model {args.model or 'bert-tiny dims, random weights (std 0.3)'}; torch "
             f"{torch.__version__}, {where}; best of {args.repeat} alternating runs", "",
             "| implementation | seconds | texts/s | speed-up |", "|---|---|---|---|"]
    for name, t in best.items():
        lines.append(f"| {name} | {t:.2f} | {args.n / t:.0f} | {base / t:.2f}x |")
    counts = ", ".join(f"{n} {int((ours.argmax(-1) == i).sum())}" for i, n in enumerate(names))
    lines += ["", f"predicted labels agree on {agree:.2%} of the reviews (textcls predicted {counts}); largest "
                  f"probability difference {max_diff:.1e}"]
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.model) if args.model else export_tiny_classifier(Path(tmp) / "bert-tiny-imdb")
        table = bench(args, folder)
    print(table)
    if args.output:
        from textcls.io import atomic_write_text
        atomic_write_text(args.output, table + "\n")


if __name__ == "__main__":
    main()

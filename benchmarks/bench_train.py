"""Epoch time of `textcls train` against the practice-style reference, on IMDB train at max length 512.

    python benchmarks/bench_train.py [--data PATH] [--batch-size 32] [--max-steps N] [--output FILE]

Both fine-tune the same bert-tiny-sized weights (seeded random; saved once as a transformers folder that both load)
for one epoch over IMDB's 25,000 training reviews, batch size 32, AdamW at 5e-5 with linear warmup/decay, on the
same machine, in the same process, one after the other:

- reference, as the course practice writes it: the tokenizer called with `padding="max_length", truncation=True,
  max_length=512`, a shuffled DataLoader, `transformers.BertForSequenceClassification` (its default attention
  implementation, and its config's attention dropout 0.1 as the bert-tiny checkpoint has it), and a plain loop of
  forward, backward, optimizer and scheduler steps;
- textcls: `textcls.train.loop.train` with its defaults (dynamic padding, length-grouped batches, attention dropout
  0), no evaluation.

Timed: the training loop of the epoch (tokenization excluded for both; textcls's is cached, the reference's is done
before the clock starts). `--max-steps N` times the first N steps of each instead of a whole epoch (a quick check;
BENCHMARKS.md records whole epochs). Prints a markdown table (and writes it to --output).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "imdb"
MAX_LENGTH = 512
LR = 5e-5


def save_reference_weights(folder: Path, seed: int) -> Path:
    """bert-tiny's dimensions (2 layers, 128 hidden, 2 heads), seeded random weights, as a transformers folder."""
    from transformers import BertConfig, BertForSequenceClassification

    from textcls.data.tokenize import load_tokenizer

    torch.manual_seed(seed)
    config = BertConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512,
                        num_labels=2, id2label={0: "neg", 1: "pos"}, label2id={"neg": 0, "pos": 1})
    BertForSequenceClassification(config).save_pretrained(folder)
    load_tokenizer("minilm-l6").save_pretrained(folder)
    return folder


def reference_epoch(folder: Path, data: Path, batch_size: int, max_steps: int | None, seed: int) -> dict:
    """The practice's loop. Returns the seconds of the timed loop and the examples it saw."""
    import pandas as pd
    from transformers import AutoTokenizer, BertForSequenceClassification, get_linear_schedule_with_warmup

    df = pd.read_parquet(data / "train.parquet", columns=["text", "label"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    enc = tokenizer(df.text.tolist(), padding="max_length", truncation=True, max_length=MAX_LENGTH,
                    return_tensors="pt")
    dataset = torch.utils.data.TensorDataset(enc["input_ids"], enc["token_type_ids"], enc["attention_mask"],
                                             torch.tensor(df.label.values, dtype=torch.long))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         generator=torch.Generator().manual_seed(seed))
    model = BertForSequenceClassification.from_pretrained(folder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    steps = max_steps or len(loader)
    scheduler = get_linear_schedule_with_warmup(optimizer, num_warmup_steps=1, num_training_steps=steps)
    model.train()
    examples, start = 0, time.perf_counter()
    for i, (ids, types, mask, labels) in enumerate(loader):
        if i == steps:
            break
        loss = model(input_ids=ids, token_type_ids=types, attention_mask=mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        examples += len(labels)
    return {"seconds": time.perf_counter() - start, "examples": examples,
            "attention": model.config._attn_implementation}


def textcls_epoch(folder: Path, data: Path, batch_size: int, max_steps: int | None, seed: int, out: Path) -> dict:
    from textcls.config import RunConfig
    from textcls.train.loop import train

    cfg = RunConfig.from_dict({
        "data": {"data": str(data), "label_names": ["neg", "pos"], "validation_fraction": 0.0},
        "tokenize": {"max_length": MAX_LENGTH, "cache_dir": str(out / "cache")},
        "model": {"model": str(folder)},
        "train": {"epochs": 1, "max_steps": max_steps, "batch_size": batch_size, "learning_rate": LR,
                  "warmup_steps": 1, "eval_strategy": "no", "eval_splits": [], "seed": seed,
                  "logging_steps": 50, "output": str(out / "run")}})
    summary = train(cfg)
    return {"seconds": summary["train_seconds"], "examples": round(summary["train_examples_per_s"] *
                                                                   summary["train_seconds"])}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding IMDB's train.parquet")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-steps", type=int, help="time only the first N steps of each (default: a whole epoch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="also write the markdown table here")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = save_reference_weights(tmp / "weights", args.seed)
        ours = textcls_epoch(folder, args.data, args.batch_size, args.max_steps, args.seed, tmp)
        ref = reference_epoch(folder, args.data, args.batch_size, args.max_steps, args.seed)

    what = "one epoch" if not args.max_steps else f"the first {args.max_steps} steps"
    ref_name = f"reference: padding=max_length, transformers BERT ({ref['attention']})"
    report("bench_train.py", f"IMDB train (25,000 reviews), {what}, batch {args.batch_size}, max length {MAX_LENGTH}, "
           f"bert-tiny dims", {ref_name: ref, "textcls train (dynamic padding, length-grouped batches)": ours},
           ref_name, args.output)


def report(script: str, what: str, results: dict[str, dict], against: str, output: Optional[str]) -> None:
    """Print (and write to `output`) a markdown table of each result's examples/s and its ratio to `against`'s."""
    rate = {name: r["examples"] / r["seconds"] for name, r in results.items()}
    lines = [f"Command: `{shlex.join(['python', f'benchmarks/{script}', *sys.argv[1:]])}`", "",
             f"{what}; torch {torch.__version__}, {platform.machine()} CPU, {torch.get_num_threads()} threads", "",
             f"| implementation | examples | seconds | examples/s | against {against} |", "|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['examples']} | {r['seconds']:.1f} | {rate[name]:.1f} | "
                     f"{rate[name] / rate[against]:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if output:
        Path(output).write_text(table + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

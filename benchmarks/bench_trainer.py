"""Training throughput of `textcls train` against the peer users pick: transformers' `Trainer` at its best on a CPU.

    python benchmarks/bench_trainer.py [--data PATH] [--rows 4000] [--compile] [--output FILE]

Both fine-tune the same bert-tiny-sized weights (seeded random, one transformers folder) for one epoch over the same
IMDB training reviews (the first --rows of a seeded shuffle, written to one parquet file that both read), batch 32,
max length 512 (the head of each review), AdamW at 5e-5 with one warmup step, no evaluation, in this process, one
after the other:

- Trainer: `DataCollatorWithPadding` (dynamic padding), `train_sampling_strategy="group_by_length"`, `use_cpu=True`,
  in fp32 and with `bf16=True` (the peer's best on a CPU with native bf16), and with `bf16=True` and the collator's
  `pad_to_multiple_of=32`, the rounding of batch lengths that textcls's batches get (PAD_MULTIPLE): a peer's user
  can ask for it too, so the peer's best is the faster of the two;
- textcls: `textcls.train.loop.train` with its defaults (dynamic padding, length-grouped batches), in fp32
  (`--mixed-precision no`) and `auto` (bf16 autocast where the CPU computes bf16 natively).

Timed: the training loop (`trainer.train()`; textcls's `train_seconds`), tokenization excluded for both. Prints a
markdown table with each one's examples/s and its ratio to the Trainer's best.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import DEFAULT_DATA, report, save_reference_weights  # noqa: E402  (the same weights as bench_train.py)

MAX_LENGTH, BATCH, LR = 512, 32, 5e-5


def trainer_epoch(folder: Path, data: Path, bf16: bool, seed: int, out: Path, pad_multiple=None) -> dict:
    import pandas as pd
    from datasets import Dataset
    from transformers import (AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding, Trainer,
                              TrainingArguments)

    df = pd.read_parquet(data / "train.parquet", columns=["text", "label"])
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ds = Dataset.from_pandas(df).map(lambda b: tokenizer(b["text"], truncation=True, max_length=MAX_LENGTH),
                                     batched=True, remove_columns=["text"])
    args = TrainingArguments(output_dir=str(out), per_device_train_batch_size=BATCH, num_train_epochs=1,
                             learning_rate=LR, warmup_steps=1, bf16=bf16, use_cpu=True,
                             train_sampling_strategy="group_by_length", save_strategy="no", eval_strategy="no",
                             report_to=[], logging_steps=50, seed=seed, disable_tqdm=True)
    trainer = Trainer(model=BertForSequenceClassification.from_pretrained(folder), args=args, train_dataset=ds,
                      data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=pad_multiple))
    start = time.perf_counter()
    trainer.train()
    return {"seconds": time.perf_counter() - start, "examples": len(ds)}


def textcls_epoch(folder: Path, data: Path, precision: str, seed: int, out: Path, compile: bool = False) -> dict:
    from textcls.config import RunConfig
    from textcls.train.loop import train

    cfg = RunConfig.from_dict({
        "data": {"data": str(data), "label_names": ["neg", "pos"], "validation_fraction": 0.0, "test_fraction": 0.0},
        "tokenize": {"max_length": MAX_LENGTH, "cache_dir": str(out / "cache")},
        "model": {"model": str(folder)},
        "train": {"epochs": 1, "batch_size": BATCH, "learning_rate": LR, "warmup_steps": 1, "eval_strategy": "no",
                  "eval_splits": [], "seed": seed, "logging_steps": 50, "mixed_precision": precision,
                  "compile": compile, "output": str(out / f"run-{precision}{'-compile' * compile}")}})
    summary = train(cfg)
    return {"seconds": summary["train_seconds"],
            "examples": round(summary["train_examples_per_s"] * summary["train_seconds"])}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding IMDB's train.parquet")
    p.add_argument("--rows", type=int, default=4000, help="training reviews (default: 4000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", help="also write the markdown table here")
    p.add_argument("--compile", action="store_true", help="also textcls with --compile (torch.compile of each layer)")
    args = p.parse_args(argv)

    import pandas as pd

    from textcls.allocator import keep_freed_memory
    from textcls.data.batching import PAD_MULTIPLE
    from textcls.device import cpu_has_native_bf16

    keep_freed_memory()  # as the textcls command does; the Trainer runs in the same process with it
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        folder = save_reference_weights(tmp / "weights", args.seed)
        data = tmp / "data"
        data.mkdir()
        df = pd.read_parquet(args.data / "train.parquet", columns=["text", "label"])
        df.sample(frac=1, random_state=args.seed).head(args.rows).to_parquet(data / "train.parquet")
        results["Trainer fp32"] = trainer_epoch(folder, data, False, args.seed, tmp / "trainer-fp32")
        if cpu_has_native_bf16():
            results["Trainer bf16=True"] = trainer_epoch(folder, data, True, args.seed, tmp / "trainer-bf16")
            results[f"Trainer bf16=True, pad_to_multiple_of={PAD_MULTIPLE}"] = trainer_epoch(
                folder, data, True, args.seed, tmp / "trainer-bf16-multiple", PAD_MULTIPLE)
        results["textcls --mixed-precision no (fp32)"] = textcls_epoch(folder, data, "no", args.seed, tmp)
        auto = "bf16 autocast" if cpu_has_native_bf16() else "fp32"
        results[f"textcls --mixed-precision auto ({auto})"] = textcls_epoch(folder, data, "auto", args.seed, tmp)
        if args.compile:  # the compiler's own time counts: it is part of what a user waits for
            results[f"textcls auto --compile ({auto})"] = textcls_epoch(folder, data, "auto", args.seed, tmp, True)

    best_peer = max((n for n in results if n.startswith("Trainer")),
                    key=lambda n: results[n]["examples"] / results[n]["seconds"])
    report("bench_trainer.py", f"{args.rows} IMDB training reviews, one epoch, batch {BATCH}, max length {MAX_LENGTH}, "
           f"bert-tiny dims, native bf16: {'yes' if cpu_has_native_bf16() else 'no'}", results, best_peer, args.output)


if __name__ == "__main__":
    main()

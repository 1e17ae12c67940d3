"""Trains like `textcls train`, then every process writes what the multi-process test compares:

    OUT/weights-rank<R>.safetensors   the process's final weights
    OUT/summary-rank<R>.json          the summary train() returned on that process
    OUT/eval-rank<R>.json             with --evaluate FILE: the metrics of FILE's weights on validation and test

Usage: [torchrun --standalone --nproc-per-node 2] tests/ddp_worker.py OUT [--evaluate FILE] -- TRAIN FLAGS...
"""

import argparse
import json
import sys
from pathlib import Path

from safetensors.torch import load_model, save_model

from textcls.cli import build_parser
from textcls.config import config_from_args
from textcls.train.loop import Trainer

own = argparse.ArgumentParser()
own.add_argument("out", type=Path)
own.add_argument("--evaluate", type=Path)
split = sys.argv.index("--")
args = own.parse_args(sys.argv[1:split])
cfg = config_from_args(build_parser().parse_args(["train", *sys.argv[split + 1:]]))

trainer = Trainer(cfg, args.out / "run")
trainer.setup()
summary = trainer.train()
acc, model = trainer.accelerator, trainer.accelerator.unwrap_model(trainer.model)
rank = acc.process_index
save_model(model, str(args.out / f"weights-rank{rank}.safetensors"))
(args.out / f"summary-rank{rank}.json").write_text(json.dumps(summary))
if args.evaluate:
    load_model(model, str(args.evaluate))
    metrics = {split: trainer.evaluate(split) for split in ("validation", "test")}
    (args.out / f"eval-rank{rank}.json").write_text(json.dumps(metrics))
acc.wait_for_everyone()

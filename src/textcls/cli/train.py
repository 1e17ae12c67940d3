"""`textcls train | pretrain | evaluate | predict | sweep`."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from pathlib import Path

from textcls.cli.output import add_json_flag, describe_metrics, emit, split_name, table
from textcls.config import CLASSIFIER_ONLY, PRETRAIN_FIXED, add_arguments, attention_from_args, config_from_args
from textcls.errors import TextclsError

TRAIN_SECTIONS = ("data", "tokenize", "model", "attention", "train")
TRAIN_EXAMPLES = """examples:
  textcls train --data ../shared/data/imdb --model minilm-l6 --max-length 256 --epochs 2 --output runs/imdb
  textcls train --resume runs/imdb                       # after a crash or a kill: from the last checkpoint
  textcls train --config runs/imdb/config.json --learning-rate 3e-5 --output runs/imdb-lr3e-5
  torchrun --standalone --nproc-per-node 2 -m textcls train ...     # DDP: 2 processes (GPUs, or CPUs with gloo)
  accelerate launch --multi_gpu --num_processes 2 -m textcls train ...  # the same through accelerate
"""
PRETRAIN_SECTIONS = TRAIN_SECTIONS + ("pretrain",)
DISTILL_SECTIONS = TRAIN_SECTIONS + ("distill",)
DISTILL_EXAMPLES = """examples:
  textcls distill --teacher runs/imdb-minilm --data ../shared/data/imdb --model bert-mini --init random \
      --tokenizer minilm-l6 --output runs/imdb-distilled      # train + unsupervised texts, labels where there are
  textcls distill --resume runs/imdb-distilled                # after a crash or a kill: from the last checkpoint
"""
# Sections whose flags a command that runs a trained model reads (its attention comes from attention_from_args).
INFER_SECTIONS = ("data", "tokenize", "train")
INFER_BATCH_SIZE = 64  # inference keeps no optimizer state: twice the training default fits
PRETRAIN_EXAMPLES = """examples:
  textcls pretrain --data ../shared/data/imdb --model bert-tiny --init random --tokenizer minilm-l6 \
      --max-length 256 --epochs 3 --output runs/imdb-mlm        # train + unsupervised texts; validation: MLM loss
  textcls train --data ../shared/data/imdb --model runs/imdb-mlm/model --output runs/imdb-cls   # then fine-tune
  textcls pretrain --resume runs/imdb-mlm                     # after a crash or a kill: from the last checkpoint
"""


def register(sub) -> None:
    p = sub.add_parser("train", help="fine-tune a classifier and evaluate it",
                       usage="textcls train --data SPEC [--model M] [--config FILE] [--resume RUN_DIR] [options]",
                       description="Fine-tune a classifier (AdamW, linear warmup then decay) and evaluate it on the\n"
                                   "test split. Every setting is a flag below or a key of --config FILE.",
                       epilog=TRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arguments(p, TRAIN_SECTIONS)
    p.set_defaults(func=_train)

    p = sub.add_parser("pretrain", help="masked-LM pretraining of an encoder on a dataset's texts",
                       usage="textcls pretrain --data SPEC [--model M] [--splits SPLIT ...] [--config FILE] "
                             "[--resume RUN_DIR] [options]",
                       description="Pretrain an encoder with BERT's masked-LM objective on the texts of --splits\n"
                                   "(default: all but validation and test; labels ignored), measuring the MLM loss\n"
                                   "on validation. RUN/model is a transformers BertForMaskedLM folder: fine-tune it\n"
                                   "with `textcls train --model RUN/model`.",
                       epilog=PRETRAIN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arguments(p, PRETRAIN_SECTIONS, exclude=CLASSIFIER_ONLY + tuple(PRETRAIN_FIXED))
    p.set_defaults(func=_pretrain)

    p = sub.add_parser("distill", help="train a student classifier on a teacher's softened probabilities",
                       usage="textcls distill --teacher MODEL --data SPEC [--model STUDENT] [--temperature T] "
                             "[--alpha A] [options]",
                       description="Knowledge distillation: train the student (--model) as `textcls train` does, on\n"
                                   "A x cross-entropy with the labels + (1 - A) x T^2 x KL to the teacher's softened\n"
                                   "probabilities, on the training texts and on unlabelled ones (--unlabelled-splits;\n"
                                   "default: unsupervised). The teacher's logits are computed once and cached.",
                       epilog=DISTILL_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_run_arguments(p, DISTILL_SECTIONS)
    p.set_defaults(func=_distill)

    p = sub.add_parser("evaluate", help="metrics of a trained model on a labelled split",
                       description="Accuracy, macro-F1, per-class precision and recall, confusion matrix, loss and "
                                   "examples/s of a trained model on a labelled split. A run directory brings its "
                                   "own data settings; flags override them. Data labels are matched to the model's "
                                   "by name; name integer labels with --label-names.")
    p.add_argument("model_dir", metavar="MODEL", help="a run directory or an exported model folder")
    p.add_argument("--split", type=split_name, default="test",
                   help="split to evaluate (dev or valid: validation; default: test)")
    add_json_flag(p)
    add_arguments(p, "data")
    _add_inference_arguments(p, "tokenizer", "cache_dir")
    add_arguments(p, "train", only=("threshold",))
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="label and probabilities for new texts",
                       description="Predict labels for TEXT arguments or the rows of --input (.txt: one text per "
                                   "line; .csv/.tsv/.jsonl/.parquet: the text column, and a pair column if there is "
                                   "one, detected or named). Give the TEXTs first, then --text-pair once per TEXT: "
                                   "textcls predict MODEL 'premise 1' 'premise 2' --text-pair 'hyp 1' --text-pair "
                                   "'hyp 2'.")
    p.add_argument("model_dir", metavar="MODEL", help="a run directory or an exported model folder")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify")
    p.add_argument("--text-pair", action="append", metavar="PAIR",
                   help="second text of a pair, once per TEXT, in the same order")
    p.add_argument("--input", metavar="FILE", help="read texts from a .txt, .csv, .tsv, .jsonl or .parquet file")
    p.add_argument("--output", metavar="FILE", help="write predictions to a .csv, .tsv, .jsonl or .txt file "
                                                    "(.txt: one label per line)")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="torch: the model in torch (default); onnx: MODEL is an ONNX export folder (`textcls export "
                        "MODEL --format onnx`) run by ONNX Runtime (the onnx extra)")
    add_json_flag(p)
    add_arguments(p, "data", only=("text_column", "text_pair_column", "text_separator", "encoding"))
    _add_inference_arguments(p, "tokenizer")
    add_arguments(p, "train", only=("threshold",))
    p.set_defaults(func=_predict)

    p = sub.add_parser("sweep", help="one training run per combination of settings, compared side by side",
                       description="Train once per combination of --set values (e.g. --set warmup_steps=1,100,500) "
                                   "and compare the runs in a table and a plot. Other flags apply to every run.")
    p.add_argument("--set", dest="sweep", action="append", required=True, metavar="KEY=V1,V2,...",
                   help="a config key and the values to try; repeat for a grid")
    p.add_argument("--config", metavar="FILE", help="a run config that every run starts from")
    add_json_flag(p)
    add_arguments(p, *TRAIN_SECTIONS)
    p.set_defaults(func=_sweep)


def _add_inference_arguments(p: argparse.ArgumentParser, *tokenize_fields: str) -> None:
    """The flags of a command that runs a trained model: its batch size, the tokenize settings it may override, and
    --attention with the mechanisms' options (to run a model with another mechanism than it was trained with)."""
    add_arguments(p, "train", only=("batch_size", "mixed_precision"), defaults={"batch_size": INFER_BATCH_SIZE})
    add_arguments(p, "tokenize", only=tokenize_fields)
    add_arguments(p, "model", only=("attention",))
    add_arguments(p, "attention")


def _add_run_arguments(p: argparse.ArgumentParser, sections: tuple[str, ...], exclude: tuple[str, ...] = ()) -> None:
    """The flags of a command that makes a run directory: --config, --resume, --json and the settings."""
    p.add_argument("--config", metavar="FILE", help="a run config (JSON or YAML, e.g. a run's config.json); flags "
                                                    "given on the command line override it")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint, with "
                                                       "the run's own settings")
    add_json_flag(p)
    add_arguments(p, *sections, exclude=exclude)


def _train_config(args: argparse.Namespace):
    from textcls.config import RunConfig
    from textcls.train.rundir import is_run_dir

    base = None
    if args.config and is_run_dir(Path(args.config).parent):
        # Another run's config.json, reused for a new run: not into that run's folder, nor under its name.
        base = RunConfig.load(args.config)
        base.train.output, base.train.name = None, None
        logging.getLogger("textcls").info("settings from run %s; this run gets its own folder (--output names it)",
                                          Path(args.config).parent)
    cfg = config_from_args(args, base=base)
    if not cfg.data.data:
        raise TextclsError("no data: give --data SPEC (a folder, a file or a hub dataset name), or a --config "
                           "that sets data.data")
    return cfg


def _train(args: argparse.Namespace) -> int:
    from textcls.train.loop import train
    return _run_training(args, train, _describe_summary)


def _pretrain(args: argparse.Namespace) -> int:
    from textcls.train.pretrain import pretrain
    return _run_training(args, pretrain, _describe_pretraining)


def _distill(args: argparse.Namespace) -> int:
    from textcls.train.distill import distill
    return _run_training(args, distill, _describe_summary)


def _join_processes() -> bool:
    """Under torchrun or accelerate launch this process is one of several: it joins the others (accelerate's process
    group, gloo on CPUs). True on the main process, which speaks for all: the others log warnings only, print
    nothing and write no files."""
    from accelerate import PartialState

    from textcls.device import no_gpu

    processes = PartialState(cpu=no_gpu())
    if not processes.is_local_main_process:
        logging.getLogger("textcls").setLevel(logging.WARNING)
    return processes.is_main_process


def _run_training(args: argparse.Namespace, run, describe) -> int:
    """`run(cfg, resume=None)` (train or pretrain) on the flags, or on a run's own config with --resume."""
    from textcls.train.rundir import load_run_config

    speaks = _join_processes()
    if args.resume:
        # The run's own config is the base: `textcls train --resume RUN` needs nothing else.
        base = load_run_config(Path(args.resume)) if not args.config else None
        cfg = config_from_args(args, base=base)
        summary = run(cfg, resume=Path(args.resume))
    else:
        summary = run(_train_config(args))
    if speaks:
        emit(summary, args.json, describe)
    return 0


def _describe_summary(s: dict) -> str:
    lines = [f"run: {s['run_dir']}  ({s['steps']} steps, {s['train_seconds']:.0f} s of training)",
             f"model: {s['model_dir']}"]
    for split, m in s["final"].items():
        if "accuracy" not in m:  # multi-label, regression: their logged metrics, the loss last
            lines.append(f"{split} " + "  ".join(f"{k}: {m[k]:.4f}" for k in [*list(m)[1:], "loss"]))
            continue
        lines.append(f"{split} accuracy: {m['accuracy']:.4f}  macro-F1: {m['macro_f1']:.4f}  loss: {m['loss']:.4f}")
    if "baseline" in s:
        b = s["baseline"]
        for split, m in b["metrics"].items():
            if "accuracy" not in m:  # multi-label, regression
                lines.append(f"{split} {b['method']} baseline: " + "  ".join(
                    f"{k}: {m[k]:.4f}" for k in s["final"][split]) + f"  (fit in {b['fit_seconds']:.0f} s)")
                continue
            lines.append(f"{split} accuracy of the {b['method']} baseline: {m['accuracy']:.4f}  macro-F1: "
                         f"{m['macro_f1']:.4f}  ({m['accuracy'] - s['final'][split]['accuracy']:+.4f} against the "
                         f"model; fit in {b['fit_seconds']:.0f} s)")
    return "\n".join(lines)


def _describe_pretraining(s: dict) -> str:
    best = s["best_validation"]
    lines = [f"run: {s['run_dir']}  ({s['steps']} steps, {s['train_seconds']:.0f} s of training)",
             f"masked LM: {s['model_dir']}  (fine-tune it: textcls train --model {s['model_dir']} ...)"]
    if best["loss"] is not None:
        lines.append(f"best validation MLM loss: {best['loss']:.4f} (perplexity {math.exp(best['loss']):.1f}) at "
                     f"step {best['step']}; exported: {s['weights']} weights")
    return "\n".join(lines)


def _evaluate(args: argparse.Namespace) -> int:
    from textcls.infer.evaluate import evaluate_model
    from textcls.train.rundir import is_run_dir, load_run_config

    speaks = _join_processes()  # several processes split the texts; the main one reports
    model = Path(args.model_dir)
    # A run directory is evaluated on its own data settings (the same carved splits) unless flags say otherwise,
    # and finds its tokenized splits in its own cache.
    run_cfg = load_run_config(model) if is_run_dir(model) else None
    cfg = config_from_args(args, base=run_cfg, sections=INFER_SECTIONS)
    data = cfg.data.data
    if run_cfg is not None and data == run_cfg.data.data and os.sep in data and not os.path.exists(data):
        raise TextclsError(f"the run's data path {data!r} does not exist from here (a relative path is read from the "
                           f"folder the run was started in); give --data PATH")
    attention, overrides = attention_from_args(args)
    result = evaluate_model(model, cfg.data, split=args.split, batch_size=cfg.train.batch_size,
                            tokenizer=getattr(args, "tokenizer", None), cache_dir=cfg.tokenize.cache_dir,
                            attention=attention, attention_overrides=overrides,
                            precision=cfg.train.mixed_precision, threshold=getattr(args, "threshold", None))
    if speaks:
        emit(result, args.json, describe_metrics)
    return 0


def _predict(args: argparse.Namespace) -> int:
    from textcls.infer.predict import predict_files, predict_texts

    speaks = _join_processes()  # several processes split the texts; the main one prints and writes --output
    cfg = config_from_args(args, base=None, sections=INFER_SECTIONS)
    columns = cfg.data.text_column, cfg.data.text_pair_column
    if args.input and args.texts:
        raise TextclsError("give texts as arguments or --input FILE, not both")
    if args.input and args.text_pair:
        raise TextclsError("--text-pair goes with TEXT arguments; with --input, second texts come from a column "
                           "(--text-pair-column)")
    if not args.input and any(columns):
        raise TextclsError("--text-column and --text-pair-column name columns of an --input file")
    output = Path(args.output) if args.output else None
    attention, overrides = attention_from_args(args)
    common = dict(output=output, batch_size=cfg.train.batch_size, tokenizer=cfg.tokenize.tokenizer,
                  attention=attention, attention_overrides=overrides, precision=cfg.train.mixed_precision,
                  backend=args.backend, threshold=cfg.train.threshold)
    if args.input:
        rows = predict_files(Path(args.model_dir), Path(args.input), text_column=columns[0],
                             text_pair_column=columns[1], encoding=cfg.data.encoding,
                             text_separator=cfg.data.text_separator, **common)
    elif args.texts:
        rows = predict_texts(Path(args.model_dir), args.texts, args.text_pair, **common)
    else:
        raise TextclsError("nothing to predict: give one or more TEXT arguments or --input FILE")
    if not speaks:
        return 0
    if output is not None and not args.json:
        print(f"wrote {len(rows)} predictions to {output}")
        return 0
    emit(rows, args.json, _describe_predictions)
    return 0


def _describe_predictions(rows: list[dict]) -> str:
    def shown(r: dict) -> str:
        text = " ".join(r["text"].split()) + (" || " + " ".join(r["text_pair"].split()) if "text_pair" in r else "")
        return text if len(text) <= 60 else text[:57] + "..."

    if rows and "score" in rows[0]:  # regression
        return table([[f"{r['score']:.4f}", shown(r)] for r in rows], ["score", "text"])
    if rows and "labels" in rows[0]:  # multi-label: the labels above their thresholds, with their probabilities
        return table([[", ".join(f"{n} {p:.4f}" for n, p in r["labels"].items()) or "-", shown(r)] for r in rows],
                     ["labels (probability)", "text"])
    names = list(rows[0]["probabilities"]) if rows else []
    return table([[r["label"], *(f"{r['probabilities'][n]:.4f}" for n in names), shown(r)] for r in rows],
                 ["label", *(f"p({n})" for n in names), "text"])


def _sweep(args: argparse.Namespace) -> int:
    from textcls.train.sweep import parse_sweep, sweep

    grid = parse_sweep(args.sweep)  # a bad --set fails before anything is read
    result = sweep(_train_config(args), grid)
    emit(result, args.json, lambda r: f"{r['table']}\n\nplot: {r['plot']}\nruns: {r['sweep_dir']}")
    if result["failed"]:
        print(f"textcls: error: {result['failed']} of {len(result['runs'])} sweep runs failed (see the table above "
              f"and {result['sweep_dir']}/sweep.json)", file=sys.stderr)
        return 2
    return 0

"""`textcls baseline`: a linear model on word n-grams, the score a transformer has to beat (see textcls.baseline)."""

from __future__ import annotations

import argparse

from textcls.cli.output import add_json_flag, describe_metrics, emit, split_name
from textcls.config import BaselineConfig, add_arguments, add_section_arguments, config_from_args, section_from_args


def register(sub) -> None:
    p = sub.add_parser("baseline", help="a classical baseline: TF-IDF + logistic regression, or NBSVM",
                       description="Fit a linear model on word n-grams to the train split (the rows `textcls train` "
                                   "trains on) and measure it on a labelled split with evaluate's metrics: the score "
                                   "a transformer has to beat. `textcls train --baseline METHOD` reports it beside "
                                   "a run's own.")
    p.add_argument("--split", type=split_name, default="test",
                   help="split to measure on (dev or valid: validation; default: test)")
    add_json_flag(p)
    add_section_arguments(p, BaselineConfig)
    add_arguments(p, "data")
    p.set_defaults(func=_baseline)


def _baseline(args: argparse.Namespace) -> int:
    from textcls.baseline import run_baseline

    cfg = config_from_args(args, base=None, sections=("data",))
    result = run_baseline(cfg.data, section_from_args(BaselineConfig, args), [args.split])
    result["metrics"][args.split]["split"] = args.split

    def human(r: dict) -> str:
        head = (f"baseline {r['method']} (C={r['c']:g}, word 1-{r['ngrams']}-grams) on {r['data']}: featurized and "
                f"fit in {r['fit_seconds']:.1f} s, {r['seconds']:.1f} s in all")
        return head + "\n" + describe_metrics(r["metrics"][args.split])

    emit(result, args.json, human)
    return 0

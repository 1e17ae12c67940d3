"""`textcls data inspect`: what a data source holds, as textcls reads it."""

from __future__ import annotations

import argparse
import dataclasses

from textcls.cli.output import add_json_flag, emit, table
from textcls.config import TokenizeConfig, add_arguments, config_from_args

# Of the tokenize settings, inspect needs only which tokenizer and the length to compare with.
TOKENIZE_ONLY = ("tokenizer", "max_length")


def register(sub) -> None:
    data = sub.add_parser("data", help="look into a data source")
    data_sub = data.add_subparsers(dest="data_command", metavar="COMMAND", required=True)
    p = data_sub.add_parser(
        "inspect", help="splits, label balance, text lengths and examples of --data",
        description="Read --data as training would (the same splits, columns and labels) and show its splits, label "
                    "balance, lengths in characters and, with --tokenizer, in tokens (special tokens included, "
                    "nothing truncated; the last column is the share of examples longer than --max-length), and "
                    "two examples.")
    add_arguments(p, "data")
    add_arguments(p, "tokenize", exclude=tuple(f.name for f in dataclasses.fields(TokenizeConfig)
                                               if f.name not in TOKENIZE_ONLY))
    add_json_flag(p)
    p.set_defaults(func=inspect)


def inspect(args: argparse.Namespace) -> int:
    from textcls.data.inspect import inspect_data
    from textcls.data.sources import load_data
    from textcls.data.tokenize import load_tokenizer

    cfg = config_from_args(args)
    tokenizer = load_tokenizer(cfg.tokenize.tokenizer) if cfg.tokenize.tokenizer else None  # fail before reading
    dsd = load_data(cfg.data)
    result = {"data": cfg.data.data, "tokenizer": cfg.tokenize.tokenizer,
              **inspect_data(dsd, tokenizer, cfg.tokenize.max_length, progress=not args.quiet)}
    emit(result, args.json, _human)
    return 0


def _human(r: dict) -> str:
    names, splits = r["labels"], r["splits"]
    unlabelled = any(s["unlabelled"] for s in splits.values())
    balance = [[split, f"{s['rows']:,}"]
               + [f"{c['count']:,} ({c['share']:.1%})" for c in s["labels"].values()]
               + ([f"{s['unlabelled']:,}"] if unlabelled else [])
               for split, s in splits.items()]
    units = ["chars"] + (["tokens"] if r["tokenizer"] else [])
    over = [f"> {r['max_length']}"] if r["tokenizer"] else []
    lengths = [[split, unit, f"{st['mean']:,.1f}", f"{st['median']:,.0f}", f"{st['p90']:,.0f}", f"{st['p99']:,.0f}",
                f"{st['max']:,}"] + ([f"{st['over_max_length']:.1%}"] if unit == "tokens" else [""] * len(over))
               for unit in units for split, st in ((s, v[unit]) for s, v in splits.items())]
    out = [f"data: {r['data']}" + (f"   tokenizer: {r['tokenizer']}" if r["tokenizer"] else ""),
           f"labels: {', '.join(f'{i}={n}' for i, n in enumerate(names))}" + ("   (text pairs)" if r["pair"] else ""),
           "",
           table(balance, ["split", "rows", *names] + (["unlabelled"] if unlabelled else [])),
           "",
           table(lengths, ["split", "length", "mean", "median", "p90", "p99", "max", *over]),
           ""]
    for e in r["examples"]:
        texts = " | ".join(e[c] for c in ("text", "text_pair") if c in e)
        out.append(f"{e['split']}[{e['row']}] {e['label']}: {' '.join(texts.split())}")
    out += [""] + [f"warning: {w}" for w in r["warnings"]] if r["warnings"] else []
    return "\n".join(out)

"""`textcls attention list` and `textcls model info M`: what mechanisms exist, and what a model setting builds.

A model textcls saves needs no export command: it already is a transformers folder (see textcls.model.hf).
"""

from __future__ import annotations

import argparse

from textcls.cli.output import add_json_flag, emit, table
from textcls.config import add_arguments, config_from_args


def register(sub) -> None:
    attention = sub.add_parser("attention", help="attention mechanisms")
    attention_sub = attention.add_subparsers(dest="attention_command", metavar="COMMAND", required=True)
    p = attention_sub.add_parser("list", help="registered mechanisms and their capabilities")
    add_json_flag(p)
    p.set_defaults(func=attention_list)

    model = sub.add_parser("model", help="model presets, folders and checkpoints")
    model_sub = model.add_subparsers(dest="model_command", metavar="COMMAND", required=True)
    p = model_sub.add_parser("info", help="resolved architecture, parameter counts and where the weights come from")
    p.add_argument("model", metavar="M", help="a preset (bert-tiny, bert-mini, bert-small, bert-medium, minilm-l6), "
                                              "a local folder or a hub id")
    add_arguments(p, "tokenize", only=("max_length",))
    add_arguments(p, "model", exclude=("model", "reinit_head"))
    add_arguments(p, "attention")
    add_json_flag(p)
    p.set_defaults(func=model_info)


def attention_list(args: argparse.Namespace) -> int:
    from textcls.model import describe_attention

    def human(rows: list[dict]) -> str:
        yes = {True: "yes", False: "no"}
        return table([(r["name"], yes[r["exact"]], yes[r["supports_padding_mask"]], yes[r["global_tokens"]],
                       yes[r["shared_qk"]], r["seq_multiple_of"],
                       " ".join(f"{o['flag']} {o['default']}" for o in r["options"]) or "-", r["description"])
                      for r in rows],
                     ["name", "exact", "padding mask", "global tokens", "shared qk", "length multiple of",
                      "options (default)", "description"])

    emit(describe_attention(), args.json, human)
    return 0


def model_info(args: argparse.Namespace) -> int:
    from textcls.model import describe_model

    cfg = config_from_args(args)
    emit(describe_model(cfg.model, cfg.tokenize.max_length, cfg.attention), args.json, _human_info)
    return 0


def _human_info(info: dict) -> str:
    a, n, att = info["architecture"], info["parameters"], info["attention"]
    weights = info["weights"] or f"not available: {info['weights_error']}"
    caps = ", ".join([("exact" if att["exact"] else "approximate"),
                      ("masks padding" if att["supports_padding_mask"] else "no padding mask")]
                     + ([f"lengths a multiple of {att['seq_multiple_of']}"] if att["seq_multiple_of"] > 1 else []))
    rows = [
        ("model", info["source"]),
        ("weights", weights),
        ("architecture", f"{a['num_layers']} layers, hidden {a['hidden_size']}, {a['num_heads']} heads, intermediate "
                         f"{a['intermediate_size']}, vocabulary {a['vocab_size']}, {a['max_positions']} positions"),
        ("attention", f"{att['name']}{''.join(f' {k}={v}' for k, v in att['options'].items())} ({caps})"),
        ("pooling", info["pooling"]),
        ("dropout", f"hidden {a['hidden_dropout']}, attention {a['attention_dropout']}"),
        ("parameters", f"{n['total']:,} = embeddings {n['embeddings']:,} + blocks {n['blocks']:,} + "
                       f"head {n['head']:,}"),
    ]
    if info["labels"]:
        rows.append(("labels", ", ".join(info["labels"])))
    saved = info["saved_settings"]
    if saved:
        same = "same logits in transformers" if saved.get("transformers_equivalent") else "other logits in transformers"
        rows.append(("saved by textcls", f"attention {saved.get('attention')}, pooling {saved.get('pooling')}; {same}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)

"""`textcls tokens` (the tokens behind the ids the model gets) and `textcls vocab` (look into a vocabulary)."""

from __future__ import annotations

import argparse
import dataclasses
import re

from textcls.cli.output import add_json_flag, emit, split_name, table
from textcls.config import (
    DataConfig,
    RunConfig,
    TokenizeConfig,
    add_arguments,
    config_from_args,
)
from textcls.errors import TextclsError

DEFAULT_TOKENIZER = ("default: the default model's own tokenizer (bert-tiny: google/bert_uncased_L-2_H-128_A-2, from "
                     "the hub); offline, --tokenizer minilm-l6 has the same vocabulary")


def register(sub) -> None:
    p = sub.add_parser(
        "tokens", help="the tokens, ids, token types and attention mask of a text, a pair or a dataset row",
        description="Tokenize TEXT (and PAIR), or row --index of --split of --data, with the same code as training "
                    "(truncation, special tokens, padding) and show every position. " + DEFAULT_TOKENIZER + ".")
    p.add_argument("text", nargs="?", metavar="TEXT", help="the text to tokenize")
    p.add_argument("pair", nargs="?", metavar="PAIR", help="the second text of a pair")
    p.add_argument("--split", type=split_name, default="train",
                   help="with --data: the split (dev or valid: validation; default: train)")
    p.add_argument("--index", type=int, default=0, help="with --data: the row, counted from 0 (default: 0)")
    p.add_argument("--window", type=int, default=0, help="with --truncation chunks: the window to show, counted "
                                                         "from 0 (default: 0)")
    add_arguments(p, "data")
    add_arguments(p, "tokenize", exclude=("num_proc", "cache_dir"))
    add_json_flag(p)
    p.set_defaults(func=tokens)

    p = sub.add_parser("vocab", help="look up ids and tokens in a tokenizer's vocabulary",
                       description="Look into a tokenizer's vocabulary. " + DEFAULT_TOKENIZER + ".")
    add_arguments(p, "tokenize", exclude=tuple(f.name for f in dataclasses.fields(TokenizeConfig)
                                               if f.name != "tokenizer"))
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--id", type=int, nargs="+", metavar="N", help="the tokens of these ids")
    what.add_argument("--token", nargs="+", metavar="W", help="the ids of these tokens, and how each is split into "
                                                               "wordpieces")
    what.add_argument("--grep", metavar="REGEX", help="every token that matches a Python regular expression")
    what.add_argument("--size", action="store_true", help="the size of the vocabulary and its special tokens")
    add_json_flag(p)
    p.set_defaults(func=vocab)


def _tokenizer(cfg: RunConfig):
    """The tokenizer's name and the tokenizer: --tokenizer, else the (default) model's own."""
    from textcls.data.tokenize import default_tokenizer_name, load_tokenizer

    name = default_tokenizer_name(cfg.tokenize, cfg.model)
    return name, load_tokenizer(name)


# --------------------------------------------------------------------------------------------- tokens

def tokens(args: argparse.Namespace) -> int:
    from textcls.data.batching import Collator
    from textcls.data.tokenize import ExampleEncoder

    cfg = config_from_args(args)
    if args.text is not None and cfg.data.data:
        raise TextclsError("give either TEXT [PAIR] or --data SPEC (with --split and --index), not both")
    if args.text is None and not cfg.data.data:
        raise TextclsError("nothing to tokenize: give TEXT [PAIR], or --data SPEC --split S --index N")
    name, tokenizer = _tokenizer(cfg)  # fail on the tokenizer before reading a dataset
    result: dict = {"tokenizer": name}
    if args.text is not None:
        text, pair = args.text, args.pair
    else:
        text, pair, row = _dataset_row(cfg.data, args.split, args.index)
        result.update(row)

    encoder = ExampleEncoder(tokenizer, cfg.tokenize, pair=pair is not None)
    rows = encoder([text], None if pair is None else [pair])  # one row, or with chunks one per window
    windows = len(rows["input_ids"])
    if not 0 <= args.window < windows:
        raise TextclsError(f"--window {args.window} is out of range: the text makes {windows} window"
                           f"{'s' if windows > 1 else ''} (0 to {windows - 1})")
    encoded = {k: v[args.window] for k, v in rows.items()}
    batch = Collator.from_config(cfg.tokenize, tokenizer)([encoded])  # what the model gets, padding included
    ids = batch["input_ids"][0].tolist()
    kept = encoded["length"] - encoder.num_special
    dropped = 0 if windows > 1 else encoded["num_wordpieces"] - kept  # windows keep every wordpiece
    result.update(max_length=cfg.tokenize.max_length, truncation=cfg.tokenize.truncation,
                  num_wordpieces=encoded["num_wordpieces"], dropped_wordpieces=dropped, length=encoded["length"],
                  windows=windows, window=args.window,
                  tokens=[{"position": i, "token": token, "id": id_, "token_type_id": type_id, "attention_mask": mask}
                          for i, (token, id_, type_id, mask) in enumerate(zip(
                              tokenizer.convert_ids_to_tokens(ids), ids, batch["token_type_ids"][0].tolist(),
                              batch["attention_mask"][0].tolist()))])
    if cfg.tokenize.truncation == "head+tail":
        result["head_tokens"] = cfg.tokenize.head_tokens
    if cfg.tokenize.truncation == "chunks":
        result["stride"] = cfg.tokenize.stride
    emit(result, args.json, _tokens_human)
    return 0


def _dataset_row(data_cfg: DataConfig, split: str, index: int) -> tuple[str, str | None, dict]:
    """Text, pair and a description of row `index` of `split`, read as training reads it."""
    from textcls.data.sources import load_data

    dsd = load_data(data_cfg)
    if split not in dsd:
        raise TextclsError(f"--split {split!r} is not in {data_cfg.data!r}; its splits are: {', '.join(dsd)}")
    ds = dsd[split]
    if not 0 <= index < len(ds):
        raise TextclsError(f"--index {index} is out of range: split {split!r} has {len(ds):,} rows "
                           f"(0 to {len(ds) - 1})")
    row = ds[index]
    label = row.get("label")
    names = ds.features["label"].names if label is not None else []
    return row["text"], row.get("text_pair"), {
        "split": split, "index": index, "label": names[label] if label is not None and label >= 0 else None}


def _tokens_human(r: dict) -> str:
    how = r["truncation"] + (f" {r['head_tokens']}" if "head_tokens" in r else "") + \
        (f", stride {r['stride']}" if "stride" in r else "")
    cut = f"; {r['dropped_wordpieces']:,} wordpieces cut" if r["dropped_wordpieces"] else ""
    if r["windows"] > 1:
        cut += f"; window {r['window']} of {r['windows']} (0 to {r['windows'] - 1}: --window)"
    lines = []
    if "split" in r:
        lines.append(f"{r['split']}[{r['index']}]   label: {r['label'] if r['label'] is not None else '(none)'}")
    lines.append(f"tokenizer: {r['tokenizer']}   {r['num_wordpieces']:,} wordpieces -> {r['length']:,} tokens "
                 f"(max length {r['max_length']:,}, truncation {how}){cut}")
    rows = [[t["position"], t["token"], t["id"], t["token_type_id"], t["attention_mask"]] for t in r["tokens"]]
    lines.append(table(rows, ["position", "token", "id", "token_type_id", "attention_mask"]))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------- vocab

def vocab(args: argparse.Namespace) -> int:
    name, tokenizer = _tokenizer(config_from_args(args))
    size = len(tokenizer)
    special = set(tokenizer.all_special_ids)
    if args.size:
        result = {"tokenizer": name, "size": size,
                  "special_tokens": {t: tokenizer.convert_tokens_to_ids(t) for t in tokenizer.all_special_tokens}}
        emit(result, args.json, lambda r: f"tokenizer: {r['tokenizer']}\nsize: {r['size']:,}\nspecial tokens: "
                                          + "  ".join(f"{t}={i}" for t, i in r["special_tokens"].items()))
        return 0
    if args.id is not None:
        bad = [i for i in args.id if not 0 <= i < size]
        if bad:
            raise TextclsError(f"--id {' '.join(map(str, bad))}: out of range; the vocabulary of {name} has ids "
                               f"0 to {size - 1}")
        entries = [{"id": i, "token": t, "special": i in special}
                   for i, t in zip(args.id, tokenizer.convert_ids_to_tokens(args.id))]
    elif args.token is not None:
        known = tokenizer.get_vocab()
        entries = []
        for word in args.token:
            ids = tokenizer(word, add_special_tokens=False)["input_ids"]
            entries.append({"token": word, "id": known.get(word),
                            "wordpieces": [{"token": t, "id": i} for t, i in
                                           zip(tokenizer.convert_ids_to_tokens(ids), ids)]})
    else:
        try:
            pattern = re.compile(args.grep)
        except re.error as e:
            raise TextclsError(f"--grep {args.grep!r} is not a valid regular expression: {e}") from None
        entries = [{"id": i, "token": t, "special": i in special}
                   for t, i in sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1]) if pattern.search(t)]
    emit({"tokenizer": name, "entries": entries}, args.json, _vocab_human)
    return 0


def _vocab_human(r: dict) -> str:
    entries = r["entries"]
    if entries and "wordpieces" in entries[0]:
        rows = [[e["token"], "-" if e["id"] is None else e["id"],
                 " ".join(w["token"] for w in e["wordpieces"]) + "  (" + " ".join(str(w["id"]) for w in
                                                                        e["wordpieces"]) + ")"]
                for e in entries]
        return table(rows, ["token", "id", "tokenizes as"])
    rows = [[e["id"], e["token"] + ("  (special)" if e["special"] else "")] for e in entries]
    return table(rows, ["id", "token"]) + f"\n{len(entries):,} entr{'y' if len(entries) == 1 else 'ies'}"

"""`textcls export`: a trained model as ONNX (for `predict --backend onnx`) or as a transformers folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from textcls.cli.output import add_json_flag, emit
from textcls.config import add_arguments, attention_from_args

EXPORT_EXAMPLES = """examples:
  textcls export runs/imdb --format onnx --output runs/imdb-onnx          # model.onnx + tokenizer + settings
  textcls export runs/imdb --format onnx --quantize int8 --output runs/imdb-int8
  textcls predict runs/imdb-onnx "A wonderful film." --backend onnx       # ONNX Runtime instead of torch
  textcls export runs/imdb --format transformers --output imdb-hf         # what AutoModel* and AutoTokenizer load
"""


def register(sub) -> None:
    p = sub.add_parser("export", help="write a trained model as ONNX (predict --backend onnx) or transformers",
                       usage="textcls export MODEL --format {onnx,transformers} [--quantize int8] --output DIR",
                       description="Write a trained classifier to a new folder that predicts on its own:\n"
                                   "  onnx: model.onnx (inputs input_ids, attention_mask, token_type_ids; output\n"
                                   "        logits; dynamic batch and sequence), the tokenizer, config.json and\n"
                                   "        textcls.json (labels, tokenize settings). --quantize int8: int8 weights\n"
                                   "        (ONNX Runtime's dynamic quantization). Needs the onnx extra:\n"
                                   "        pip install 'textcls[onnx]'.\n"
                                   "  transformers: the folder a run keeps in model/ (config.json,\n"
                                   "        model.safetensors, tokenizer, textcls.json).",
                       epilog=EXPORT_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model_dir", metavar="MODEL", help="a run directory, its model/ folder, or a transformers BERT "
                                                      "classifier folder")
    p.add_argument("--format", required=True, choices=("onnx", "transformers"), help="what to write")
    p.add_argument("--quantize", choices=("int8",), help="onnx: int8 weights for the matrix products")
    p.add_argument("--output", required=True, metavar="DIR", help="a new or empty folder")
    add_json_flag(p)
    # A model exported with another attention than it was trained with (sliding does not export; full does).
    add_arguments(p, "tokenize", only=("tokenizer",))
    add_arguments(p, "model", only=("attention",))
    add_arguments(p, "attention")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from textcls.infer.onnx import export_model

    attention, overrides = attention_from_args(args)
    result = export_model(Path(args.model_dir), Path(args.output), args.format, args.quantize,
                          tokenizer=getattr(args, "tokenizer", None), attention=attention,
                          attention_overrides=overrides)
    emit(result, args.json, _describe)
    return 0


def _describe(r: dict) -> str:
    if r["format"] == "transformers":
        return f"wrote the transformers folder of {r['source']} to {r['output']}"
    weights = "int8 weights" if r["quantize"] else "fp32"
    return (f"wrote the ONNX model ({weights}) of {r['source']} to {r['output']}\n"
            f"predict with: textcls predict {r['output']} TEXT ... --backend onnx")

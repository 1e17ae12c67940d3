"""Printing results: a table for a person, or JSON for a script (`--json`)."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Sequence


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def split_name(name: str) -> str:
    """A `--split` value as the split it means: dev and valid are validation, as in the names of data files."""
    from textcls.data.readers import SPLIT_NAMES  # imported when a command is parsed: `textcls --help` stays fast

    return SPLIT_NAMES.get(name, name)


def emit(result: Any, as_json: bool, human: Callable[[Any], str]) -> None:
    """Print `result` as JSON, or as the text `human(result)` makes of it."""
    if as_json:
        json.dump(result, sys.stdout, indent=2, ensure_ascii=False, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(human(result).rstrip("\n") + "\n")


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """A plain text table with columns padded to their widest cell."""
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def describe_metrics(m: dict) -> str:
    """evaluate's metrics of one split (`textcls.metrics.classification_metrics` + "split") for a person."""
    speed = f", {m['examples_per_s']:.0f} examples/s" if m.get("examples_per_s") else ""
    speed += f" ({m['precision']})" if m.get("precision") else ""
    loss = f"   loss {m['loss']:.4f}" if m["loss"] is not None else ""
    if "pearson" in m:  # regression
        return "\n".join([f"{m['split']}: {m['examples']} examples{speed}",
                          f"pearson {m['pearson']:.4f}   spearman {m['spearman']:.4f}   mse {m['mse']:.4f}"])
    if "micro_f1" in m:  # multi-label
        lines = [f"{m['split']}: {m['examples']} examples{speed}",
                 f"micro-F1 {m['micro_f1']:.4f}   macro-F1 {m['macro_f1']:.4f}   exact match "
                 f"{m['exact_match']:.4f}{loss}", ""]
        lines.append(table([[n, f"{c['threshold']:.3f}", f"{c['precision']:.4f}", f"{c['recall']:.4f}",
                             f"{c['f1']:.4f}", c["support"]] for n, c in m["per_class"].items()],
                           ["label", "threshold", "precision", "recall", "f1", "support"]))
        return "\n".join(lines)
    names = list(m["per_class"])
    lines = [f"{m['split']}: {m['examples']} examples{speed}",
             f"accuracy {m['accuracy']:.4f}   macro-F1 {m['macro_f1']:.4f}{loss}", ""]
    lines.append(table([[n, f"{c['precision']:.4f}", f"{c['recall']:.4f}", f"{c['f1']:.4f}", c["support"]]
                        for n, c in m["per_class"].items()], ["label", "precision", "recall", "f1", "support"]))
    lines += ["", "confusion matrix (rows: true, columns: predicted)"]
    lines.append(table([[n] + row for n, row in zip(names, m["confusion_matrix"])], ["true \\ predicted"] + names))
    return "\n".join(lines)

"""Printing results: a table for a person, or JSON for a script (`--json`)."""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Sequence


def add_json_flag(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


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

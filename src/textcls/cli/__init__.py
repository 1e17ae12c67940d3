"""`textcls` command line: thin commands over the Python API.

Each module in COMMANDS adds its subcommands with `register(subparsers)`; a subcommand's handler takes the parsed
arguments and returns an exit status. Heavy libraries are imported inside handlers, and flags that need them (the
attention mechanisms' options) are added only to the command being parsed, so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from typing import Callable

from textcls.allocator import keep_freed_memory
from textcls.errors import TextclsError

COMMANDS = ("textcls.cli.data", "textcls.cli.tokens", "textcls.cli.model", "textcls.cli.train", "textcls.cli.export",
            "textcls.cli.bench", "textcls.cli.serve", "textcls.cli.baseline")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser that runs deferred argument builders (`defer`) just before it parses or prints its help.
    Its subparsers are Parsers too, so each command builds its heavy flags only when it is the one that runs."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, build: Callable[[argparse.ArgumentParser], None]) -> None:
        self._deferred.append(build)

    def _build(self) -> None:
        while self._deferred:
            self._deferred.pop(0)(self)

    def parse_known_args(self, args=None, namespace=None):
        self._build()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._build()
        return super().format_help()

    def error(self, message: str):
        """A wrong flag or value is one `textcls: error:` line, as every other mistake (not argparse's usage
        block), and exit status 2."""
        self.exit(2, f"textcls: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="textcls",
        description="Fine-tune compact transformer encoders for text classification.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    if not sys.stderr.isatty():
        # Progress bars written to a log file or a pipe: a frame every few seconds, not dozens a second. tqdm reads
        # TQDM_* defaults when it is imported, so before any handler imports it (datasets' bars follow too).
        os.environ.setdefault("TQDM_MININTERVAL", "5")
    keep_freed_memory()  # steps that do not page-fault their activations in afresh (textcls/allocator.py)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s",
                        stream=sys.stderr)
    try:
        return int(args.func(args) or 0)
    except TextclsError as e:
        print(f"textcls: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("textcls: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `textcls ... | head` closed our stdout: not an error worth a traceback
        return 0


if __name__ == "__main__":
    sys.exit(main())

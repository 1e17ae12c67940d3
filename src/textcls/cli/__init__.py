"""`textcls` command line: thin commands over the Python API.

Each module in COMMANDS adds its subcommands with `register(subparsers)`; a subcommand's handler takes the parsed
arguments and returns an exit status. Heavy libraries are imported inside handlers so that `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from textcls.errors import TextclsError

COMMANDS = ("textcls.cli.data", "textcls.cli.tokens", "textcls.cli.model", "textcls.cli.train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textcls",
        description="Fine-tune compact transformer encoders for text classification.",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
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

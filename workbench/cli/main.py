"""The ``workbench`` command: one parser made of the command groups' parsers, and the dispatcher.

Each group (``dashboard``, ``data``, ``train``, ``predict``, ``refine``, ``runs``, ``hub``,
``batch``) adds its subcommands with ``add_parser`` and keeps its implementation beside them.
A ``ValueError`` is bad input: its message is printed without a traceback and the exit code is 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import batch, dashboard, data, hub, predict, refine, runs, train

GROUPS = (dashboard, data, train, predict, refine, runs, hub, batch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Neutron reflectometry ML workbench")
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:  # our validation errors say what is wrong; no traceback for them
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

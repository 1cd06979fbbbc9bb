"""The ``workbench`` command: one parser made of the command groups' parsers, and the dispatcher.

Each group (``dashboard``, ``data``, ``train``, ``ensemble``, ``predict``, ``refine``, ``runs``, ``hub``,
``batch``) adds its subcommands with ``add_parser`` and keeps its implementation beside them.
Only the group of the command being run is imported (``workbench runs list`` does not load
torch); ``workbench --help`` imports them all.  A ``ValueError`` is bad input: its message is
printed without a traceback and the exit code is 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__

GROUPS = ("dashboard", "data", "train", "ensemble", "predict", "refine", "runs", "hub", "batch")
COMMANDS = {
    "start": "dashboard",
    "dashboard": "dashboard",
    "report": "dashboard",
    "generate": "data",
    "train": "train",
    "ensemble": "ensemble",
    "predict": "predict",
    "refine": "refine",
    "runs": "runs",
    "hub": "hub",
    "import-pyreflect": "hub",
    "sweep": "batch",
    "search": "batch",
    "notebooks": "batch",
    "doctor": "batch",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv`` naming a command, only that command's group is imported and added."""
    parser = argparse.ArgumentParser(prog="workbench", description="Neutron reflectometry ML workbench")
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    command = next((a for a in argv or () if not a.startswith("-")), None)
    if command in COMMANDS:
        groups: Sequence[str] = (COMMANDS[command],)
    else:
        groups = () if argv and "--version" in argv else GROUPS
    for group in groups:
        importlib.import_module(f"{__package__}.{group}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:  # our validation errors say what is wrong; no traceback for them
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

"""What every command group shares: config files, validation messages, Ctrl-C, the workspace.

Kept in one place so that ``generate``, ``train``, ``refine``, ``sweep`` and ``runs resume`` read a
settings file, report a bad value and react to Ctrl-C the same way.  Light on purpose: ``workbench
runs list`` imports this and not torch (stack files are read by :mod:`.stacks`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..events import Record, Reporter
from ..store.recorded import RecordedRun, recorded_run
from ..store.workspace import Workspace


def load_config_file(path: str | os.PathLike) -> dict:
    """A YAML or JSON mapping from a file; errors name the file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{p}: cannot read ({exc.strerror})") from exc
    is_json = p.suffix.lower() == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{p}: not valid {'JSON' if is_json else 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one line naming each bad field: ``train.epochs: Input should be ...``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "settings"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


@contextmanager
def interrupts(reporter: Reporter, *, pause_first: bool = False) -> Iterator[None]:
    """Ctrl-C for a long job: the first one pauses (``pause_first``) or stops it cleanly, the next one stops or aborts.

    Training pauses first (a checkpoint is written, the run can be resumed); everything else stops
    after its running step.  A Ctrl-C after a stop request interrupts at once.
    """

    def handler(*_: Any) -> None:
        if pause_first and not reporter.pause.is_set():
            reporter.pause.set()
            print("\npausing: writing a checkpoint (Ctrl-C again to stop)...", file=sys.stderr)
        elif not reporter.stop.stopped:
            reporter.stop.stop("interrupted (Ctrl-C)")
            print("\nstopping after the running step (Ctrl-C again to abort)...", file=sys.stderr)
        else:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def print_epochs(event: Any) -> None:
    """A reporter listener that prints one line per training epoch."""
    if isinstance(event, Record) and event.name == "epoch":
        d = event.data
        print(
            f"epoch {d['epoch']}: train {d['train_loss']:.4g} (eval mode "
            f"{d.get('train_loss_eval', float('nan')):.4g}), "
            f"validation {d['val_loss']:.4g}, {d.get('seconds', 0.0):.1f} s"
        )


def add_workspace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace", help="workspace folder with the run registry (default: $WORKBENCH_HOME or ~/.workbench)"
    )


def workspace_of(args: argparse.Namespace) -> Workspace:
    return Workspace(getattr(args, "workspace", None))


def registry_of(args: argparse.Namespace):
    """The workspace's run registry, or None (with a warning) when it cannot be opened: the job still runs."""
    try:
        return workspace_of(args).registry
    except (OSError, sqlite3.Error) as exc:
        print(f"warning: this run is not recorded: the workspace registry cannot be opened ({exc})", file=sys.stderr)
        return None


@contextmanager
def recording(
    args: argparse.Namespace, kind: str, *, name: str | None, params: dict, reporter: Reporter
) -> Iterator[RecordedRun | None]:
    """``recorded_run`` in the CLI's workspace; yields None (and warns) when the registry cannot be opened."""
    registry = registry_of(args)
    if registry is None:
        yield None
        return
    with recorded_run(registry, kind, name=name, params=params, reporter=reporter) as run:
        yield run

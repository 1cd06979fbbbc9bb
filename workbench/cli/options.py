"""Command-line options generated from the typed configuration (:mod:`workbench.forms`).

``--learning-rate`` and the Train panel's "learning rate" box come from the same pydantic field, so
their types, ranges and help cannot drift apart.  Options default to None: only what the user
typed overrides a ``--config`` file, and the configuration model validates the result.
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import BaseModel

from ..forms import FieldSpec, field_specs


def _range(spec: FieldSpec) -> str:
    if spec.kind not in ("int", "float") or (spec.lo is None and spec.hi is None):
        return ""
    lo = "" if spec.lo is None else f"{spec.lo:g}"
    hi = "" if spec.hi is None else f"{spec.hi:g}"
    return f" [{lo}, {hi}]"


def option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_model_options(
    parser: argparse.ArgumentParser | Any, model: type[BaseModel], *, exclude: tuple[str, ...] = ()
) -> list[str]:
    """Add one option per field of ``model``; returns the field names added (``args.<name>``)."""
    added = []
    for spec in field_specs(model, exclude=exclude):
        flag = option_name(spec.name)
        names = [
            n for n in (spec.description, spec.pyreflect and f"pyreflect: {spec.pyreflect}") if n and n != spec.name
        ]
        label = f" ({'; '.join(names)})" if names else ""
        default = "" if spec.default is None else f"; default {spec.default}"
        text = f"{spec.help}{label}{_range(spec)}{default}".replace("%", "%%")
        if spec.kind == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif spec.kind == "choice":
            parser.add_argument(flag, choices=list(spec.choices), default=None, help=text)
        else:
            cast = {"int": int, "float": float}.get(spec.kind, str)
            parser.add_argument(
                flag, type=cast, default=None, help=text, metavar=spec.name.upper() if spec.kind != "text" else None
            )
        added.append(spec.name)
    return added


def given(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """The options among ``names`` that the user typed."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}

"""Stack files for ``workbench generate`` and ``refine``: pyreflect's layer_desc / layer_bound in YAML or JSON,
and sample families (:mod:`workbench.data.family`) for ``generate --stack``."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..data.family import FamilyStack, Range, SampleFamily, is_family
from ..data.handfit import load_handfit_spreadsheet
from ..physics import FilmStack
from .common import load_config_file

RANGE_OPTIONS = {"thickness": "thickness_range", "sld": "sld_range", "roughness": "roughness_range"}


def parse_stack(value: Any, where: str) -> FilmStack:
    """A film stack from pyreflect's mapping ``{layer_desc, layer_bound}`` (bounds = the free ranges)."""
    if not isinstance(value, dict) or "layer_desc" not in value:
        raise ValueError(f"{where}: expected 'layer_desc' (and 'layer_bound'), pyreflect's stack format")
    stack = FilmStack.from_pyreflect(value["layer_desc"], value.get("layer_bound"))
    warn_physics(stack, where)
    return stack


def warn_physics(stack: FilmStack, where: str) -> None:
    for caution in stack.physics_warnings():  # valid, but the numbers there are approximate
        print(f"warning: {where}: {caution}", file=sys.stderr)


def stack_file(path: str | os.PathLike) -> FilmStack:
    """The film stack of a YAML/JSON file: its ``stack`` entry, or the whole file."""
    settings = load_config_file(path)
    return parse_stack(settings.get("stack", settings), str(path))


def family_or_stack(path: str | os.PathLike) -> SampleFamily | FilmStack:
    """What ``--stack PATH`` names: a family file, a hand-fit spreadsheet (.csv) or a stack / refinement.json."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return SampleFamily.from_stack(load_handfit_spreadsheet(p), name=p.stem, source=f"hand fit {p.name}")
    settings = load_config_file(p)
    if is_family(settings):
        return SampleFamily.from_dict(settings.get("family", settings), f"{p}: family", base=p.parent)
    return parse_stack(settings.get("stack", settings), str(p))  # a stack, or refinement.json's fitted one


def add_family_options(parser: argparse.ArgumentParser) -> None:
    """``--thickness-range``, ``--sld-range``, ``--roughness-range`` and ``--tie`` (:func:`apply_family_options`)."""
    for par, dest in RANGE_OPTIONS.items():
        unit = "1e-6 Å⁻²" if par == "sld" else "Å"
        parser.add_argument(
            f"--{par}-range",
            dest=dest,
            metavar="RANGE",
            help=f"± range of every layer's {par} around its value: 20%% (relative) or a number in {unit} (absolute)"
            + ("; the substrate's and ambient's stay fixed" if par == "sld" else ""),
        )
    parser.add_argument(
        "--tie",
        action="append",
        default=[],
        metavar="LAYER.par",
        help="parameters that share one value in every curve, e.g. 'PEO_*.sld' (globs allowed; repeatable)",
    )


def apply_family_options(base: SampleFamily | FilmStack, args: argparse.Namespace, where: str) -> FilmStack:
    """The generation stack: a family with the options' ranges and ties applied and expanded, or ``base`` as is.

    A plain stack with range options becomes a family of its values (its own bounds are replaced).
    """
    ranges = {p: Range.parse(getattr(args, d), f"--{p}-range") for p, d in RANGE_OPTIONS.items() if getattr(args, d)}
    ties = [("same", (pattern,)) for pattern in args.tie]
    if isinstance(base, FilmStack):
        if not ranges and not ties:
            return base
        source = f"stack {Path(where).name}" if Path(where).suffix else ""
        base = SampleFamily.from_stack(base, name=Path(where).stem, source=source)
    base.ranges.update(ranges)
    base.ties.extend(ties)
    stack = base.expand()
    if not stack.free_parameters:
        raise ValueError(
            f"{where}: the family {base.name!r} has no ranges, so nothing varies; give ranges in the file or "
            "--thickness-range / --sld-range / --roughness-range"
        )
    warn_physics(stack, where)
    return stack


def describe(stack: FilmStack) -> str:
    """One line for the terminal: layers, varying parameters, draws (ties)."""
    text = f"{len(stack.layers)} layers, {len(stack.free_parameters)} varying parameters"
    if isinstance(stack, FamilyStack) and stack.ties:
        text += f" drawn as {stack.drawn_parameters} ({len(stack.ties)} ties)"
    return text

"""Stack files for ``workbench generate`` and ``refine``: pyreflect's layer_desc / layer_bound in YAML or JSON."""

from __future__ import annotations

import os
import sys
from typing import Any

from ..physics import FilmStack
from .common import load_config_file


def parse_stack(value: Any, where: str) -> FilmStack:
    """A film stack from pyreflect's mapping ``{layer_desc, layer_bound}`` (bounds = the free ranges)."""
    if not isinstance(value, dict) or "layer_desc" not in value:
        raise ValueError(f"{where}: expected 'layer_desc' (and 'layer_bound'), pyreflect's stack format")
    stack = FilmStack.from_pyreflect(value["layer_desc"], value.get("layer_bound"))
    for caution in stack.physics_warnings():  # valid, but the numbers there are approximate
        print(f"warning: {where}: {caution}", file=sys.stderr)
    return stack


def stack_file(path: str | os.PathLike) -> FilmStack:
    """The film stack of a YAML/JSON file: its ``stack`` entry, or the whole file."""
    settings = load_config_file(path)
    return parse_stack(settings.get("stack", settings), str(path))

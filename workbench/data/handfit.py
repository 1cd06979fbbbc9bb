"""Read a facility hand fit: the layer table of the reflectivity spreadsheet scientists at the
SNS Liquids Reflectometer export as CSV (``Compound, Nb (Å-2), μlabs/l [Å-2], μlinc [Å-1],
d (Å), σfwhm (Å)``), as a :class:`~workbench.physics.FilmStack` to start a refinement from or to
compare with.

The table lists the ambient first and the substrate last; each row's σ is the width of the
interface between that layer and the row above, given as a FWHM.  SLDs are in Å⁻² (×1e6 here).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from ..physics import FilmStack
from ..physics.probe import FWHM_PER_SIGMA

COLUMNS = {
    "name": "Compound",
    "sld": "Nb (Å-2)",
    "absorption": "μlabs/l [Å-2]",
    "thickness": "d (Å)",
    "fwhm": "σfwhm (Å)",
}


class HandFitError(ValueError):
    """The file is not a layer table this reader understands; the message names file and row."""


def _number(path: Path, row: int, column: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise HandFitError(f"{path}: row {row}, column {column!r}: {text!r} is not a number") from None


def load_handfit_spreadsheet(path: str | os.PathLike) -> FilmStack:
    """The film stack of a hand-fit spreadsheet export (substrate first, roughness as rms σ)."""
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as exc:
        raise HandFitError(f"{path}: cannot read as a UTF-8 CSV ({exc})") from exc
    header_row = next((i for i, r in enumerate(rows) if COLUMNS["name"] in r and COLUMNS["sld"] in r), None)
    if header_row is None:
        raise HandFitError(f"{path}: no layer table header with {COLUMNS['name']!r} and {COLUMNS['sld']!r} columns")
    header = rows[header_row]
    missing = [c for c in COLUMNS.values() if c not in header]
    if missing:
        raise HandFitError(f"{path}: layer table lacks the columns {missing}")
    col = {k: header.index(v) for k, v in COLUMNS.items()}
    layers = []  # ambient first, as in the file
    for i in range(header_row + 1, len(rows)):
        r = rows[i]
        name = r[col["name"]].strip() if len(r) > col["name"] else ""
        if not name:
            break
        line = i + 1
        fwhm_text = r[col["fwhm"]].strip()
        layers.append(
            {
                "name": name,
                "sld": 1e6 * _number(path, line, COLUMNS["sld"], r[col["sld"]]),
                "isld": 1e6 * _number(path, line, COLUMNS["absorption"], r[col["absorption"]] or "0"),
                "thickness": _number(path, line, COLUMNS["thickness"], r[col["thickness"]]),
                "fwhm": None if not fwhm_text else _number(path, line, COLUMNS["fwhm"], fwhm_text),
            }
        )
    if len(layers) < 2:
        raise HandFitError(f"{path}: the layer table needs at least an ambient and a substrate row")
    entries = []
    for k in range(len(layers) - 1, -1, -1):  # substrate first
        layer = layers[k]
        entry = {"name": layer["name"], "sld": layer["sld"], "isld": layer["isld"]}
        if 0 < k < len(layers) - 1:
            entry["thickness"] = layer["thickness"]
        if k > 0:
            if layer["fwhm"] is None:
                raise HandFitError(
                    f"{path}: layer {layer['name']!r} has no {COLUMNS['fwhm']} for the interface above it"
                )
            entry["roughness"] = layer["fwhm"] / FWHM_PER_SIGMA
        entries.append(entry)
    entries[0]["name"] = entries[0]["name"].replace(" (Substrate)", "")
    return FilmStack.from_pyreflect(entries)

"""Chart and fit data as files a scientist opens elsewhere: columns named with their units, errors where known.

Pure (no widgets): the Files panel offers these as downloads; notebooks can call them on any Plotly figure
or :class:`~workbench.analysis.refine.RefineResult`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.metrics import parameter_unit
from .curves import chart_data


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _axis_title(fig: Any, trace: Any, axis: str) -> str:
    ref = getattr(trace, f"{axis}axis", None) or axis  # "x", "x2", ...
    layout_axis = getattr(fig.layout, f"{axis}axis{ref[1:]}", None)
    title = getattr(getattr(layout_axis, "title", None), "text", None)
    return title or axis


def chart_export(fig: Any) -> dict[str, Any]:
    """A chart's data with its axis titles (which carry the units) and each trace's y error bars (1σ) where drawn."""
    out = chart_data(fig)
    out["x_title"] = _axis_title(fig, fig.data[0], "x") if fig.data else "x"
    out["y_title"] = _axis_title(fig, fig.data[0], "y") if fig.data else "y"
    for trace, row in zip(fig.data, out["traces"]):
        err = getattr(trace, "error_y", None)
        array = getattr(err, "array", None) if err is not None and getattr(err, "visible", True) is not False else None
        if array is not None and len(array) == len(row["y"]):
            row["dy"] = np.asarray(array, dtype=float).tolist()
    return out


def chart_table_csv(fig: Any) -> str:
    """Long-format CSV of a chart: trace, x and y named by the axis titles with units, and dy (1σ) where known.

    For an R(Q) chart: ``trace,Q (Å⁻¹),R,dR (1σ)``.
    """
    data = chart_export(fig)
    x_title, y_title = data["x_title"], data["y_title"]
    with_err = any("dy" in t for t in data["traces"])
    y_name, _, unit = y_title.partition(" (")
    unit = ", " + unit.rstrip(")") if unit else ""
    err_title = f"dR (1σ{unit})" if y_name in ("R", "R(Q)") else f"{y_name or 'y'} error (1σ{unit})"
    head = ["trace", x_title, y_title] + ([err_title] if with_err else [])
    lines = [",".join(_csv_field(h) for h in head)]
    for t in data["traces"]:
        name = _csv_field(t["name"])
        dys = t.get("dy") or [None] * len(t["x"])
        for x, y, dy in zip(t["x"], t["y"], dys):
            row = f"{name},{x:.10g},{y:.10g}"
            lines.append(row + ("," + ("" if dy is None else f"{dy:.10g}") if with_err else ""))
    return "\n".join(lines) + "\n"


def refined_csv(result: Any) -> str:
    """A refinement's free parameters: value and 1σ with their unit, the bounds used and any flag (CSV)."""
    rows = result.table()
    bounds = getattr(result, "bounds", {}) or {}
    lines = ["parameter,unit,value,uncertainty (1σ),lower bound,upper bound,note"]
    for r in rows:
        name = str(r["name"])
        lo, hi = bounds.get(name, (None, None))
        note = result.flag(name) if hasattr(result, "flag") else ""
        cells = [
            _csv_field(name),
            _csv_field(str(r.get("unit") or parameter_unit(name))),
            f"{float(r['value']):.8g}",
            f"{float(r['uncertainty']):.4g}",
            "" if lo is None else f"{float(lo):.8g}",
            "" if hi is None else f"{float(hi):.8g}",
            _csv_field(note),
        ]
        lines.append(",".join(cells))
    return "\n".join(lines) + "\n"

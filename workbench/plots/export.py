"""Chart and fit data as files a scientist opens elsewhere: columns named with their units, errors where known.

Pure (no widgets): the Files panel offers these as downloads; notebooks can call them on any Plotly figure
or :class:`~workbench.analysis.refine.RefineResult`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..analysis.metrics import parameter_unit
from .curves import chart_data
from .views import VIEW_LABELS, FresnelReference, figure_view, from_view


def _csv_field(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _axis_title(fig: Any, trace: Any, axis: str) -> str:
    ref = getattr(trace, f"{axis}axis", None) or axis  # "x", "x2", ...
    layout_axis = getattr(fig.layout, f"{axis}axis{ref[1:]}", None)
    title = getattr(getattr(layout_axis, "title", None), "text", None)
    return title or axis


def chart_export(fig: Any) -> dict[str, Any]:
    """A chart's data with its axis titles (which carry the units) and each trace's y error bars (1σ) where drawn.

    An R(Q) chart drawn as R·Q⁴ or R/R_F (:mod:`.views`) also says its ``view`` and Fresnel reference, and gives
    each trace's R (``r``, ``dr``) beside the drawn ``y``.
    """
    out = chart_data(fig)
    out["x_title"] = _axis_title(fig, fig.data[0], "x") if fig.data else "x"
    out["y_title"] = _axis_title(fig, fig.data[0], "y") if fig.data else "y"
    for trace, row in zip(fig.data, out["traces"]):
        err = getattr(trace, "error_y", None)
        array = getattr(err, "array", None) if err is not None and getattr(err, "visible", True) is not False else None
        if array is not None and len(array) == len(row["y"]):
            row["dy"] = np.asarray(array, dtype=float).tolist()
    view, reference = figure_view(fig)
    if view != "R":
        out["view"] = VIEW_LABELS[view]
        if reference is not None:
            keys = ("substrate_sld", "substrate_isld", "ambient_sld")
            out["fresnel_reference"] = dict(zip(keys, reference.as_list()))
        for row in out["traces"]:
            r, dr = _as_r(view, reference, row)
            row["r"] = r.tolist()
            if dr is not None:
                row["dr"] = dr.tolist()
    return out


def _as_r(view: str, reference: FresnelReference | None, row: dict) -> tuple[np.ndarray, np.ndarray | None]:
    """R and dR of a trace drawn in ``view`` (NaN where R/R_F had no reference to undo)."""
    if view == "R/RF" and reference is None:
        nan = np.full(len(row["y"]), np.nan)
        return nan, None if "dy" not in row else nan
    return from_view(view, row["x"], row["y"], row.get("dy"), reference)


def _number(v: float | None) -> str:
    return "" if v is None or not np.isfinite(v) else f"{v:.10g}"


def chart_table_csv(fig: Any) -> str:
    """Long-format CSV of a chart: trace, x and y named by the axis titles with units, and dy (1σ) where known.

    For an R(Q) chart: ``trace,Q (Å⁻¹),R,dR (1σ)``.  Drawn as R·Q⁴ or R/R_F, the file keeps R and dR (what
    other programs read) and adds the drawn view's columns: ``R·Q⁴ (Å⁻⁴)`` and its 1σ, or ``R / R_F``, its 1σ
    and ``R_F`` (unsmeared Fresnel reflectivity of the bare substrate, which it was divided by).
    """
    data = chart_export(fig)
    x_title, y_title = data["x_title"], data["y_title"]
    with_err = any("dy" in t for t in data["traces"])
    view, reference = figure_view(fig)
    if view != "R":
        return _view_csv(data, view, reference, with_err)
    y_name, _, unit = y_title.partition(" (")
    unit = ", " + unit.rstrip(")") if unit else ""
    err_title = f"dR (1σ{unit})" if y_name in ("R", "R(Q)") else f"{y_name or 'y'} error (1σ{unit})"
    y_column = "R" if y_title == "R(Q)" else y_title  # an R(Q) chart's column is R, as other programs read it
    head = ["trace", x_title, y_column] + ([err_title] if with_err else [])
    lines = [",".join(_csv_field(h) for h in head)]
    for t in data["traces"]:
        name = _csv_field(t["name"])
        dys = t.get("dy") or [None] * len(t["x"])
        for x, y, dy in zip(t["x"], t["y"], dys):
            row = f"{name},{x:.10g},{y:.10g}"
            lines.append(row + ("," + ("" if dy is None else f"{dy:.10g}") if with_err else ""))
    return "\n".join(lines) + "\n"


def _view_csv(data: dict, view: str, reference: FresnelReference | None, with_err: bool) -> str:
    """The CSV of an R(Q) chart drawn as R·Q⁴ or R/R_F: R, dR, then the view's value, its 1σ (and R_F)."""
    label = VIEW_LABELS[view]
    name, _, unit = label.partition(" (")
    unit = ", " + unit.rstrip(")") if unit else ""
    head = ["trace", data["x_title"], "R"] + (["dR (1σ)"] if with_err else []) + [label]
    head += [f"{name} error (1σ{unit})"] if with_err else []
    head += ["R_F"] if view == "R/RF" else []
    lines = [",".join(_csv_field(h) for h in head)]
    for t in data["traces"]:
        n = len(t["x"])
        rf = reference.reflectivity(t["x"]) if view == "R/RF" and reference is not None else [None] * n
        dys, drs = t.get("dy") or [None] * n, t.get("dr") or [None] * n
        for x, r, dr, y, dy, f in zip(t["x"], t["r"], drs, t["y"], dys, rf):
            cells = [_csv_field(t["name"]), _number(x), _number(r)] + ([_number(dr)] if with_err else [])
            cells += [_number(y)] + ([_number(dy)] if with_err else []) + ([_number(f)] if view == "R/RF" else [])
            lines.append(",".join(cells))
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

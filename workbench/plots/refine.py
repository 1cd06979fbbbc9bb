"""Plotly figures of a refinement (plotly only, no widgets): used by the refinement notebook and
the Refine panel's exports.  Each takes a :class:`~workbench.analysis.refine.RefineResult`."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import LEGEND, ROLES, apply_roles, band_fill, error_bars, trace_style
from .views import FresnelReference, axis_title, to_view, view_meta


def fit_figure(
    q: np.ndarray,
    r: np.ndarray,
    dr: np.ndarray | None,
    curves: Mapping[str, np.ndarray],
    *,
    view: str = "R",
    reference: FresnelReference | None = None,
) -> go.Figure:
    """Data with error bars and model curves (e.g. initial, refined, truth: styled by role) on a log axis.

    ``view`` "R", "RQ4" (R·Q⁴) or "R/RF" (over the Fresnel curve of ``reference``'s bare substrate).
    """
    y, dy = to_view(view, q, r, dr, reference)
    fig = go.Figure()
    fig.add_scatter(x=q, y=y, name="data", error_y=error_bars(dy), **trace_style("data"))
    for name, curve in curves.items():
        fig.add_scatter(x=q, y=to_view(view, q, curve, None, reference)[0], mode="lines", name=name)
    fig.update_layout(
        xaxis_title="Q (Å⁻¹)",
        yaxis_title=axis_title(view),
        yaxis_type="log",
        height=420,
        margin={"t": 30, "b": 100},
        legend=LEGEND,
        meta=view_meta(view, reference),
    )
    return apply_roles(fig)


def convergence_figure(history: list[dict[str, float]], n_points: int) -> go.Figure:
    """χ²/N per iteration on a log scale."""
    it = [h["iteration"] for h in history]
    fig = go.Figure(
        go.Scatter(
            x=it,
            y=[h["chi2"] / n_points for h in history],
            mode="lines+markers",
            name="χ²/N",
            line=ROLES["fit"]["line"],
        )
    )
    fig.update_layout(xaxis_title="iteration", yaxis_title="χ²/N", yaxis_type="log", height=320, margin={"t": 30})
    return fig


def traces_figure(
    history: list[dict[str, float]], names: list[str], truth: Mapping[str, float] | None = None, cols: int = 3
) -> go.Figure:
    """Every parameter per iteration, with a dashed line at its true value when known."""
    rows = -(-len(names) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=names, vertical_spacing=0.12 / max(rows, 1) * 2)
    it = [h["iteration"] for h in history]
    for k, name in enumerate(names):
        row, col = k // cols + 1, k % cols + 1
        fig.add_scatter(
            x=it, y=[h[name] for h in history], name=name, showlegend=False, row=row, col=col, **trace_style("fit")
        )
        if truth and name in truth:
            line = ROLES["truth"]["line"]
            fig.add_hline(y=truth[name], line_dash=line["dash"], line_color=line["color"], row=row, col=col)
    fig.update_layout(height=220 * rows, margin={"t": 40})
    return fig


def profile_band_figure(
    z: np.ndarray,
    median: np.ndarray,
    band68: tuple[np.ndarray, np.ndarray],
    band95: tuple[np.ndarray, np.ndarray],
    profiles: Mapping[str, tuple[np.ndarray, np.ndarray]],
) -> go.Figure:
    """SLD profiles (e.g. truth, initial, refined: styled by role) over the 68 %/95 % band of the fit."""
    fig = go.Figure()
    for (lo, hi), level in ((band95, "95 %"), (band68, "68 %")):
        fig.add_scatter(
            x=np.concatenate([z, z[::-1]]),
            y=np.concatenate([hi, lo[::-1]]),
            fill="toself",
            mode="lines",
            line={"width": 0},
            fillcolor=band_fill(level),
            name=f"{level} band",
        )
    fit_line = ROLES["fit"]["line"]
    fig.add_scatter(x=z, y=median, mode="lines", name="band median", line={**fit_line, "dash": "dot", "width": 1})
    for name, (zz, rho) in profiles.items():
        fig.add_scatter(x=zz, y=rho, mode="lines", name=name)
    fig.update_layout(
        xaxis_title="z (Å, 0 = top of the substrate)",
        yaxis_title="SLD (10⁻⁶ Å⁻²)",
        height=420,
        margin={"t": 30, "b": 100},
        legend=LEGEND,
    )
    return apply_roles(fig)

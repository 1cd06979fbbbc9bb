"""Plotly figures for R(Q) and SLD profiles, shared by the panels, the CLI and the notebooks.

Only plotly here (no widgets): a ``go.Figure`` can be wrapped in a ``ChartWidget`` (a Plotly
FigureWidget) by a panel or written to a standalone HTML file by the command line.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..physics import FilmStack, Probe, reflectivity, sld_profile
from .style import LEGEND, add_placeholder, apply_roles
from .views import FresnelReference, axis_title, to_view, view_meta

R_AXIS = {"title": "R(Q)", "type": "log", "exponentformat": "power"}
Q_AXIS = {"title": "Q (Å⁻¹)"}
Z_AXIS = {"title": "z (Å, from the substrate)"}
SLD_AXIS = {"title": "SLD (10⁻⁶ Å⁻²)"}


def r_axis(view: str = "R") -> dict:
    """The y axis of an R(Q) chart drawn in ``view`` (R, RQ4 or R/RF; all on a log scale)."""
    return {**R_AXIS, "title": axis_title(view)}


def stack_figure(
    stack: FilmStack, probe: Probe | None = None, *, title: str | None = None, view: str = "R"
) -> go.Figure:
    """Two panels side by side: R(Q) on a log scale and the SLD depth profile of ``stack``.

    ``view``: draw R, R·Q⁴ or R/R_F (divided by the unsmeared Fresnel curve of the stack's bare substrate).
    """
    probe = Probe() if probe is None else probe
    reference = FresnelReference.of(stack)
    r, _ = to_view(view, probe.q, np.asarray(reflectivity(stack, probe, engine="fast"))[0], reference=reference)
    z, rho, irho = sld_profile(stack)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Reflectivity", "SLD profile"), horizontal_spacing=0.1)
    fig.add_trace(go.Scatter(x=probe.q, y=r, mode="lines", name="R(Q)"), row=1, col=1)
    fig.add_trace(go.Scatter(x=z[0], y=rho[0], mode="lines", name="ρ (SLD)"), row=1, col=2)
    if np.any(irho != 0):
        fig.add_trace(
            go.Scatter(x=z[0], y=irho[0], mode="lines", name="ρ'' (absorption)", line={"dash": "dot"}), row=1, col=2
        )
    fig.update_xaxes(**Q_AXIS, row=1, col=1)
    fig.update_yaxes(**r_axis(view), row=1, col=1)
    fig.update_xaxes(**Z_AXIS, row=1, col=2)
    fig.update_yaxes(**SLD_AXIS, row=1, col=2)
    names = " / ".join(layer.name for layer in stack.layers)
    subtitle = f"{probe.q.size} Q points {probe.q[0]:.4g}–{probe.q[-1]:.4g} Å⁻¹" + (
        f", dQ/Q = {probe.dq_over_q:g} {'FWHM' if probe.dq_is_fwhm else '1σ'}"
        if probe.constant_dq_over_q
        else ", pointwise dQ"
    )
    fig.update_layout(
        title={"text": f"{title or names}<br><sup>{subtitle}</sup>"},
        template="plotly_white",
        height=520,
        legend=LEGEND,
        margin={"b": 110},
        meta=view_meta(view, reference),
    )
    return fig


def curves_figure(
    q: np.ndarray, curves: Mapping[str, np.ndarray], *, view: str = "R", reference: FresnelReference | None = None
) -> go.Figure:
    """Several R(Q) curves on one log-scale chart, drawn as R, R·Q⁴ or R/R_F (``reference``: the substrate)."""
    fig = go.Figure(
        [
            go.Scatter(x=q, y=to_view(view, q, r, reference=reference)[0], mode="lines", name=n)
            for n, r in curves.items()
        ]
    )
    fig.update_layout(
        xaxis=Q_AXIS, yaxis=r_axis(view), template="plotly_white", legend=LEGEND, meta=view_meta(view, reference)
    )
    return apply_roles(fig)


# ----------------------------------------------------------------------------- live chart templates
# Empty figures with their axes and named traces; a panel wraps each in one ChartWidget that it
# keeps for its whole life and updates in place (never a new figure per update).
LOSS_AXIS = {"title": "loss (MSE, normalised)", "type": "log", "exponentformat": "power"}


def _base(height: int = 380, placeholder: bool = True, **layout) -> go.Figure:
    """An empty chart, its legend below the plot area (never over the data), marked "no data yet".

    ``placeholder=False`` for a chart whose panel sets trace data directly (the mark would not go away).
    """
    fig = go.Figure()
    fig.update_layout(
        template="plotly_white",
        height=height,
        margin={"l": 60, "r": 20, "t": 40, "b": 100},
        legend=LEGEND,
        **layout,
    )
    return add_placeholder(fig) if placeholder else fig


def reflectivity_template(names: tuple[str, ...] = ("R(Q)",), title: str = "Reflectivity") -> go.Figure:
    """A log-scale R(Q) chart with one empty line trace per name, styled by its role (``plots.style``)."""
    fig = _base(title={"text": title}, xaxis=Q_AXIS, yaxis=R_AXIS)
    for name in names:
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name=name, meta=name))
    return apply_roles(fig)


def profile_template(names: tuple[str, ...] = ("ρ (SLD)",), title: str = "SLD profile") -> go.Figure:
    """An SLD depth-profile chart with one empty line trace per name, styled by its role (``plots.style``)."""
    fig = _base(title={"text": title}, xaxis=Z_AXIS, yaxis=SLD_AXIS)
    for name in names:
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines", name=name, meta=name))
    return apply_roles(fig)


def loss_template() -> go.Figure:
    """Training and validation loss against epoch."""
    fig = _base(title={"text": "Loss"}, placeholder=False, xaxis={"title": "epoch"}, yaxis=LOSS_AXIS)
    for key, name in (("train_loss", "train"), ("train_loss_eval", "train (eval mode)"), ("val_loss", "validation")):
        fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name=name, meta=key))
    return fig


def convergence_template() -> go.Figure:
    """χ² against iteration of a refinement."""
    fig = _base(
        title={"text": "Convergence"},
        xaxis={"title": "iteration"},
        yaxis={"title": "χ²", "type": "log", "exponentformat": "power"},
    )
    fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name="χ²", meta="chi2"))
    return fig


def chart_data(fig: go.Figure) -> dict:
    """The data behind a chart as JSON-able lists: {title, traces: [{name, x, y}]}."""
    title = fig.layout.title.text if fig.layout.title and fig.layout.title.text else ""
    traces = []
    for trace in fig.data:
        x = [] if trace.x is None else np.asarray(trace.x, dtype=float).tolist()
        y = [] if trace.y is None else np.asarray(trace.y, dtype=float).tolist()
        traces.append({"name": trace.name or "", "x": x, "y": y})
    return {"title": title, "traces": traces}


def chart_csv(fig: go.Figure) -> str:
    """The chart's traces as long-format CSV: trace,x,y (one row per point)."""
    lines = ["trace,x,y"]
    for trace in chart_data(fig)["traces"]:
        name = '"' + trace["name"].replace('"', '""') + '"'
        lines += [f"{name},{x:.10g},{y:.10g}" for x, y in zip(trace["x"], trace["y"])]
    return "\n".join(lines) + "\n"

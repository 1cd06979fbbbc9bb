"""Plotly figures for R(Q) and SLD profiles, shared by the panels, the CLI and the notebooks.

Only plotly here (no widgets): a ``go.Figure`` can be wrapped in a ``go.FigureWidget`` by a panel
or written to a standalone HTML file by the command line.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..physics import FilmStack, Probe, reflectivity, sld_profile

R_AXIS = dict(title="R(Q)", type="log", exponentformat="power")
Q_AXIS = dict(title="Q (Å⁻¹)")
Z_AXIS = dict(title="z (Å, from the substrate)")
SLD_AXIS = dict(title="SLD (10⁻⁶ Å⁻²)")


def stack_figure(stack: FilmStack, probe: Probe | None = None, *, title: str | None = None) -> go.Figure:
    """Two panels side by side: R(Q) on a log scale and the SLD depth profile of ``stack``."""
    probe = Probe() if probe is None else probe
    r = np.asarray(reflectivity(stack, probe, engine="fast"))[0]
    z, rho, irho = sld_profile(stack)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Reflectivity", "SLD profile"), horizontal_spacing=0.1)
    fig.add_trace(go.Scatter(x=probe.q, y=r, mode="lines", name="R(Q)"), row=1, col=1)
    fig.add_trace(go.Scatter(x=z[0], y=rho[0], mode="lines", name="ρ (SLD)"), row=1, col=2)
    if np.any(irho != 0):
        fig.add_trace(go.Scatter(x=z[0], y=irho[0], mode="lines", name="ρ'' (absorption)", line=dict(dash="dot")), row=1, col=2)
    fig.update_xaxes(**Q_AXIS, row=1, col=1)
    fig.update_yaxes(**R_AXIS, row=1, col=1)
    fig.update_xaxes(**Z_AXIS, row=1, col=2)
    fig.update_yaxes(**SLD_AXIS, row=1, col=2)
    names = " / ".join(layer.name for layer in stack.layers)
    subtitle = f"{probe.q.size} Q points {probe.q[0]:.4g}–{probe.q[-1]:.4g} Å⁻¹" + (
        f", dQ/Q = {probe.dq_over_q:g} {'FWHM' if probe.dq_is_fwhm else '1σ'}" if probe.constant_dq_over_q else ", pointwise dQ"
    )
    fig.update_layout(
        title=dict(text=f"{title or names}<br><sup>{subtitle}</sup>"),
        template="plotly_white",
        height=480,
        legend=dict(x=0.38, y=0.98),
    )
    return fig


def curves_figure(q: np.ndarray, curves: Mapping[str, np.ndarray]) -> go.Figure:
    """Several R(Q) curves on one log-scale chart."""
    fig = go.Figure([go.Scatter(x=q, y=r, mode="lines", name=name) for name, r in curves.items()])
    fig.update_layout(xaxis=Q_AXIS, yaxis=R_AXIS, template="plotly_white")
    return fig

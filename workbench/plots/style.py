"""One visual language for every chart: the same colour and dash for each role in every panel.

Roles: measured ``data`` (black markers with grey error bars), the ``start`` of a fit (grey,
dashed), the ``fit`` (blue), a model's ``prediction`` (vermillion), the ``truth`` (green, dotted)
and uncertainty ``band``\\ s (the fit's blue, translucent).  Colours are Okabe–Ito's, which stay
apart for colour-blind readers.  A trace's role comes from its key (``meta``) or name
(:data:`TRACE_ROLES`); a trace of no known role keeps Plotly's defaults.  Legends sit below the
plot area, so they never hide data; an empty chart says "no data yet" instead of showing
Plotly's placeholder axes (−1 to 6).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import plotly.graph_objects as go

FIT_RGB = (0, 114, 178)  # Okabe–Ito blue
ROLES: dict[str, dict[str, Any]] = {
    "data": {"mode": "markers", "marker": {"color": "#222222", "size": 4}},
    "start": {"mode": "lines", "line": {"color": "#7f7f7f", "dash": "dash", "width": 1.5}},
    "fit": {"mode": "lines", "line": {"color": "rgb({},{},{})".format(*FIT_RGB), "dash": "solid", "width": 2}},
    "prediction": {"mode": "lines", "line": {"color": "#D55E00", "dash": "solid", "width": 2}},
    "truth": {"mode": "lines", "line": {"color": "#009E73", "dash": "dot", "width": 2}},
}
# trace keys and names the panels, notebooks and the CLI use → their role
TRACE_ROLES = {
    "data": "data",
    "measured": "data",
    "start": "start",
    "initial": "start",
    "fit": "fit",
    "refined": "fit",
    "prediction": "prediction",
    "computed from the prediction": "prediction",
    "truth": "truth",
    "ground truth": "truth",
}
ERROR_BAR = {"type": "data", "color": "#9a9a9a", "thickness": 0.8, "width": 0}
BAND_ALPHA = {"68 %": 0.35, "95 %": 0.18}  # fill opacity of the 68 % and 95 % credible bands
LEGEND = {"orientation": "h", "x": 0.0, "xanchor": "left", "y": -0.25, "yanchor": "top"}  # below the x axis title
PLACEHOLDER = "no data yet"


def role_of(key: str | None) -> str | None:
    """The role of a trace key or name ("computed from the prediction" → "prediction"), None if unknown."""
    return TRACE_ROLES.get(key) if key else None


def trace_style(role: str | None) -> dict[str, Any]:
    """Scatter properties (mode, line or marker) of a role; {} for None or an unknown role (Plotly's defaults)."""
    style = ROLES.get(role or "")
    return {k: dict(v) if isinstance(v, dict) else v for k, v in style.items()} if style else {}


def band_fill(level: str = "95 %") -> str:
    """The fill colour of a credible band: the fit's colour at the band's opacity."""
    return "rgba({},{},{},{})".format(*FIT_RGB, BAND_ALPHA[level])


def error_bars(dy) -> dict[str, Any]:
    """``error_y`` of a data trace: symmetric bars of ``dy`` (hidden when there is none)."""
    if dy is None or len(dy) == 0:
        return {"visible": False}
    return {**ERROR_BAR, "array": np.asarray(dy, dtype=float), "visible": True}


def apply_roles(fig: go.Figure) -> go.Figure:
    """Give every trace of a known role (by ``meta`` key, else name) its colour and dash; returns ``fig``."""
    for trace in fig.data:
        role = role_of(trace.meta if isinstance(trace.meta, str) else None) or role_of(trace.name)
        if role:
            trace.update(**trace_style(role))
    return fig


def add_placeholder(fig: go.Figure) -> go.Figure:
    """Mark an empty chart "no data yet" (hidden by the chart widget once a trace has points); returns ``fig``."""
    fig.add_annotation(
        text=PLACEHOLDER,
        name="placeholder",
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"color": "#8a8a8a", "size": 14},
    )
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    return fig


def has_points(fig: go.Figure) -> bool:
    """Whether any trace of ``fig`` has at least one point."""
    return any(trace.x is not None and len(trace.x) > 0 for trace in fig.data)


def update_placeholder(fig: go.Figure) -> None:
    """Show the "no data yet" mark and hide the tick labels while ``fig`` is empty; the reverse once it has data."""
    marks = [a for a in fig.layout.annotations if a.name == "placeholder"]
    if not marks:
        return
    empty, shown = not has_points(fig), marks[0].visible is not False
    if shown != empty:
        marks[0].visible = empty
        fig.update_xaxes(showticklabels=not empty)
        fig.update_yaxes(showticklabels=not empty)

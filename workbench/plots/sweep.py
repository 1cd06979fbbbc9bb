"""Plotly figures for sweeps and searches (plotly only: usable from the CLI, a notebook or a panel)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import plotly.graph_objects as go

from .style import LEGEND, ROLES

if TYPE_CHECKING:
    import pandas as pd

# the metric a sweep chart shows unless told: the first of these that the runs report
PREFERRED_METRICS = (
    "best_val_loss",
    "final_val_loss",
    "predict_sld_rmse",
    "predict_param_rmse",
    "sld_rmse",
    "loss",
    "value",
)
STATUS_COLORS = {
    "completed": ROLES["fit"]["line"]["color"],
    "failed": "#d62728",
    "stopped": "#7f7f7f",
    "running": "#ff7f0e",
    "queued": "#c7c7c7",
}


def numeric_metrics(frame: pd.DataFrame) -> list[str]:
    """Columns of a sweep table that hold a number for at least one run (parameters and bookkeeping excluded)."""
    import pandas as pd  # heavy (pandas): imported on use

    skip = {"key", "status", "run_id", "model_id", "seconds", "error", "output"}
    out = []
    for col in frame.columns:
        if col in skip or col.startswith("param."):
            continue
        values = pd.to_numeric(frame[col], errors="coerce")
        if (
            values.notna().any()
            and frame[col].map(lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)).any()
        ):
            out.append(col)
    return out


def choose_metric(frame: pd.DataFrame, metric: str | None = None) -> str | None:
    available = numeric_metrics(frame)
    if metric is not None:
        if metric not in available:
            raise ValueError(f"no metric {metric!r} in the sweep results; available: {', '.join(available) or 'none'}")
        return metric
    return next((m for m in PREFERRED_METRICS if m in available), available[0] if available else None)


def _label(row: Any, params: Sequence[str]) -> str:
    return ", ".join(f"{p[len('param.') :]}={row[p]}" for p in params) or str(row["key"])


def sweep_figure(frame: pd.DataFrame, metric: str | None = None, *, height: int = 380) -> go.Figure:
    """Compare a sweep's runs on one metric.

    With one varying numeric parameter: metric against that parameter (log axis when it spans
    more than a decade); otherwise one bar per run, labelled by its parameters.  Failed runs
    appear as red markers on the axis with the error in the hover text.
    """
    fig = go.Figure(
        layout={
            "height": height,
            "margin": {"l": 60, "r": 20, "t": 40, "b": 100},
            "template": "plotly_white",
            "legend": LEGEND,
        }
    )
    if frame is None or len(frame) == 0:
        fig.update_layout(title="no runs yet")
        return fig
    metric = choose_metric(frame, metric)
    params = [c for c in frame.columns if c.startswith("param.")]
    varying = [p for p in params if frame[p].astype(str).nunique() > 1]
    shown = varying or params
    labels = [_label(row, shown) for _, row in frame.iterrows()]
    status = frame["status"].tolist()
    errors = frame["error"].fillna("").tolist() if "error" in frame else [""] * len(frame)
    if metric is None:
        fig.add_trace(
            go.Bar(
                x=labels,
                y=[1] * len(frame),
                marker_color=[STATUS_COLORS.get(s, "#999") for s in status],
                text=status,
                hovertext=errors,
                name="status",
            )
        )
        fig.update_layout(title="sweep runs (no metric reported yet)", yaxis_visible=False)
        return fig
    import pandas as pd  # heavy (pandas): imported on use

    y = pd.to_numeric(frame[metric], errors="coerce")
    ok = frame["status"].eq("completed") & y.notna()
    single = bool(len(varying) == 1 and pd.to_numeric(frame[varying[0]], errors="coerce").notna().all())
    if single:
        x_col = varying[0]
        x = pd.to_numeric(frame[x_col])
        order = x[ok].sort_values().index
        fig.add_trace(
            go.Scatter(x=x[order], y=y[order], mode="lines+markers", name=metric, hovertext=[labels[i] for i in order])
        )
        positive = x[x > 0]
        if len(positive) == len(x) and positive.max() / positive.min() > 10:
            fig.update_xaxes(type="log")
        fig.update_xaxes(title=x_col[len("param.") :])
        bad = frame.index[~ok]
        if len(bad):
            floor = float(y[ok].min()) if ok.any() else 0.0
            fig.add_trace(
                go.Scatter(
                    x=x[bad],
                    y=[floor] * len(bad),
                    mode="markers",
                    name="failed",
                    marker={"color": STATUS_COLORS["failed"], "symbol": "x", "size": 11},
                    hovertext=[f"{labels[i]}: {status[i]} {errors[i]}" for i in bad],
                )
            )
    else:
        colors = [STATUS_COLORS["completed"] if k else STATUS_COLORS.get(s, "#999") for k, s in zip(ok, status)]
        values = [float(v) if k and math.isfinite(v) else 0.0 for k, v in zip(ok, y)]
        fig.add_trace(
            go.Bar(
                x=labels,
                y=values,
                marker_color=colors,
                name=metric,
                hovertext=[f"{s} {e}".strip() for s, e in zip(status, errors)],
                text=["" if k else s for k, s in zip(ok, status)],
                textposition="outside",
            )
        )
        fig.update_xaxes(title="run", tickangle=-30)
    done = int(ok.sum())
    fig.update_layout(title=f"{metric}: {done} of {len(frame)} runs completed", yaxis_title=metric, showlegend=single)
    return fig


def history_figure(trials: pd.DataFrame, *, direction: str = "minimize", height: int = 360) -> go.Figure:
    """Optimization history of a search: each finished trial's value and the best so far; pruned trials greyed."""
    fig = go.Figure(
        layout={
            "height": height,
            "margin": {"l": 60, "r": 20, "t": 40, "b": 100},
            "template": "plotly_white",
            "legend": LEGEND,
            "xaxis_title": "trial",
            "yaxis_title": "objective (validation loss)",
        }
    )
    update_history_figure(fig, trials, direction=direction)
    return fig


def update_history_figure(fig: go.Figure, trials: pd.DataFrame, *, direction: str = "minimize") -> None:
    """Refill ``fig`` (a Figure or a FigureWidget, reused for live updates) from a trials table."""
    complete = trials[trials["state"] == "COMPLETE"] if len(trials) else trials
    pruned = trials[trials["state"] == "PRUNED"] if len(trials) else trials
    best, best_so_far = None, []
    for v in complete["value"] if len(complete) else []:
        best = v if best is None or (v < best if direction == "minimize" else v > best) else best
        best_so_far.append(best)
    data = [
        go.Scatter(
            x=list(complete["number"]) if len(complete) else [],
            y=list(complete["value"]) if len(complete) else [],
            mode="markers",
            name="trial value",
            marker={"color": ROLES["data"]["marker"]["color"], "size": 8},
        ),
        go.Scatter(
            x=list(complete["number"]) if len(complete) else [],
            y=best_so_far,
            mode="lines",
            name="best so far",
            line={"color": ROLES["fit"]["line"]["color"]},
        ),
        go.Scatter(
            x=list(pruned["number"]) if len(pruned) else [],
            y=list(pruned["last_intermediate"]) if len(pruned) else [],
            mode="markers",
            name="pruned (last report)",
            marker={"color": "#bbbbbb", "symbol": "x", "size": 9},
        ),
    ]
    with fig.batch_update():
        if len(fig.data) != len(data):
            fig.data = []
            for trace in data:
                fig.add_trace(trace)
        else:
            for old, new in zip(fig.data, data):
                old.x, old.y = new.x, new.y
        fig.layout.title = f"{len(complete)} complete, {len(pruned)} pruned of {len(trials)} trials"

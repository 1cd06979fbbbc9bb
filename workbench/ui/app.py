"""The Workbench: every panel in one tabbed app, sharing one context (workspace, stack, selections).

Shown by ``notebooks/workbench.ipynb`` in JupyterLab and as a Voilà dashboard
(``workbench start``).  The notebook's papermill parameters can also come from a Voilà URL
query string (``?tab=train&epochs=5``): :func:`apply_query_string` reads ``QUERY_STRING`` in
the kernel and overrides the parameters of the same name, converted to their types and validated.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

import ipywidgets as W

from ..config import Limits
from .context import AppContext
from .files_panel import FilesPanel
from .generate_panel import GeneratePanel
from .history_panel import HistoryPanel
from .predict_panel import PredictPanel
from .probe_panel import ProbePanel
from .refine_panel import RefinePanel
from .stack_panel import StackPanel
from .train_panel import TrainPanel

TABS = ("stack", "probe", "generate", "train", "predict", "refine", "files", "history")
TITLES = ("Film stack", "Probe", "Generate", "Train", "Predict", "Refine", "Files", "History")


class Workbench(W.Tab):
    """All panels as tabs; ``wb.stack``, ``wb.train``, ... give the panels for scripting and tests."""

    def __init__(self, workspace: Any = None, *, limits: Limits | None = None, tab: str = "stack",
                 settings: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.ctx = AppContext(workspace, limits=limits)
        for panel, values in (settings or {}).items():
            self.ctx.panel_settings(panel).update(values)
        ctx = self.ctx
        self.stack = StackPanel(ctx)
        self.probe = ProbePanel(ctx)
        self.generate = GeneratePanel(ctx)
        self.train = TrainPanel(ctx)
        self.predict = PredictPanel(ctx)
        self.refine = RefinePanel(ctx)
        ctx.charts.update({
            "film stack R(Q)": self.stack.rq, "film stack SLD": self.stack.sld, "training loss": self.train.loss,
            "prediction R(Q)": self.predict.rq, "prediction SLD": self.predict.sld, "prediction chi": self.predict.chi,
            "refinement convergence": self.refine.convergence, "refinement R(Q)": self.refine.rq,
            "refinement SLD": self.refine.sld, "generated curves": self.generate.rq,
            "generated profiles": self.generate.sld,
        })
        self.files = FilesPanel(ctx)
        self.history = HistoryPanel(ctx, resume=self._resume)
        panels = [getattr(self, name) for name in TABS]
        super().__init__(children=panels, titles=TITLES)
        self.add_class("wb-app")
        self.select(tab)

    def select(self, tab: str) -> None:
        """Show a tab by its short name ('stack', 'train', ...); unknown names fall back to the first."""
        self.selected_index = TABS.index(tab) if tab in TABS else 0

    def _resume(self, run_id: str) -> None:
        self.train.resume_run(run_id)
        self.select("train")


def apply_query_string(params: dict[str, Any], query: str | None = None) -> dict[str, Any]:
    """Override ``params`` (the notebook's papermill parameters) from a URL query string.

    Only names already in ``params`` are taken, each converted to the type of its default (bool,
    int, float, str); a value that does not convert raises ``ValueError`` naming the parameter.
    ``query`` defaults to Voilà's ``QUERY_STRING`` environment variable.
    """
    query = os.environ.get("QUERY_STRING", "") if query is None else query
    out = dict(params)
    for name, values in parse_qs(query, keep_blank_values=True).items():
        if name not in params or not values:
            continue
        raw, default = values[-1][:200], params[name]
        try:
            if isinstance(default, bool):
                low = raw.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(raw)
                out[name] = low in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                out[name] = int(raw)
            elif isinstance(default, float):
                out[name] = float(raw)
            else:
                out[name] = raw
        except ValueError:
            raise ValueError(f"URL parameter {name}={raw!r} is not a valid {type(default).__name__}") from None
    return out

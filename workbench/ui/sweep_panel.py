"""Sweep panel: run a shipped notebook over a grid of parameters and watch each run.

The headless twin is :func:`workbench.batch.sweep.run_sweep` (what ``workbench sweep`` calls); the
panel runs it in a worker thread (:class:`~workbench.ui.background.Job`) and turns its events into a
per-run status table, a progress bar and the comparison chart (one FigureWidget, reused).

Only shipped notebooks (or ones the app passes in) can be chosen: in Voilà anyone who reaches the
page can press Run, so no path typed in the browser is ever executed.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path
from typing import Any, ClassVar

import ipywidgets as W
import yaml

from ..batch.notebooks import shipped_notebooks
from ..batch.runner import check_parameters, notebook_parameters
from ..batch.sweep import grid, parameter_sets_from_mapping, results_frame, run_sweep
from ..events import Progress, Record, Warning_
from ..fileio import safe_name
from ..plots.sweep import sweep_figure
from ..store.workspace import Workspace
from .background import Job
from .chart_widget import ChartWidget
from .common import Panel, Status, panel_guard
from .forms import fit, fit_em

DEFAULT_SPEC = "learning_rate: [0.001, 0.003]\nlayers: [1, 2]\n"
STATUS_STYLE = {
    "queued": "#888",
    "skipped": "#1a7f37",
    "running": "#9a6700",
    "completed": "#1a7f37",
    "failed": "#cf222e",
    "stopped": "#888",
}


def parameter_sets_from_text(text: str) -> list[dict[str, Any]]:
    """The panel's YAML: ``{name: [values]}`` (a grid; scalars fixed), or a sweep file's ``grid``/``runs``/``fixed``."""
    try:
        spec = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as exc:
        raise ValueError(f"the parameters are not valid YAML: {exc}") from None
    if not isinstance(spec, dict) or not spec:
        raise ValueError("give the parameters as YAML, e.g. 'learning_rate: [0.001, 0.003]' (lists are swept)")
    if {"grid", "runs"} & set(spec):
        return parameter_sets_from_mapping(spec, "parameters")
    axes = {k: v for k, v in spec.items() if isinstance(v, list)}
    fixed = {k: v for k, v in spec.items() if not isinstance(v, list)}
    return [{**fixed, **g} for g in grid(axes)] if axes else [fixed]


class SweepPanel(Panel, W.VBox):
    """Notebook, parameters (YAML), workers, Run/Stop; a per-run table, progress and the chart."""

    CHARTS: ClassVar[dict[str, str]] = {"sweep results": "figure"}

    def __init__(
        self,
        ctx=None,
        *,
        workspace=None,
        notebooks: dict[str, Path] | None = None,
        folder: str | os.PathLike | None = None,
        workers: int = 2,
        scheduler: Any = None,
        processes: bool = True,
        max_workers: int | None = None,
        max_runs: int = 200,
    ) -> None:
        if ctx is not None:
            workspace = ctx.workspace
        if workspace is None:
            workspace = Workspace()
        self.workspace = workspace
        self.notebooks = (
            dict(notebooks)
            if notebooks is not None
            else {k: v for k, v in shipped_notebooks().items() if k not in ("workbench.ipynb", "quickstart.ipynb")}
        )
        if not self.notebooks:
            raise ValueError("no notebooks to sweep")
        self.scheduler, self.processes = scheduler, processes
        self.max_workers = max_workers or max(1, os.cpu_count() or 1)
        self.max_runs = max_runs
        self.job: Job | None = None
        self.result = None
        self.rows: dict[str, dict[str, Any]] = {}

        self.notebook = fit(
            W.Dropdown(
                options=list(self.notebooks),
                description="notebook",
                tooltip="the shipped notebook run once per parameter set",
            )
        )
        self.spec = W.Textarea(
            value=DEFAULT_SPEC,
            description="parameters",
            tooltip="YAML: the notebook's parameter names; a list is swept, a single value is fixed for every run",
            style={"description_width": f"{fit_em('parameters'):g}em"},
            layout=W.Layout(width="36em", height="7em"),
            placeholder="learning_rate: [0.001, 0.003]",
        )
        self.name = fit(
            W.Text(value="sweep", description="sweep name", tooltip="the folder under sweeps/ the runs are kept in"),
            input_em=10.0,
        )
        self.folder_override = Path(folder) if folder else None
        self.workers = fit(
            W.BoundedIntText(
                value=min(workers, self.max_workers),
                min=1,
                max=self.max_workers,
                description="parallel runs",
                tooltip=f"notebooks run at the same time (at most {self.max_workers} here)",
            ),
            input_em=5.0,
        )
        self.run_button = W.Button(
            description="Run sweep",
            button_style="primary",
            icon="play",
            tooltip="run every parameter set not already done",
            layout=W.Layout(width="auto"),
        )
        self.stop_button = W.Button(
            description="Stop", icon="stop", disabled=True, tooltip="stop the runs; finished ones are kept"
        )
        self.progress = W.IntProgress(
            value=0,
            min=0,
            max=1,
            description="runs done",
            style={"description_width": f"{fit_em('runs done'):g}em"},
            layout=W.Layout(width="32em"),
        )
        self.table = W.HTML()
        self.status = Status()
        self.figure = ChartWidget(sweep_figure(results_frame([])))
        self.run_button.on_click(self._run)
        self.stop_button.on_click(self._stop)
        super().__init__(
            [
                W.HTML(
                    "<b>Sweep</b>: one notebook over a grid of parameters, in parallel on Dask; re-running skips the "
                    "runs already done."
                ),
                W.HBox([self.notebook, self.name, self.workers]),
                self.spec,
                W.HBox([self.run_button, self.stop_button]),
                self.progress,
                self.status,
                self.table,
                self.figure,
            ]
        )

    @property
    def folder(self) -> Path:
        return self.folder_override or self.workspace.root / "sweeps" / safe_name(self.name.value, "sweep")

    # ------------------------------------------------------------------ actions
    @panel_guard
    def _run(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.status.warn("a sweep is already running")
            return
        sets = parameter_sets_from_text(self.spec.value)
        if any("workspace" in s for s in sets):  # a browser must not choose where the runs write
            raise ValueError("workspace cannot be set here: the sweep records its runs in this app's workspace")
        if len(sets) > self.max_runs:
            raise ValueError(
                f"{len(sets)} runs is more than this dashboard allows ({self.max_runs}); sweep fewer values"
            )
        notebook = self.notebooks[self.notebook.value]
        folder, workers = self.folder, max(1, min(int(self.workers.value), self.max_workers))
        sets = [check_parameters(notebook, s) for s in sets]  # names and types checked here, not in the thread
        if "workspace" in notebook_parameters(notebook):
            sets = [
                {"workspace": str(self.workspace.root), **s} for s in sets
            ]  # record the runs in this app's workspace
        self.rows = {}
        self.table.value = ""
        self.progress.value, self.progress.max = 0, len(sets)
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.status.info(f"starting {len(sets)} runs of {self.notebook.value} on {workers} workers → {folder}")
        self.job = Job(
            lambda reporter: run_sweep(
                notebook,
                sets,
                folder,
                workers=workers,
                scheduler=self.scheduler,
                processes=self.processes,
                reporter=reporter,
            ),
            on_events=self._events,
            on_done=self._done,
            on_error=self._failed,
            name="workbench-sweep",
        )
        self.job.start()

    def _stop(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.job.stop("stopped from the Sweep panel")
            self.status.warn("stopping: queued runs are cancelled, running ones finish")

    # ------------------------------------------------------------------ events (worker thread, batched)
    def _events(self, events) -> None:
        changed = False
        for e in events:
            if isinstance(e, Record) and e.stage == "sweep" and e.name == "run":
                row = self.rows.setdefault(e.data["key"], {"started": None})
                row.update(e.data)
                if e.data["status"] == "running":
                    row["started"] = e.time
                changed = True
            elif isinstance(e, Progress) and e.stage == "sweep":
                self.progress.max, self.progress.value = max(e.total, 1), e.done
            elif isinstance(e, Warning_) and e.stage == "sweep":
                self.status.warn(e.message)
        if changed:
            self._draw_table()
            if any(r["status"] in ("completed", "failed", "skipped") for r in self.rows.values()):
                self._draw_chart()

    def _frame(self):
        runs = [
            {
                "key": k,
                "status": r["status"],
                "params": r["params"],
                "summary": {"metrics": r.get("metrics") or {}},
                "error": r.get("error"),
                "seconds": r.get("seconds"),
                "output": r.get("output"),
            }
            for k, r in self.rows.items()
        ]
        return results_frame(runs)

    def _draw_table(self) -> None:
        now = time.time()
        lines = []
        for r in self.rows.values():
            color = STATUS_STYLE.get(r["status"], "#333")
            if r["status"] == "running" and r.get("started"):
                took = f"{now - r['started']:.0f} s so far"
            else:
                took = f"{r['seconds']:.0f} s" if r.get("seconds") else ""
            detail = html.escape(r.get("error") or "")
            lines.append(
                f"<tr><td style='padding:1px 8px'>{html.escape(r['label'])}</td>"
                f"<td style='padding:1px 8px;color:{color}'>{r['status']}</td><td style='padding:1px 8px'>{took}</td>"
                f"<td style='padding:1px 8px;color:#cf222e'>{detail}</td></tr>"
            )
        self.table.value = (
            "<table class='wb-sweep-runs'><tr><th>run</th><th>status</th><th>time</th><th></th></tr>"
            + "".join(lines)
            + "</table>"
        )

    def _draw_chart(self) -> None:
        fig = sweep_figure(self._frame())
        with self.figure.batch_update():
            self.figure.data = ()
            self.figure.add_traces(list(fig.data))
            self.figure.layout = fig.layout

    def _done(self, result) -> None:
        self.result = result
        self.run_button.disabled, self.stop_button.disabled = False, True
        self._draw_chart()
        msg = (
            f"{len(result.completed)} completed, {len(result.failed)} failed, "
            f"{len(result.skipped)} skipped (already done); {result.csv}"
        )
        (self.status.warn if result.failed else self.status.ok)(msg)

    def _failed(self, exc: BaseException) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        if self.job is not None and self.job.cancelled:
            self.status.warn(f"stopped: {exc}; finished runs are kept, Run again to continue")
        else:
            self.status.error(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc))

"""Sweep panel: run a shipped notebook over a grid of parameters and watch each run.

The headless twin is :func:`workbench.batch.sweep.run_sweep` (what ``workbench sweep`` calls).  In the
dashboard the sweep runs as a job process (:func:`~workbench.batch.jobs.submit_job`, like ``workbench
sweep --detach``) that goes on when the page closes; the panel follows it through the registry and the
sweep folder's manifest, and a page opened later attaches to it.  Unticked (or built without an app
context) it runs in a worker thread (:class:`~workbench.ui.background.Job`).  Either way its runs become
a per-run status table, a progress bar and the comparison chart (one FigureWidget, reused).

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

from ..batch.jobs import submit_job
from ..batch.notebooks import shipped_notebooks
from ..batch.runner import check_parameters, notebook_parameters
from ..batch.sweep import grid, manifest_rows, parameter_sets_from_mapping, results_frame, run_sweep
from ..events import Progress, Record, Warning_
from ..fileio import safe_name
from ..plots.sweep import sweep_figure
from ..store.registry import RunRow
from ..store.workspace import Workspace
from .background import FollowedJob, Job, follow_job, live_job
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
        self.ctx = ctx
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
        self.job: Job | FollowedJob | None = None
        self.last_run_id: str | None = None
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
        saved = ctx.panel_settings("sweep") if ctx is not None else {}
        self.as_job = W.Checkbox(
            value=bool(saved.get("as_job", True)) and ctx is not None,
            disabled=ctx is None,
            description="run as a separate process (goes on when this page is closed)",
            tooltip="a job process any page, History or `workbench runs` can follow and stop; untick to run the "
            "sweep from this page's kernel",
            indent=False,
            layout=W.Layout(
                width=f"{fit_em('run as a separate process (goes on when this page is closed)') + 2.5:g}em"
            ),
        )
        self.as_job.add_class("wb-as-job")
        if ctx is not None:
            self.as_job.observe(lambda change: ctx.update_settings("sweep", as_job=change["new"]), "value")
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
                self.as_job,
                W.HBox([self.run_button, self.stop_button]),
                self.progress,
                self.status,
                self.table,
                self.figure,
            ]
        )
        self.attach()

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
        registry = self.ctx.registry() if self.ctx is not None else None
        if self.as_job.value and registry is not None:
            request = {"notebook": str(notebook), "out": str(folder), "runs": sets, "workers": workers}
            request |= {"scheduler": self.scheduler if isinstance(self.scheduler, str) else None}
            request |= {"processes": self.processes}
            try:
                self._follow(submit_job(self.workspace, "sweep", request, limits=self.ctx.limits))
            except BaseException:
                self.run_button.disabled, self.stop_button.disabled = False, True
                raise
            return
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

    @panel_guard
    def _stop(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.job.stop("stopped from the Sweep panel")
            self.status.warn("stopping: queued runs are cancelled, running ones finish")

    # ------------------------------------------------------------------ job processes
    def on_shown(self) -> None:
        """The tab was shown: follow a sweep job started meanwhile (another page, the CLI)."""
        self.attach()

    def attach(self) -> str | None:
        """Follow the newest queued or running sweep job of the workspace, if this panel follows nothing."""
        if self.ctx is None or (self.job is not None and self.job.running):
            return None
        run_id = live_job(self.ctx.registry(), "sweep")
        if run_id is not None:
            self._follow(run_id)
        return run_id

    def _follow(self, run_id: str) -> None:
        """Show the sweep job ``run_id`` live: its runs from the sweep folder's manifest, progress from the registry."""
        self.last_run_id = run_id
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.status.info(f"sweeping as a job process (run {run_id})…")
        self.ctx.runs_changed()
        self.job = follow_job(
            self.ctx,
            run_id,
            on_update=self._job_update,
            on_end=self._job_done,
            on_error=self._failed,
            name="workbench-sweep-follow",
        )

    def _job_rows(self, run: RunRow) -> None:
        request = (run.job or {}).get("request") or {}
        rows = manifest_rows(request.get("out") or run.params.get("out"), request.get("runs") or [])
        fresh = {r["key"]: {"started": None, **r} for r in rows}
        if fresh == self.rows:
            return  # polled twice a second: the table and the chart change only when a run does
        self.rows = fresh
        done = sum(r["status"] in ("completed", "failed", "skipped") for r in rows)
        self.progress.max, self.progress.value = max(len(rows), 1), done
        self._draw_table()
        if done:
            self._draw_chart()

    def _job_update(self, steps: list[dict], logs: list[dict], run: RunRow) -> None:
        self._job_rows(run)
        if run.status == "queued":
            self.status.info(f"queued: waits for a free job slot ({self.ctx.limits.max_concurrent_jobs} at once)")
        elif run.status == "running":
            self.status.info(
                f"sweeping as a job process (pid {run.pid}): {self.progress.value} of {self.progress.max} runs done"
            )

    def _job_done(self, run: RunRow) -> None:
        self._job_rows(run)
        self.run_button.disabled, self.stop_button.disabled = False, True
        self.ctx.runs_changed()
        m = run.metrics or {}
        if run.status == "completed":
            msg = (
                f"{m.get('completed', 0)} completed, {m.get('failed', 0)} failed, "
                f"{m.get('skipped', 0)} skipped (already done); {m.get('results', '')}"
            )
            (self.status.warn if m.get("failed") else self.status.ok)(msg)
        elif run.status == "stopped":
            self.status.warn(f"stopped: {run.error or 'stopped'}; finished runs are kept, Run again to continue")
        else:
            self.status.error(f"the sweep failed: {run.error or 'the job process ended without saying why'}")

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
        if isinstance(self.job, Job) and self.job.cancelled:
            self.status.warn(f"stopped: {exc}; finished runs are kept, Run again to continue")
        else:
            self.status.error(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc))

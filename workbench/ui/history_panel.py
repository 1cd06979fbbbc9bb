"""History panel: the runs recorded in the run registry — list, open, rename, delete, resume a paused run.

An opened run says what it was run on (the data set by name, not its content hash; the fitted or
predicted file; the model), its parameters as value ± 1σ with units where the run recorded
uncertainties, every metric under a readable name, and its loss curve when it has one.
Running and queued jobs (their own processes, :mod:`workbench.batch.jobs`) are listed on top, live:
status, queue position, epoch, CPU and memory of the job's process, with Stop and Pause (registry
commands the job acknowledges within a second), refreshed every second while any job lives.
Headless twin: :class:`workbench.store.registry.Registry` (``list_runs``, ``get_run``, ``epochs``,
``rename_run``, ``delete_run``), ``workbench runs list|stop|pause`` and the Train panel's resume for
paused training runs.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ipywidgets as W

from ..analysis.metrics import PARAMETER_UNITS, parameter_unit
from ..batch.jobs import pause_job, stop_job
from ..plots.curves import loss_template
from ..store.registry import LIVE, Registry, RunRow, flatten
from .chart_widget import ChartWidget
from .common import Panel, Status, panel_guard, table_html
from .context import AppContext
from .predict_panel import metrics_html

# the order of the loop; kinds recorded by other surfaces (sweep, search, ...) follow alphabetically
KIND_ORDER = ("generate", "train", "ensemble", "predict", "refine", "dream", "sweep")
TRAINING_DATA = ("train", "ensemble", "generate", "sweep")  # kinds whose ``data`` parameter is their data set
LOSS_KEYS = ("train_loss", "train_loss_eval", "val_loss")
# how a run may record a parameter's 1σ beside its value: "<name>_sigma", "sigma.<name>", ...
_SIGMA_SUFFIXES = ("_sigma", "_uncertainty", "_err", ".sigma", ".uncertainty", ".err", "_1sigma")
_SIGMA_PREFIXES = ("sigma.", "uncertainty.", "uncertainties.")
JOB_POLL_SECONDS = 1.0
QUEUED_STOP_SECONDS = 30.0  # a queued job acknowledges a stop within ~0.2 s once its process runs


def kind_options(kinds: set[str]) -> list[tuple[str, str]]:
    """The filter's options: every kind present, in the order of the loop."""
    ordered = [k for k in KIND_ORDER if k in kinds] + sorted(kinds - set(KIND_ORDER))
    return [("all kinds", ""), *((k, k) for k in ordered)]


def dataset_name(registry: Registry, row: RunRow) -> str:
    """The data set a run used, by name: the registered folder of its content hash, else its ``data`` parameter."""
    if row.dataset_hash:
        found = registry.get_dataset(row.dataset_hash)
        if found and found.get("path"):
            return Path(found["path"]).name
    data = row.params.get("data") if row.kind in TRAINING_DATA else None
    if data:
        return Path(str(data)).name
    return f"content hash {row.dataset_hash[:16]}" if row.dataset_hash else ""


# a key with one of these parts is a statistic about parameters ("test.mae.layer_1.sld"), not a parameter's value
_STATISTICS = {"mae", "r2", "rmse", "mse", "std", "test", "val", "train"}


def _is_parameter(key: str) -> bool:
    parts = key.split(".")
    return (
        len(parts) >= 2
        and parts[-1] in PARAMETER_UNITS
        and not key.startswith(_SIGMA_PREFIXES)
        and not _STATISTICS.intersection(parts)
    )


def parameter_rows(metrics: dict[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
    """Stack and probe parameters among flattened metrics as rows of value ± 1σ and unit, and the keys used.

    A σ is found under ``<name>_sigma`` (or ``_uncertainty``, ``_err``, ``.sigma``) or ``sigma.<name>``.
    """
    rows, used = [], set()
    for key, value in metrics.items():
        if not _is_parameter(key) or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        sigma_key = next(
            (k for k in [key + s for s in _SIGMA_SUFFIXES] + [p + key for p in _SIGMA_PREFIXES] if k in metrics), None
        )
        sigma = metrics.get(sigma_key) if sigma_key else None
        used.update({key, sigma_key} - {None})
        rows.append(
            {
                "parameter": key,
                "value": float(value),
                "± 1σ": float(sigma) if isinstance(sigma, (int, float)) else "",
                "unit": parameter_unit(key),
            }
        )
    return rows, used


def posterior_rows(metrics: dict[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
    """A DREAM run's posterior per parameter (``<name>.median``, ``.lo68``, ``.hi68``) as rows with units."""
    rows, used = [], set()
    for key, median in metrics.items():
        name, _, stat = key.rpartition(".")
        if stat != "median" or not _is_parameter(name):
            continue
        lo, hi = metrics.get(f"{name}.lo68"), metrics.get(f"{name}.hi68")
        used.update({key, f"{name}.lo68", f"{name}.hi68"})
        interval = f"{lo:.5g} – {hi:.5g}" if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) else ""
        rows.append({"parameter": name, "median": median, "68 % interval": interval, "unit": parameter_unit(name)})
    return rows, used


def job_line(row: RunRow, position: int | None) -> str:
    """One live job as History shows it: name, kind, status (queue position), epoch, CPU and memory."""
    parts = [f"<b>{html.escape(row.name)}</b>", html.escape(row.kind)]
    parts.append(f"queued (position {position})" if row.status == "queued" and position else html.escape(row.status))
    if row.last_epoch is not None:
        parts.append(f"epoch {row.last_epoch}")
    t = row.telemetry or {}
    if "cpu_percent" in t:
        parts.append(f"CPU {float(t['cpu_percent']):.0f} %")
    if "rss_mb" in t:
        parts.append(f"memory {float(t['rss_mb']):,.0f} MB")
    if "gpu_mb" in t:
        parts.append(f"GPU {float(t['gpu_mb']):,.0f} MB")
    if row.pid:
        parts.append(f"pid {row.pid}")
    return "<span class='wb-job-line'>" + " · ".join(parts) + "</span>"


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        text = ", ".join(map(str, value))
        return text if len(text) <= 300 else text[:300] + " …"
    return value


class HistoryPanel(Panel, W.VBox):
    def __init__(self, ctx: AppContext, resume: Callable[[str], None] | None = None) -> None:
        self.ctx = ctx
        self._resume_cb = resume
        self.kind = W.Dropdown(options=kind_options(set()), value="", description="kind")
        self._filling = False  # the kind options are being replaced: not a choice of the user
        self.refresh = W.Button(description="Refresh", icon="refresh")
        self.runs = W.Select(options=[], rows=10, layout=W.Layout(width="60em"))
        self.open_button = W.Button(description="Open", icon="folder-open")
        self.new_name = W.Text(placeholder="new name", layout=W.Layout(width="18em"))
        self.rename = W.Button(description="Rename", icon="pencil")
        self.confirm = W.Checkbox(value=False, description="really delete", indent=False)
        self.delete = W.Button(description="Delete", icon="trash", button_style="danger")
        self.resume = W.Button(
            description="Resume (paused training)",
            icon="step-forward",
            tooltip="continue the selected paused training from its last checkpoint, in the Train tab",
            layout=W.Layout(width="auto"),
        )
        self.status = Status()
        self.details = W.HTML()
        self.loss = ChartWidget(loss_template())
        self.loss_box = W.VBox([self.loss], layout=W.Layout(display="none"))  # shown for a run with a loss curve
        self.jobs_box = W.VBox(layout=W.Layout(display="none"))  # running and queued jobs, live
        self.jobs_box.add_class("wb-live-jobs")
        self._job_rows: dict[str, tuple[W.HBox, W.HTML, W.Button, W.Button]] = {}
        self._poller: threading.Thread | None = None
        self._jobs_lock = threading.Lock()
        self.refresh.on_click(lambda _: self.refresh_list())
        self.kind.observe(lambda _: self._filling or self.refresh_list(), "value")
        self.open_button.on_click(self._open_clicked)
        self.runs.observe(lambda _: self._open(), "value")
        self.rename.on_click(self._rename)
        self.delete.on_click(self._delete)
        self.resume.on_click(self._resume)
        ctx.follow("runs_version", lambda _: self.refresh_list())
        super().__init__(
            [
                W.HTML("<b>History</b>: runs recorded in the workspace registry"),
                self.jobs_box,
                W.HBox([self.kind, self.refresh]),
                self.runs,
                W.HBox([self.open_button, self.new_name, self.rename, self.confirm, self.delete, self.resume]),
                self.status,
                self.details,
                self.loss_box,
            ]
        )
        self.add_class("wb-history-panel")
        self.refresh_list()

    @property
    def registry(self):
        reg = self.ctx.registry()
        if reg is None:
            raise ValueError("the run registry cannot be opened")
        return reg

    def on_shown(self) -> None:
        """Runs recorded since, by this page or another surface (the command line, a sweep)."""
        self.refresh_list()

    def _fill_kinds(self, kinds: set[str]) -> None:
        """Offer every kind present; keep the chosen one while it has runs."""
        options = kind_options(kinds)
        if options == list(self.kind.options):
            return
        chosen = self.kind.value if self.kind.value in kinds else ""
        self._filling = True
        try:
            with self.kind.hold_sync():
                self.kind.options = options
                self.kind.value = chosen
        finally:
            self._filling = False

    @panel_guard
    def refresh_list(self) -> None:
        everything = self.registry.list_runs()
        self._fill_kinds({r.kind for r in everything})
        rows = [r for r in everything if not self.kind.value or r.kind == self.kind.value]
        rows.sort(key=lambda r: r.created, reverse=True)
        current = self.runs.value
        self.runs.options = [
            (
                (
                    f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(r.created))} · {r.kind:8s} · "
                    f"{r.status:9s} · {r.name}"
                ),
                r.id,
            )
            for r in rows
        ]
        if current in [r.id for r in rows]:
            self.runs.value = current
        if self.runs.value:
            self._open()  # the details of the selected run may have changed (status, metrics, model)
        self.refresh_jobs(everything)

    # ------------------------------------------------------------------ live jobs
    def refresh_jobs(self, runs: list[RunRow] | None = None) -> list[str]:
        """Show every running or queued job with its live status; returns their ids.

        While any job lives a daemon thread refreshes them every second (it reads the registry only:
        it keeps no kernel busy), and the list below is refreshed when one ends.
        """
        registry = self.registry
        runs = registry.list_runs() if runs is None else runs
        live = [r for r in runs if r.status in LIVE and r.job is not None]
        with self._jobs_lock:
            for row in live:
                if row.id not in self._job_rows:
                    self._job_rows[row.id] = self._job_row(row.id)
                _, line, _, pause = self._job_rows[row.id]
                line.value = job_line(row, registry.queue_position(row.id) if row.status == "queued" else None)
                pause.disabled = row.kind != "train" or row.status != "running"
            ids = [r.id for r in live]
            for gone in set(self._job_rows) - set(ids):
                del self._job_rows[gone]
            boxes = [self._job_rows[i][0] for i in ids]
            if list(self.jobs_box.children) != boxes:
                self.jobs_box.children = [W.HTML("<b>Jobs</b> running or queued"), *boxes] if boxes else []
            self.jobs_box.layout.display = "" if boxes else "none"
            if ids and (self._poller is None or not self._poller.is_alive()):
                self._poller = threading.Thread(target=self._poll_jobs, name="workbench-history-jobs", daemon=True)
                self._poller.start()
        return ids

    def _job_row(self, run_id: str) -> tuple[W.HBox, W.HTML, W.Button, W.Button]:
        line = W.HTML()
        stop = W.Button(description="Stop", icon="stop", button_style="danger", tooltip="end the job")
        pause = W.Button(description="Pause", icon="pause", tooltip="a training writes a checkpoint and pauses")
        stop.on_click(lambda _: self._command(run_id, "stop"))
        pause.on_click(lambda _: self._command(run_id, "pause"))
        box = W.HBox([stop, pause, line])
        box.add_class("wb-job-row")
        return box, line, stop, pause

    @panel_guard
    def _command(self, run_id: str, command: str) -> None:
        row = self.registry.get_run(run_id)
        if command == "stop":
            stop_job(self.registry, run_id, "stopped from the History tab")
        else:
            pause_job(self.registry, run_id, "paused from the History tab")
        self.status.info(f"{command} sent to {row.name}; the job acknowledges it within a second")

    def _poll_jobs(self) -> None:
        shown: list[str] = list(self._job_rows)
        while True:
            time.sleep(JOB_POLL_SECONDS)
            try:
                everything = self.registry.list_runs()
                ids = [r.id for r in everything if r.status in LIVE and r.job is not None]
                if set(shown) - set(ids):  # a job ended: its final status belongs in the list too
                    self.refresh_list()
                else:
                    self.refresh_jobs(everything)
            except Exception as exc:  # noqa: BLE001 - shown, and the next refresh of the list starts over
                self.status.error(f"could not refresh the running jobs: {exc}")
                return
            if not ids:
                return
            shown = ids

    def _selected(self) -> str:
        if not self.runs.value:
            raise ValueError("select a run first")
        return self.runs.value

    @panel_guard
    def _open_clicked(self, _=None) -> None:
        self._selected()  # says "select a run first" when none is
        self._open()

    def _what_it_ran_on(self, row: RunRow) -> list[dict[str, Any]]:
        """Model, data set and file of a run, by name (each row only when the run has it)."""
        params = row.params or {}
        out = []
        model = params.get("model_name") or (Path(row.model).name if row.model else "")
        if model:
            out.append({"field": "model", "value": model})
        ds = dataset_name(self.registry, row)
        if ds:
            out.append({"field": "data set", "value": ds})
        data = params.get("data") or (row.metrics or {}).get("data")
        if data and row.kind not in TRAINING_DATA:
            source = {"test sample": "data set", "measured file": "measured file", "χ data folder": "χ data folder"}
            label = "fitted file" if row.kind in ("refine", "dream") else source.get(params.get("source"), "data")
            out.append({"field": label, "value": Path(str(data)).name})
        if "sample_index" in params:
            out.append({"field": "sample index", "value": params["sample_index"]})
        return out

    @panel_guard
    def _open(self, _=None) -> None:
        if not self.runs.value:
            return
        row = self.registry.get_run(self.runs.value)
        info = [
            {"field": "name", "value": row.name},
            {"field": "kind", "value": row.kind},
            {"field": "status", "value": row.status},
            {"field": "started", "value": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.created))},
            *self._what_it_ran_on(row),
            {"field": "run folder", "value": row.run_dir or ""},
            {"field": "id", "value": row.id},
        ]
        if row.error:
            info.append({"field": "error", "value": row.error})
        text = table_html([r for r in info if r["value"] not in ("", None)])
        verdict = (row.metrics or {}).get("verdict")
        if verdict:
            colour = {"ok": "#1a7f37", "warn": "#9a6700", "error": "#cf222e"}.get(row.metrics.get("verdict_level"), "")
            text += f"<div class='wb-verdict' style='color:{colour}'>{html.escape(str(verdict))}</div>"
        metrics = flatten(row.metrics)
        params_rows, used = parameter_rows(metrics)
        if params_rows:
            with_sigma = any(r["± 1σ"] != "" for r in params_rows)
            columns = ["parameter", "value", "± 1σ", "unit"] if with_sigma else ["parameter", "value", "unit"]
            title = "<b>Parameters</b> (value ± 1σ)" if with_sigma else "<b>Parameters</b>"
            text += title + table_html(params_rows, columns)
        posterior, in_posterior = posterior_rows(metrics)
        if posterior:
            text += "<b>Posterior</b> (DREAM median and 68 % interval)" + table_html(posterior)
        shown = used | in_posterior | {"data", "verdict", "verdict_level"}  # the last three are in the table above
        rest = {k: _cell(v) for k, v in metrics.items() if k not in shown}
        if rest:
            text += "<b>Metrics</b>" + metrics_html(rest)
        settings = [{"setting": k, "value": _cell(v)} for k, v in flatten(row.params).items()]
        if settings:
            text += "<details><summary>settings</summary>" + table_html(settings) + "</details>"
        logs = self.registry.logs(row.id)[-20:]
        if logs:
            text += (
                "<details><summary>log</summary><pre>"
                + html.escape("\n".join(f"[{e.get('level')}] {e.get('message')}" for e in logs))
                + "</pre></details>"
            )
        self.details.value = text
        self._show_loss(self.registry.epochs(row.id))
        self.resume.disabled = not (row.kind == "train" and row.status == "paused")
        self.new_name.value = row.name
        if row.model and Path(row.model).is_dir():
            self.ctx.announce(bundle=Path(row.model))
        self.status.info(f"opened {row.name} ({row.status})")

    def _show_loss(self, epochs: list[dict]) -> None:
        """The loss curve of a run that has one; no empty chart for runs without (generate, predict, refine)."""
        has_loss = any(e.get(k) is not None for e in epochs for k in LOSS_KEYS)
        with self.loss.batch_update():
            for trace, key in zip(self.loss.data, LOSS_KEYS):
                trace.x = [e.get("epoch") for e in epochs] if has_loss else []
                trace.y = [e.get(key) for e in epochs] if has_loss else []
        self.loss_box.layout.display = "" if has_loss else "none"

    @panel_guard
    def _rename(self, _=None) -> None:
        run_id = self._selected()
        name = self.new_name.value.strip()[:120]
        if not name:
            raise ValueError("type a new name first")
        self.registry.rename_run(run_id, name)
        self.refresh_list()
        self.status.ok(f"renamed to {name}")

    @panel_guard
    def _delete(self, _=None) -> None:
        run_id = self._selected()
        if not self.confirm.value:
            raise ValueError("tick 'really delete' first: the run and its folder are removed")
        row = self.registry.get_run(run_id)
        if row.status == "running":
            raise ValueError(f"{row.name} is still running; stop it first")
        if row.status == "queued" and row.job is not None:  # its process waits for a slot: end it, then forget it
            from ..batch.jobs import stop_job, wait_for_job  # ui may use batch; only a queued job's delete needs it

            stop_job(self.registry, run_id, "deleted from the History tab while queued")
            row = wait_for_job(self.registry, run_id, timeout=QUEUED_STOP_SECONDS)
        self.registry.delete_run(run_id)
        self.confirm.value = False
        self.details.value = ""
        self.refresh_list()
        self.status.ok(f"deleted {row.name}")

    @panel_guard
    def _resume(self, _=None) -> None:
        run_id = self._selected()
        if self._resume_cb is None:
            raise ValueError("resuming needs the Train panel (open the full Workbench)")
        self._resume_cb(run_id)
        self.status.ok("resumed in the Train panel")

"""History panel: the runs recorded in the run registry — list, open, rename, delete, resume a paused run.

Headless twin: :class:`workbench.store.registry.Registry` (``list_runs``, ``get_run``, ``epochs``,
``rename_run``, ``delete_run``) and the Train panel's resume for paused training runs.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from pathlib import Path

import ipywidgets as W

from ..plots.curves import loss_template
from ..store.registry import flatten
from .chart_widget import ChartWidget
from .common import Panel, Status, panel_guard, table_html
from .context import AppContext

KINDS = [("all kinds", ""), ("generate", "generate"), ("train", "train"), ("refine", "refine"), ("sweep", "sweep")]


class HistoryPanel(Panel, W.VBox):
    def __init__(self, ctx: AppContext, resume: Callable[[str], None] | None = None) -> None:
        self.ctx = ctx
        self._resume_cb = resume
        self.kind = W.Dropdown(options=KINDS, value="", description="kind")
        self.refresh = W.Button(description="Refresh", icon="refresh")
        self.runs = W.Select(options=[], rows=10, layout=W.Layout(width="60em"))
        self.open_button = W.Button(description="Open", icon="folder-open")
        self.new_name = W.Text(placeholder="new name", layout=W.Layout(width="18em"))
        self.rename = W.Button(description="Rename", icon="pencil")
        self.confirm = W.Checkbox(value=False, description="really delete", indent=False)
        self.delete = W.Button(description="Delete", icon="trash", button_style="danger")
        self.resume = W.Button(description="Resume (paused training)", icon="step-forward")
        self.status = Status()
        self.details = W.HTML()
        self.loss = ChartWidget(loss_template())
        self.refresh.on_click(lambda _: self.refresh_list())
        self.kind.observe(lambda _: self.refresh_list(), "value")
        self.open_button.on_click(self._open)
        self.runs.observe(lambda _: self._open(), "value")
        self.rename.on_click(self._rename)
        self.delete.on_click(self._delete)
        self.resume.on_click(self._resume)
        ctx.follow("runs_version", lambda _: self.refresh_list())
        super().__init__(
            [
                W.HTML("<b>History</b>: runs recorded in the workspace registry"),
                W.HBox([self.kind, self.refresh]),
                self.runs,
                W.HBox([self.open_button, self.new_name, self.rename, self.confirm, self.delete, self.resume]),
                self.status,
                self.details,
                self.loss,
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

    @panel_guard
    def refresh_list(self) -> None:
        rows = self.registry.list_runs(kind=self.kind.value or None)
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

    def _selected(self) -> str:
        if not self.runs.value:
            raise ValueError("select a run first")
        return self.runs.value

    @panel_guard
    def _open(self, _=None) -> None:
        if not self.runs.value:
            return
        row = self.registry.get_run(self.runs.value)
        info = [
            {"field": "id", "value": row.id},
            {"field": "name", "value": row.name},
            {"field": "kind", "value": row.kind},
            {"field": "status", "value": row.status},
            {"field": "model", "value": row.model or ""},
            {"field": "run folder", "value": row.run_dir or ""},
            {"field": "data set", "value": (row.dataset_hash or "")[:16]},
            {"field": "error", "value": row.error or ""},
        ]
        metrics = flatten(row.metrics)
        text = table_html(info)
        text += "<b>Metrics</b>" + table_html([{"metric": k, "value": v} for k, v in metrics.items()])
        params = html.escape(json.dumps(row.params, indent=1, default=str)[:4000])
        text += f"<details><summary>parameters</summary><pre>{params}</pre></details>"
        logs = self.registry.logs(row.id)[-20:]
        if logs:
            text += (
                "<details><summary>log</summary><pre>"
                + html.escape("\n".join(f"[{e.get('level')}] {e.get('message')}" for e in logs))
                + "</pre></details>"
            )
        self.details.value = text
        epochs = self.registry.epochs(row.id)
        with self.loss.batch_update():
            for trace, key in zip(self.loss.data, ("train_loss", "train_loss_eval", "val_loss")):
                trace.x = [e.get("epoch") for e in epochs]
                trace.y = [e.get(key) for e in epochs]
        self.resume.disabled = not (row.kind == "train" and row.status == "paused")
        self.new_name.value = row.name
        if row.model:
            self.ctx.announce(bundle=Path(row.model))
        self.status.info(f"opened {row.name} ({row.status})")

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

"""Search panel: an Optuna search over training settings with a live optimization-history chart.

The headless twin is :func:`workbench.batch.search.run_search` (``workbench search``).  The
search runs in a worker thread; each finished trial (and each epoch's validation loss) updates the
chart.  The best trial's settings are shown with a button that hands them — ``{"train": {...},
"model": {...}}`` — to ``on_use_best`` (the app connects it to the Train panel).
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import ipywidgets as W
import pandas as pd

from ..batch.search import SearchConfig, SearchSpace, run_search, search_result, settings_from_params
from ..events import Progress, Record
from ..fileio import safe_name
from ..plots.sweep import history_figure, update_history_figure
from ..store.workspace import Workspace
from .background import Job
from .chart_widget import ChartWidget
from .common import Panel, Status, panel_guard
from .forms import fit, fit_em

PARAM_LABELS = {"learning_rate": "learning rate", "layers": "encoder stages", "batch_size": "batch size (curves)"}


def _choices(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise ValueError(f"batch sizes: expected whole numbers separated by commas, got {text!r}") from None
    if not values:
        raise ValueError("batch sizes: give at least one value")
    return values


class SearchPanel(Panel, W.VBox):
    """Data set, trials, epochs, ranges, Run/Stop; live history chart; best settings and "Use in Train"."""

    CHARTS: ClassVar[dict[str, str]] = {"search history": "figure"}

    def __init__(
        self,
        ctx=None,
        *,
        workspace=None,
        dataset: str | Path | None = None,
        storage: str | Path | None = None,
        on_use_best: Callable[[dict[str, Any]], None] | None = None,
        max_trials: int = 500,
        max_epochs: int = 1000,
    ) -> None:
        if ctx is not None:
            workspace = ctx.workspace
            max_epochs = getattr(ctx.limits, "max_epochs", max_epochs)
        if workspace is None:
            workspace = Workspace()
        self.workspace = workspace
        self.on_use_best = on_use_best
        self.max_trials, self.max_epochs = max_trials, max_epochs
        self.storage_path = Path(storage) if storage else self.workspace.root / "search.sqlite"
        self._trusted_dataset = Path(dataset) if dataset else None
        self.job: Job | None = None
        self.result = None
        self.best_settings: dict[str, Any] | None = None
        self._trials: dict[int, dict[str, Any]] = {}

        label = fit_em("batch sizes (curves)")  # the longest label: every box lines up behind it
        number = 8.0

        def sized(widget: W.Widget, input_em: float = number) -> W.Widget:
            return fit(widget, input_em=input_em, description_em=label)

        self.dataset = sized(
            W.Text(
                value=str(dataset or ""),
                description="data set",
                placeholder="data-set folder",
                tooltip="a data-set folder in this workspace (a bare name means datasets/<name>)",
            ),
            22.0,
        )
        self.study = sized(
            W.Text(
                value="search", description="study name", tooltip="a study with this name continues where it stopped"
            ),
            12.0,
        )
        self.target = sized(
            W.Dropdown(
                options=[("NR → SLD profile", "sld"), ("NR → layer parameters", "params")],
                value="sld",
                description="model learns",
                tooltip="what the searched model predicts from a reflectivity curve",
            )
        )
        self.trials = sized(
            W.BoundedIntText(
                value=10, min=1, max=max_trials, description="trials", tooltip="training runs to add to the study"
            )
        )
        self.epochs = sized(
            W.BoundedIntText(
                value=5,
                min=1,
                max=max_epochs,
                description="epochs per trial",
                tooltip="passes over the training split in each trial; poor trials are pruned earlier",
            )
        )
        self.lr_lo = sized(
            W.BoundedFloatText(
                value=1e-4,
                min=1e-7,
                max=10,
                description="learning rate from",
                tooltip="lowest learning rate tried (searched on a log scale)",
            )
        )
        self.lr_hi = sized(
            W.BoundedFloatText(
                value=1e-2, min=1e-7, max=10, description="learning rate to", tooltip="highest learning rate tried"
            )
        )
        self.layers_lo = sized(
            W.BoundedIntText(
                value=1,
                min=1,
                max=12,
                description="encoder stages from",
                tooltip="fewest residual encoder stages tried (each halves the Q axis)",
            )
        )
        self.layers_hi = sized(
            W.BoundedIntText(
                value=4, min=1, max=12, description="encoder stages to", tooltip="most residual encoder stages tried"
            )
        )
        self.batch_sizes = sized(
            W.Text(
                value="16,32,64",
                description="batch sizes (curves)",
                tooltip="curves per optimizer step to choose from, separated by commas",
            ),
            12.0,
        )
        self.run_button = W.Button(
            description="Run search",
            button_style="primary",
            icon="play",
            tooltip="add the trials to the study",
            layout=W.Layout(width="auto"),
        )
        self.stop_button = W.Button(
            description="Stop", icon="stop", disabled=True, tooltip="stop after the running epoch; finished trials stay"
        )
        self.use_button = W.Button(
            description="Use in Train",
            icon="arrow-right",
            disabled=True,
            tooltip="fill the Train panel with the best trial's settings",
            layout=W.Layout(width="auto"),
        )
        self.progress = W.IntProgress(
            value=0,
            min=0,
            max=1,
            description="trials done",
            style={"description_width": f"{label:g}em"},
            layout=W.Layout(width="32em"),
        )
        self.best = W.HTML()
        self.status = Status()
        self.figure = ChartWidget(
            history_figure(pd.DataFrame(columns=["number", "state", "value", "last_intermediate"]))
        )
        self.run_button.on_click(self._run)
        self.stop_button.on_click(self._stop)
        self.use_button.on_click(self._use_best)
        super().__init__(
            [
                W.HTML(
                    "<b>Hyperparameter search</b> (Optuna, TPE, median pruning on validation loss; the study is saved "
                    "and resumable)"
                ),
                self.dataset,
                W.HBox([self.study, self.target]),
                W.HBox([self.trials, self.epochs]),
                W.HBox([self.lr_lo, self.lr_hi]),
                W.HBox([self.layers_lo, self.layers_hi]),
                self.batch_sizes,
                W.HBox([self.run_button, self.stop_button]),
                self.progress,
                self.status,
                self.figure,
                W.HBox([self.best, self.use_button]),
            ]
        )

    # ------------------------------------------------------------------ configuration
    def _dataset_folder(self, text: str) -> Path:
        """A folder typed in the browser must lie in this workspace (a bare name means datasets/<name>);
        one user's dashboard never reads another's files.  The folder the panel was built with is trusted."""
        if self._trusted_dataset is not None and text == str(self._trusted_dataset):
            return self._trusted_dataset
        root = self.workspace.root.resolve()
        folder = Path(text).expanduser()
        folder = (self.workspace.datasets / folder if not folder.is_absolute() else folder).resolve()
        if not folder.is_relative_to(root):
            raise ValueError(
                f"{text}: data sets must be in this workspace ({self.workspace.datasets}); "
                "generate or upload them there"
            )
        return folder

    def config(self) -> SearchConfig:
        """The search settings from the widgets, clamped to the panel's limits."""
        if not self.dataset.value.strip():
            raise ValueError("choose a data set folder to train on")
        folder = self._dataset_folder(self.dataset.value.strip())
        if not folder.is_dir():
            raise ValueError(f"{folder}: no such data-set folder")
        space = SearchSpace(
            learning_rate=(self.lr_lo.value, self.lr_hi.value),
            layers=(self.layers_lo.value, self.layers_hi.value),
            batch_size=_choices(self.batch_sizes.value),
        )
        return SearchConfig(
            dataset=str(folder),
            study_name=safe_name(self.study.value, "search"),
            storage=str(self.storage_path),
            target=self.target.value,
            epochs=min(int(self.epochs.value), self.max_epochs),
            space=space,
            workspace=str(self.workspace.root),
        )

    # ------------------------------------------------------------------ actions
    @panel_guard
    def _run(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.status.warn("a search is already running")
            return
        config = self.config()
        n = max(1, min(int(self.trials.value), self.max_trials))
        self._load(config)  # a resumed study shows its earlier trials
        self.progress.value, self.progress.max = 0, n
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.status.info(f"study {config.study_name!r}: adding {n} trials of {config.epochs} epochs")
        self.job = Job(
            lambda reporter: run_search(config, n, reporter=reporter),
            on_events=self._events,
            on_done=self._done,
            on_error=self._failed,
            name="workbench-search",
        )
        self.job.start()

    def _stop(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.job.stop("stopped from the Search panel")
            self.status.warn("stopping after the running epoch")

    @panel_guard
    def _use_best(self, _=None) -> None:
        if self.best_settings is None:
            raise ValueError("no trial has completed yet")
        if self.on_use_best is None:
            raise ValueError("no Train panel is connected to receive the settings")
        self.on_use_best(self.best_settings)
        self.status.ok("the best trial's settings are in the Train panel")

    def _load(self, config: SearchConfig) -> None:
        self._trials = {}
        if Path(self.storage_path).exists():
            current = search_result(config)
            for row in current.trials.to_dict("records"):
                self._trials[int(row["number"])] = {
                    "number": int(row["number"]),
                    "state": row["state"],
                    "value": row["value"],
                    "last_intermediate": row["last_intermediate"],
                    "params": {k[6:]: v for k, v in row.items() if k.startswith("param.")},
                }
        self._draw(config)

    # ------------------------------------------------------------------ events
    def _events(self, events) -> None:
        changed = False
        for e in events:
            if isinstance(e, Record) and e.stage == "search":
                d = e.data
                row = self._trials.setdefault(
                    d.get("trial", d.get("number")),
                    {
                        "number": d.get("trial", d.get("number")),
                        "state": "RUNNING",
                        "value": None,
                        "last_intermediate": None,
                        "params": {},
                    },
                )
                if e.name == "epoch":
                    row["last_intermediate"] = d["val_loss"]
                elif e.name == "trial":
                    row.update(state=d["state"], params=d.get("params") or row["params"])
                    if d.get("value") is not None:
                        row["value"] = d["value"]
                changed = True
            elif isinstance(e, Progress) and e.stage == "search":
                self.progress.max, self.progress.value = max(e.total, 1), e.done
        if changed:
            self._draw()

    def _frame(self) -> pd.DataFrame:
        rows = [
            {k: v for k, v in r.items() if k != "params"}
            for r in sorted(self._trials.values(), key=lambda r: r["number"])
        ]
        return pd.DataFrame(rows, columns=["number", "state", "value", "last_intermediate"])

    def _draw(self, config: SearchConfig | None = None) -> None:
        update_history_figure(self.figure, self._frame())
        complete = [
            r
            for r in self._trials.values()
            if r["state"] == "COMPLETE" and r["value"] is not None and not math.isnan(r["value"])
        ]
        if not complete:
            return
        best = min(complete, key=lambda r: r["value"])
        kind = (config.kind if config else None) or ("compact" if self.target.value == "sld" else "param")
        self.best_settings = settings_from_params(best["params"], kind, {"epochs": int(self.epochs.value)})
        rows = "".join(
            f"<tr><td style='padding:1px 8px'>{html.escape(PARAM_LABELS.get(k, k))}</td>"
            f"<td style='padding:1px 8px'>{f'{v:.4g}' if isinstance(v, float) else html.escape(str(v))}</td></tr>"
            for k, v in best["params"].items()
        )
        self.best.value = (
            f"<b>best: trial {best['number']}</b>, validation loss {best['value']:.4g}"
            f"<table class='wb-search-best'>{rows}</table>"
        )
        self.use_button.disabled = False

    def _done(self, result) -> None:
        self.result = result
        self.run_button.disabled, self.stop_button.disabled = False, True
        if result.best_settings is not None:
            self.best_settings = result.best_settings
        self.status.ok(
            f"{len(result.trials)} trials in the study, {result.pruned} pruned; best validation loss "
            f"{result.best_value:.4g}"
            if result.best_value is not None
            else "no trial completed"
        )

    def _failed(self, exc: BaseException) -> None:
        self.run_button.disabled, self.stop_button.disabled = False, True
        if self.job is not None and self.job.cancelled:
            self.status.warn(f"stopped: {exc}; the finished trials stay in the study, Run again to continue")
        else:
            self.status.error(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc))

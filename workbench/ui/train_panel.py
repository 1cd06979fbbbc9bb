"""Train panel: pick a model and hyperparameters, train in the background, watch the loss grow per epoch.

Start, Pause (a checkpoint at once), Resume (from that checkpoint, same data and split) and Stop;
the train/validation loss chart and a streaming log (timings, warnings) update from the worker
thread at most a few times per second while the notebook stays responsive.  Each run is recorded
in the registry ('train'), its checkpoint and model bundle too, so the History panel can resume
a paused run later.  Headless twins: :func:`~workbench.training.nr_workflow.train_nr_model`,
:func:`~workbench.training.nr_workflow.resume_nr_training`, :func:`~workbench.training.chi_workflow.train_chi`.
"""

from __future__ import annotations

import html
import os
import time
from pathlib import Path
from typing import Any

import ipywidgets as W
import torch

from ..data.preprocess import PreprocessConfig
from ..events import Log, Progress, Record, Timing, Warning_
from ..fileio import safe_name
from ..store.jobs import record_training_result
from ..store.model_bundle import save_model_bundle
from ..training.trainer import TrainConfig
from .chart_widget import ChartWidget
from .common import Status, panel_guard
from .context import AppContext
from .figures import loss_template
from .jobs import Job

MODELS = [("compact CNN: NR → SLD profile", "compact"), ("pyreflect-parity CNN: NR → SLD profile", "parity_cnn"),
          ("parameter model: NR → layer parameters", "param"), ("χ model: SLD profile → χ", "chi")]
TARGET = {"compact": "sld", "parity_cnn": "sld", "param": "params", "chi": "chi"}
MAX_LOG_LINES = 300
EXTRA_TRAIN = ("weight_decay", "momentum", "schedule", "early_stopping")  # TrainConfig fields without a widget
EXTRA_MODEL = {"stages": (1, 8), "width": (4, 256), "latent": (4, 1024)}  # compact/param options without a widget


def chi_data_allowed(ctx: AppContext, folder: Path) -> bool:
    """χ data may come from inside the workspace or from the example-data folder only (browser input)."""
    folder = folder.resolve()
    roots = [ctx.workspace.root]
    example = os.environ.get("WORKBENCH_EXAMPLE_DATA")
    if example:
        roots.append(Path(example).resolve())
    return any(folder == r or r in folder.parents for r in roots)


class TrainPanel(W.VBox):
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        lim = ctx.limits
        saved = ctx.panel_settings("train")
        style = {"description_width": "11em"}
        wide = W.Layout(width="26em")
        self.model_kind = W.Dropdown(options=MODELS, value=saved.get("model", "compact"), description="model",
                                     style=style, layout=W.Layout(width="34em"))
        self.dataset = W.Dropdown(options=[], description="data set", style=style, layout=W.Layout(width="34em"))
        self.refresh = W.Button(icon="refresh", tooltip="refresh the list of data sets", layout=W.Layout(width="3em"))
        self.chi_folder = W.Text(value=saved.get("chi_folder", ""), description="χ data folder", style=style,
                                 placeholder="folder with train_data.npy, train_pars.npy, experiment.txt",
                                 layout=W.Layout(width="34em"))
        self.batch_size = W.BoundedIntText(value=int(saved.get("batch_size", 32)), min=1, max=lim.max_batch_size,
                                           description="batchSize", style=style, layout=wide)
        self.epochs = W.BoundedIntText(value=min(int(saved.get("epochs", 10)), lim.max_epochs), min=1, max=lim.max_epochs,
                                       description="epochs", style=style, layout=wide)
        self.layers = W.BoundedIntText(value=int(saved.get("layers", 12)), min=1, max=24, description="layers (parity)",
                                       style=style, layout=wide)
        self.dropout = W.BoundedFloatText(value=float(saved.get("dropout", 0.1)), min=0.0, max=0.9, step=0.05,
                                          description="dropout", style=style, layout=wide)
        self.kernel_size = W.BoundedIntText(value=int(saved.get("kernel_size", 51)), min=1, max=101, step=2,
                                            description="kernelSize (parity)", style=style, layout=wide)
        self.learning_rate = W.BoundedFloatText(value=float(saved.get("learning_rate", 1e-3)), min=1e-7, max=1.0,
                                                step=1e-4, description="learningRate", style=style, layout=wide)
        self.optimizer = W.Dropdown(options=["adam", "adamw", "sgd"], value=saved.get("optimizer", "adam"),
                                    description="optimizer", style=style, layout=wide)
        self.validation_split = W.BoundedFloatText(value=float(saved.get("validation_split", 0.1)), min=0.01, max=0.45,
                                                   step=0.05, description="validationSplit", style=style, layout=wide)
        devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        self.device = W.Dropdown(options=devices, value=saved.get("device", "auto") if saved.get("device") in devices
                                 else "auto", description="device", style=style, layout=wide)
        self.seed = W.BoundedIntText(value=int(saved.get("seed", 0)), min=0, max=2**31 - 1, description="seed",
                                     style=style, layout=wide)
        self.name = W.Text(value="", placeholder="model name (default: <model>-<time>)", description="name", style=style,
                           layout=wide)
        self.start = W.Button(description="Start", icon="play", button_style="primary")
        self.pause = W.Button(description="Pause", icon="pause", disabled=True)
        self.resume = W.Button(description="Resume", icon="step-forward", disabled=True)
        self.stop = W.Button(description="Stop", icon="stop", button_style="danger", disabled=True)
        self.progress = W.IntProgress(value=0, min=0, max=1, description="batches", layout=W.Layout(width="30em"))
        self.status = Status()
        self.metrics = W.HTML()
        self.log_view = W.HTML(layout=W.Layout(max_height="14em", overflow="auto", border="1px solid #ddd"))
        self.loss = ChartWidget(loss_template())
        self.history: list[dict[str, float]] = []
        self.log_lines: list[str] = []
        self.job: Job | None = None
        self.paused: dict[str, Any] | None = None
        self.bundle: Path | None = None
        self.last_run_id: str | None = None
        self.extra_train: dict[str, Any] = {}
        self.extra_model: dict[str, Any] = {}  # with its "kind": used only while that model is chosen
        self.refresh.on_click(lambda _: self.refresh_datasets())
        self.start.on_click(self._start)
        self.pause.on_click(self._pause)
        self.resume.on_click(self._resume)
        self.stop.on_click(self._stop)
        self.model_kind.observe(self._kind_changed, "value")
        for w in (self.model_kind, self.batch_size, self.epochs, self.layers, self.dropout, self.kernel_size,
                  self.learning_rate, self.optimizer, self.validation_split, self.device, self.seed, self.chi_folder):
            w.observe(self._remember, "value")
        ctx.subscribe("dataset", lambda folder: self.refresh_datasets(select=folder))
        self.form = W.VBox([self.model_kind, W.HBox([self.dataset, self.refresh]), self.chi_folder, self.batch_size,
                            self.epochs, self.layers, self.dropout, self.kernel_size, self.learning_rate, self.optimizer,
                            self.validation_split, self.device, self.seed, self.name])
        super().__init__([
            W.HTML("<b>Train</b> a model on a data set in the background"), self.form,
            W.HBox([self.start, self.pause, self.resume, self.stop]), self.progress, self.status, self.loss,
            self.metrics, W.HTML("<b>Log</b>"), self.log_view,
        ])
        self.add_class("wb-train-panel")
        self.refresh_datasets()
        self._kind_changed()

    # ------------------------------------------------------------------ form
    def refresh_datasets(self, select: Path | None = None) -> None:
        options = [(p.name, str(p)) for p in self.ctx.datasets()]
        self.dataset.options = options
        values = [v for _, v in options]
        if select is not None and str(select) in values:
            self.dataset.value = str(select)
        elif self.dataset.value is None and values:
            self.dataset.value = values[0]

    def _kind_changed(self, _=None) -> None:
        kind = self.model_kind.value
        chi = kind == "chi"
        self.chi_folder.layout.display = "" if chi else "none"
        self.dataset.layout.display = "none" if chi else ""
        self.refresh.layout.display = "none" if chi else ""
        for w in (self.layers, self.kernel_size):
            w.layout.display = "" if kind == "parity_cnn" else "none"
        self.dropout.layout.display = "none" if chi else ""

    def _remember(self, _=None) -> None:
        self.ctx.update_settings("train", model=self.model_kind.value, batch_size=self.batch_size.value,
                                 epochs=self.epochs.value, layers=self.layers.value, dropout=self.dropout.value,
                                 kernel_size=self.kernel_size.value, learning_rate=self.learning_rate.value,
                                 optimizer=self.optimizer.value, validation_split=self.validation_split.value,
                                 device=self.device.value, seed=self.seed.value, chi_folder=self.chi_folder.value)

    @panel_guard
    def apply_settings(self, settings: dict[str, Any]) -> None:
        """Fill the form from ``{"train": {...}, "model": {...}}`` (e.g. a search's best trial), clamped to the limits.

        Settings without a widget (weight decay, schedule, the compact model's stages and width, ...)
        are kept, shown in the status line, and used by the next Start while the same model is chosen.
        """
        unknown = set(settings) - {"train", "model"}
        if unknown:
            raise ValueError(f"settings: unknown section(s) {sorted(unknown)}; expected 'train' and 'model'")
        train, model = dict(settings.get("train") or {}), dict(settings.get("model") or {})
        kind = model.pop("kind", self.model_kind.value)
        if kind not in TARGET:
            raise ValueError(f"settings: unknown model {kind!r}; expected one of {', '.join(TARGET)}")
        if train.get("optimizer", self.optimizer.value) not in self.optimizer.options:
            raise ValueError(f"settings: unknown optimizer {train['optimizer']!r}; expected one of {', '.join(self.optimizer.options)}")
        extra_train = {k: train.pop(k) for k in EXTRA_TRAIN if k in train}
        base = {k: v for k, v in self.train_config().model_dump().items() if k not in EXTRA_TRAIN}  # not the last extras
        TrainConfig(**{**base, **extra_train})  # validates the settings that have no widget before anything changes
        extra_model = {k: int(min(max(int(model.pop(k)), lo), hi)) for k, (lo, hi) in EXTRA_MODEL.items() if k in model}
        values, notes = [], []
        for key, widget, conv in (("batch_size", self.batch_size, int), ("epochs", self.epochs, int),
                                  ("learning_rate", self.learning_rate, float), ("seed", self.seed, int),
                                  ("dropout", self.dropout, float), ("layers", self.layers, int),
                                  ("kernel_size", self.kernel_size, int)):
            source = model if key in ("dropout", "layers", "kernel_size") else train
            if key in source:
                raw = source.pop(key)
                try:
                    value = conv(raw)
                except (TypeError, ValueError):
                    raise ValueError(f"settings: {key} = {raw!r} is not a {conv.__name__}") from None
                clamped = min(max(value, widget.min), widget.max)
                if key == "kernel_size" and clamped % 2 == 0:
                    clamped = clamped + 1 if clamped < widget.max else clamped - 1
                if clamped != value:
                    notes.append(f"{key} {value:g} → {clamped:g} (limit)")
                values.append((widget, clamped))
        self.model_kind.value = kind
        for widget, value in values:
            widget.value = value
        if "optimizer" in train:
            self.optimizer.value = train.pop("optimizer")
        if "device" in train:
            device = str(train.pop("device"))
            if device in self.device.options:
                self.device.value = device
            else:
                notes.append(f"device {device!r} is not available here")
        self.extra_train = extra_train
        self.extra_model = {"kind": kind, **extra_model} if extra_model else {}
        extras = {**extra_train, **extra_model}
        ignored = sorted(set(train) | set(model))
        text = "settings applied" + (f"; also used: {', '.join(f'{k}={v}' for k, v in extras.items())}" if extras else "")
        text += "".join(f"; {n}" for n in notes) + (f"; ignored: {', '.join(ignored)}" if ignored else "")
        (self.status.warn if notes or ignored else self.status.ok)(text)

    def train_config(self) -> TrainConfig:
        lim = self.ctx.limits
        return TrainConfig(optimizer=self.optimizer.value, learning_rate=float(self.learning_rate.value),
                           batch_size=int(min(self.batch_size.value, lim.max_batch_size)),
                           epochs=int(min(self.epochs.value, lim.max_epochs)), seed=int(self.seed.value),
                           device=self.device.value, progress_every=1, **self.extra_train)

    def model_config(self) -> dict[str, Any]:
        kind = self.model_kind.value
        cfg: dict[str, Any] = {"kind": kind}
        if self.extra_model.get("kind") == kind:
            cfg.update(self.extra_model)
        if kind == "parity_cnn":
            k = int(self.kernel_size.value)
            cfg.update(layers=int(self.layers.value), kernel_size=k if k % 2 else k + 1, dropout=float(self.dropout.value))
        elif kind in ("compact", "param"):
            cfg.update(dropout=float(self.dropout.value))
        return cfg

    # ------------------------------------------------------------------ jobs
    def _busy(self) -> bool:
        if self.job is not None and self.job.running:
            self.status.warn("a training run is already in progress: pause or stop it first")
            return True
        return False

    @panel_guard
    def _start(self, _=None) -> None:
        if self._busy():
            return
        kind = self.model_kind.value
        train = self.train_config()
        model = self.model_config()
        name = safe_name(self.name.value, f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
        bundle_dir = self.ctx.workspace.models / name
        if kind == "chi":
            folder = Path(self.chi_folder.value.strip() or ".").expanduser()
            if not chi_data_allowed(self.ctx, folder):
                raise ValueError(f"χ data must be a folder inside the workspace {self.ctx.workspace.root} "
                                 "(or $WORKBENCH_EXAMPLE_DATA); upload or copy it there first")
            from ..training.chi_workflow import load_chi_scft

            _, profiles, chi, _, _ = load_chi_scft(folder)
            params = {"target": "chi", "model": model, "train": train.model_dump(mode="json"), "data": str(folder),
                      "bundle_dir": str(bundle_dir)}
            data: Any = (profiles, chi)
        else:
            if not self.dataset.value:
                raise ValueError("no data set selected: generate one first or upload one in the Files panel")
            split = float(self.validation_split.value)
            params = {"target": TARGET[kind], "model": model, "train": train.model_dump(mode="json"),
                      "data": self.dataset.value, "validation_split": split, "bundle_dir": str(bundle_dir)}
            data = self.dataset.value
        self._reset_views()
        self._launch(params, data, name)

    def _reset_views(self) -> None:
        self.history, self.log_lines = [], []
        self._draw_loss()
        self.log_view.value = ""
        self.metrics.value = ""
        self.progress.value, self.progress.bar_style = 0, ""

    def _launch(self, params: dict[str, Any], data: Any, name: str, resume: dict[str, Any] | None = None) -> None:
        registry = self.ctx.registry()
        ws = self.ctx.workspace

        def work(reporter):
            from contextlib import nullcontext

            from ..store.recorded import recorded_run

            if registry is None:
                ctx = nullcontext(None)
            elif resume is not None and resume.get("run_id"):
                ctx = recorded_run(registry, "train", run_id=resume["run_id"], resume=True, reporter=reporter)
            else:
                ctx = recorded_run(registry, "train", name=name, params=params, reporter=reporter)
            with ctx as run:
                run_dir = run.dir if run is not None else ws.runs / name
                run_dir.mkdir(parents=True, exist_ok=True)
                checkpoint = resume["checkpoint"] if resume else run_dir / "checkpoint.safetensors"
                self.last_run_id = run.id if run is not None else None
                out = _train(params, data, checkpoint, reporter, name, resume is not None)
                if run is not None:  # as the command line records it: run metrics, pause checkpoint, model
                    record_training_result(run, status=out["status"], epochs_done=out["epochs"], history=out["history"],
                                           target=params["target"], metrics=out["metrics"], bundle=out["bundle"],
                                           checkpoint=checkpoint if out["status"] == "paused" else None,
                                           dataset_hash=out.get("hash"), best_val_loss=out.get("best_val_loss"))
                out["run_id"] = run.id if run is not None else None
                out["checkpoint"] = checkpoint
                return out

        self.status.info("training…")
        self.start.disabled, self.resume.disabled = True, True
        self.pause.disabled, self.stop.disabled = False, False
        self.job = Job(work, on_events=self._events, on_done=lambda out: self._done(out, params, data, name),
                       on_error=self._failed, max_rate=self.ctx.limits.max_updates_per_second, name="workbench-train")
        self.job.start()

    def _pause(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.job.pause()
            self.status.info("pausing: writing a checkpoint…")

    def _stop(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.job.stop("stopped from the Train panel")
            self.status.warn("stopping after the current batch…")

    @panel_guard
    def _resume(self, _=None) -> None:
        if self._busy() or self.paused is None:
            return
        p = self.paused
        self._launch(p["params"], p["data"], p["name"], resume={"checkpoint": p["checkpoint"], "run_id": p["run_id"]})

    def resume_run(self, run_id: str) -> None:
        """Resume a paused run recorded in the registry (the History panel's Resume)."""
        registry = self.ctx.registry()
        if registry is None:
            raise ValueError("the run registry is not available")
        row = registry.get_run(run_id)
        if row.kind != "train" or row.status != "paused":
            raise ValueError(f"run {row.name!r} is {row.status} ({row.kind}); only paused training runs can be resumed")
        checkpoint = registry.latest_checkpoint(run_id)
        if checkpoint is None:
            raise ValueError(f"run {row.name!r} has no checkpoint on disk to resume from")
        params = row.params
        data: Any = params["data"]
        if params["target"] == "chi":
            from ..training.chi_workflow import load_chi_scft

            _, profiles, chi, _, _ = load_chi_scft(params["data"])
            data = (profiles, chi)
        if self._busy():
            return
        self.paused = {"params": params, "data": data, "name": row.name, "checkpoint": checkpoint, "run_id": run_id}
        self.history = list(registry.epochs(run_id))
        self._draw_loss()
        self._resume()

    # ------------------------------------------------------------------ views
    def _events(self, events) -> None:
        new_epoch = False
        for e in events:
            if isinstance(e, Record) and e.name == "epoch":
                self.history.append(dict(e.data))
                new_epoch = True
            elif isinstance(e, Progress):
                self.progress.max, self.progress.value = max(e.total, 1), e.done
            elif isinstance(e, Timing):
                self._log(f"{e.what}: {e.seconds:.2f} s" + (f" ({e.rate:,.0f} samples/s)" if e.items else ""), "timing")
            elif isinstance(e, Warning_):
                self._log(e.message, "warning")
            elif isinstance(e, Log):
                self._log(e.message, e.level)
        if new_epoch:
            self._draw_loss()
            last = self.history[-1]
            self.status.info(f"epoch {last['epoch']}: train {last['train_loss']:.4g}, validation {last['val_loss']:.4g}")
        self._flush_log()

    def _log(self, message: str, level: str) -> None:
        color = {"warning": "#9a6700", "error": "#cf222e", "timing": "#555"}.get(level, "#222")
        stamp = time.strftime("%H:%M:%S")
        self.log_lines.append(f"<div style='color:{color}'>{stamp} [{level}] {html.escape(message)}</div>")
        del self.log_lines[:-MAX_LOG_LINES]

    def _flush_log(self) -> None:
        self.log_view.value = "<div class='wb-log' style='font-family:monospace;font-size:12px'>" + "".join(self.log_lines) + "</div>"

    def _draw_loss(self) -> None:
        epochs = [h["epoch"] for h in self.history]
        with self.loss.batch_update():
            for trace, key in zip(self.loss.data, ("train_loss", "train_loss_eval", "val_loss")):
                trace.x, trace.y = epochs, [float(h.get(key, float("nan"))) for h in self.history]

    def _buttons_idle(self, paused: bool) -> None:
        self.start.disabled, self.pause.disabled, self.stop.disabled = False, True, True
        self.resume.disabled = not paused

    def _done(self, out: dict[str, Any], params, data, name) -> None:
        status = out["status"]
        self._flush_log()
        if status == "paused":
            self.paused = {"params": params, "data": data, "name": name, "checkpoint": out["checkpoint"],
                           "run_id": out["run_id"]}
            self.status.ok(f"paused after {out['epochs']} epochs; checkpoint {out['checkpoint']}: Resume continues there")
        elif status == "stopped":
            self.paused = None
            self.status.warn(f"stopped after {out['epochs']} epochs; no model was saved")
        else:
            self.paused = None
            self.bundle = out["bundle"]
            self.progress.value, self.progress.bar_style = self.progress.max, "success"
            self.status.ok(f"{status} after {out['epochs']} epochs in {self.job.seconds:.1f} s; model bundle {out['bundle']}")
            self.metrics.value = _metrics_html(out["metrics"])
            self.ctx.publish("model", out["bundle"])
        self._buttons_idle(status == "paused")
        self.ctx.publish("runs", out.get("run_id"))

    def _failed(self, exc: BaseException) -> None:
        self._flush_log()
        self._buttons_idle(False)
        self.status.error(f"training failed: {type(exc).__name__}: {exc}")
        self.ctx.publish("runs", None)


# ---------------------------------------------------------------------- headless twin
def _train(params: dict[str, Any], data: Any, checkpoint: Path, reporter, name: str, resume: bool) -> dict[str, Any]:
    """Run (or resume) one training as the panel does, without widgets; returns status, epochs, metrics, bundle."""
    bundle_dir = Path(params["bundle_dir"])
    if params["target"] == "chi":
        from ..training.chi_workflow import resume_chi, train_chi

        profiles, chi = data
        train = TrainConfig(**params["train"])
        if resume:
            result = resume_chi(checkpoint, profiles, chi, reporter=reporter)
        else:
            cfg = {k: v for k, v in params["model"].items() if k != "kind"} or None
            result = train_chi(profiles, chi, model_config=cfg, train_config=train, seed=train.seed, reporter=reporter,
                               checkpoint_path=checkpoint)
        status = result.train.status if result.train is not None else "completed"
        bundle = None
        if status in ("completed", "early-stopped"):
            parts = result.parts()
            bundle = save_model_bundle(bundle_dir, result.model, task="chi", normalization=parts, metrics=parts["metrics"],
                                       history=result.history, train=params["train"], name=name, overwrite=True)
        fit = result.train
        return {"status": status, "epochs": fit.epochs_done if fit else 0, "metrics": result.metrics if bundle else {},
                "bundle": bundle, "history": fit.history if fit else [], "best_val_loss": fit.best_val_loss if fit else None}
    from ..training.nr_workflow import resume_nr_training, train_nr_model

    if resume:
        out = resume_nr_training(checkpoint, data, bundle_dir=bundle_dir, reporter=reporter)
    else:
        v = float(params.get("validation_split", 0.1))
        train = TrainConfig(**params["train"])
        pre = PreprocessConfig(split=(1 - 2 * v, v, v), seed=train.seed)
        out = train_nr_model(data, target=params["target"], model=params["model"], train=train, preprocess=pre,
                             bundle_dir=bundle_dir, checkpoint_path=checkpoint, reporter=reporter, name=name)
    return {"status": out.result.status, "epochs": out.result.epochs_done, "metrics": out.metrics, "bundle": out.bundle,
            "hash": out.trainer.context.get("dataset", {}).get("content_hash"), "history": out.result.history,
            "best_val_loss": out.result.best_val_loss}


def _metrics_html(metrics: dict[str, Any]) -> str:
    rows = []
    for key, value in metrics.items():
        if isinstance(value, float):
            rows.append(f"<tr><td>{html.escape(key)}</td><td>{value:.5g}</td></tr>")
        elif isinstance(value, dict):
            inner = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
            rows.append(f"<tr><td>{html.escape(key)}</td><td>{html.escape(inner)}</td></tr>")
        else:
            rows.append(f"<tr><td>{html.escape(key)}</td><td>{html.escape(str(value))}</td></tr>")
    return "<b>Test metrics</b><table class='wb-metrics'>" + "".join(rows) + "</table>"

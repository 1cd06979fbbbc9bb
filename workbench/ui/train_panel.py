"""Train panel: pick a model and its settings, train in the background, watch the loss per epoch.

Start, Pause (a checkpoint at once), Resume (from that checkpoint, same data and split) and Stop.
By default a training runs as a job — its own process, started by
:func:`~workbench.batch.jobs.submit_job` like ``workbench train --detach`` — that outlives the page:
the panel follows it through the run registry (epochs, log lines, status, about twice a second),
Pause and Stop are registry commands, and a page opened later attaches to a running or queued
training of the workspace with its loss chart caught up; a training on the fly draws from the Film
stack tab's stack as it was at Start (the request carries it).  The "in this page" choice trains in a
worker thread of the page's kernel instead, as before.  Either
way the loss chart and a streaming log (timings, warnings) update at most a few times per second
while the notebook stays responsive.  The form is generated
from the configuration models (:class:`~workbench.training.TrainConfig` and the model settings of
:mod:`workbench.models.settings`), and Start hands a :class:`~workbench.workflows.training.TrainRequest`
to the one training pipeline the command line uses too: the run, its checkpoints and its model
bundle are recorded the same way, and a run started here can be resumed by ``workbench runs resume``
(and the reverse, from the History tab).

"ensemble members" above 1 trains an ensemble instead (:func:`~workbench.workflows.ensemble.run_ensemble`, as
``workbench ensemble``), as one ``ensemble`` job or in the page: the members one after another on one loss
chart, then the bands' coverage on held-out curves; the Predict tab draws the ensemble's bands.  An ensemble
can be stopped, not paused.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any, ClassVar

import ipywidgets as W
import torch

from ..analysis.ensemble import coverage_lines
from ..batch.jobs import submit_job
from ..data.generate import GeneratorConfig
from ..events import Log, Progress, Record, Timing, Warning_
from ..fileio import safe_name
from ..forms import clamp_values
from ..models.settings import SETTINGS
from ..plots.curves import loss_template
from ..store.model_bundle import MAX_MEMBERS, read_ensemble_info
from ..store.registry import RunRow
from ..training.on_the_fly import OnTheFly
from ..training.trainer import TrainConfig
from ..workflows.ensemble import MEMBERS, EnsembleOutcome, check_request, ensemble_params, run_ensemble
from ..workflows.training import RESUMABLE, TrainingOutcome, TrainRequest, resume_training, run_training
from .background import FollowedJob, Job, follow_job, live_job
from .chart_widget import ChartWidget
from .common import Panel, Status, panel_guard, readable_from_browser
from .context import AppContext
from .forms import Form, FormFields, fit, fit_em

MODELS = [
    ("compact CNN: NR → SLD profile", "compact"),
    ("pyreflect-parity CNN: NR → SLD profile", "parity_cnn"),
    ("parameter model: NR → layer parameters", "param"),
    ("parameter model with your ranges: NR + bounds → parameters (on the fly)", "param_bounds"),
    ("χ model: SLD profile → χ", "chi"),
]
TARGET = {"compact": "sld", "parity_cnn": "sld", "param": "params", "param_bounds": "params", "chi": "chi"}
ON_THE_FLY_ONLY = ("param_bounds",)  # kinds that learn from fresh ranges per curve: trained on the fly only
MAX_LOG_LINES = 300
TRAIN_EXCLUDE = ("device", "progress_every")  # the device is chosen from those present; progress is the panel's
MODEL_EXCLUDE = ("kind", "hidden", "mlp_hidden")  # layer-size lists: the command line's --config only
REQUEST_FIELDS = ("validation_split",)


def chi_data_allowed(ctx: AppContext, folder: Path) -> bool:
    """χ data may come from inside the workspace or from the example-data folder only (browser input)."""
    return readable_from_browser(ctx.workspace.root, folder)


class TrainPanel(FormFields, Panel, W.VBox):
    """The Train tab; ``panel.epochs``, ``panel.dropout``, ... are the generated widgets (the chosen model's first)."""

    CHARTS: ClassVar[dict[str, str]] = {"training loss": "loss"}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        saved = ctx.panel_settings("train")
        kind = saved.get("model") if saved.get("model") in TARGET else "compact"  # a bad saved value: the default
        label = fit_em("χ data folder")  # the longest of the hand-made labels; the forms size their own
        self.model_kind = fit(
            W.Dropdown(
                options=MODELS,
                value=kind,
                description="model",
                tooltip="what the model learns: an SLD profile, the layer parameters, or χ from a profile",
            ),
            description_em=label,
        )
        self.dataset = fit(
            W.Dropdown(
                options=[], description="data set", tooltip="a data set generated or uploaded in this workspace"
            ),
            input_em=24.0,
            description_em=label,
        )
        self.refresh = W.Button(icon="refresh", tooltip="refresh the list of data sets", layout=W.Layout(width="3em"))
        self.on_the_fly = W.Checkbox(
            value=bool(saved.get("on_the_fly", False)),
            description="fresh curves every batch (on the fly, from the Film stack tab)",
            tooltip="generate new curves for every batch instead of reading a data set: never the same curve twice; "
            "set a time budget to train against the clock",
            indent=False,
            layout=W.Layout(width="42em"),
        )
        self.on_the_fly.add_class("wb-on-the-fly")
        self.batches_per_epoch = fit(
            W.BoundedIntText(
                value=int(saved.get("batches_per_epoch", 200)),
                min=1,
                max=1_000_000,
                description="batches per epoch",
                tooltip="fresh batches between two validations (on the fly)",
            ),
            description_em=label,
        )
        self.held_out = fit(
            W.BoundedIntText(
                value=int(saved.get("held_out_curves", 2048)),
                min=16,
                max=1_000_000,
                description="held-out curves",
                tooltip="fixed validation curves and as many test curves, generated before the clock starts (on the "
                "fly); the normalisers are fitted on twice as many",
            ),
            description_em=label,
        )
        self.chi_folder = fit(
            W.Text(
                value=str(saved.get("chi_folder", "")),
                description="χ data folder",
                tooltip="a folder in the workspace with train_data.npy, train_pars.npy and experiment.txt",
                placeholder="folder with train_data.npy, train_pars.npy, experiment.txt",
            ),
            input_em=28.0,
            description_em=label,
        )
        self.train_form = Form(
            TrainConfig, saved, limits=ctx.limits, exclude=TRAIN_EXCLUDE
        )  # flat: a URL may set epochs
        self.model_forms = {
            k: Form(
                SETTINGS[k],
                (saved.get("models") or {}).get(k) or (saved if k == kind else {}),
                limits=ctx.limits,
                exclude=MODEL_EXCLUDE,
            )
            for k in TARGET
        }
        self.request_form = Form(
            TrainRequest, saved, exclude=tuple(n for n in TrainRequest.model_fields if n not in REQUEST_FIELDS)
        )
        devices = ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        self.device = fit(
            W.Dropdown(
                options=devices,
                value=saved.get("device") if saved.get("device") in devices else "auto",
                description="device",
                tooltip="where the model trains: auto picks a CUDA GPU when there is one",
            ),
            description_em=label,
        )
        self.name = fit(
            W.Text(
                value="",
                placeholder="model name (default: <model>-<time>)",
                description="model name",
                tooltip="the name the model is saved and listed under (letters, digits, - and _)",
            ),
            input_em=20.0,
            description_em=label,
        )
        self.members = fit(
            W.BoundedIntText(
                value=min(max(int(saved.get("ensemble_members", 1)), 1), MAX_MEMBERS),
                min=1,
                max=MAX_MEMBERS,
                description="ensemble members",
                tooltip="1: one model; 2 or more: an ensemble of that many, each trained with these settings (its own "
                "seed, its own time budget), whose calibrated 68 %/95 % bands the Predict tab draws",
            ),
            description_em=label,
        )
        self.members.add_class("wb-members")
        self.as_job = W.Checkbox(
            value=bool(saved.get("as_job", True)),
            description="run as a separate process (keeps training when this page is closed)",
            tooltip="a job process any page, History or `workbench runs` can follow, pause and stop; untick to "
            "train inside this page's kernel",
            indent=False,
            layout=W.Layout(width="42em"),
        )
        self.as_job.add_class("wb-as-job")
        self.start = W.Button(description="Start", icon="play", button_style="primary", tooltip="train a new model")
        self.pause = W.Button(
            description="Pause", icon="pause", disabled=True, tooltip="write a checkpoint and pause; Resume continues"
        )
        self.resume = W.Button(
            description="Resume", icon="step-forward", disabled=True, tooltip="continue the paused run"
        )
        self.stop = W.Button(
            description="Stop", icon="stop", button_style="danger", disabled=True, tooltip="end the run"
        )
        self.progress = W.IntProgress(max=1, description="batches", layout=W.Layout(width="30em"))
        self.progress.style.description_width = f"{label:g}em"
        self.status = Status()
        self.metrics = W.HTML()
        self.log_view = W.HTML(layout=W.Layout(max_height="14em", overflow="auto", border="1px solid #ddd"))
        self.loss = ChartWidget(loss_template())
        self.history: list[dict[str, float]] = []
        self.log_lines: list[str] = []
        self.job: Job | FollowedJob | None = None
        self.paused: dict[str, Any] | None = None
        self.bundle: Path | None = None
        self.last_run_id: str | None = None
        self.refresh.on_click(lambda _: self.refresh_datasets())
        self.start.on_click(self._start)
        self.pause.on_click(self._pause)
        self.resume.on_click(self._resume)
        self.stop.on_click(self._stop)
        self.model_kind.observe(self._kind_changed, "value")
        self.on_the_fly.observe(self._kind_changed, "value")
        watched = (self.model_kind, self.device, self.chi_folder, self.on_the_fly, self.batches_per_epoch)
        for w in (*watched, self.held_out, self.as_job, self.members):
            w.observe(self._remember, "value")
        for form in (self.train_form, self.request_form, *self.model_forms.values()):
            form.observe(self._remember)
        ctx.follow("dataset", lambda folder: self.refresh_datasets(select=folder))
        self.form = W.VBox(
            [
                self.model_kind,
                self.on_the_fly,
                W.HBox([self.dataset, self.refresh]),
                self.batches_per_epoch,
                self.held_out,
                self.chi_folder,
                *[f.box for f in self.model_forms.values()],
                self.train_form.box,
                self.request_form.box,
                self.device,
                self.name,
                self.members,
                self.as_job,
            ]
        )
        super().__init__(
            [
                W.HTML("<b>Train</b> a model on a data set in the background"),
                self.form,
                W.HBox([self.start, self.pause, self.resume, self.stop]),
                self.progress,
                self.status,
                self.loss,
                self.metrics,
                W.HTML("<b>Log</b>"),
                self.log_view,
            ]
        )
        self.add_class("wb-train-panel")
        self.refresh_datasets()
        self._kind_changed()
        self.attach()

    def _forms(self) -> list[Form]:
        """Where ``panel.<field>`` looks: training settings, then the chosen model's, then any model's."""
        d = self.__dict__
        forms = d["model_forms"]
        return [d["train_form"], d["request_form"], forms[d["model_kind"].value], *forms.values()]

    def on_shown(self) -> None:
        """The tab was shown: list the data sets made since; follow a training job started meanwhile."""
        self.refresh_datasets()
        self.attach()

    # ------------------------------------------------------------------ form
    def refresh_datasets(self, select: Path | None = None) -> None:
        options = [(p.name, str(p)) for p in self.ctx.datasets()]
        values = [v for _, v in options]
        with self.dataset.hold_sync():
            current = self.dataset.value
            self.dataset.options = options
            if select is not None and str(select) in values:
                self.dataset.value = str(select)
            elif current in values:
                self.dataset.value = current
            elif values:
                self.dataset.value = values[0]
        if not values and self.model_kind.value != "chi":  # a first visit: say what comes before this step
            self.status.info("No data set yet: generate one in the Generate tab, or upload one in the Files tab.")
        elif self.status.text.startswith("No data set yet"):
            self.status.info("")

    def _kind_changed(self, _=None) -> None:
        kind = self.model_kind.value
        chi = kind == "chi"
        if kind in ON_THE_FLY_ONLY and not self.on_the_fly.value:
            self.on_the_fly.value = True  # observed: this method runs again with it set
            return
        self.on_the_fly.disabled = kind in ON_THE_FLY_ONLY
        fly = self.on_the_fly.value and not chi
        self.chi_folder.layout.display = "" if chi else "none"
        self.on_the_fly.layout.display = "none" if chi else ""
        self.batches_per_epoch.layout.display = self.held_out.layout.display = "" if fly else "none"
        self.dataset.layout.display = "none" if chi or fly else ""
        self.refresh.layout.display = "none" if chi or fly else ""
        self.request_form.box.layout.display = "none" if chi else ""
        self.members.layout.display = "none" if chi else ""  # no ensembles of χ models
        for k, form in self.model_forms.items():
            form.box.layout.display = "" if k == kind else "none"

    def _remember(self, _=None) -> None:
        self.ctx.update_settings(
            "train",
            model=self.model_kind.value,
            **self.train_form.values(),
            models={k: f.values() for k, f in self.model_forms.items()},
            device=self.device.value,
            chi_folder=self.chi_folder.value,
            on_the_fly=self.on_the_fly.value,
            batches_per_epoch=self.batches_per_epoch.value,
            held_out_curves=self.held_out.value,
            as_job=self.as_job.value,
            ensemble_members=self.members.value,
            **self.request_form.values(),
        )

    @panel_guard
    def apply_settings(self, settings: dict[str, Any]) -> None:
        """Fill the form from ``{"train": {...}, "model": {...}}`` (e.g. a search's best trial), clamped to the limits.

        Every value is checked before any widget changes; values beyond a limit are clamped and said so.
        """
        unknown = set(settings) - {"train", "model"}
        if unknown:
            raise ValueError(f"settings: unknown section(s) {sorted(unknown)}; expected 'train' and 'model'")
        train, model = dict(settings.get("train") or {}), dict(settings.get("model") or {})
        kind = model.pop("kind", self.model_kind.value)
        if kind not in TARGET:
            raise ValueError(f"settings: unknown model {kind!r}; expected one of {', '.join(TARGET)}")
        device = train.pop("device", None)
        form = self.model_forms[kind]
        try:  # checked first: a bad value changes nothing
            clamp_values(list(self.train_form.specs.values()), train)
            clamp_values(list(form.specs.values()), model)
        except ValueError as exc:
            raise ValueError(f"settings: {exc}") from None
        self.model_kind.value = kind
        notes, ignored = self.train_form.set(train)
        more, ignored_model = form.set(model)
        notes += more
        if device is not None:
            if device in self.device.options:
                self.device.value = device
            else:
                notes.append(f"device {device!r} is not available here")
        ignored = sorted(set(ignored) | set(ignored_model))
        text = (
            "settings applied"
            + "".join(f"; {n}" for n in notes)
            + (f"; ignored: {', '.join(ignored)}" if ignored else "")
        )
        (self.status.warn if notes or ignored else self.status.ok)(text)

    def train_config(self) -> TrainConfig:
        return TrainConfig(**self.train_form.values(), device=self.device.value, progress_every=1)

    def model_config(self) -> dict[str, Any]:
        kind = self.model_kind.value
        return {"kind": kind, **self.model_forms[kind].values()}

    def request(self) -> TrainRequest:
        """What Start trains: the form as a :class:`TrainRequest` (the data set checked, the χ folder confined)."""
        kind = self.model_kind.value
        name = safe_name(self.name.value, f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}")
        if kind == "chi":
            data = Path(self.chi_folder.value.strip() or ".").expanduser()
            if not chi_data_allowed(self.ctx, data):
                raise ValueError(
                    f"χ data must be a folder inside the workspace {self.ctx.workspace.root} "
                    "(or $WORKBENCH_EXAMPLE_DATA); upload or copy it there first"
                )
        elif self.on_the_fly.value:
            data = None
        elif not self.dataset.value:
            raise ValueError(
                "no data set selected: generate one first, upload one in the Files panel, or tick 'fresh curves "
                "every batch'"
            )
        else:
            data = Path(self.dataset.value)
        return TrainRequest(
            target=TARGET[kind],
            data=data,
            on_the_fly=self.on_the_fly_settings() if data is None else None,
            out=self.ctx.workspace.models / name,
            name=name,
            train=self.train_config(),
            model=self.model_config(),
            **self.request_form.values(),
        )

    def on_the_fly_settings(self) -> OnTheFly:
        """Fresh curves from the Film stack tab's stack (its bounds and ties) on its Q grid."""
        p = self.ctx.stack.probe_settings
        grid = GeneratorConfig(q_min=p.q_min, q_max=p.q_max, num_q=p.num_q, q_resolution=p.q_resolution)
        n, per_epoch = int(self.held_out.value), int(self.batches_per_epoch.value)
        sizes = {"fit_curves": 2 * n, "val_curves": n, "test_curves": n}
        return OnTheFly.of(self.ctx.stack.stack, generator=grid, batches_per_epoch=per_epoch, **sizes)

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
        request = self.request()
        members = self.ensemble_size()
        if members > 1:
            check_request(request, members)  # refused (named) before anything starts
        self._reset_views()
        if members > 1 and self._as_job(request):
            job = ensemble_params(request, members)
            self._follow(submit_job(self.ctx.workspace, "ensemble", job, limits=self.ctx.limits), request)
        elif members > 1:
            self._launch_ensemble(request, members)
        elif self._as_job(request):
            self._follow(submit_job(self.ctx.workspace, "train", request, limits=self.ctx.limits), request)
        else:
            self._launch(request)

    def ensemble_size(self) -> int:
        """How many models Start trains: 1, or an ensemble's members (never for χ models)."""
        return 1 if self.model_kind.value == "chi" else int(self.members.value)

    def _as_job(self, request: TrainRequest) -> bool:
        """Whether ``request`` trains as a job: chosen, with a registry (on the fly, the job draws from the Film stack
        tab's stack as it was at Start: the request carries it, ties included)."""
        return bool(self.as_job.value) and self.ctx.registry() is not None

    def _reset_views(self) -> None:
        self.history, self.log_lines = [], []
        self._draw_loss()
        self.log_view.value = ""
        self.metrics.value = ""
        self.progress.value, self.progress.bar_style = 0, ""

    def _launch(self, request: TrainRequest, resume: dict[str, Any] | None = None) -> None:
        """Run or resume ``request`` through the training pipeline in a worker thread."""
        registry = self.ctx.registry()

        def work(reporter) -> TrainingOutcome:
            if resume is not None and resume.get("run_id") and registry is not None:
                return resume_training(resume["run_id"], registry, reporter)
            return run_training(
                request, reporter, registry, resume_from=resume.get("checkpoint") if resume is not None else None
            )

        self.status.info("training…")
        self.progress.description = "batches"
        self._buttons_busy()
        self.job = Job(
            work,
            on_events=self._events,
            on_done=lambda out: self._done(out, request),
            on_error=self._failed,
            max_rate=self.ctx.limits.max_updates_per_second,
            name="workbench-train",
        )
        self.job.start()

    def _launch_ensemble(self, request: TrainRequest, members: int) -> None:
        """Train an ensemble of ``members`` in a worker thread of this kernel (Stop ends it; it cannot pause)."""
        registry = self.ctx.registry()
        self.status.info(f"training an ensemble of {members} models…")
        self.progress.description = "batches"
        self._buttons_busy(can_pause=False)
        self.job = Job(
            lambda reporter: run_ensemble(request, members, reporter, registry),
            on_events=self._events,
            on_done=self._ensemble_done,
            on_error=self._failed,
            max_rate=self.ctx.limits.max_updates_per_second,
            name="workbench-ensemble",
        )
        self.job.start()

    def _ensemble_done(self, out: EnsembleOutcome) -> None:
        self._flush_log()
        self.last_run_id = out.run_id
        self.paused = None
        if out.status != "completed":
            self.status.warn(f"the ensemble was {out.status} in member {len(out.members)}; nothing was saved")
        else:
            self._ensemble_saved(out.path, len(out.members), out.seconds, out.calibration)
        self._buttons_idle(False)
        self.ctx.runs_changed()

    def _ensemble_saved(self, path: Path, members: int, seconds: float, calibration: dict[str, Any]) -> None:
        """Say what a finished ensemble gives (its bands' test coverage) and hand it to the Predict tab."""
        self.bundle = path
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        self.status.ok(f"ensemble of {members} models trained in {seconds:.1f} s; saved as {path}")
        lines = coverage_lines(calibration)
        self.metrics.value = (
            "<b>Bands</b> (calibrated, measured on held-out curves)<ul>"
            + "".join(f"<li>{html.escape(line)}</li>" for line in lines)
            + "</ul>"
        )
        self.ctx.announce(bundle=path)

    def _buttons_busy(self, can_pause: bool = True) -> None:
        self.start.disabled, self.resume.disabled = True, True
        self.pause.disabled, self.stop.disabled = not can_pause, False

    # ------------------------------------------------------------------ job processes
    def attach(self) -> str | None:
        """Follow the newest running or queued training job of the workspace, if this panel follows nothing.

        Its loss chart is caught up from the registry and goes on live; returns the run id (None: none).
        """
        registry = self.ctx.registry()
        busy = self.job is not None and self.job.running
        run_id = None if busy else live_job(registry, "train") or live_job(registry, "ensemble")
        if run_id is None:
            return None
        run = self.ctx.registry().get_run(run_id)
        try:
            request: TrainRequest | None = TrainRequest.from_params(run.params)
        except (TypeError, ValueError, KeyError):
            request = None  # still followed; a pause of it then resumes from History
        self._reset_views()
        self.last_run_id = run.id
        self._follow(run.id, request)
        return run.id

    def _follow(self, run_id: str, request: TrainRequest | None) -> None:
        """Show the job ``run_id`` live from the registry (its epochs so far first)."""
        self.history = []
        self.last_run_id = run_id
        self.progress.description = "epochs"
        self.progress.value, self.progress.bar_style = 0, ""
        ensemble = self.ctx.registry().get_run(run_id).kind == "ensemble"
        self.status.info(f"training {'an ensemble ' if ensemble else ''}as a job process (run {run_id})…")
        self._buttons_busy(can_pause=not ensemble)
        self.ctx.runs_changed()  # History lists the new job, live
        self.job = follow_job(
            self.ctx,
            run_id,
            on_update=self._job_update,
            on_end=lambda run: self._job_done(run, request),
            on_error=self._failed,
            name="workbench-train-follow",
        )

    def _job_update(self, epochs: list[dict], logs: list[dict], run: RunRow) -> None:
        new = [dict(e) for e in epochs if "train_loss" in e or "val_loss" in e]
        self.history.extend(new)
        for line in logs:
            self._log(str(line.get("message", "")), str(line.get("level", "info")), at=line.get("time"))
        total = int((run.params.get("train") or {}).get("epochs") or 0) * int(run.params.get(MEMBERS) or 1)
        self.progress.max = max(total, len(self.history), 1)
        self.progress.value = min(len(self.history), self.progress.max)
        if new:
            self._draw_loss()
        if run.status == "queued":
            position = self.ctx.registry().queue_position(run.id)
            self.status.info(
                f"queued{f' (position {position})' if position else ''}: waits for a free job slot "
                f"({self.ctx.limits.max_concurrent_jobs} at once in this workspace)"
            )
        elif run.status == "running" and self.history and new:
            last = self.history[-1]
            self.status.info(
                f"{_epoch_words(last)}: train {last.get('train_loss', float('nan')):.4g}, "
                f"validation {last.get('val_loss', float('nan')):.4g} (job process {run.pid})"
            )
        elif run.status == "running" and not self.history:
            self.status.info(f"training as a job process (pid {run.pid}): starting, loading the data…")
        if logs:
            self._flush_log()

    def _job_done(self, run: RunRow, request: TrainRequest | None) -> None:
        """The job ended: say how, as an in-page training would (bundle announced, History told)."""
        self._flush_log()
        registry = self.ctx.registry()
        checkpoint = registry.latest_checkpoint(run.id) if registry is not None else None
        metrics = run.metrics or {}
        epochs = metrics.get("epochs") or run.last_epoch or len(self.history)
        if run.status == "paused":
            self.paused = {"request": request, "run_id": run.id, "checkpoint": checkpoint}
            self.status.ok(f"paused after {epochs} epochs; checkpoint {checkpoint}: Resume continues there")
        elif run.status == "stopped":
            self.paused = None
            self.status.warn(
                f"stopped after {epochs} epochs; no model was saved"
                + ("; its last checkpoint stays: Resume in the History tab continues from there" if checkpoint else "")
            )
        elif run.status == "failed":
            self.paused = None
            self.status.error(f"training failed: {run.error or 'the job process ended without saying why'}")
        elif run.kind == "ensemble":
            self.paused = None
            queued = float((run.job or {}).get("queued") or run.created)
            calibration = read_ensemble_info(run.model).get("calibration", {}) if run.model else {}
            self._ensemble_saved(Path(run.model), int(metrics.get("members") or 0), run.updated - queued, calibration)
        else:
            self.paused = None
            self.bundle = Path(run.model) if run.model else None
            self.progress.value, self.progress.bar_style = self.progress.max, "success"
            queued = float((run.job or {}).get("queued") or run.created)
            self.status.ok(
                f"{run.status} after {epochs} epochs in {run.updated - queued:.1f} s "
                f"({metrics.get('stop_reason', '')}); kept the weights of epoch {metrics.get('kept_epoch')}, "
                f"{metrics.get('threads')} CPU threads; model bundle {self.bundle}"
            )
            self.metrics.value = _metrics_html(metrics.get("test") or {})
            if self.bundle is not None:
                self.ctx.announce(bundle=self.bundle)
        self._buttons_idle(run.status == "paused")
        self.ctx.runs_changed()

    @panel_guard
    def _pause(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.job.pause()
            self.status.info("pausing: writing a checkpoint…")

    @panel_guard
    def _stop(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.job.stop("stopped from the Train panel")
            self.status.warn("stopping after the current batch…")
        elif self.paused is not None:  # a paused run: stop it for good (its checkpoint stays for History)
            registry, run_id = self.ctx.registry(), self.paused.get("run_id")
            if registry is not None and run_id:
                registry.finish_run(run_id, "stopped", error="stopped while paused, from the Train panel")
            self.paused = None
            self._buttons_idle(False)
            self.status.warn("the paused run was stopped; no model was saved (History can still resume it)")
            self.ctx.runs_changed()

    @panel_guard
    def _resume(self, _=None) -> None:
        if self._busy() or self.paused is None:
            return
        request, run_id = self.paused["request"], self.paused.get("run_id")
        if run_id and (request is None or self._as_job(request)):
            self.paused = None
            self._follow(submit_job(self.ctx.workspace, "resume", {"run_id": run_id}, limits=self.ctx.limits), request)
            return
        self._launch(request, resume=self.paused)

    @panel_guard
    def resume_run(self, run_id: str) -> None:
        """Resume a paused, stopped or killed run recorded in the registry, whichever surface started it."""
        registry = self.ctx.registry()
        if registry is None:
            raise ValueError("the run registry is not available")
        row = registry.get_run(run_id)
        if row.kind != "train" or row.status not in RESUMABLE:
            raise ValueError(
                f"run {row.name!r} is {row.status} ({row.kind}); "
                "only paused, stopped or failed training runs can be resumed"
            )
        request = TrainRequest.from_params(row.params)
        if self._busy():
            return
        self.paused = {"request": request, "run_id": run_id, "checkpoint": None}
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
            self.status.info(f"{_epoch_words(last)}: train {last['train_loss']:.4g}, validation {last['val_loss']:.4g}")
        self._flush_log()

    def _log(self, message: str, level: str, at: float | None = None) -> None:
        color = {"warning": "#9a6700", "error": "#cf222e", "timing": "#555"}.get(level, "#222")
        stamp = time.strftime("%H:%M:%S", time.localtime(at))  # at None: now
        self.log_lines.append(f"<div style='color:{color}'>{stamp} [{level}] {html.escape(message)}</div>")
        del self.log_lines[:-MAX_LOG_LINES]

    def _flush_log(self) -> None:
        self.log_view.value = (
            "<div class='wb-log' style='font-family:monospace;font-size:12px'>" + "".join(self.log_lines) + "</div>"
        )

    def _draw_loss(self) -> None:
        epochs = [h["epoch"] for h in self.history]
        self.loss.set_traces(
            {
                key: (epochs, [float(h.get(key, float("nan"))) for h in self.history])
                for key in ("train_loss", "train_loss_eval", "val_loss")
            }
        )

    def _buttons_idle(self, paused: bool) -> None:
        """Idle: Start; paused: Resume or Stop (which ends the paused run)."""
        self.start.disabled, self.pause.disabled, self.stop.disabled = False, True, not paused
        self.resume.disabled = not paused

    def _done(self, out: TrainingOutcome, request: TrainRequest) -> None:
        self._flush_log()
        self.last_run_id = out.run_id
        if out.status == "paused":
            self.paused = {"request": request, "run_id": out.run_id, "checkpoint": out.checkpoint}
            self.status.ok(
                f"paused after {out.epochs_done} epochs; checkpoint {out.checkpoint}: Resume continues there"
            )
        elif out.status == "stopped":
            self.paused = None
            kept = out.checkpoint is not None and out.checkpoint.is_file() and out.run_id is not None
            self.status.warn(
                f"stopped after {out.epochs_done} epochs; no model was saved"
                + ("; its last checkpoint stays: Resume in the History tab continues from there" if kept else "")
            )
        else:
            self.paused = None
            self.bundle = out.bundle
            self.progress.value, self.progress.bar_style = self.progress.max, "success"
            self.status.ok(
                f"{out.status} after {out.epochs_done} epochs in {self.job.seconds:.1f} s ({out.stop_reason}); "
                f"kept the weights of epoch {out.kept_epoch}, {out.summary.get('threads')} CPU threads; "
                f"model bundle {out.bundle}"
            )
            self.metrics.value = _metrics_html(out.metrics)
            self.ctx.announce(bundle=out.bundle)
        self._buttons_idle(out.status == "paused")
        self.ctx.runs_changed()

    def _failed(self, exc: BaseException) -> None:
        self._flush_log()
        self._buttons_idle(False)
        self.status.error(f"training failed: {type(exc).__name__}: {exc}")
        self.ctx.runs_changed()


def _epoch_words(record: dict[str, Any]) -> str:
    """ "epoch 3", or "member 2 of the ensemble, epoch 1" for an ensemble's relayed epoch record."""
    if "member" in record:
        return f"member {record['member']} of the ensemble, epoch {record.get('member_epoch', record['epoch'])}"
    return f"epoch {record['epoch']}"


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

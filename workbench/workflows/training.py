"""One training entry point for every surface: a :class:`TrainRequest` in, a recorded run and a model bundle out.

The command line (``workbench train``, ``workbench runs resume``), the Train and History panels,
the pipeline notebook and sweeps all call :func:`run_training` / :func:`resume_training`; none of
them trains, records or writes a bundle by itself.  So a run started on one surface can be
resumed on any other: the registry stores the whole request (``runs.params``), the trainer's
checkpoints are registered as they are written (a run killed mid-way resumes from the last one),
and the finished model is written to ``request.out`` and registered, whoever resumed it.

    request = TrainRequest(target="sld", data="ws/datasets/d1", out="ws/models/m1", train=TrainConfig(epochs=5))
    outcome = run_training(request, reporter, workspace.registry)       # → completed / paused / stopped
    outcome = resume_training(outcome.run_id, workspace.registry)       # a paused, stopped or killed run

``training/`` returns models and state; this module writes bundles through ``store/`` and records
runs in its registry.
"""

from __future__ import annotations

import math
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from ..analysis.trust import distribution_of_features
from ..data.preprocess import PreprocessConfig
from ..events import Event, Record, Reporter
from ..models.build import MODEL_KINDS
from ..models.settings import model_settings
from ..store.hub import CheckpointUploader, download_checkpoint
from ..store.model_bundle import save_model_bundle
from ..store.recorded import RecordedRun, recorded_run
from ..store.registry import Registry, RunRow
from ..training.chi_workflow import load_chi_scft, resume_chi, train_chi
from ..training.config import SplitSettings
from ..training.nr_workflow import resume_nr_training, train_nr_model
from ..training.on_the_fly import OnTheFly, resume_on_the_fly, train_on_the_fly
from ..training.trainer import TrainConfig, TrainResult

Target = Literal["sld", "params", "chi"]
RESUMABLE = ("paused", "failed", "stopped")
DEFAULT_KIND = {"sld": "compact", "params": "param", "chi": "chi"}
KINDS_OF = {"sld": ("compact", "parity_cnn"), "params": ("param", "param_bounds"), "chi": ("chi",)}
FINISHED = TrainResult.FINISHED  # completed, early-stopped, time-limit: a model is written
SUMMARY_METRICS = ("kept_epoch", "stop_reason", "threads", "data_mode", "curves_trained", "produced_per_s")


class TrainRequest(SplitSettings):
    """Everything a training run needs, typed; stored whole in the registry so any surface can resume it."""

    model_config = ConfigDict(extra="forbid")

    target: Target = Field("sld", description="sld: NR → SLD profile; params: NR → layer parameters; chi: SLD → χ")
    data: Path | None = Field(
        None,
        description="data-set folder (workbench generate, a pyreflect pair; chi: train_data.npy, train_pars.npy); "
        "not with on_the_fly",
    )
    on_the_fly: OnTheFly | None = Field(
        None,
        description="train on fresh curves generated from this stack for every batch instead of a data set",
    )
    out: Path = Field(description="model bundle folder to write when the run completes")
    checkpoint: Path | None = Field(
        None, description="checkpoint file (default: in the run's folder, else next to out)"
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    model: dict[str, Any] = Field(default_factory=dict, description="architecture: kind and its options")
    name: str | None = Field(None, description="run and model name (default: the out folder's name)")
    hub_repo: str | None = Field(None, description="Hub model repo that receives the checkpoints")
    hub_every: int = Field(1, ge=1, description="upload a checkpoint at most every N epochs")

    @field_validator("data", "out", "checkpoint")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return None if value is None else Path(value).expanduser().resolve()

    @model_validator(mode="after")
    def _one_source(self) -> TrainRequest:
        if self.data is None and self.on_the_fly is None:
            raise ValueError("give a data set (data) or on-the-fly generation (on_the_fly) to train on")
        if self.data is not None and self.on_the_fly is not None:
            raise ValueError("give a data set (data) or on-the-fly generation (on_the_fly), not both")
        if self.on_the_fly is not None and self.target == "chi":
            raise ValueError("on-the-fly training makes NR curves; an SLD → χ model trains on a χ data folder")
        return self

    @model_validator(mode="after")
    def _kind_fits_target(self) -> TrainRequest:
        kind = self.model.get("kind") or DEFAULT_KIND[self.target]
        if kind not in MODEL_KINDS:
            raise ValueError(f"model kind {kind!r} is unknown; expected one of {', '.join(MODEL_KINDS)}")
        if kind not in KINDS_OF[self.target]:
            raise ValueError(
                f"model kind {kind!r} does not fit target {self.target!r}: use {' or '.join(KINDS_OF[self.target])}"
            )
        if kind == "param_bounds" and self.data is not None:
            raise ValueError(
                "the prior-bounds parameter model (param_bounds) trains on fresh curves, each drawn inside its own "
                "random sub-range: train it on the fly (on_the_fly / --on-the-fly), not on a data set"
            )
        self.model = model_settings({**self.model, "kind": kind})
        return self

    @property
    def run_name(self) -> str:
        return self.name or self.out.name

    @property
    def data_mode(self) -> str:
        """``on-the-fly`` (fresh curves every batch) or ``data set``."""
        return "on-the-fly" if self.on_the_fly is not None else "data set"

    def preprocess(self) -> PreprocessConfig:
        return self.train.preprocess(self.validation_split, kind=self.model["kind"])

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> TrainRequest:
        """The request a run recorded, also from runs recorded before requests existed.

        Older command-line runs stored ``out`` and ``checkpoint``; older panel runs ``bundle_dir``
        and ``validation_split``; the pipeline notebook ``dataset`` and ``preprocess``.
        """
        values = {k: v for k, v in params.items() if k in cls.model_fields}
        if "out" not in values and params.get("bundle_dir"):
            values["out"] = params["bundle_dir"]
        if "data" not in values and params.get("dataset"):
            values["data"] = params["dataset"]
        split = (params.get("preprocess") or {}).get("split")
        if "validation_split" not in values and split:
            values["validation_split"] = split[1]
        missing = [k for k in ("data", "out") if not values.get(k) and not (k == "data" and values.get("on_the_fly"))]
        if missing:
            raise ValueError(f"the run does not record its {' and '.join(missing)}, so it cannot be resumed")
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ValueError(f"the run's recorded settings are not valid: {exc.errors()[0]['msg']}") from None


@dataclass
class TrainingOutcome:
    """How a run ended: status (completed, early-stopped, time-limit, paused, stopped), its model bundle and metrics.

    ``summary`` says which epoch's weights the model holds, why the run ended and the CPU threads it used.
    """

    status: str
    epochs_done: int
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    bundle: Path | None
    checkpoint: Path | None
    run_id: str | None = None
    model_version: int | None = None
    best_val_loss: float | None = None
    dataset_hash: str | None = None
    seconds: float = 0.0
    split: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def stop_reason(self) -> str:
        return str(self.summary.get("stop_reason", ""))

    @property
    def kept_epoch(self) -> int | None:
        return self.summary.get("kept_epoch")


def run_training(
    request: TrainRequest,
    reporter: Reporter | None = None,
    registry: Registry | None = None,
    *,
    resume_from: str | Path | None = None,
    run_id: str | None = None,
    epochs: int | None = None,
) -> TrainingOutcome:
    """Train as ``request`` says (or continue from the checkpoint ``resume_from``), write the bundle, record the run.

    With a ``registry`` the run is recorded from start to end (``run_id`` continues that run
    instead of starting one); without one nothing is recorded and the checkpoint goes next to
    ``request.out``.  Returns when the run completes, pauses (``reporter.pause``) or stops.
    """
    reporter = reporter if reporter is not None else Reporter()
    if registry is None:
        request = _with_checkpoint(request, request.out.with_suffix(".checkpoint.safetensors"))
        return _execute(request, reporter, None, resume_from, epochs)
    recording = (
        recorded_run(registry, "train", run_id=run_id, resume=True, reporter=reporter)
        if run_id
        else recorded_run(
            registry, "train", name=request.run_name, params=request.model_dump(mode="json"), reporter=reporter
        )
    )
    with recording as run:
        if request.checkpoint is None:
            request = _with_checkpoint(request, _run_folder(run, request) / "checkpoint.safetensors")
        registry.update_run(run.id, params=request.model_dump(mode="json"))
        return _execute(request, run.reporter, run, resume_from, epochs)


def resume_training(
    run_id: str,
    registry: Registry,
    reporter: Reporter | None = None,
    *,
    epochs: int | None = None,
    endpoint: str | None = None,
) -> TrainingOutcome:
    """Continue a paused, stopped or failed (killed) training run from its latest checkpoint, in the same run."""
    run = registry.find_run(run_id)
    if run.kind != "train":
        raise ValueError(f"run {run.id} is a {run.kind} run; only training runs can be resumed")
    if run.status not in RESUMABLE:
        raise ValueError(
            f"run {run.id} ({run.name}) is {run.status}; only a paused, stopped or failed run can be resumed"
        )
    request = TrainRequest.from_params(run.params)
    checkpoint = latest_checkpoint(registry, run, request, endpoint)
    registry.log(run.id, f"resuming from checkpoint {checkpoint}")
    return run_training(request, reporter, registry, resume_from=checkpoint, run_id=run.id, epochs=epochs)


def latest_checkpoint(registry: Registry, run: RunRow, request: TrainRequest, endpoint: str | None = None) -> Path:
    """The newest checkpoint of a run: registered on disk, else the request's file, else the Hub's copy."""
    local = registry.latest_checkpoint(run.id)
    if local is not None:
        return local
    if request.checkpoint is not None and request.checkpoint.is_file():
        return request.checkpoint
    hub_rows = [row for row in registry.checkpoints(run.id) if row.get("hub")]
    if hub_rows:
        latest = hub_rows[-1]
        dest = (
            Path(latest["path"])
            if latest["path"]
            else (request.checkpoint or request.out.with_suffix(".checkpoint.safetensors"))
        )
        return download_checkpoint(latest["hub"], dest, endpoint=endpoint)
    raise ValueError(f"run {run.id} ({run.name}) has no checkpoint to resume from (none on disk, none on the Hub)")


# ---------------------------------------------------------------------------- one run
def _with_checkpoint(request: TrainRequest, path: Path) -> TrainRequest:
    return request if request.checkpoint is not None else request.model_copy(update={"checkpoint": path.resolve()})


def _run_folder(run: RecordedRun, request: TrainRequest) -> Path:
    try:
        return run.dir
    except ValueError:  # a registry without a workspace root: beside the bundle
        return request.out.parent


def _execute(
    request: TrainRequest, reporter: Reporter, run: RecordedRun | None, resume_from, epochs: int | None
) -> TrainingOutcome:
    t0 = time.perf_counter()
    with ExitStack() as stack:
        if run is not None:
            listener = _checkpoint_listener(run)
            reporter.listeners.append(listener)
            stack.callback(reporter.listeners.remove, listener)
        uploader = _uploader(request, run, reporter)
        if uploader is not None:
            stack.enter_context(uploader)
        train = _train_chi if request.target == "chi" else _train_nr
        outcome = train(request, reporter, resume_from, epochs)
    outcome.seconds = time.perf_counter() - t0
    if run is not None:
        outcome.run_id = run.id
        outcome.model_version = record_training_result(run, outcome, request)
    return outcome


def _checkpoint_listener(run: RecordedRun):
    def listen(event: Event) -> None:
        if isinstance(event, Record) and event.name == "checkpoint":
            run.registry.add_checkpoint(run.id, Path(event.data["path"]).resolve(), int(event.data["epoch"]))

    return listen


def _uploader(request: TrainRequest, run: RecordedRun | None, reporter: Reporter) -> CheckpointUploader | None:
    if not request.hub_repo:
        return None
    uploader = CheckpointUploader(
        request.hub_repo,
        request.checkpoint,
        name=run.id if run is not None else request.run_name,
        every=request.hub_every,
        registry=run.registry if run is not None else None,
        run_id=run.id if run is not None else None,
        reporter=reporter,
    )
    reporter.listeners.append(uploader)
    return uploader


def _train_nr(request: TrainRequest, reporter: Reporter, resume_from, epochs: int | None) -> TrainingOutcome:
    if resume_from is not None and request.on_the_fly is not None:
        out = resume_on_the_fly(resume_from, reporter=reporter, epochs=epochs)
    elif resume_from is not None:
        out = resume_nr_training(resume_from, request.data, reporter=reporter, epochs=epochs)
    elif request.on_the_fly is not None:
        out = train_on_the_fly(
            request.on_the_fly,
            target=request.target,
            model=request.model,
            train=request.train,
            preprocess=request.preprocess(),
            checkpoint_path=request.checkpoint,
            reporter=reporter,
            name=request.run_name,
        )
    else:
        out = train_nr_model(
            request.data,
            target=request.target,
            model=request.model,
            train=request.train,
            preprocess=request.preprocess(),
            checkpoint_path=request.checkpoint,
            reporter=reporter,
            name=request.run_name,
        )
    res = out.result
    bundle = None
    if out.bundle_contents is not None:
        contents = _with_input_distribution(out.bundle_contents, out.trainer, request.train.seed)
        bundle = save_model_bundle(request.out, out.model, **contents, overwrite=True)
    return TrainingOutcome(
        res.status,
        res.epochs_done,
        res.history,
        out.metrics,
        bundle,
        request.checkpoint,
        best_val_loss=res.best_val_loss,
        dataset_hash=out.trainer.context["dataset"]["content_hash"],
        split={k: v for k, v in out.trainer.split.items()},
        summary={**res.summary(), "data_mode": request.data_mode, **_stream_stats(out.trainer)},
    )


def _stream_stats(trainer: Any) -> dict[str, Any]:
    """How many fresh curves an on-the-fly run trained on and how fast they came (nothing for a data set)."""
    stream = getattr(trainer, "stream", None)
    return stream.stats() if stream is not None else {}


def _with_input_distribution(contents: dict[str, Any], trainer: Any, seed: int) -> dict[str, Any]:
    """The bundle's normalization with the training inputs' distribution, so predictions can say how unlike it a
    measured curve is (:mod:`workbench.analysis.trust`); unchanged when the run has no held-out rows to measure."""
    features, split = getattr(trainer, "x", None), getattr(trainer, "split", None)
    features = getattr(features, "curves", features)  # a prior-bounds model's inputs: their curve part only
    if features is None or not split:
        return contents
    dist = distribution_of_features(features, split, seed)
    if dist is None:
        return contents
    return {**contents, "normalization": {**contents["normalization"], "input_distribution": dist}}


def _train_chi(request: TrainRequest, reporter: Reporter, resume_from, epochs: int | None) -> TrainingOutcome:
    _, profiles, chi, _, _ = load_chi_scft(request.data)
    if resume_from is not None:
        result = resume_chi(resume_from, profiles, chi, reporter=reporter, epochs=epochs)
    else:
        options = {k: v for k, v in request.model.items() if k != "kind"} or None
        result = train_chi(
            profiles,
            chi,
            model_config=options,
            train_config=request.train,
            seed=request.train.seed,
            reporter=reporter,
            checkpoint_path=request.checkpoint,
        )
    fit = result.train
    bundle = None
    if fit.status in FINISHED:
        parts = result.parts()
        bundle = save_model_bundle(
            request.out,
            result.model,
            task="chi",
            normalization=parts,
            metrics=parts["metrics"],
            history=result.history,
            train={**request.train.model_dump(mode="json"), "run": fit.summary()},
            name=request.run_name,
            overwrite=True,
        )
    return TrainingOutcome(
        fit.status,
        fit.epochs_done,
        fit.history,
        result.metrics if bundle else {},
        bundle,
        request.checkpoint,
        best_val_loss=fit.best_val_loss,
        summary=fit.summary(),
    )


# ---------------------------------------------------------------------------- the registry's view
def _last(history: list[dict], key: str) -> float | None:
    for row in reversed(history or []):
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return None


def record_training_result(run: RecordedRun, outcome: TrainingOutcome, request: TrainRequest) -> int | None:
    """Set the run's status and metrics, register its checkpoint, and register the bundle as a model.

    The model is registered under the run's name (next version) with train / val / test
    metrics; it becomes the active model of its target when that target has none yet.  Returns its version.
    """
    registry = run.registry
    history = outcome.history
    run.status = "completed" if outcome.finished else outcome.status
    run.metrics.update(
        {
            "epochs": outcome.epochs_done,
            "train_loss": _last(history, "train_loss_eval") or _last(history, "train_loss"),
            "val_loss": _last(history, "val_loss"),
            "best_val_loss": outcome.best_val_loss,
            "test": dict(outcome.metrics),
            **{k: outcome.summary[k] for k in SUMMARY_METRICS if k in outcome.summary},
        }
    )
    if outcome.checkpoint is not None and outcome.checkpoint.is_file():
        registry.add_checkpoint(run.id, outcome.checkpoint, outcome.epochs_done)
    if outcome.dataset_hash:
        registry.update_run(run.id, dataset_hash=outcome.dataset_hash)
    if outcome.bundle is None or run.status != "completed":
        return None
    bundle = outcome.bundle.resolve()
    run.model = str(bundle)
    model_metrics = {
        "train": {"loss": run.metrics["train_loss"]},
        "val": {"loss": outcome.best_val_loss if outcome.best_val_loss is not None else run.metrics["val_loss"]},
        "test": dict(outcome.metrics),
    }
    return registry.register_model(
        request.run_name,
        None,
        target=request.target,
        path=bundle,
        metrics=model_metrics,
        dataset_hash=outcome.dataset_hash,
        run_id=run.id,
        active=registry.active_model(request.target) is None,
    )

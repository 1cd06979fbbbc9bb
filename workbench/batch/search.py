"""Hyperparameter search with Optuna over the training settings of an NR model.

* storage: an SQLite file (or any Optuna storage URL); a study of the same name is loaded and
  continued (``load_if_exists``), so a search interrupted or finished can be resumed with more trials;
* sampler: TPE, seeded (re-seeded with the number of trials already in the study, so a resumed
  search does not repeat the first proposals);
* pruner: median pruner fed with each epoch's validation loss: a listener on the trainer's
  ``Record("train", "epoch", ...)`` events reports to the trial and stops the trainer when the
  trial should be pruned;
* parallel: ``workers > 1`` (or a scheduler address) runs ``study.optimize`` in separate processes
  on a Dask cluster, all sharing the one storage.

The objective is the best validation loss of the run (lower is better).  Each trial's settings
map back to ``TrainConfig`` and the model config through :func:`settings_from_params`, which is
what the search panel hands to the Train panel.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..data.dataset import load_dataset
from ..events import Cancelled, Event, Record, Reporter, StopSignal
from ..store.recorded import recorded_run
from ..store.workspace import Workspace
from ..training import TrainConfig
from ..training.nr_workflow import train_nr_model

if TYPE_CHECKING:
    import optuna
    import pandas as pd

STAGE = "search"
STOP_ATTR = "workbench_stop_requested"


class SearchSpace(BaseModel):
    """Ranges to search; ``None`` leaves a setting at its fixed value.

    ``(lo, hi)`` pairs are ranges (learning rate and weight decay on a log scale), lists are choices.
    ``layers``: encoder stages of the compact/param models, conv blocks of the parity CNN;
    ``width`` only applies to compact/param, ``kernel_size`` only to the parity CNN (odd values).
    """

    model_config = ConfigDict(extra="forbid")

    learning_rate: tuple[float, float] | None = (1e-4, 1e-2)
    batch_size: list[int] | None = [16, 32, 64]
    dropout: tuple[float, float] | None = (0.0, 0.3)
    layers: tuple[int, int] | None = (1, 4)
    width: list[int] | None = [8, 16, 32]
    kernel_size: list[int] | None = None
    optimizer: list[Literal["adam", "adamw", "sgd"]] | None = None
    weight_decay: tuple[float, float] | None = None

    @field_validator("learning_rate", "weight_decay", "dropout", "layers")
    @classmethod
    def _ordered(cls, v):
        if v is not None and not v[0] <= v[1]:
            raise ValueError(f"a range needs lo ≤ hi, got {list(v)}")
        return v

    @field_validator("batch_size", "width", "kernel_size", "optimizer")
    @classmethod
    def _not_empty(cls, v):
        if v is not None and len(v) == 0:
            raise ValueError("a list of choices needs at least one value")
        return v


class SearchConfig(BaseModel):
    """Everything a search needs besides the number of trials: data, fixed settings, space, study."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="data-set folder to train on")
    study_name: str = "workbench-search"
    storage: str = Field(
        "search.sqlite", description="SQLite file, or an Optuna storage URL (sqlite:///..., postgresql://...)"
    )
    target: Literal["sld", "params"] = "sld"
    model_kind: Literal["compact", "param", "parity_cnn"] | None = None
    epochs: int = Field(5, ge=1, le=100000)
    seed: int = Field(0, ge=0)
    device: str = "cpu"
    validation_split: float = Field(0.1, gt=0, lt=0.5)
    fixed: dict[str, Any] = Field(default_factory=dict, description="fixed training/model settings (not searched)")
    space: SearchSpace = Field(default_factory=SearchSpace)
    pruner_startup_trials: int = Field(2, ge=0, description="trials that complete before pruning starts")
    pruner_warmup_epochs: int = Field(0, ge=0, description="epochs of each trial that are never pruned")
    workspace: str | None = Field(None, description="record each trial in this workspace's registry")

    @property
    def kind(self) -> str:
        return self.model_kind or ("compact" if self.target == "sld" else "param")

    @property
    def storage_url(self) -> str:
        if "://" in self.storage:
            return self.storage
        return f"sqlite:///{Path(self.storage).expanduser().resolve()}"


def suggest(trial: optuna.Trial, space: SearchSpace) -> dict[str, Any]:
    """The trial's proposal for every searched setting (flat: learning_rate, layers, ...)."""
    p: dict[str, Any] = {}
    if space.learning_rate:
        p["learning_rate"] = trial.suggest_float("learning_rate", *space.learning_rate, log=True)
    if space.batch_size:
        p["batch_size"] = trial.suggest_categorical("batch_size", space.batch_size)
    if space.dropout:
        p["dropout"] = trial.suggest_float("dropout", *space.dropout)
    if space.layers:
        p["layers"] = trial.suggest_int("layers", *space.layers)
    if space.width:
        p["width"] = trial.suggest_categorical("width", space.width)
    if space.kernel_size:
        p["kernel_size"] = trial.suggest_categorical("kernel_size", space.kernel_size)
    if space.optimizer:
        p["optimizer"] = trial.suggest_categorical("optimizer", space.optimizer)
    if space.weight_decay:
        p["weight_decay"] = trial.suggest_float("weight_decay", *space.weight_decay, log=space.weight_decay[0] > 0)
    return p


TRAIN_KEYS = (
    "learning_rate",
    "batch_size",
    "optimizer",
    "weight_decay",
    "epochs",
    "seed",
    "device",
    "schedule",
    "momentum",
    "early_stopping",
)


def settings_from_params(
    params: dict[str, Any], kind: str = "compact", fixed: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Flat search parameters → ``{"train": {...TrainConfig fields}, "model": {...model config}}``."""
    flat = {**(fixed or {}), **params}
    train = {k: flat[k] for k in TRAIN_KEYS if k in flat}
    model: dict[str, Any] = {"kind": kind}
    if "dropout" in flat:
        model["dropout"] = flat["dropout"]
    if kind == "parity_cnn":
        if "layers" in flat:
            model["layers"] = flat["layers"]
        if "kernel_size" in flat:
            model["kernel_size"] = flat["kernel_size"]
    else:
        if "layers" in flat:
            model["stages"] = flat["layers"]
        if "width" in flat:
            model["width"] = flat["width"]
            model["latent"] = 4 * flat["width"]
    return {"train": train, "model": model}


def open_study(config: SearchConfig, *, seed_offset: int = 0) -> optuna.Study:
    """Create or load the study (``load_if_exists``) with a seeded TPE sampler and a median pruner."""
    import optuna  # heavy (optuna): imported on use

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if "://" not in config.storage:
        Path(config.storage).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=config.pruner_startup_trials, n_warmup_steps=config.pruner_warmup_epochs
    )
    study = optuna.create_study(
        storage=config.storage_url,
        study_name=config.study_name,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=config.seed),
        pruner=pruner,
    )
    # re-seed after loading: a resumed (or parallel) search must not replay the first proposals
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + seed_offset + len(study.trials))
    return study


class _TrialListener:
    """Feeds epoch validation losses to the trial; stops the trainer when pruned or when asked to."""

    def __init__(self, trial: optuna.Trial, outer: Reporter, stop: StopSignal, check_study_stop) -> None:
        self.trial, self.outer, self.stop, self.check_study_stop = trial, outer, stop, check_study_stop
        self.pruned_at: int | None = None
        self.last: float | None = None

    def __call__(self, event: Event) -> None:
        if self.outer.stop.stopped:
            self.stop.stop(self.outer.stop.reason or "stopped")
            return
        if not (isinstance(event, Record) and event.stage == "train" and event.name == "epoch"):
            return
        d = event.data
        value = d["val_loss"] if not math.isnan(d["val_loss"]) else d["train_loss_eval"]
        self.last = value
        self.trial.report(value, d["epoch"])
        self.outer.record(
            STAGE, "epoch", trial=self.trial.number, epoch=d["epoch"], val_loss=value, train_loss=d["train_loss"]
        )
        if self.check_study_stop():
            self.stop.stop("search stopped")
        elif self.trial.should_prune():
            self.pruned_at = d["epoch"]
            self.stop.stop(f"pruned at epoch {d['epoch']}")


def make_objective(config: SearchConfig, reporter: Reporter | None = None):
    """The objective: train with the trial's settings, return the best validation loss."""
    import optuna  # heavy (optuna): imported on use

    outer = reporter or Reporter()
    ds = load_dataset(config.dataset)
    v = config.validation_split
    registry = None
    if config.workspace:
        registry = Workspace(config.workspace).registry

    def objective(trial: optuna.Trial) -> float:
        params = suggest(trial, config.space)
        settings = settings_from_params(
            params, config.kind, {"epochs": config.epochs, "seed": config.seed, "device": config.device, **config.fixed}
        )
        train = TrainConfig(**settings["train"])
        preprocess = train.preprocess(v, seed=config.seed, kind=config.kind)
        stop = StopSignal()

        def study_stop() -> bool:
            return bool(trial.study.user_attrs.get(STOP_ATTR))

        listener = _TrialListener(trial, outer, stop, study_stop)
        trial_reporter = Reporter([listener], stop=stop)
        outer.record(STAGE, "trial", number=trial.number, state="RUNNING", params=params)

        def fit(rep: Reporter):
            return train_nr_model(
                ds,
                target=config.target,
                model=settings["model"],
                train=train,
                preprocess=preprocess,
                reporter=rep,
                name=f"{config.study_name}-trial-{trial.number}",
            )

        if registry is None:
            outcome = fit(trial_reporter)
        else:
            with recorded_run(
                registry,
                "train",
                name=f"{config.study_name}-trial-{trial.number}",
                params={**settings, "trial": trial.number, "study": config.study_name},
                dataset_hash=ds.content_hash,
                reporter=trial_reporter,
            ) as run:
                outcome = fit(run.reporter)
                run.metrics.update({**outcome.metrics, "best_val_loss": outcome.result.best_val_loss})
                if outcome.result.status == "stopped":
                    run.status = "stopped"
            trial.set_user_attr("run_id", run.id)
        result = outcome.result
        trial.set_user_attr("epochs_done", result.epochs_done)
        if result.status == "stopped":
            if listener.pruned_at is not None:
                raise optuna.TrialPruned(
                    f"validation loss {listener.last:.4g} at epoch {listener.pruned_at} is above the median"
                )
            raise Cancelled(stop.reason or "stopped")
        trial.set_user_attr("metrics", {k: v for k, v in outcome.metrics.items() if isinstance(v, (int, float))})
        return float(result.best_val_loss) if result.best_val_loss is not None else float("nan")

    return objective


# ------------------------------------------------------------------ results
@dataclass
class SearchResult:
    study_name: str
    storage: str
    trials: pd.DataFrame
    best_params: dict[str, Any] | None
    best_value: float | None
    best_settings: dict[str, Any] | None  # {"train": ..., "model": ...}: ready for TrainConfig / the Train panel

    @property
    def pruned(self) -> int:
        return int((self.trials["state"] == "PRUNED").sum()) if len(self.trials) else 0


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, last reported loss, epochs, seconds, the parameters."""
    import pandas as pd  # heavy (pandas): imported on use

    rows = []
    for t in study.get_trials(deepcopy=False):
        inter = t.intermediate_values
        last = inter[max(inter)] if inter else None
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "last_intermediate": last,
                "epochs_reported": len(inter),
                "seconds": seconds,
                **{f"param.{k}": v for k, v in t.params.items()},
                "run_id": t.user_attrs.get("run_id"),
            }
        )
    return pd.DataFrame(
        rows, columns=None if rows else ["number", "state", "value", "last_intermediate", "epochs_reported", "seconds"]
    )


def search_result(config: SearchConfig, study: optuna.Study | None = None) -> SearchResult:
    """The study's trials and its best trial's settings (``None`` until a trial completes)."""
    study = study or open_study(config)
    frame = trials_frame(study)
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE" and t.value is not None]
    if not complete:
        return SearchResult(config.study_name, config.storage_url, frame, None, None, None)
    best = min(complete, key=lambda t: t.value)
    fixed = {"epochs": config.epochs, "seed": config.seed, "device": config.device, **config.fixed}
    return SearchResult(
        config.study_name,
        config.storage_url,
        frame,
        dict(best.params),
        float(best.value),
        settings_from_params(best.params, config.kind, fixed),
    )


def _optimize_part(config_json: str, n_trials: int, seed_offset: int) -> int:
    """A Dask task: its own process's share of the trials on the shared storage."""
    import torch  # heavy (torch): imported on use

    torch.set_num_threads(1)
    config = SearchConfig.model_validate_json(config_json)
    study = open_study(config, seed_offset=seed_offset)
    study.optimize(make_objective(config), n_trials=n_trials, callbacks=[_stop_callback])
    return n_trials


def _stop_callback(study, trial) -> None:
    if study.user_attrs.get(STOP_ATTR):
        study.stop()


def run_search(
    config: SearchConfig,
    n_trials: int,
    *,
    reporter: Reporter | None = None,
    workers: int = 1,
    scheduler: Any = None,
    enqueue: list[dict[str, Any]] | None = None,
) -> SearchResult:
    """Add ``n_trials`` trials to the study (created or resumed) and return its state.

    ``workers == 1`` and no ``scheduler``: trials run here, one after the other.  Otherwise they run
    in ``workers`` Dask tasks (a ``LocalCluster`` of processes, or the given scheduler address),
    each running ``study.optimize`` on the shared storage.  ``enqueue``: parameter sets to try first.
    ``reporter.stop`` ends the search after the running epochs (raises :class:`Cancelled`).
    """
    if n_trials < 1:
        raise ValueError(f"the number of trials must be ≥ 1, got {n_trials}")
    if not Path(config.dataset).is_dir():
        raise ValueError(f"{config.dataset}: no such data-set folder")
    reporter = reporter or Reporter()
    study = open_study(config)
    study.set_user_attr(STOP_ATTR, "")  # a previous search's stop request does not carry over
    before = len(study.trials)
    for params in enqueue or []:
        study.enqueue_trial(params)
    reporter.log(
        STAGE, f"study {config.study_name!r} in {config.storage_url}: {before} trials so far, adding {n_trials}"
    )
    reporter.progress(STAGE, 0, n_trials, "trials")

    def after_trial(study, trial) -> None:
        done = len(study.trials) - before
        reporter.record(
            STAGE, "trial", number=trial.number, state=trial.state.name, value=trial.value, params=dict(trial.params)
        )
        reporter.progress(STAGE, min(done, n_trials), n_trials, "trials")

    if workers <= 1 and scheduler is None:
        study.optimize(make_objective(config, reporter), n_trials=n_trials, callbacks=[after_trial])
    else:
        _run_on_dask(config, n_trials, study, before, reporter, workers, scheduler)
    result = search_result(config, study)
    reporter.log(STAGE, f"{len(result.trials)} trials, {result.pruned} pruned; best value {result.best_value}")
    return result


def _run_on_dask(
    config: SearchConfig, n_trials: int, study, before: int, reporter: Reporter, workers: int, scheduler
) -> None:
    from distributed import Client, LocalCluster, wait  # heavy (distributed): imported on use

    if config.storage_url.startswith("sqlite:") and scheduler is not None:
        reporter.warn(STAGE, "an SQLite study is shared through the file system: every worker must see the same file")
    parts = [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]
    parts = [p for p in parts if p]
    cluster = None
    if isinstance(scheduler, Client):
        client = scheduler
    elif scheduler:
        client = Client(scheduler, timeout="20s")
    else:
        cluster = LocalCluster(
            n_workers=len(parts),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )
        client = Client(cluster)
    try:
        payload = config.model_dump_json()
        futures = [client.submit(_optimize_part, payload, k, 1000 * (i + 1), pure=False) for i, k in enumerate(parts)]
        seen: set[int] = set()
        while True:
            finished = [t for t in study.get_trials(deepcopy=False) if t.number >= before and t.state.is_finished()]
            for t in finished:
                if t.number not in seen:
                    seen.add(t.number)
                    reporter.record(
                        STAGE, "trial", number=t.number, state=t.state.name, value=t.value, params=dict(t.params)
                    )
                    reporter.progress(STAGE, min(len(seen), n_trials), n_trials, "trials")
            if reporter.stop.stopped:
                study.set_user_attr(STOP_ATTR, reporter.stop.reason or "stopped")
                wait(futures)
                raise Cancelled(reporter.stop.reason or "stopped")
            if all(f.done() for f in futures) and len(seen) >= len(
                [t for t in study.get_trials(deepcopy=False) if t.number >= before and t.state.is_finished()]
            ):
                break
            time.sleep(0.5)
        for f in futures:
            f.result()  # a task that failed outside a trial (bad data set, storage) raises here
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
        elif not isinstance(scheduler, Client):
            client.close()

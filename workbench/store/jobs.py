"""Recorded training jobs: what a finished, paused or stopped training leaves in the registry, and resume.

The CLI, the UI and notebooks record a training run with :func:`recorded_run` and hand the result
to :func:`record_training_result`; :func:`resume_run` continues a paused run from its latest
checkpoint (a local file, or the copy a :class:`~workbench.store.hub.CheckpointUploader` put on
the Hub) and records the continuation in the same run, so its history reads as one.

A training run records in its ``params``: ``target`` (sld, params or chi), ``data`` (the data-set
folder), ``out`` (the bundle folder to write) and ``checkpoint`` (the checkpoint file).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..events import Reporter
from .recorded import RecordedRun, recorded_run
from .registry import RunRow
from .workspace import Workspace

RESUMABLE = ("paused", "failed", "stopped")


def _last(history: list[dict], key: str) -> float | None:
    for row in reversed(history or []):
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            return float(value)
    return None


def record_training_result(
    run: RecordedRun,
    *,
    status: str,
    epochs_done: int,
    history: list[dict],
    target: str,
    metrics: dict[str, Any] | None = None,
    bundle: str | Path | None = None,
    checkpoint: str | Path | None = None,
    dataset_hash: str | None = None,
    best_val_loss: float | None = None,
) -> int | None:
    """Set the run's status and metrics, record a pause checkpoint and register the bundle as a model.

    ``status`` is the trainer's (completed, early-stopped, paused, stopped).  The model is
    registered under the bundle folder's name (next version) with train / val / test metrics; it
    becomes the active model of its target when that target has none yet.  Returns its version.
    """
    registry = run.registry
    run.status = {"early-stopped": "completed"}.get(status, status)
    run.metrics.update({
        "epochs": epochs_done, "train_loss": _last(history, "train_loss_eval") or _last(history, "train_loss"),
        "val_loss": _last(history, "val_loss"), "best_val_loss": best_val_loss, "test": dict(metrics or {}),
    })
    if checkpoint is not None and Path(checkpoint).is_file():
        registry.add_checkpoint(run.id, Path(checkpoint).resolve(), epochs_done)
    if dataset_hash:
        registry.update_run(run.id, dataset_hash=dataset_hash)
    if bundle is None or run.status != "completed":
        return None
    bundle = Path(bundle).resolve()
    run.model = str(bundle)
    model_metrics = {"train": {"loss": run.metrics["train_loss"]}, "val": {"loss": run.metrics["val_loss"]},
                     "test": dict(metrics or {})}
    return registry.register_model(bundle.name, None, target=target, path=bundle, metrics=model_metrics,
                                   dataset_hash=dataset_hash, run_id=run.id, active=registry.active_model(target) is None)


def _checkpoint_for(workspace: Workspace, run: RunRow, endpoint: str | None) -> Path:
    registry = workspace.registry
    local = registry.latest_checkpoint(run.id)
    if local is not None:
        return local
    hub_rows = [row for row in registry.checkpoints(run.id) if row.get("hub")]
    if hub_rows:
        from .hub import download_checkpoint

        latest = hub_rows[-1]
        dest = Path(latest["path"]) if latest["path"] else workspace.run_dir(run.id) / "checkpoint.safetensors"
        return download_checkpoint(latest["hub"], dest, endpoint=endpoint)
    raise ValueError(f"run {run.id} has no checkpoint to resume from (none on disk, none on the Hub)")


def resume_run(workspace: Workspace, run_id: str, reporter: Reporter | None = None, *,
               epochs: int | None = None, endpoint: str | None = None) -> RunRow:
    """Continue a paused (or crashed / stopped) training run from its latest checkpoint; returns the updated run."""
    registry = workspace.registry
    run = registry.find_run(run_id)
    if run.kind != "train":
        raise ValueError(f"run {run.id} is a {run.kind} run; only training runs can be resumed")
    if run.status not in RESUMABLE:
        raise ValueError(f"run {run.id} is {run.status}; only a paused, stopped or failed run can be resumed")
    params = run.params
    if "data" not in params:
        raise ValueError(f"run {run.id} does not record its data set ('data' parameter), so it cannot be resumed")
    checkpoint = _checkpoint_for(workspace, run, endpoint)
    target = params.get("target", "sld")
    with recorded_run(registry, "train", run_id=run.id, resume=True, reporter=reporter) as rec:
        rec.log(f"resuming from checkpoint {checkpoint}")
        if target == "chi":
            from ..training.chi_workflow import load_chi_scft, resume_chi
            from .model_bundle import save_model_bundle

            _, profiles, chi, _, _ = load_chi_scft(params["data"])
            result = resume_chi(checkpoint, profiles, chi, reporter=rec.reporter, epochs=epochs)
            fit = result.train
            bundle = None
            if fit.status in ("completed", "early-stopped") and params.get("out"):
                parts = result.parts()
                bundle = save_model_bundle(params["out"], result.model, task="chi", normalization=parts,
                                           metrics=parts["metrics"], history=result.history,
                                           train=params.get("train") or {}, name=Path(params["out"]).name, overwrite=True)
            record_training_result(rec, status=fit.status, epochs_done=fit.epochs_done, history=fit.history,
                                   target=target, metrics=result.metrics, bundle=bundle, checkpoint=checkpoint,
                                   best_val_loss=fit.best_val_loss)
        else:
            from ..training.nr_workflow import resume_nr_training

            outcome = resume_nr_training(checkpoint, params["data"], bundle_dir=params.get("out"), reporter=rec.reporter,
                                         epochs=epochs)
            res = outcome.result
            record_training_result(rec, status=res.status, epochs_done=res.epochs_done, history=res.history,
                                   target=target, metrics=outcome.metrics, bundle=outcome.bundle, checkpoint=checkpoint,
                                   dataset_hash=outcome.trainer.context["dataset"]["content_hash"],
                                   best_val_loss=res.best_val_loss)
    return registry.get_run(run.id)

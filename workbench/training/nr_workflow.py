"""Training workflows on NR data sets: NR → SLD profile and NR → layer parameters.

From a data set on disk (memory-mapped, any size) to a trained model and everything a bundle
needs to predict with it: seeded split kept as indices, preprocessing fitted on the training split
only, the one trainer, test metrics in physical units.  Writing the bundle is the caller's job
(:func:`workbench.workflows.training.run_training` writes it through ``store/``).  A paused run resumes
from its checkpoint on exactly the same data set (checked by content hash) and split.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..analysis.metrics import nr_metrics, parameter_metrics, sld_metrics
from ..analysis.profile_nr import reflectivity_of_profile
from ..data.dataset import Dataset, dataset_hash, load_dataset
from ..data.family import stack_from_meta
from ..data.parameters import free_parameter_columns
from ..data.preprocess import STD_FLOOR, Normalizer, PreprocessConfig, log_reflectivity, split_indices
from ..events import Reporter
from ..models import build_model
from ..models.task import Task
from ..physics import Probe
from .checkpoint import load_checkpoint
from .profile_loss import profile_task
from .trainer import TrainConfig, Trainer, TrainResult

Target = Literal["sld", "params"]
TASKS = {"sld": "nr_sld", "params": "nr_params"}


class Features:
    """Lazily transformed rows of a (memory-mapped) array: ``features[idx]`` → float32 model input/target.

    With ``index`` it is a view on those rows only (slices index into ``index``), which is how the
    normalisers stream through the training split of a data set larger than memory.
    """

    def __init__(self, source: np.ndarray, transform=None, index: np.ndarray | None = None) -> None:
        self.source, self.transform, self.index = source, transform or (lambda a: a), index

    def __len__(self) -> int:
        return len(self.source) if self.index is None else len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self),)

    def __getitem__(self, idx) -> np.ndarray:
        rows = idx if self.index is None else self.index[idx]
        return self.transform(np.asarray(self.source[rows]))


@dataclass
class Prepared:
    x: Features
    y: Features
    split: dict[str, np.ndarray]
    normalization: dict[str, Any]
    names: list[str] | None = None
    bounds: np.ndarray | None = None
    ranges: np.ndarray | None = None  # prior-bounds model: each row's sub-range (N, P, 2) in the parameters' units


def prepare(ds: Dataset, target: Target, pre: PreprocessConfig, split: dict[str, np.ndarray] | None = None) -> Prepared:
    """Split (``pre``'s seeded fractions unless ``split`` is given), fit the normalisers on the training rows only,
    and wrap the arrays lazily."""
    split = split if split is not None else split_indices(ds.n, pre.split, pre.seed)
    train = split["train"]

    def log_r(nr: np.ndarray) -> np.ndarray:
        r = np.asarray(nr[:, 1, :], dtype=np.float64)
        return log_reflectivity(r, pre.clip_min) if pre.apply_log_transform else r

    x_norm = Normalizer(pre.normalization, pre.per_point, std_floor=STD_FLOOR).fit(
        Features(ds.nr, log_r, np.sort(train))
    )
    x = Features(ds.nr, lambda a: x_norm.transform(log_r(a)))
    normalization = {"preprocess": pre.model_dump(mode="json"), "x": x_norm.to_dict()}
    if target == "sld":
        y_norm = Normalizer(pre.normalization, pre.per_point, std_floor=STD_FLOOR).fit(
            Features(ds.sld, None, np.sort(train))
        )
        y = Features(ds.sld, y_norm.transform)
        normalization["y"] = y_norm.to_dict()
        return Prepared(x, y, split, normalization)
    cols, names, bounds = free_parameter_columns(ds)
    lo, span = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    y = Features(ds.params, lambda a: ((np.asarray(a)[:, cols] - lo) / span).astype(np.float32))
    normalization["y"] = {"method": "bounds", "names": names, "bounds": bounds.tolist(), "columns": cols}
    return Prepared(x, y, split, normalization, names, bounds)


@dataclass
class Outcome:
    """A finished (or paused / stopped) training: the model, its test metrics and what its bundle holds."""

    result: TrainResult
    model: torch.nn.Module
    metrics: dict[str, Any]
    trainer: Trainer
    bundle_contents: dict[str, Any] | None = None  # keyword arguments of save_model_bundle; None unless completed


def _dataset_ref(ds: Dataset) -> dict[str, Any]:
    return {
        "path": str(ds.path) if ds.path else None,
        "content_hash": ds.content_hash or dataset_hash(ds),
        "curves": ds.n,
    }


def train_nr_model(
    dataset: Dataset | str | Path,
    *,
    target: Target = "sld",
    model: dict[str, Any] | None = None,
    train: TrainConfig | None = None,
    preprocess: PreprocessConfig | None = None,
    checkpoint_path: str | Path | None = None,
    reporter: Reporter | None = None,
    name: str | None = None,
) -> Outcome:
    """Train an NR → SLD (``target="sld"``) or NR → parameters (``"params"``) model."""
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    train = train or TrainConfig()
    model_config = default_model_config(target, model)
    pre = preprocess or train.preprocess(kind=model_config["kind"])
    prep = prepare(ds, target, pre)
    n_q, n_z = ds.nr.shape[2], ds.sld.shape[2]
    if model_config["kind"] == "param_bounds":
        raise ValueError(
            "the prior-bounds parameter model (param_bounds) trains on fresh curves, each drawn inside its own random "
            "sub-range: train it on the fly (--on-the-fly), not on a stored data set"
        )
    if model_config["kind"] == "param":
        model_config.update(n_q=n_q, n_params=len(prep.names))
    else:
        model_config.update(n_q=n_q, n_z=n_z)
    torch.manual_seed(train.seed)
    net = build_model(model_config)
    context = {"target": target, "dataset": _dataset_ref(ds), "normalization": prep.normalization, "name": name}
    task = loss_task(target, model_config["kind"], ds, prep, train.profile_weight)
    trainer = Trainer(
        net,
        prep.x,
        prep.y,
        prep.split,
        train,
        task=task,
        reporter=reporter,
        checkpoint_path=checkpoint_path,
        context=context,
    )
    result = trainer.fit()
    return _finish(trainer, result, ds, prep, name)


def resume_nr_training(
    checkpoint_path: str | Path,
    dataset: Dataset | str | Path,
    *,
    reporter: Reporter | None = None,
    epochs: int | None = None,
) -> Outcome:
    """Continue a paused run on the same data set (verified by content hash) and split."""

    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    _, meta, _ = load_checkpoint(checkpoint_path)
    context = meta["context"]
    expected = context["dataset"]["content_hash"]
    actual = ds.content_hash or dataset_hash(ds)
    if expected != actual:
        raise ValueError(
            f"{checkpoint_path} was trained on data set {expected[:12]}…, but {ds.path} is {actual[:12]}…; resume on "
            "the same data"
        )
    pre = PreprocessConfig(**context["normalization"]["preprocess"])
    prep = prepare(ds, context["target"], pre)
    task = loss_task(context["target"], meta["model_config"]["kind"], ds, prep, resumed_profile_weight(meta))
    trainer = Trainer.resume(checkpoint_path, prep.x, prep.y, task=task, reporter=reporter, epochs=epochs)
    result = trainer.fit()
    return _finish(trainer, result, ds, prep, context.get("name"))


def default_model_config(target: Target, model: dict[str, Any] | None) -> dict[str, Any]:
    """``model`` with its kind filled in: the compact model for SLD, the parameter regressor for parameters."""
    return {"kind": "compact" if target == "sld" else "param", **(model or {})}


def loss_task(target: Target, kind: str, ds: Dataset, prep: Prepared, profile_weight: float) -> Task | None:
    """The training loss: a parameter model's (``param``) with the SLD-profile term of its family's stack, else
    None (the trainer's plain MSE)."""
    stack_info = ds.meta.get("stack")
    if target != "params" or kind != "param" or not stack_info or not profile_weight:
        return None
    return profile_task(stack_from_meta(stack_info), prep.normalization["y"]["columns"], profile_weight)


def resumed_profile_weight(meta: dict[str, Any]) -> float:
    """The profile weight a checkpoint was trained with (0 for checkpoints from before the setting existed)."""
    return float(meta["train_config"].get("profile_weight", 0.0))


def _finish(trainer: Trainer, result: TrainResult, ds: Dataset, prep: Prepared, name: str | None) -> Outcome:
    if not result.finished:
        return Outcome(result, trainer.model, {}, trainer)
    metrics = evaluate(trainer.model, ds, prep, prep.split["test"])
    target = trainer.context["target"]
    data = {
        "q": ds.q.tolist(),
        "dataset": trainer.context["dataset"],
        "probe": ds.meta.get("probe", {}),
        "stack": ds.meta.get("stack"),
        "sld_points": int(ds.sld.shape[2]),
    }
    if target == "params":
        data["parameters"] = {"names": prep.names, "bounds": prep.bounds.tolist()}
    contents = {
        "task": TASKS[target],
        "normalization": prep.normalization,
        "data": data,
        "train": {**trainer.config.model_dump(mode="json"), "run": result.summary()},
        "metrics": metrics,
        "history": result.history,
        "name": name,
    }
    return Outcome(result, trainer.model, metrics, trainer, contents)


@torch.no_grad()
def evaluate(
    model: torch.nn.Module, ds: Dataset, prep: Prepared, indices: np.ndarray, nr_curves: int = 100
) -> dict[str, Any]:
    """Test metrics in physical units (and, for SLD models, the NR computed from predicted profiles)."""
    if len(indices) == 0:
        return {}
    model.eval()
    device = next(model.parameters()).device
    idx = np.sort(indices)
    preds = []
    for s in range(0, len(idx), 512):
        preds.append(model(torch.as_tensor(prep.x[idx[s : s + 512]], device=device)).cpu().numpy())
    pred = np.concatenate(preds)
    if prep.names is None:
        y_norm = Normalizer.from_dict(prep.normalization["y"])
        pred_phys = y_norm.inverse(pred)
        true = np.asarray(ds.sld[idx], dtype=np.float64)
        out: dict[str, Any] = sld_metrics(true, pred_phys)
        sub = idx[:nr_curves]
        meta_probe = ds.meta.get("probe", {})
        probe = Probe(ds.q, dq_over_q=meta_probe.get("dq_over_q", 0.0294855), dq_is_fwhm=True)
        computed = reflectivity_of_profile(pred_phys[: len(sub), 0], pred_phys[: len(sub), 1], probe)
        out.update({f"computed_nr_{k}": v for k, v in nr_metrics(np.asarray(ds.nr[sub, 1]), computed).items()})
        out["test_curves"] = len(idx)
        return out
    lo, span = prep.bounds[:, 0], prep.bounds[:, 1] - prep.bounds[:, 0]
    if prep.ranges is not None:  # positions inside each row's own sub-range
        lo, span = prep.ranges[idx, :, 0], prep.ranges[idx, :, 1] - prep.ranges[idx, :, 0]
    cols = prep.normalization["y"]["columns"]
    true = np.asarray(ds.params[idx])[:, cols]
    out = parameter_metrics(true, lo + pred * span, prep.names)
    out["test_curves"] = len(idx)
    return out

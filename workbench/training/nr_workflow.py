"""Training workflows on NR data sets: NR → SLD profile and NR → layer parameters.

From a data set on disk (memory-mapped, any size) to a model bundle: seeded split kept as
indices, preprocessing fitted on the training split only, the one trainer, test metrics in
physical units, and a bundle that carries everything needed to predict.  A paused run resumes
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
from ..data.bundle import Dataset, dataset_hash, load_dataset
from ..data.preprocess import Normalizer, PreprocessConfig, log_reflectivity, split_indices
from ..events import Reporter
from ..models import build_model
from ..physics import Probe
from ..physics.stack import FilmStack
from ..store.model_bundle import save_model_bundle
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


def free_parameter_columns(ds: Dataset) -> tuple[list[int], list[str], np.ndarray]:
    """Columns of the parameter table that vary (stack bounds with lo < hi), their names and bounds."""
    bound_list = ds.meta.get("stack", {}).get("layer_bound")
    if ds.params is None or bound_list is None:
        raise ValueError(f"{ds.path}: the data set has no parameter table with bounds (needed for a parameter model)")
    cols, names, bounds = [], [], []
    for col, (b, name) in enumerate(zip(bound_list, ds.parameter_names)):
        lo, hi = b["bounds"]
        if hi > lo:
            cols.append(col)
            names.append(name)
            bounds.append((lo, hi))
    return cols, names, np.asarray(bounds, dtype=np.float64)


def prepare(ds: Dataset, target: Target, pre: PreprocessConfig) -> Prepared:
    """Split, fit the normalisers on the training rows only, and wrap the arrays lazily."""
    split = split_indices(ds.n, pre.split, pre.seed)
    train = split["train"]

    def log_r(nr: np.ndarray) -> np.ndarray:
        r = np.asarray(nr[:, 1, :], dtype=np.float64)
        return log_reflectivity(r, pre.clip_min) if pre.apply_log_transform else r

    x_norm = Normalizer(pre.normalization, pre.per_point).fit(Features(ds.nr, log_r, np.sort(train)))
    x = Features(ds.nr, lambda a: x_norm.transform(log_r(a)))
    normalization = {"preprocess": pre.model_dump(mode="json"), "x": x_norm.to_dict()}
    if target == "sld":
        y_norm = Normalizer(pre.normalization, pre.per_point).fit(Features(ds.sld, None, np.sort(train)))
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
    result: TrainResult
    model: torch.nn.Module
    metrics: dict[str, Any]
    bundle: Path | None
    trainer: Trainer


def _dataset_ref(ds: Dataset) -> dict[str, Any]:
    return {"path": str(ds.path) if ds.path else None, "content_hash": ds.content_hash or dataset_hash(ds), "curves": ds.n}


def train_nr_model(
    dataset: Dataset | str | Path,
    *,
    target: Target = "sld",
    model: dict[str, Any] | None = None,
    train: TrainConfig | None = None,
    preprocess: PreprocessConfig | None = None,
    bundle_dir: str | Path | None = None,
    checkpoint_path: str | Path | None = None,
    reporter: Reporter | None = None,
    name: str | None = None,
) -> Outcome:
    """Train an NR → SLD (``target="sld"``) or NR → parameters (``"params"``) model."""
    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    train = train or TrainConfig()
    pre = preprocess or PreprocessConfig(seed=train.seed)
    prep = prepare(ds, target, pre)
    n_q, n_z = ds.nr.shape[2], ds.sld.shape[2]
    model_config = {"kind": "compact" if target == "sld" else "param", **(model or {})}
    if model_config["kind"] == "param":
        model_config.update(n_q=n_q, n_params=len(prep.names))
    else:
        model_config.update(n_q=n_q, n_z=n_z)
    torch.manual_seed(train.seed)
    net = build_model(model_config)
    context = {"target": target, "dataset": _dataset_ref(ds), "normalization": prep.normalization, "name": name}
    trainer = Trainer(net, prep.x, prep.y, prep.split, train, reporter=reporter, checkpoint_path=checkpoint_path, context=context)
    result = trainer.fit()
    return _finish(trainer, result, ds, prep, bundle_dir, name)


def resume_nr_training(
    checkpoint_path: str | Path,
    dataset: Dataset | str | Path,
    *,
    bundle_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    epochs: int | None = None,
) -> Outcome:
    """Continue a paused run on the same data set (verified by content hash) and split."""
    from .checkpoint import load_checkpoint

    ds = dataset if isinstance(dataset, Dataset) else load_dataset(dataset)
    _, meta, _ = load_checkpoint(checkpoint_path)
    context = meta["context"]
    expected = context["dataset"]["content_hash"]
    actual = ds.content_hash or dataset_hash(ds)
    if expected != actual:
        raise ValueError(
            f"{checkpoint_path} was trained on data set {expected[:12]}…, but {ds.path} is {actual[:12]}…; resume on the same data"
        )
    pre = PreprocessConfig(**context["normalization"]["preprocess"])
    prep = prepare(ds, context["target"], pre)
    trainer = Trainer.resume(checkpoint_path, prep.x, prep.y, reporter=reporter, epochs=epochs)
    result = trainer.fit()
    return _finish(trainer, result, ds, prep, bundle_dir, context.get("name"))


def _finish(trainer: Trainer, result: TrainResult, ds: Dataset, prep: Prepared, bundle_dir, name) -> Outcome:
    metrics: dict[str, Any] = {}
    bundle = None
    if result.status in ("completed", "early-stopped"):
        metrics = evaluate(trainer.model, ds, prep, prep.split["test"])
        if bundle_dir is not None:
            target = trainer.context["target"]
            data = {"q": ds.q.tolist(), "dataset": trainer.context["dataset"], "probe": ds.meta.get("probe", {}),
                    "stack": ds.meta.get("stack"), "sld_points": int(ds.sld.shape[2])}
            if target == "params":
                data["parameters"] = {"names": prep.names, "bounds": prep.bounds.tolist()}
            bundle = save_model_bundle(
                bundle_dir, trainer.model, task=TASKS[target], normalization=prep.normalization, data=data,
                train=trainer.config.model_dump(mode="json"), metrics=metrics, history=result.history, name=name,
                overwrite=True,
            )
    return Outcome(result, trainer.model, metrics, bundle, trainer)


@torch.no_grad()
def evaluate(model: torch.nn.Module, ds: Dataset, prep: Prepared, indices: np.ndarray, nr_curves: int = 100) -> dict[str, Any]:
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
    cols = prep.normalization["y"]["columns"]
    true = np.asarray(ds.params[idx])[:, cols]
    out = parameter_metrics(true, lo + pred * span, prep.names)
    out["test_curves"] = len(idx)
    return out


def stacks_from_parameters(bundle_config: dict[str, Any], values: np.ndarray) -> list[FilmStack]:
    """Film stacks from predicted free-parameter values (N, P), fixed parameters at their bound value."""
    stack_info = bundle_config["data"]["stack"]
    base = FilmStack.from_pyreflect(stack_info["layer_desc"], stack_info["layer_bound"])
    names = bundle_config["data"]["parameters"]["names"]
    by_name = {f"{base.layers[b.i].name}.{b.par}": b for b in base.bounds}
    stacks = []
    for row in np.atleast_2d(values):
        s = base
        for b in base.bounds:
            if b.fixed:
                s = s.with_value(b.i, b.par, b.lo)
        for name, v in zip(names, row):
            b = by_name[name]
            s = s.with_value(b.i, b.par, float(np.clip(v, b.lo, b.hi)))
        stacks.append(s)
    return stacks

"""SLD profile → χ workflow: load the SCFT set, train the (V)AE + MLP, score it, predict with flags.

pyreflect's χ workflow, done right:

* the split is seeded (80/10/10) and both normalisers (profiles: one global min-max to [0, 1],
  matching the decoder's sigmoid; χ: z-score per parameter) are fitted on the **training rows only**;
* metrics are reported in physical units on the held-out test split (MAE and R² per χ);
* a prediction outside the χ range seen in training, or made from a profile whose SLD values lie
  outside the training profiles' range, or that the autoencoder reconstructs far worse than the
  held-out validation profiles (a profile unlike anything it was trained on), is flagged — never
  reported silently.

Everything the prediction needs besides the weights (normalisers, ranges, names) is plain JSON
(:meth:`ChiResult.parts`), and travels in the checkpoint's context so a paused run can resume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.preprocess import Normalizer, split_indices
from ..events import Reporter
from ..models.chi import ChiModel, ChiTask
from .checkpoint import load_checkpoint
from .trainer import TrainConfig, Trainer, TrainResult

CHI_NAMES = ("chi_AB", "chi_substrate", "chi_air")
# The z grid of the chi-scft set (Å): experiment.txt's first column, which the profiles share.
SCFT_Z_START = -19.78863157894737
SCFT_Z_STEP = 19.78863157894737
PROFILE_TOLERANCE = 0.05  # fraction of the training SLD span a profile may exceed it by unflagged
RECON_FACTOR = (
    3.0  # a profile reconstructed worse than this × the validation 99th percentile is unlike the training set
)


# ------------------------------------------------------------------ data
DEFAULT_WHITEN = 16


def load_chi_experiment(path: str | Path, z_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z, SLD) of a two-column text profile, checked to lie on the training ``z_grid``."""
    path = Path(path)
    try:
        table = np.loadtxt(path, ndmin=2)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read a two-column (z, SLD) text table: {exc}") from exc
    if table.shape[1] < 2:
        raise ValueError(f"{path}: expected two columns (z in Å, SLD in 1e-6 Å⁻²), found {table.shape[1]}")
    z, sld = table[:, 0], table[:, 1]
    if len(z) != len(z_grid):
        raise ValueError(
            f"{path}: {len(z)} points, but the training profiles have {len(z_grid)} (z from {z_grid[0]:.4g} to "
            f"{z_grid[-1]:.4g} Å)"
        )
    tol = 1e-3 * float(np.median(np.abs(np.diff(z_grid)))) if len(z_grid) > 1 else 1e-6
    bad = np.flatnonzero(np.abs(z - z_grid) > tol)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{path}: z grid does not match the training grid: point {i + 1} is at {z[i]:.6g} Å, the training grid "
            f"has {z_grid[i]:.6g} Å ({bad.size} points differ); resample the profile onto the training grid first"
        )
    if not np.all(np.isfinite(sld)):
        raise ValueError(
            f"{path}: SLD column has non-finite values at points {np.flatnonzero(~np.isfinite(sld))[:5] + 1}"
        )
    return z, sld


def load_chi_scft(folder: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(z, profiles (N, P), χ (N, 3), experiment z, experiment SLD) of the chi-scft folder, validated."""
    folder = Path(folder)
    files = {name: folder / name for name in ("train_data.npy", "train_pars.npy", "experiment.txt")}
    for path in files.values():
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: missing (the chi-scft set needs train_data.npy, train_pars.npy, experiment.txt)"
            )
    profiles = np.load(files["train_data.npy"], allow_pickle=False)
    chi = np.load(files["train_pars.npy"], allow_pickle=False)
    if profiles.ndim != 2:
        raise ValueError(f"{files['train_data.npy']}: expected (N, points) SLD profiles, got shape {profiles.shape}")
    if chi.ndim != 2 or chi.shape[1] != len(CHI_NAMES):
        raise ValueError(
            f"{files['train_pars.npy']}: expected (N, {len(CHI_NAMES)}) columns {', '.join(CHI_NAMES)}, got shape "
            f"{chi.shape}"
        )
    if len(chi) != len(profiles):
        raise ValueError(
            f"{files['train_pars.npy']}: {len(chi)} rows, but {files['train_data.npy']} has {len(profiles)} profiles"
        )
    for name, arr in (("train_data.npy", profiles), ("train_pars.npy", chi)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{files[name]}: contains non-finite values")
    z = SCFT_Z_START + SCFT_Z_STEP * np.arange(profiles.shape[1])
    exp_z, exp_sld = load_chi_experiment(files["experiment.txt"], z)
    return z, profiles.astype(np.float64), chi.astype(np.float64), exp_z, exp_sld


# ------------------------------------------------------------------ results
@dataclass
class ChiFlags:
    """Out-of-range flags of a prediction.

    ``chi``: (N, n_chi) True where the predicted χ lies outside the training range of that χ.
    ``profile``: (N,) True where the input profile leaves the training SLD range by more than the
    tolerance; ``profile_excess``: (N,) how far outside it goes, in 1e-6 Å⁻² (0 when inside).
    ``unlike_training``: (N,) True where the reconstruction RMSE ``recon_rmse`` (1e-6 Å⁻²) exceeds
    the limit set on the validation split: the profile is off the manifold the model learned, so
    even an in-range χ is an extrapolation.
    """

    chi: np.ndarray
    profile: np.ndarray
    profile_excess: np.ndarray
    unlike_training: np.ndarray
    recon_rmse: np.ndarray

    @property
    def any(self) -> np.ndarray:
        """(N,) True where anything about the sample is flagged."""
        return self.profile | self.unlike_training | self.chi.any(axis=1)


@dataclass
class ChiResult:
    """A trained χ model with everything needed to predict and to judge the prediction."""

    model: ChiModel
    profile_norm: dict[str, Any]
    chi_norm: dict[str, Any]
    split: dict[str, np.ndarray]
    history: list[dict[str, float]]
    metrics: dict[str, Any]
    chi_range: dict[str, tuple[float, float]]
    profile_range: tuple[float, float]
    recon_limit: float | None = None
    chi_names: tuple[str, ...] = CHI_NAMES
    train: TrainResult | None = field(default=None, repr=False)

    def parts(self) -> dict[str, Any]:
        """JSON-able everything but the weights: model config, normalisers, ranges, names, metrics."""
        return {
            "model_config": dict(self.model.config),
            "profile_norm": self.profile_norm,
            "chi_norm": self.chi_norm,
            "chi_range": {k: list(v) for k, v in self.chi_range.items()},
            "profile_range": list(self.profile_range),
            "recon_limit": self.recon_limit,
            "chi_names": list(self.chi_names),
            "metrics": self.metrics,
        }


# ------------------------------------------------------------------ training
def _check_inputs(profiles: np.ndarray, chi: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    profiles, chi = np.asarray(profiles, dtype=np.float64), np.asarray(chi, dtype=np.float64)
    if profiles.ndim != 2 or chi.ndim != 2:
        raise ValueError(
            f"profiles must be (N, points) and chi (N, {len(names)}); got {profiles.shape} and {chi.shape}"
        )
    if chi.shape[1] != len(names):
        raise ValueError(f"chi has {chi.shape[1]} columns but {len(names)} names were given ({', '.join(names)})")
    if len(profiles) != len(chi):
        raise ValueError(f"{len(profiles)} profiles but {len(chi)} χ rows")
    if not (np.all(np.isfinite(profiles)) and np.all(np.isfinite(chi))):
        raise ValueError("profiles and chi must be finite")
    return profiles, chi


def _model_from(model_config: Mapping[str, Any] | None, n_points: int, n_chi: int) -> ChiModel:
    cfg = {k: v for k, v in dict(model_config or {}).items() if k != "kind"}
    if (model_config or {}).get("kind", "chi") != "chi":
        raise ValueError(f"model_config kind must be 'chi', got {model_config['kind']!r}")  # type: ignore[index]
    for key, value in (("n_points", n_points), ("n_chi", n_chi)):
        if cfg.setdefault(key, value) != value:
            raise ValueError(f"model_config {key}={cfg[key]} does not match the data ({value})")
    return ChiModel(**cfg)


def _fit_whitening(model: ChiModel, x_train: np.ndarray) -> None:
    """PCA of the (scaled) training profiles → the model's fixed input projection.

    The χ information of SCFT profiles sits in directions of tiny variance (two components hold
    99.9 % of it); whitening makes them visible to gradient descent (test R² of χ_substrate and
    χ_air ≈ 0.72 → ≈ 0.99 in a few epochs).
    """
    k = model.whiten
    if k > min(x_train.shape):
        raise ValueError(f"whiten={k} components need at least {k} training profiles and points; have {x_train.shape}")
    mean = x_train.mean(axis=0)
    _, s, vt = np.linalg.svd(x_train - mean, full_matrices=False)
    scale = s[:k] / math.sqrt(len(x_train))
    model.set_whitening(*(torch.as_tensor(a, dtype=torch.float32) for a in (mean, vt[:k], scale)))


def train_chi(
    profiles: np.ndarray,
    chi: np.ndarray,
    *,
    model_config: dict[str, Any] | None = None,
    train_config: TrainConfig | None = None,
    seed: int = 0,
    reporter: Reporter | None = None,
    checkpoint_path: str | Path | None = None,
    chi_weight: float = 1.0,
    chi_names: Sequence[str] = CHI_NAMES,
) -> ChiResult:
    """Train a :class:`ChiModel` on SLD profiles (N, P) → χ (N, n); ``seed`` fixes split and init.

    ``train_config.seed`` fixes the batch order and the VAE's sampling noise.  Without a
    ``model_config`` the encoder sees the 16 leading principal components of the training
    profiles (``whiten=16``): χ_substrate and χ_air live in low-variance directions that plain
    min-max inputs hide from gradient descent (test R² 0.71 without, 0.997 with).
    """
    if model_config is None:
        model_config = {"whiten": DEFAULT_WHITEN}
    profiles, chi = _check_inputs(profiles, chi, chi_names)
    train_config = train_config or TrainConfig()
    split = split_indices(len(profiles), (0.8, 0.1, 0.1), seed)
    tr = split["train"]
    p_norm = Normalizer("minmax").fit(profiles[tr])
    c_norm = Normalizer("zscore", per_point=True).fit(chi[tr])
    torch.manual_seed(seed)
    model = _model_from(model_config, profiles.shape[1], chi.shape[1])
    if model.whiten:
        _fit_whitening(model, p_norm.transform(profiles[tr]))
    context = {
        "workflow": "chi",
        "seed": int(seed),
        "chi_weight": float(chi_weight),
        "chi_names": list(chi_names),
        "profile_norm": p_norm.to_dict(),
        "chi_norm": c_norm.to_dict(),
        "chi_range": {n: [float(chi[tr, j].min()), float(chi[tr, j].max())] for j, n in enumerate(chi_names)},
        "profile_range": [float(profiles[tr].min()), float(profiles[tr].max())],
    }
    trainer = Trainer(
        model,
        p_norm.transform(profiles),
        c_norm.transform(chi),
        split,
        train_config,
        task=ChiTask(chi_weight),
        reporter=reporter,
        checkpoint_path=checkpoint_path,
        context=context,
    )
    return _finish(trainer, trainer.fit(), profiles, chi)


def resume_chi(
    path: str | Path,
    profiles: np.ndarray,
    chi: np.ndarray,
    *,
    reporter: Reporter | None = None,
    epochs: int | None = None,
) -> ChiResult:
    """Continue a paused (or checkpointed) :func:`train_chi` run on the same data."""
    _, meta, _ = load_checkpoint(path)
    ctx = meta.get("context") or {}
    if ctx.get("workflow") != "chi":
        raise ValueError(f"{path}: not a checkpoint of the χ workflow (context workflow = {ctx.get('workflow')!r})")
    profiles, chi = _check_inputs(profiles, chi, ctx["chi_names"])
    p_norm, c_norm = Normalizer.from_dict(ctx["profile_norm"]), Normalizer.from_dict(ctx["chi_norm"])
    trainer = Trainer.resume(
        path,
        p_norm.transform(profiles),
        c_norm.transform(chi),
        task=ChiTask(ctx["chi_weight"]),
        reporter=reporter,
        epochs=epochs,
    )
    return _finish(trainer, trainer.fit(), profiles, chi)


def _finish(trainer: Trainer, fit: TrainResult, profiles: np.ndarray, chi: np.ndarray) -> ChiResult:
    """Score the trained model on the test split (physical units) and package the result."""
    ctx = trainer.context
    model = trainer.model.eval()
    result = ChiResult(
        model=model,
        profile_norm=ctx["profile_norm"],
        chi_norm=ctx["chi_norm"],
        split=trainer.split,
        history=fit.history,
        metrics={},
        chi_range={k: (v[0], v[1]) for k, v in ctx["chi_range"].items()},
        profile_range=(ctx["profile_range"][0], ctx["profile_range"][1]),
        chi_names=tuple(ctx["chi_names"]),
        train=fit,
    )
    held_out = trainer.split["val"] if len(trainer.split["val"]) else trainer.split["train"]
    _, flags = predict_chi(result, profiles[held_out])
    result.recon_limit = RECON_FACTOR * float(np.quantile(flags.recon_rmse, 0.99))
    result.metrics = chi_metrics(result, profiles[trainer.split["test"]], chi[trainer.split["test"]])
    result.metrics.update(status=fit.status, epochs=fit.epochs_done, seconds=fit.seconds)
    return result


# ------------------------------------------------------------------ prediction and metrics
def _parts(source: ChiResult | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(source, ChiResult):
        return {**source.parts(), "model": source.model}
    missing = {"model", "profile_norm", "chi_norm", "chi_range", "profile_range"} - set(source)  # recon_limit optional
    if missing:
        raise ValueError(f"prediction needs {', '.join(sorted(missing))} besides what was given")
    return dict(source)


@torch.no_grad()
def predict_chi(
    source: ChiResult | Mapping[str, Any],
    profiles: np.ndarray,
    *,
    tolerance: float = PROFILE_TOLERANCE,
    batch_size: int = 1024,
) -> tuple[np.ndarray, ChiFlags]:
    """χ (N, n) in physical units for SLD profiles (N, P) or one profile (P,), with flags.

    ``source`` is a :class:`ChiResult` or a mapping with ``model`` and the JSON parts of
    :meth:`ChiResult.parts`.  ``tolerance`` is the fraction of the training SLD span a profile may
    leave the training range by before it is flagged.
    """
    parts = _parts(source)
    model: ChiModel = parts["model"]
    x = np.asarray(profiles, dtype=np.float64)
    x = x[None, :] if x.ndim == 1 else x
    n_points = model.config["n_points"]
    if x.ndim != 2 or x.shape[1] != n_points:
        raise ValueError(
            f"profiles must be (N, {n_points}) SLD values on the training z grid; got shape {np.shape(profiles)}"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"profiles {np.flatnonzero(~np.isfinite(x).all(axis=1))[:5]} contain non-finite SLD values")
    p_norm, c_norm = Normalizer.from_dict(parts["profile_norm"]), Normalizer.from_dict(parts["chi_norm"])
    xs = torch.as_tensor(p_norm.transform(x))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out, rec = [], []
    for s in range(0, len(xs), batch_size):
        xb = xs[s : s + batch_size].to(device)
        mu, _ = model.encode(xb)
        out.append(model.chi_from_code(mu).cpu().numpy())
        rec.append(model.decode(mu).cpu().numpy())
    model.train(was_training)
    pred = c_norm.inverse(np.concatenate(out, axis=0))
    recon_rmse = np.sqrt(((p_norm.inverse(np.concatenate(rec, axis=0)) - x) ** 2).mean(axis=1))
    limit = parts.get("recon_limit")
    names = list(parts.get("chi_names", CHI_NAMES))
    lo = np.array([parts["chi_range"][n][0] for n in names])
    hi = np.array([parts["chi_range"][n][1] for n in names])
    p_lo, p_hi = parts["profile_range"]
    excess = np.maximum(np.maximum(p_lo - x.min(axis=1), x.max(axis=1) - p_hi), 0.0)
    flags = ChiFlags(
        chi=(pred < lo) | (pred > hi),
        profile=excess > tolerance * (p_hi - p_lo),
        profile_excess=excess,
        unlike_training=recon_rmse > limit if limit is not None else np.zeros(len(x), dtype=bool),
        recon_rmse=recon_rmse,
    )
    return pred, flags


def chi_metrics(source: ChiResult | Mapping[str, Any], profiles: np.ndarray, chi: np.ndarray) -> dict[str, Any]:
    """Per-χ MAE, RMSE, R² (1 − SS_res/SS_tot) and the spread (std) of the truth, in physical units,
    and the mean reconstruction RMSE of the profiles (1e-6 Å⁻²)."""
    names = list(_parts(source).get("chi_names", CHI_NAMES))
    if len(chi) == 0:
        return {n: {"mae": math.nan, "rmse": math.nan, "r2": math.nan, "std": math.nan} for n in names}
    pred, flags = predict_chi(source, profiles)
    out: dict[str, Any] = {"reconstruction_rmse": float(flags.recon_rmse.mean())}
    for j, n in enumerate(names):
        err = pred[:, j] - chi[:, j]
        ss_tot = float(((chi[:, j] - chi[:, j].mean()) ** 2).sum())
        out[n] = {
            "mae": float(np.abs(err).mean()),
            "rmse": float(np.sqrt((err**2).mean())),
            "r2": 1.0 - float((err**2).sum()) / ss_tot if ss_tot > 0 else math.nan,
            "std": float(chi[:, j].std()),
        }
    return out

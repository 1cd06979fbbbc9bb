"""Predictive uncertainty from an ensemble: calibrated 68 %/95 % bands of the SLD profile and of the parameters.

Why an ensemble.  K networks trained on one data set and split from different seeds (weights and
batch order) disagree most where the data do not pin the answer down, which is what a scientist
needs to see on a measured curve.  Deep ensembles are the best-tested practical method for this
(Lakshminarayanan et al. 2017; Ovadia et al. 2019 found them the most reliable under data shift,
ahead of MC dropout and last-layer Bayesian methods).  They need no change to the architectures
or the trainer — MC dropout would need dropout layers these models do not have, a heteroscedastic
head a new loss — and each member is an ordinary, checked model bundle.

Why the bands are Gaussian from the spread, not member percentiles.  With K = 3–5 members the
2.5/16/84/97.5 percentiles of the members are the extreme members themselves; the members' standard
deviation scaled by sqrt(1 + 1/K) (the spread of a new draw, not of the members' mean) is the stable
estimate.  Its scale is wrong in practice (a small ensemble is over-confident: the members share
their data and architecture, so their errors are correlated), so it is **calibrated** by split
conformal prediction on the validation split, which no member trained on: the score of a point is
|truth − mean| / σ, and the band of level p is mean ± q_p·σ with q_p the ⌈(n+1)p⌉-th smallest
validation score.  That gives coverage ≥ p on exchangeable curves (Vovk; Angelopoulos & Bates 2021),
keeps the ensemble's per-curve, per-point shape, and needs one number per level (per parameter for
a parameter model).  σ is floored at 5 % of its median so points where all members agree exactly
(the substrate far from the film) still get a band.  Coverage is measured on the test split,
which neither the members nor the calibration saw, and stored in ``ensemble.json``.

Measured (tests/test_ensemble.py: 3 tiny compact models, 2 epochs, default stack, 300 validation and
300 test curves of 80 points): the raw Gaussian bands cover 35 % (68 % band) and 57 % (95 % band) of
the test points' true ρ — over-confident, as expected; the calibration factors 2.8 and 11.3 (×σ)
bring them to 67.9 % and 95.0 %.  The heavy tail (11.3 against a Gaussian's 1.96) is why each level
has its own factor.  The profile bands are of ρ point by point, drawn at the members' mean z row.

A prior-bounds ensemble (members that read each parameter's range beside the curve, ``param_bounds``)
predicts inside the ranges given (the family's it was trained on by default), every member inside the
same ranges, and its bands are clipped to them: a parameter never lies outside the range it is known
to lie in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from ..data.dataset import load_dataset
from ..data.preprocess import split_indices
from ..store.model_bundle import Ensemble
from .predict import Bounds, predict, prior_bounds

LEVELS = {"68 %": 0.68, "95 %": 0.95}
GAUSSIAN = {level: NormalDist().inv_cdf((1 + p) / 2) for level, p in LEVELS.items()}  # 0.994, 1.960
FLOOR = 0.05  # σ floor, as a fraction of the median validation σ
MAX_CURVES = 2000  # curves of each split used to calibrate and to measure coverage (seeded subsample)
METHOD = "split conformal scaling of the ensemble σ (validation split)"


@dataclass
class EnsembleBands:
    """Bands of N predictions: ρ of the profile points (D = nZ) or the free parameters (D = P)."""

    center: np.ndarray  # (N, D) the members' mean
    sigma: np.ndarray  # (N, D) the members' std × sqrt(1 + 1/K), floored
    bands: dict[str, tuple[np.ndarray, np.ndarray]]  # level ("68 %", "95 %") → (lo, hi), each (N, D)
    z: np.ndarray | None  # (N, nZ) the mean profile's z rows (SLD models)
    names: list[str] | None  # parameter names (parameter models)
    members: int
    calibrated: bool

    def table(self, row: int = 0) -> list[dict[str, Any]]:
        """Per parameter of prediction ``row``: value, ± half-widths and the bands' edges (parameter models)."""
        out = []
        for j, name in enumerate(self.names or []):
            (lo68, hi68), (lo95, hi95) = ((self.bands[lv][0][row, j], self.bands[lv][1][row, j]) for lv in LEVELS)
            out.append(
                {
                    "name": name,
                    "value": float(self.center[row, j]),
                    "lo68": float(lo68),
                    "hi68": float(hi68),
                    "lo95": float(lo95),
                    "hi95": float(hi95),
                }
            )
        return out


def member_predictions(ensemble: Ensemble, r: np.ndarray, bounds: Bounds | None = None) -> np.ndarray:
    """Each member's physical prediction for R curves (N, nQ) or NR arrays (N, 2, nQ): (K, N, …).

    ``bounds``: a prior-bounds ensemble's ranges (parameter name → [lo, hi]; the family's by default).
    """
    return np.stack([predict(member, r, bounds) for member in ensemble.members])


def _values(preds: np.ndarray, task: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(values (K, N, D), z rows (K, N, nZ) or None) of member predictions."""
    if task == "nr_sld":
        return preds[..., 1, :], preds[..., 0, :]
    return preds, None


PARAMETER_METHODS = ("bounds", "prior_bounds")  # target normalisations of parameter models


def _bounds(ensemble: Ensemble, given: Bounds | None = None) -> np.ndarray | None:
    """The ranges (P, 2) a parameter ensemble's values lie in: the family's, or the prior bounds given."""
    y = ensemble.normalization.get("y") or {}
    if y.get("method") == "prior_bounds":
        return prior_bounds(ensemble, given)
    return np.asarray(y["bounds"], dtype=np.float64) if y.get("method") == "bounds" else None


def _names(ensemble: Ensemble) -> list[str] | None:
    y = ensemble.normalization.get("y") or {}
    return list(y["names"]) if y.get("method") in PARAMETER_METHODS else None


def _sigma(values: np.ndarray, floor: np.ndarray | float) -> np.ndarray:
    k = values.shape[0]
    sigma = values.std(axis=0, ddof=1) * math.sqrt(1 + 1 / k)
    return np.sqrt(sigma**2 + np.asarray(floor, dtype=np.float64) ** 2)


def bands_of(
    preds: np.ndarray,
    task: str,
    calibration: dict[str, Any] | None = None,
    bounds: np.ndarray | None = None,
    names: list[str] | None = None,
) -> EnsembleBands:
    """Bands from member predictions (K, N, …) with a calibration's factors (Gaussian ones without)."""
    if preds.shape[0] < 2:
        raise ValueError(f"bands need the predictions of at least 2 members, got {preds.shape[0]}")
    values, z = _values(np.asarray(preds, dtype=np.float64), task)
    calibration = calibration or {}
    factors = calibration.get("factors") or GAUSSIAN
    center = values.mean(axis=0)
    sigma = _sigma(values, calibration.get("floor", 1e-12))
    bands = {}
    for level in LEVELS:
        half = np.asarray(factors[level], dtype=np.float64) * sigma
        lo, hi = center - half, center + half
        if bounds is not None:  # a parameter never lies outside the family's (or its prior) bounds
            lo, hi = np.clip(lo, bounds[:, 0], bounds[:, 1]), np.clip(hi, bounds[:, 0], bounds[:, 1])
        bands[level] = (lo, hi)
    zmean = None if z is None else z.mean(axis=0)
    return EnsembleBands(center, sigma, bands, zmean, names, preds.shape[0], bool(calibration.get("factors")))


def ensemble_bands(
    ensemble: Ensemble, r: np.ndarray, calibration: dict[str, Any] | None = None, bounds: Bounds | None = None
) -> EnsembleBands:
    """Calibrated 68 %/95 % bands of an ensemble's predictions for R curves (N, nQ) on its Q grid.

    ``bounds``: a prior-bounds ensemble's ranges (parameter name → [lo, hi]); the members predict inside
    them and the bands are clipped to them.
    """
    calibration = ensemble.calibration if calibration is None else calibration
    ranges = _bounds(ensemble, bounds)  # checked (named errors) before any member runs
    preds = member_predictions(ensemble, r, bounds)
    return bands_of(preds, ensemble.task, calibration, ranges, _names(ensemble))


def calibrate(preds: np.ndarray, truth: np.ndarray, task: str) -> dict[str, Any]:
    """Conformal factors per level from member predictions (K, N, …) and true values (N, D) of held-out curves.

    One factor per level for a profile (all points pooled), one per parameter and level for a parameter model.
    """
    values, _ = _values(np.asarray(preds, dtype=np.float64), task)
    truth = np.asarray(truth, dtype=np.float64)
    axis = None if task == "nr_sld" else 0
    raw = _sigma(values, 0.0)
    floor = FLOOR * np.median(raw, axis=axis)
    scores = np.abs(truth - values.mean(axis=0)) / _sigma(values, floor)
    n = scores.size if axis is None else scores.shape[0]
    factors = {}
    for level, p in LEVELS.items():
        rank = min(1.0, math.ceil((n + 1) * p) / n)
        q = np.maximum(np.quantile(scores, rank, axis=axis, method="higher"), 1e-6)
        factors[level] = float(q) if axis is None else [float(v) for v in q]
    return {
        "method": METHOD,
        "factors": factors,
        "floor": float(floor) if axis is None else [float(v) for v in floor],
        "validation_curves": int(truth.shape[0]),
    }


def coverage(bands: EnsembleBands, truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Fraction of true values inside each band: ``all`` points, and per parameter for a parameter model."""
    truth = np.asarray(truth, dtype=np.float64)
    out = {}
    for level, (lo, hi) in bands.bands.items():
        inside = (truth >= lo) & (truth <= hi)
        row = {"all": float(inside.mean())}
        for j, name in enumerate(bands.names or []):
            row[name] = float(inside[:, j].mean())
        out[level] = row
    return out


def _split_rows(ensemble: Ensemble, n: int) -> dict[str, np.ndarray]:
    pre = ensemble.normalization["preprocess"]
    split = split_indices(n, tuple(pre["split"]), pre["seed"])
    rng = np.random.default_rng(np.random.SeedSequence([int(pre["seed"]), 23]))
    rows = {}
    for part in ("val", "test"):
        idx = split[part]
        rows[part] = np.sort(rng.choice(idx, MAX_CURVES, replace=False) if len(idx) > MAX_CURVES else idx)
    return rows


def _truth(ensemble: Ensemble, ds: Any, rows: np.ndarray) -> np.ndarray:
    if ensemble.task == "nr_sld":
        return np.asarray(ds.sld[rows][:, 1, :], dtype=np.float64)
    return np.asarray(ds.params[rows], dtype=np.float64)[:, ensemble.normalization["y"]["columns"]]


def calibrate_on_dataset(ensemble: Ensemble, dataset: str | Path | None = None) -> dict[str, Any]:
    """Calibrate on the members' validation split and measure coverage on their test split (raw and calibrated).

    ``dataset`` defaults to the path the members record; it must be the data set they were trained on.
    """
    ref = ensemble.config.get("data", {}).get("dataset") or {}
    ds = load_dataset(dataset if dataset is not None else ref.get("path"))
    if ref.get("content_hash") and ds.content_hash and ds.content_hash != ref["content_hash"]:
        raise ValueError(f"{ds.path} is not the data set the ensemble was trained on (content hash differs)")
    return calibrate_on_split(ensemble, ds, _split_rows(ensemble, ds.n))


def calibrate_on_split(ensemble: Ensemble, ds: Any, rows: dict[str, np.ndarray]) -> dict[str, Any]:
    """Calibrate on the curves ``rows["val"]`` of ``ds`` and measure coverage on ``rows["test"]``.

    Neither set may hold a curve any member trained on: a data set's validation and test splits, or fresh
    curves of an on-the-fly family drawn from a seed no member's stream used.
    """
    if min(len(r) for r in rows.values()) < 10:
        raise ValueError(
            f"{getattr(ds, 'path', None) or 'the held-out curves'}: {len(rows['val'])} validation and "
            f"{len(rows['test'])} test curves; calibration needs ≥ 10 each"
        )
    val = member_predictions(ensemble, np.asarray(ds.nr[rows["val"]]))
    calibration = calibrate(val, _truth(ensemble, ds, rows["val"]), ensemble.task)
    test = member_predictions(ensemble, np.asarray(ds.nr[rows["test"]]))
    truth = _truth(ensemble, ds, rows["test"])
    bounds, names = _bounds(ensemble), _names(ensemble)
    raw = bands_of(test, ensemble.task, None, bounds, names)
    calibrated = bands_of(test, ensemble.task, calibration, bounds, names)
    calibration["test_curves"] = len(rows["test"])
    calibration["coverage"] = {"raw": coverage(raw, truth), "calibrated": coverage(calibrated, truth)}
    return calibration


def coverage_lines(calibration: dict[str, Any]) -> list[str]:
    """The test coverage of an ensemble's bands in words, one line per band (raw → calibrated)."""
    cov = calibration.get("coverage") or {}
    lines = []
    for level in LEVELS:
        raw, cal = (cov.get(kind, {}).get(level, {}).get("all") for kind in ("raw", "calibrated"))
        if cal is not None:
            lines.append(
                f"{level} band: covers {cal:.1%} of {calibration.get('test_curves')} test curves' true values "
                f"(uncalibrated {raw:.1%}; factor {np.round(calibration['factors'][level], 3)})"
            )
    return lines

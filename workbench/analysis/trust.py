"""How far to trust a prediction on a measured curve: its fit to the data, its place in the training set, its bounds.

A network answers for any input, including curves its family of film stacks cannot produce (issue 20:
a default-family model, given a 742 Å multilayer, predicted with χ²/N ≈ 1000 and said nothing).  Three
checks, each in numbers a scientist can weigh, make one verdict like the refinement's
(:func:`workbench.analysis.refine.verdict`):

* **fit** — χ²/N of the NR computed from the prediction against the data, on the measured points
  inside the model's Q range (the points outside are named and left out: the model never saw them);
* **training distribution** — the Mahalanobis distance of the network's input (the normalised log R
  on the model's Q grid) under a Gaussian model of the training inputs: the leading principal
  components, plus a variance per Q point for the rest (a probabilistic PCA, Tipping & Bishop 1999,
  with a diagonal instead of an isotropic remainder), plus the measurement's own noise from its dR.
  It works the same for every architecture (no hook into an encoder) and is small to store.  It is
  compared with the quantiles of the same distance over the held-out validation curves, computed at
  the end of training and kept in the bundle's ``normalization.json`` (``input_distribution``); an
  older bundle without it says "unknown".  Measured on the default family (1000 curves, tests/test_trust.py):
  curves with a 2000–2500 Å layer land beyond the 99th percentile, the family's own curves (also with
  REF_L-like counting noise) inside it.  A film only a little beyond the family (a 500–700 Å layer)
  is flagged for only part of its curves (its median distance lies just below the 99th percentile):
  that is what χ²/N and the bounds check are for;
* **bounds** — predicted parameters within 1 % of their range from a bound of the family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .metrics import POOR_CHI2  # not from refine: trust must not load scipy's optimizers (training imports it)

MAX_COMPONENTS = 32  # leading principal components kept; the rest get a variance per input point
EXPLAINED = 0.99999  # ... or fewer, once they explain this fraction of the variance
PERCENTILES = tuple(float(p) for p in [*range(0, 100, 5), 96, 97, 98, 99, 99.5, 99.9, 100])
OUTSIDE_PERCENTILE = 99.0  # a curve farther than this share of held-out training curves is outside
AT_BOUND = 0.01  # a parameter within this fraction of its range from a bound is "at the bound"
FIT_SAMPLE = 20_000  # training curves the PCA is fitted on (the first principal directions settle long before)


def fit_input_distribution(x_train: np.ndarray, x_held: np.ndarray) -> dict[str, Any]:
    """The training inputs' PPCA model and the quantiles of the held-out curves' distances, as plain JSON.

    ``x_train`` (N, D) fits the model; ``x_held`` (M, D), curves the fit did not see, give the quantiles,
    so a new curve from the same family lands among them rather than beyond an in-sample optimum.
    """
    x = np.asarray(x_train, dtype=np.float64)
    held = np.asarray(x_held, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"the training distribution needs at least 2 training curves (N, D), got shape {x.shape}")
    if held.ndim != 2 or len(held) < 1 or held.shape[1] != x.shape[1]:
        raise ValueError(f"held-out curves must be (M, {x.shape[1]}) with M ≥ 1, got shape {held.shape}")
    mean = x.mean(axis=0)
    centred = x - mean
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    eig = s**2 / (len(x) - 1)
    total = float(eig.sum()) or 1.0
    k = int(np.searchsorted(np.cumsum(eig) / total, EXPLAINED) + 1)
    k = max(1, min(k, MAX_COMPONENTS, len(eig) - 1 if len(eig) > 1 else 1))
    residual = centred - (centred @ vt[:k].T) @ vt[:k]
    floor = 1e-6 * total / x.shape[1]  # a point the family never varies at still allows a little
    dist = {
        "method": "pca-mahalanobis",
        "mean": mean.tolist(),
        "components": vt[:k].tolist(),
        "variances": np.maximum(eig[:k], floor).tolist(),
        "residual_variances": np.maximum(residual.var(axis=0, ddof=1), floor).tolist(),
        "train_curves": len(x),
        "held_out_curves": len(held),
        "percentiles": list(PERCENTILES),
    }
    dist["quantiles"] = np.percentile(input_distance(dist, held), PERCENTILES).tolist()
    return dist


def distribution_of_features(features: Any, split: dict[str, np.ndarray], seed: int = 0) -> dict[str, Any] | None:
    """:func:`fit_input_distribution` from a training run's (lazy) input rows and split; None without held-out rows."""
    rng = np.random.default_rng(seed)
    train = np.asarray(split.get("train", []), dtype=np.int64)
    held = np.asarray(split.get("val", []), dtype=np.int64)
    if len(held) == 0:
        held = np.asarray(split.get("test", []), dtype=np.int64)
    if len(train) < 2 or len(held) == 0:
        return None
    pick = np.sort(rng.choice(train, min(len(train), FIT_SAMPLE), replace=False))  # sorted: memory-mapped reads
    held = np.sort(rng.choice(held, min(len(held), FIT_SAMPLE // 4), replace=False))
    return fit_input_distribution(np.asarray(features[pick]), np.asarray(features[held]))


def input_distance(dist: dict[str, Any], x: np.ndarray, noise_variance: np.ndarray | None = None) -> np.ndarray:
    """Mahalanobis distance of inputs (N, D) per curve, divided by √D so that a typical training curve is ≈ 1.

    The covariance is the training inputs' (leading components plus a variance per point for the
    rest) plus ``noise_variance`` (D,) or (N, D), a measurement's own noise in input units: noise the
    training curves did not have then does not count as being unlike them.
    """
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    mean = np.asarray(dist["mean"], dtype=np.float64)
    if x.shape[1] != mean.size:
        raise ValueError(f"the curve has {x.shape[1]} input points, the training distribution {mean.size}")
    u = np.asarray(dist["components"], dtype=np.float64).T  # (D, k)
    lam = np.asarray(dist["variances"], dtype=np.float64)
    diag = np.broadcast_to(np.asarray(dist["residual_variances"], dtype=np.float64), x.shape)
    if noise_variance is not None:
        diag = diag + np.broadcast_to(np.nan_to_num(np.asarray(noise_variance, dtype=np.float64)), x.shape)
    out = np.empty(len(x))
    for n, (c, d) in enumerate(zip(x - mean, diag)):
        # (U Λ Uᵀ + diag d)⁻¹ by the Woodbury identity: a k × k solve instead of a D × D one
        w = c / d
        a = u.T @ w
        inner = np.diag(1.0 / lam) + (u.T / d) @ u
        out[n] = c @ w - a @ np.linalg.solve(inner, a)
    return np.sqrt(np.maximum(out, 0.0) / mean.size)


def distance_percentile(dist: dict[str, Any], distance: float) -> float:
    """The share (%) of held-out training curves nearer than ``distance`` (100 beyond the farthest)."""
    q = np.asarray(dist["quantiles"], dtype=np.float64)
    p = np.asarray(dist["percentiles"], dtype=np.float64)
    if distance >= q[-1]:
        return 100.0
    return float(np.interp(distance, q, p))


def at_bounds(names: list[str], values: np.ndarray, bounds: np.ndarray, tolerance: float = AT_BOUND) -> list[str]:
    """Names of the values within ``tolerance`` of their range (hi − lo) from a bound, with the bound in words."""
    values = np.asarray(values, dtype=np.float64).ravel()
    b = np.asarray(bounds, dtype=np.float64).reshape(-1, 2)
    if not len(names) == len(values) == len(b):
        raise ValueError(f"{len(names)} names, {len(values)} values and {len(b)} bounds: they must match")
    out = []
    for name, v, (lo, hi) in zip(names, values, b):
        tol = tolerance * (hi - lo)
        if v <= lo + tol:
            out.append(f"{name} {v:.4g} at its minimum {lo:.4g}")
        elif v >= hi - tol:
            out.append(f"{name} {v:.4g} at its maximum {hi:.4g}")
    return out


@dataclass
class Trust:
    """The three checks of a prediction on a measured curve and their verdict (level "ok" or "warn", and words)."""

    chi2_per_point: float | None  # None: the data have no error bars
    n_points: int  # measured points the χ² is over
    left_out: str | None  # the measured points outside the model's Q range, in words
    distance: float | None  # None: unknown (the bundle stores no training distribution)
    percentile: float | None
    threshold: float | None  # the distance at OUTSIDE_PERCENTILE of the held-out training curves
    at_bound: list[str] = field(default_factory=list)
    level: str = "ok"
    words: str = ""

    @property
    def outside_training(self) -> bool | None:
        """True when the curve lies beyond OUTSIDE_PERCENTILE of the training curves; None when unknown."""
        return None if self.distance is None else bool(self.distance > self.threshold)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (non-finite numbers as None)."""

        def num(v: float | None) -> float | None:
            return float(v) if v is not None and math.isfinite(v) else None

        return {
            "level": self.level,
            "verdict": self.words,
            "chi2_per_point": num(self.chi2_per_point),
            "chi2_points": self.n_points,
            "left_out": self.left_out,
            "training_distance": num(self.distance),
            "training_percentile": num(self.percentile),
            "training_threshold": num(self.threshold),
            "outside_training": self.outside_training,
            "at_bound": list(self.at_bound),
        }


def assess(
    chi2_per_point: float | None,
    n_points: int,
    left_out: str | None,
    distance: float | None,
    dist: dict[str, Any] | None,
    at_bound: list[str],
) -> Trust:
    """One verdict from the three checks: "warn" with every reason in words, else "ok" with the numbers."""
    percentile = threshold = None
    if distance is not None and dist is not None:
        percentile = distance_percentile(dist, distance)
        threshold = float(np.interp(OUTSIDE_PERCENTILE, dist["percentiles"], dist["quantiles"]))
    t = Trust(chi2_per_point, n_points, left_out, distance, percentile, threshold, list(at_bound))
    reasons = []
    if chi2_per_point is not None and (not math.isfinite(chi2_per_point) or chi2_per_point > POOR_CHI2):
        reasons.append(
            f"χ²/N {chi2_per_point:.3g} over {n_points} points > {POOR_CHI2:g}: the predicted curve does not describe "
            "the data; refine it"
        )
    if t.outside_training:
        reasons.append(
            f"the curve lies outside the training distribution (distance {distance:.3g}, beyond "
            f"{percentile:.3g} % of the training curves; {OUTSIDE_PERCENTILE:g} % lie within {threshold:.3g}): the "
            "model's family of stacks may not describe this sample"
        )
    if at_bound:
        reasons.append(
            f"{len(at_bound)} predicted at a bound of the family ({'; '.join(at_bound[:4])}"
            f"{'; …' if len(at_bound) > 4 else ''}): widen the family's ranges"
        )
    fit = "no error bars, so no χ²/N" if chi2_per_point is None else f"χ²/N {chi2_per_point:.3g} over {n_points} points"
    where = (
        "training distribution unknown (the model bundle stores none; retrain to add it)"
        if distance is None
        else f"distance to the training curves {distance:.3g} ({percentile:.3g}th percentile)"
    )
    if reasons:
        t.level, t.words = "warn", "do not trust as is: " + "; ".join(reasons)
    else:
        t.level, t.words = "ok", f"prediction consistent: {fit}, {where}, no parameter at a bound"
    if reasons and distance is None:
        t.words += f"; {where}"
    if left_out:
        t.words += f" ({left_out})"
    return t

"""Preprocessing as pyreflect does it, done right.

pyreflect takes log10 of both rows of every curve (Q and R, and even z and ρ of the SLD
profiles, where z = 0 gives −inf) and min-max scales with statistics of the whole data set,
test curves included.  Here:

* only R is log-transformed: ``log10(clip(R, clip_min))`` (``applyLogTransform`` default True,
  ``clipMin`` default 1e-8), so zero and negative (background-subtracted) values are defined;
* normalisation is ``minmax`` (to [0, 1]) or ``zscore``, per row (the Q/z row and the value
  row, like pyreflect) or per point, fitted on the **training split only**, and stored as plain
  JSON with whatever is trained on it;
* the train/validation/test split is seeded (default 80/10/10) and kept as index arrays, so a
  resumed run sees exactly the same split.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["minmax", "zscore", "none"]


class PreprocessConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    apply_log_transform: bool = Field(True, description="applyLogTransform: use log10 R")
    clip_min: float = Field(1e-8, gt=0, description="clipMin: R is clipped below this before log10")
    normalization: Method = "minmax"
    per_point: bool = Field(False, description="statistics per Q/z point instead of per row")
    split: tuple[float, float, float] = Field((0.8, 0.1, 0.1), description="train/validation/test fractions")
    seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _check_split(self) -> PreprocessConfig:
        if any(f < 0 for f in self.split) or self.split[0] <= 0 or abs(sum(self.split) - 1.0) > 1e-9:
            raise ValueError(f"split fractions must be ≥ 0, train > 0, and sum to 1; got {self.split}")
        return self


def log_reflectivity(r: np.ndarray, clip_min: float = 1e-8) -> np.ndarray:
    """log10(clip(R, clip_min)): finite for R ≤ 0 too."""
    return np.log10(np.clip(r, clip_min, None))


def split_indices(
    n: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, np.ndarray]:
    """Seeded disjoint train/val/test index arrays covering range(n)."""
    if n < 1:
        raise ValueError(f"cannot split an empty data set (n = {n})")
    perm = np.random.default_rng(np.random.SeedSequence([int(seed), 7])).permutation(n)
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    n_train = max(1, min(n_train, n))
    n_val = min(n_val, n - n_train)
    return {
        "train": np.sort(perm[:n_train]),
        "val": np.sort(perm[n_train : n_train + n_val]),
        "test": np.sort(perm[n_train + n_val :]),
    }


# For curves and profiles standardised per point, each point's spread is at least this share of its row's.
# Below the critical edge every training curve has R = 1, so the spread there is ~1e-9 and a measured 0.94
# would land 10⁸ spreads away: the network then answers with nonsense (a REF_L profile at ±10⁵).  1 % of
# log R's spread is ~0.02 decades, a 5 % change in R.
STD_FLOOR = 0.01


def _row_spread(mean: np.ndarray, mean_sq: np.ndarray) -> np.ndarray:
    """The spread of each row's values over all its points (shape of ``mean``), from per-point moments."""
    axis = mean.ndim - 1  # the points axis: (points,) or (rows, points)
    row_mean = mean.mean(axis=axis, keepdims=True)
    row_var = mean_sq.mean(axis=axis, keepdims=True) - row_mean**2
    return np.broadcast_to(np.sqrt(np.maximum(row_var, 0.0)), mean.shape)


@dataclass
class Normalizer:
    """Scales arrays of shape (N, rows, points) (or (N, features)) with statistics from the training split."""

    method: Method = "minmax"
    per_point: bool = False
    stats: dict[str, list] = field(default_factory=dict)
    std_floor: float = 0.0  # zscore per point: each point's spread ≥ this share of its row's (see STD_FLOOR)

    def fit(self, x: np.ndarray, chunk: int = 65536) -> Normalizer:
        """Fit on ``x`` — pass only the training rows.  Streams through memory-mapped arrays."""
        n = len(x)
        if n == 0:
            raise ValueError("cannot fit a normaliser on zero samples")
        ndim = np.asarray(x[0:1]).ndim
        # (N, rows, points): per row, or per (row, point); (N, features): one global value, or per feature
        axes = (0,) if self.per_point else ((0, 1) if ndim == 2 else (0, 2))
        if self.method == "none":
            self.stats = {}
            return self
        lo = hi = None
        total = np.zeros(1)
        sq = np.zeros(1)
        count = 0
        for s in range(0, n, chunk):
            block = np.asarray(x[s : s + chunk], dtype=np.float64)
            b_lo, b_hi = block.min(axis=axes), block.max(axis=axes)
            lo = b_lo if lo is None else np.minimum(lo, b_lo)
            hi = b_hi if hi is None else np.maximum(hi, b_hi)
            total = total + block.sum(axis=axes)
            sq = sq + (block**2).sum(axis=axes)
            count += block.size // max(np.size(b_lo), 1)
        if self.method == "minmax":
            self.stats = {"min": lo.tolist(), "max": hi.tolist()}
        else:
            mean = total / count
            std = np.sqrt(np.maximum(sq / count - mean**2, 0.0))
            if self.per_point and self.std_floor > 0:
                std = np.maximum(std, self.std_floor * _row_spread(mean, sq / count))
            self.stats = {"mean": mean.tolist(), "std": std.tolist()}
        return self

    def _shaped(self, key: str, x: np.ndarray) -> np.ndarray:
        a = np.asarray(self.stats[key])
        if self.per_point:
            return a[None, ...]
        return a if x.ndim == 2 else a[None, :, None]

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.method == "none":
            return np.asarray(x, dtype=np.float32)
        if not self.stats:
            raise ValueError("the normaliser has not been fitted")
        x = np.asarray(x, dtype=np.float64)
        if self.method == "minmax":
            lo, hi = self._shaped("min", x), self._shaped("max", x)
            span = np.where(hi > lo, hi - lo, 1.0)
            out = (x - lo) / span
        else:
            mean, std = self._shaped("mean", x), self._shaped("std", x)
            out = (x - mean) / np.where(std > 0, std, 1.0)
        return out.astype(np.float32)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        if self.method == "none":
            return np.asarray(y, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if self.method == "minmax":
            lo, hi = self._shaped("min", y), self._shaped("max", y)
            return y * np.where(hi > lo, hi - lo, 1.0) + lo
        mean, std = self._shaped("mean", y), self._shaped("std", y)
        return y * np.where(std > 0, std, 1.0) + mean

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "per_point": self.per_point, "stats": self.stats}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalizer:
        return cls(method=d["method"], per_point=bool(d.get("per_point", False)), stats=dict(d.get("stats", {})))


def nr_features(nr: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """The network input from NR curves (N, 2, nQ): the R row, log-transformed if configured."""
    r = np.asarray(nr[:, 1, :], dtype=np.float64)
    return log_reflectivity(r, config.clip_min) if config.apply_log_transform else r

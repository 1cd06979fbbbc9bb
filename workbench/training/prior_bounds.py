"""Training data for the prior-bounds parameter model: every curve drawn inside its own random sub-range.

Per curve and free parameter a sub-range of the family's range is drawn — its width uniform in
[``min_width``, 1] of the full range (one curve in :data:`FULL_RANGE_SHARE` gets the full range, the
default at prediction), its place uniform — and the parameter is drawn uniformly inside it.  The curve
is computed as usual; the sub-range goes into the network beside the curve and the target is the
parameter's position inside it.  Sub-ranges are seeded per block of curves like everything else in the
stream (:mod:`workbench.data.sampling`), so a seed gives the same ranges, curves and batches.

This lives with the on-the-fly stream: fresh sub-ranges every batch, parameters truly uniform inside
them.  A stored data set could only draw ranges around its fixed rows, which biases the position of
the truth inside the range near the family's edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.dataset import Dataset
from ..data.preprocess import PreprocessConfig
from ..data.sampling import BLOCK, ParameterSampler, block_rng
from ..physics.stack import StackArrays
from .nr_workflow import Features, Prepared, prepare

KIND = "param_bounds"
STREAM_RANGES = 3  # after data.sampling's sample (0), noise (1) and LHS (2) streams
FULL_RANGE_SHARE = 0.1


@dataclass
class SubRangeSampler(ParameterSampler):
    """A :class:`ParameterSampler` whose every curve draws each parameter inside a random sub-range of its bound."""

    min_width: float = 0.1

    def ranges(self, start: int, stop: int) -> np.ndarray:
        """Sub-ranges of curves [start, stop) as fractions of each bound's range: (n, P, 2) lower and upper edge."""
        if not 0 < self.min_width <= 1:
            raise ValueError(f"min_width must be in (0, 1]; got {self.min_width}")
        if start % BLOCK:
            raise ValueError(f"chunks must start on a multiple of {BLOCK} curves, got {start}")
        parts = []
        for block in range(start // BLOCK, (stop + BLOCK - 1) // BLOCK):
            a, b = block * BLOCK, min((block + 1) * BLOCK, self.n)
            rng = block_rng(self.seed, STREAM_RANGES, block)
            shape = (b - a, self.n_parameters)
            width = rng.uniform(self.min_width, 1.0, shape)
            width[rng.random(shape[0]) < FULL_RANGE_SHARE] = 1.0
            low = rng.random(shape) * (1.0 - width)
            parts.append(np.stack([low, low + width], axis=-1))
        r = np.concatenate(parts)[: stop - start]
        for group in self.ties:  # a tie shares its leader's draw, so its sub-range too
            r[:, group[1:]] = r[:, group[:1]]
        return r

    def sample(self, start: int, stop: int) -> tuple[np.ndarray, StackArrays]:
        u = self.unit(start, stop)
        low, high = self.physical(self.ranges(start, stop))
        values = low + u * (high - low)
        arrays = self.apply(values)
        if self.consistent_roughness is not None:
            values = self._limit_in_ranges(u, values, arrays, low, high)
        return values, arrays

    def physical(self, fractions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Sub-range fractions (n, P, 2) → lower and upper edges in the parameters' units, each (n, P)."""
        lo = np.array([b.lo for b in self.bounds])
        span = np.array([b.hi - b.lo for b in self.bounds])
        return lo + fractions[..., 0] * span, lo + fractions[..., 1] * span

    def _limit_in_ranges(
        self, u: np.ndarray, values: np.ndarray, arrays: StackArrays, low: np.ndarray, high: np.ndarray
    ) -> np.ndarray:
        """The roughness cap of :meth:`ParameterSampler._limit_roughness`, inside each curve's sub-range."""
        n_layers = arrays.n_layers
        tops: dict[int, np.ndarray] = {}
        for col, b in enumerate(self.bounds):
            if b.par != "roughness" or b.fixed:
                continue
            neighbours = [arrays.thickness[:, j] for j in (b.i, b.i + 1) if 0 < j < n_layers - 1]
            if neighbours:
                cap = self.consistent_roughness * np.minimum.reduce(neighbours)
                tops[col] = np.clip(cap, low[:, col], high[:, col])
        width = np.maximum(high - low, 1e-300)
        for group in self.ties:
            capped = [(tops[c] - low[:, c]) / width[:, c] for c in group if c in tops]
            if capped:
                tightest = np.minimum.reduce(capped)
                for c in (c for c in group if self.bounds[c].par == "roughness"):
                    tops[c] = low[:, c] + tightest * width[:, c]
        for col, top in tops.items():
            values[:, col] = low[:, col] + u[:, col] * (top - low[:, col])
            arrays.roughness[:, self.bounds[col].i] = values[:, col]
        return values


def range_inputs(fractions: np.ndarray) -> np.ndarray:
    """The network's range columns from sub-range fractions (n, P, 2): the P lower edges, then the P upper edges."""
    return np.concatenate([fractions[..., 0], fractions[..., 1]], axis=1).astype(np.float32)


class RangedInputs:
    """Network inputs of the prior-bounds model: each curve's normalised features followed by its range columns."""

    def __init__(self, curves: Features, fractions: np.ndarray) -> None:
        self.curves, self.fractions = curves, fractions  # ``curves``: what the input distribution is fitted on

    def __len__(self) -> int:
        return len(self.curves)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self),)

    def __getitem__(self, idx) -> np.ndarray:
        return np.concatenate([self.curves[idx], range_inputs(self.fractions[idx])], axis=1).astype(np.float32)


def positions(values: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Each value's place inside its sub-range, in [0, 1] (the training target)."""
    return np.clip((values - low) / np.maximum(high - low, 1e-300), 0.0, 1.0).astype(np.float32)


def prepare_ranged(
    ds: Dataset, pre: PreprocessConfig, split: dict[str, np.ndarray], fractions: np.ndarray, min_width: float
) -> Prepared:
    """:func:`prepare` for the prior-bounds model: ``fractions`` (N, all bounds, 2) are each row's sub-ranges."""
    prep = prepare(ds, "params", pre, split)
    cols = prep.normalization["y"]["columns"]
    own = fractions[:, cols, :]
    lo, span = prep.bounds[:, 0], prep.bounds[:, 1] - prep.bounds[:, 0]
    low, high = lo + own[..., 0] * span, lo + own[..., 1] * span
    y = positions(np.asarray(ds.params)[:, cols], low, high)
    normalization: dict[str, Any] = {
        **prep.normalization,
        "y": {**prep.normalization["y"], "method": "prior_bounds", "min_width": float(min_width)},
    }
    return Prepared(
        RangedInputs(prep.x, own), y, split, normalization, prep.names, prep.bounds, np.stack([low, high], -1)
    )

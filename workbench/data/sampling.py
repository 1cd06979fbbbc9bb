"""Sampling film-stack parameters inside their bounds, reproducibly in blocks.

Every random draw comes from a generator seeded by ``(seed, stream, block)`` where a block is
``BLOCK`` consecutive curves.  Chunks are whole blocks, so the same seed gives the same curves
whatever the chunk size, the number of workers, or the order chunks are computed in.

Latin hypercube sampling stratifies each parameter over all N curves: the stratum of curve i in
dimension d is ``perm_d[i]`` with one seeded permutation of N per dimension (computed once by
the coordinator); the position inside the stratum is a per-block uniform draw.

Ties (:class:`~workbench.data.family.FamilyStack`): every tie group shares its first member's draw,
so tied parameters hold one value (equal ranges) or one fraction of their ranges in every curve;
the parameter table keeps one column per bound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..physics.stack import Bound, FilmStack, StackArrays
from .family import tie_columns

BLOCK = 1024
Sampling = Literal["uniform", "lhs"]

STREAM_SAMPLE = 0
STREAM_NOISE = 1
STREAM_LHS = 2


def block_rng(seed: int, stream: int, block: int) -> np.random.Generator:
    """The generator of one block of curves in one stream (sampling, noise, ...)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(stream), int(block)]))


@dataclass
class ParameterSampler:
    """Draws the sampled parameters (all bounded ones, fixed ones included, pyreflect's order)."""

    stack: FilmStack
    n: int
    seed: int = 0
    method: Sampling = "lhs"
    consistent_roughness: float | None = None

    def __post_init__(self) -> None:
        if self.method not in ("uniform", "lhs"):
            raise ValueError(f"sampling must be 'uniform' or 'lhs', got {self.method!r}")
        if self.n < 1:
            raise ValueError(f"number of curves must be ≥ 1, got {self.n}")
        if not self.stack.bounds:
            raise ValueError("the film stack has no bounds: nothing to sample (give layer_bound ranges)")
        if self.consistent_roughness is not None and not self.consistent_roughness > 0:
            raise ValueError(f"consistent roughness fraction must be > 0, got {self.consistent_roughness}")
        self.bounds: list[Bound] = list(self.stack.bounds)
        self.names = self.stack.parameter_names(self.bounds)
        self.ties = tie_columns(self.stack)
        self._perms: np.ndarray | None = None
        if self.method == "lhs":
            dtype = np.int32 if self.n < 2**31 else np.int64
            self._perms = np.empty((len(self.bounds), self.n), dtype=dtype)
            for d in range(len(self.bounds)):
                self._perms[d] = block_rng(self.seed, STREAM_LHS, d).permutation(self.n)

    @property
    def n_parameters(self) -> int:
        return len(self.bounds)

    def unit(self, start: int, stop: int) -> np.ndarray:
        """Points in [0, 1)^P for curves [start, stop); ``start`` must be a multiple of BLOCK."""
        if start % BLOCK:
            raise ValueError(f"chunks must start on a multiple of {BLOCK} curves, got {start}")
        parts = []
        for block in range(start // BLOCK, (stop + BLOCK - 1) // BLOCK):
            a, b = block * BLOCK, min((block + 1) * BLOCK, self.n)
            parts.append(block_rng(self.seed, STREAM_SAMPLE, block).random((b - a, self.n_parameters)))
        u = np.concatenate(parts)[: stop - start]
        if self._perms is not None:
            u = (self._perms[:, start:stop].T + u) / self.n
        for group in self.ties:  # one draw per tie group: its first member's
            u[:, group[1:]] = u[:, group[:1]]
        return u

    def sample(self, start: int, stop: int) -> tuple[np.ndarray, StackArrays]:
        """Parameter table (stop − start, P) and the stacks it describes."""
        u = self.unit(start, stop)
        lo = np.array([b.lo for b in self.bounds])
        hi = np.array([b.hi for b in self.bounds])
        values = lo + u * (hi - lo)
        arrays = self.apply(values)
        if self.consistent_roughness is not None:
            values = self._limit_roughness(u, values, arrays)
        return values, arrays

    def _width(self, col: int) -> float:
        return self.bounds[col].hi - self.bounds[col].lo

    def apply(self, values: np.ndarray) -> StackArrays:
        return apply_parameters(self.stack, values)

    def _limit_roughness(self, u: np.ndarray, values: np.ndarray, arrays: StackArrays) -> np.ndarray:
        """Rescale each sampled roughness into [lo, min(hi, f · thinner neighbouring layer)]."""
        n_layers = arrays.n_layers
        tops: dict[int, np.ndarray] = {}  # column → top of its range allowed by the cap
        for col, b in enumerate(self.bounds):
            if b.par != "roughness":
                continue
            neighbours = [arrays.thickness[:, j] for j in (b.i, b.i + 1) if 0 < j < n_layers - 1]
            if neighbours and not b.fixed:
                tops[col] = np.clip(self.consistent_roughness * np.minimum.reduce(neighbours), b.lo, b.hi)
        for group in self.ties:  # a tie keeps one fraction of the ranges: its tightest member's
            capped = [(tops[c] - self.bounds[c].lo) / self._width(c) for c in group if c in tops]
            if capped:
                tightest = np.minimum.reduce(capped)
                for c in (c for c in group if self.bounds[c].par == "roughness"):
                    tops[c] = self.bounds[c].lo + tightest * self._width(c)
        for col, top in tops.items():
            b = self.bounds[col]
            values[:, col] = b.lo + u[:, col] * (top - b.lo)
            arrays.roughness[:, b.i] = values[:, col]
        return values


def apply_parameters(stack: FilmStack, values: np.ndarray) -> StackArrays:
    """Stacks with the columns of ``values`` (one per bound, in order) written into ``stack``."""
    base = stack.to_arrays()
    n = values.shape[0]
    if values.ndim != 2 or values.shape[1] != len(stack.bounds):
        raise ValueError(f"expected a parameter table of shape (N, {len(stack.bounds)}), got {values.shape}")
    arrays = StackArrays(*(np.repeat(getattr(base, f), n, axis=0) for f in ("sld", "isld", "thickness", "roughness")))
    for col, b in enumerate(stack.bounds):
        getattr(arrays, b.par)[:, b.i] = values[:, col]
    return arrays

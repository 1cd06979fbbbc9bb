"""Posterior uncertainty bands by bumps DREAM on the refl1d model of a fitted stack.

The sampled problem is the exported refl1d script's own (``export_refl1d.refl1d_model``), so a
scientist re-running ``model.py`` in refl1d samples the same likelihood.  DREAM draws from
numpy's global RandomState (``bumps.util.push_seed(seed)``, which restores the caller's state
afterwards) *and*, in its numba-compiled differential-evolution step, from numba's own generator,
which ``np.random.seed`` from Python does not touch: it is seeded from jitted code (``_seed_numba``;
numba's state is thread-local and not restored).  With both seeded a given seed gives the same
chains and the same bands.

From the posterior, ``n_draws`` points (chosen with ``numpy.random.default_rng(seed)``) are turned
into SLD profiles (``physics.sld_profile``, one common z grid) and into R(Q) at the data Q by the
workbench's fast engine with the data's resolution (our converged smearing, not refl1d's: with
the default oversample=10 refl1d's differs from it by a mean square of ≈ 0.02 dR² on the test film,
up to a few per cent at deep fringe minima; see tests/test_uncertainty.py).  The bands are the
2.5/16/50/84/97.5 percentiles over the draws.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numba import njit

from ..data.measured import Measurement
from ..events import Reporter
from ..physics import FilmStack, Probe, StackArrays, reflectivity, sld_profile
from ..physics.profile import DEFAULT_PROFILE_POINTS, profile_range
from .corefine import SEPARATOR, JointRefineResult
from .export_refl1d import DEFAULT_OVERSAMPLE, refl1d_model, write_text_atomic
from .refine import _resolve

STAGE = "uncertainty"
PERCENTILES = (2.5, 16.0, 50.0, 84.0, 97.5)
Band = tuple[np.ndarray, np.ndarray]


@dataclass
class Bands:
    """Median and 68 %/95 % central credible bands of the SLD profile and of R(Q), and per-parameter intervals."""

    z: np.ndarray
    sld_median: np.ndarray
    sld_68: Band
    sld_95: Band
    q: np.ndarray
    r_median: np.ndarray
    r_68: Band
    r_95: Band
    parameter_table: list[dict[str, float | str]]
    n_draws: int
    n_posterior: int = 0  # posterior points DREAM kept (after burn-in, trimming and outlier removal)
    converged: bool = True  # bumps' K-S test of the chains
    seconds: float = 0.0

    def to_csv(self, folder: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``sld_bands.csv`` and ``reflectivity_bands.csv`` (atomically); returns their paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        note = f"posterior median and central 68 %/95 % bands from {self.n_draws} DREAM draws"
        out = []
        for name, x, header, med, b68, b95 in (
            (
                "sld_bands.csv",
                self.z,
                "# z in Å (0 = top of the substrate), SLD in 1e-6 Å⁻²; ",
                self.sld_median,
                self.sld_68,
                self.sld_95,
            ),
            (
                "reflectivity_bands.csv",
                self.q,
                "# q in Å⁻¹, R dimensionless (with scale and background); ",
                self.r_median,
                self.r_68,
                self.r_95,
            ),
        ):
            first = "z" if x is self.z else "q"
            rows = np.column_stack([x, med, b68[0], b68[1], b95[0], b95[1]])
            text = header + note + "\n" + f"{first},median,lo68,hi68,lo95,hi95\n"
            text += "\n".join(",".join(f"{v:.10g}" for v in row) for row in rows) + "\n"
            write_text_atomic(folder / name, text)
            out.append(folder / name)
        return out[0], out[1]

    @classmethod
    def from_csv(
        cls,
        folder: str | os.PathLike,
        *,
        parameter_table: list[dict[str, float | str]] | None = None,
        n_posterior: int = 0,
        converged: bool = True,
        seconds: float = 0.0,
    ) -> Bands:
        """The bands :meth:`to_csv` wrote into ``folder`` (a DREAM job's ``bands/``), to 10 significant digits.

        The CSVs hold the curves and the number of draws (in their first line); what they do not hold
        (the parameter intervals, posterior size, convergence, time) comes from the caller, e.g. the
        job's ``refinement.json``.  A missing or malformed file is a ValueError naming it.
        """
        folder = Path(folder)
        sld, n_draws = _read_band_csv(folder / "sld_bands.csv", "z")
        refl, _ = _read_band_csv(folder / "reflectivity_bands.csv", "q")
        return cls(
            sld[:, 0],
            sld[:, 1],
            (sld[:, 2], sld[:, 3]),
            (sld[:, 4], sld[:, 5]),
            refl[:, 0],
            refl[:, 1],
            (refl[:, 2], refl[:, 3]),
            (refl[:, 4], refl[:, 5]),
            [dict(row) for row in parameter_table or []],
            n_draws,
            int(n_posterior),
            bool(converged),
            float(seconds),
        )


def _read_band_csv(path: Path, first: str) -> tuple[np.ndarray, int]:
    """One bands CSV as an (n, 6) array and the number of draws its first line states."""
    if not path.is_file():
        raise ValueError(f"{path}: no such bands file (Bands.to_csv writes sld_bands.csv and reflectivity_bands.csv)")
    lines = path.read_text(encoding="utf-8").splitlines()
    expected = f"{first},median,lo68,hi68,lo95,hi95"
    if len(lines) < 3 or not lines[0].startswith("#") or lines[1] != expected:
        raise ValueError(f"{path}: not a bands file: expected a '#' note, then the header {expected!r}, then rows")
    try:
        n_draws = int(lines[0].rsplit(" from ", 1)[1].split()[0])
        table = np.array([[float(v) for v in line.split(",")] for line in lines[2:] if line.strip()])
    except (IndexError, ValueError) as exc:
        raise ValueError(f"{path}: not a bands file: {exc}") from None
    if table.ndim != 2 or table.shape[1] != 6:
        raise ValueError(f"{path}: expected 6 columns ({expected}), got {table.shape[-1]}")
    return table, n_draws


class _Progress:
    """bumps monitor: DREAM generations as workbench progress events."""

    def __init__(self, reporter: Reporter, total: int) -> None:
        self.reporter, self.total, self.every = reporter, total, max(1, total // 50)

    def config_history(self, history) -> None:
        history.requires(step=1)

    def __call__(self, history) -> None:
        step = int(history.step[0])
        if step % self.every == 0 or step >= self.total:
            self.reporter.progress(STAGE, min(step, self.total), self.total, "generations")


@njit(cache=True)
def _seed_numba(seed: int) -> None:
    """Seed numba's generator (used by bumps' jitted DREAM step) in this thread."""
    np.random.seed(seed)


def run_dream(
    problem, *, samples: int, burn: int, pop: int, seed: int, init: str = "eps", reporter: Reporter | None = None
) -> tuple[Any, bool]:
    """Run bumps DREAM on ``problem`` with numpy's global RNG seeded; returns (DREAM state, converged).

    ``converged`` is bumps' own verdict (a Kolmogorov–Smirnov test of log p between the start and
    the end of the chains); when it fails bumps keeps the second half of the chains only.
    """
    from bumps.fitters import DreamFit, FitDriver  # heavy (bumps): imported on use
    from bumps.util import push_seed  # heavy (bumps): imported on use

    reporter = reporter or Reporter()
    chains = pop * len(problem.getp())
    total = burn + (samples + chains - 1) // chains
    driver = FitDriver(
        DreamFit,
        problem=problem,
        monitors=[_Progress(reporter, total)],
        abort_test=lambda: reporter.stop.stopped,
        samples=int(samples),
        burn=int(burn),
        pop=int(pop),
        init=init,
    )
    with push_seed(seed), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _seed_numba(seed)
        driver.clip()
        driver.fit()
    converged = True
    for w in caught:
        if "Did not converge" in str(w.message):
            converged = False
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    reporter.check_stop()  # DREAM returns early on abort: report it as a cancellation
    if not converged:
        reporter.warn(
            STAGE,
            f"DREAM did not reach equilibrium in {samples} samples (bumps' K-S test); "
            "bands use the second half of the chains: raise samples or burn",
        )
    return driver.fitter.state, converged


def _draw_arrays(
    stack: FilmStack, slots: list[tuple[str, int]], points: np.ndarray, scale: float, background: float
) -> tuple[StackArrays, np.ndarray, np.ndarray]:
    """Stacks (n, L) and per-draw scale and background for posterior ``points`` (n, k) in ``slots`` order."""
    n = points.shape[0]
    base = stack.to_arrays()
    arrays = StackArrays(
        *(np.repeat(np.asarray(a), n, axis=0) for a in (base.sld, base.isld, base.thickness, base.roughness))
    )
    sc, bg = np.full(n, float(scale)), np.full(n, float(background))
    for k, (what, i) in enumerate(slots):
        if what == "probe.scale":
            sc = points[:, k].copy()
        elif what == "probe.background":
            bg = points[:, k].copy()
        else:
            getattr(arrays, what)[:, i] = points[:, k]
    return arrays, sc, bg


def _band(values: np.ndarray) -> tuple[np.ndarray, Band, Band]:
    lo95, lo68, med, hi68, hi95 = np.percentile(values, PERCENTILES, axis=0)
    return med, (lo68, hi68), (lo95, hi95)


def dream_bands(
    stack: FilmStack,
    data: Measurement,
    free: Mapping[str, tuple[float, float]],
    *,
    scale: float = 1.0,
    background: float = 0.0,
    samples: int = 20000,
    burn: int = 100,
    pop: int = 10,
    seed: int = 0,
    z: np.ndarray | None = None,
    n_draws: int = 500,
    oversample: int | None = DEFAULT_OVERSAMPLE,
    init: str = "eps",
    reporter: Reporter | None = None,
) -> Bands:
    """Sample the posterior of ``free`` (name → (lo, hi), uniform priors) around ``stack`` with DREAM; return bands.

    ``samples`` is DREAM's number of posterior draws (generations × pop × #free), ``burn`` the
    burn-in generations; ``stack``, ``scale`` and ``background`` are the starting point (a fit).
    """
    reporter = reporter or Reporter()
    t0 = time.perf_counter()
    model = refl1d_model(stack, data, free=free, scale=scale, background=background, oversample=oversample)
    state, converged = run_dream(
        model.problem, samples=samples, burn=burn, pop=pop, seed=seed, init=init, reporter=reporter
    )
    points = state.draw().points[:, model.order]  # columns in our ``free`` order
    n_posterior = points.shape[0]
    points = _some_draws(points, n_draws, seed)
    inputs = model.inputs
    probe = Probe(inputs.q, dq=inputs.dq, dq_is_fwhm=False)
    best = state.best()[0][model.order]
    bands = _bands_of_draws(stack, inputs.slots, points, scale, background, probe, model.names, best, z)
    bands.n_posterior, bands.converged, bands.seconds = n_posterior, converged, time.perf_counter() - t0
    reporter.timing(STAGE, "dream", bands.seconds, int(samples))
    return bands


def _some_draws(points: np.ndarray, n_draws: int, seed: int) -> np.ndarray:
    """At most ``n_draws`` posterior points, chosen with ``default_rng(seed)`` (kept in chain order)."""
    if points.shape[0] <= n_draws:
        return points
    return points[np.sort(np.random.default_rng(seed).choice(points.shape[0], n_draws, replace=False))]


def _bands_of_draws(
    stack: FilmStack,
    slots: list[tuple[str, int]],
    points: np.ndarray,
    scale: float,
    background: float,
    probe: Probe,
    names: list[str],
    best: np.ndarray,
    z: np.ndarray | None,
) -> Bands:
    """SLD profiles and R(Q) (fast engine, ``probe``'s resolution) of every draw, and their percentile bands."""
    arrays, sc, bg = _draw_arrays(stack, slots, points, scale, background)
    if z is None:  # one grid spanning refl1d's profile range of every draw
        left, right = profile_range(torch.as_tensor(arrays.thickness), torch.as_tensor(arrays.roughness))
        z = np.linspace(float(left.min()), float(right.max()), DEFAULT_PROFILE_POINTS)
    z = np.asarray(z, dtype=np.float64)
    _, rho, _ = sld_profile(arrays, z=z)
    curves = reflectivity(arrays, probe, engine="fast", scale=sc, background=bg)
    sld_median, sld_68, sld_95 = _band(rho)
    r_median, r_68, r_95 = _band(curves)
    p_median, p_68, p_95 = _band(points)
    table = [
        {
            "name": name,
            "median": float(p_median[k]),
            "lo68": float(p_68[0][k]),
            "hi68": float(p_68[1][k]),
            "lo95": float(p_95[0][k]),
            "hi95": float(p_95[1][k]),
            "best": float(best[k]),
        }
        for k, name in enumerate(names)
    ]
    return Bands(z, sld_median, sld_68, sld_95, probe.q, r_median, r_68, r_95, table, points.shape[0], points.shape[0])


def _slots(stack: FilmStack, names: list[str]) -> list[tuple[str, int]]:
    """refine's (field, layer index) slot of each parameter name; (probe.*, -1) for the probe."""
    return [(n, -1) if n.startswith("probe.") else tuple(reversed(_resolve(stack, n))) for n in names]


def dream_joint_bands(
    result: JointRefineResult,
    datas: list[Measurement],
    *,
    samples: int = 20000,
    burn: int = 100,
    pop: int = 10,
    seed: int = 0,
    n_draws: int = 500,
    oversample: int | None = DEFAULT_OVERSAMPLE,
    init: str = "eps",
    reporter: Reporter | None = None,
) -> list[Bands]:
    """DREAM on the joint refl1d model of a co-refinement (started at its fit); one set of bands per contrast.

    The posterior is joint (a shared parameter is one dimension); each contrast's bands are its
    SLD profile and R(Q) over the same draws, its table in its own parameter names.
    """
    from .joint_export import joint_refl1d_model  # the joint export imports the refl1d model text: kept on use

    reporter = reporter or Reporter()
    t0 = time.perf_counter()
    model = joint_refl1d_model(result, datas, oversample=oversample)
    model.problem.setp(np.asarray(result.values)[np.argsort(model.order)])
    state, converged = run_dream(
        model.problem, samples=samples, burn=burn, pop=pop, seed=seed, init=init, reporter=reporter
    )
    points = state.draw().points[:, model.order]
    n_posterior = points.shape[0]
    points = _some_draws(points, n_draws, seed)
    best = state.best()[0][model.order]
    out = []
    for fit, label in zip(result.contrasts, result.labels):
        cols = [result.names.index(n if n in result.shared else f"{label}{SEPARATOR}{n}") for n in fit.names]
        bands = _bands_of_draws(
            fit.stack,
            _slots(fit.stack, fit.names),
            points[:, cols],
            fit.scale,
            fit.background,
            fit.probe,
            list(fit.names),
            best[cols],
            None,
        )
        bands.n_posterior, bands.converged = n_posterior, converged
        out.append(bands)
    seconds = time.perf_counter() - t0
    for bands in out:
        bands.seconds = seconds
    reporter.timing(STAGE, "dream", seconds, int(samples))
    return out


def covariance_bands(result, *, n_draws: int = 500, seed: int = 0, z: np.ndarray | None = None) -> Bands:
    """Bands from the fit's own Gaussian approximation, in milliseconds instead of DREAM's minutes.

    ``result`` is a :class:`~workbench.analysis.refine.RefineResult`: ``n_draws`` parameter vectors
    from N(values, covariance) (seeded), clipped to the fit bounds, become SLD profiles and R(Q)
    curves; the bands are their percentiles.  Good near a well-determined optimum; for correlated
    or bound-limited parameters use :func:`dream_bands`.
    """
    t0 = time.perf_counter()

    rng = np.random.default_rng(seed)
    points = rng.multivariate_normal(result.values, result.covariance, size=n_draws, method="eigh")
    lo = np.array([result.bounds[n][0] for n in result.names])
    hi = np.array([result.bounds[n][1] for n in result.names])
    points = np.clip(points, lo, hi)
    bands = _bands_of_draws(
        result.stack,
        _slots(result.stack, result.names),
        points,
        result.scale,
        result.background,
        result.probe,
        list(result.names),
        np.asarray(result.values),
        z,
    )
    bands.seconds = time.perf_counter() - t0
    return bands

"""Co-refinement: one film fitted to several measured curves at once (contrast variation).

Solid–liquid samples are measured in D2O, H2O and a contrast-matched mixture: the film is the same,
the ambient (or backing) SLD differs, and each curve has its own resolution, scale and background.
Fitting each curve alone leaves correlated parameters undetermined; fitting them together with the
film's parameters *shared* pins them down (refnx ``GlobalObjective``, refl1d's multi-model
``FitProblem``).

Each :class:`Contrast` is a refinement problem of its own (``refine.build_problem``: its data, probe
and starting stack).  The joint parameter vector holds every shared parameter once and every other
free parameter once per contrast, named ``"<label>:<name>"``; χ² is the sum over contrasts, the
Jacobian is assembled block by block, and the uncertainties come from the joint Jacobian.  The
optimizers are refine's own (least squares, differential evolution, both), so ``method``, Stop and
the per-iteration events behave the same as for one curve.

By default a stack parameter is shared when it is free in every contrast with the same starting
value in each (the film); parameters whose start differs (each solvent's SLD) and the probe's scale
and background stay per contrast.  ``shared`` names them explicitly instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import OptimizeResult

from ..data.measured import Measurement
from ..events import Reporter
from ..physics import FilmStack, Probe
from .refine import (
    DE_GENERATIONS,
    DE_TOLERANCE,
    ENGINES,
    METHODS,
    PROBE_PARAMETERS,
    STAGE,
    Problem,
    RefineError,
    RefineResult,
    _assemble_result,
    _covariance,
    _flags,
    _Objective,
    build_problem,
    optimize,
    replan,
)

SEPARATOR = ":"  # "<contrast label>:<parameter>" for a parameter fitted separately per contrast


@dataclass
class Contrast:
    """One measured curve of a co-refinement: its data, starting stack (its own ambient/backing SLD) and probe."""

    data: Measurement
    stack: FilmStack
    label: str = ""
    probe: Probe | None = None
    scale: float = 1.0
    background: float = 0.0


@dataclass
class JointProblem:
    """Several refinement problems and the joint parameter vector: ``index[k]`` picks contrast k's parameters."""

    problems: list[Problem]
    labels: list[str]
    names: list[str]
    lo: np.ndarray
    hi: np.ndarray
    x0: np.ndarray
    index: list[np.ndarray]
    shared: list[str]
    rows: list[slice] = field(default_factory=list)  # each contrast's rows of the joint residual vector


@dataclass
class JointRefineResult:
    """A finished co-refinement: joint values ± 1σ (from the joint Jacobian) and one RefineResult per contrast."""

    contrasts: list[RefineResult]
    labels: list[str]
    shared: list[str]
    names: list[str]
    values: np.ndarray
    uncertainties: np.ndarray
    covariance: np.ndarray
    chi2: float
    chi2_per_point: float
    n_points: int
    history: list[dict[str, float]]
    seconds: float
    converged: bool
    message: str
    method: str = "lsq"
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    at_bound: dict[str, str] = field(default_factory=dict)
    undetermined: dict[str, str] = field(default_factory=dict)
    start_chi2: float = math.nan

    @property
    def n_left_out(self) -> int:
        return sum(c.n_left_out for c in self.contrasts)

    @property
    def left_out_q(self) -> np.ndarray:
        return np.concatenate([c.left_out_q for c in self.contrasts])

    table = RefineResult.table
    flag = RefineResult.flag
    notes = RefineResult.notes

    def contrast(self, label: str) -> RefineResult:
        """The fit of one contrast by its label."""
        if label not in self.labels:
            raise KeyError(f"no contrast {label!r}; contrasts are {self.labels}")
        return self.contrasts[self.labels.index(label)]


class _JointObjective:
    """The concatenated weighted residuals of every contrast, their block Jacobian and batched χ² (for DE)."""

    def __init__(self, problem: JointProblem, engine: str, reporter: Reporter) -> None:
        self.problem = problem
        self.reporter = reporter
        inner = Reporter(stop=reporter.stop)  # the parts' own iteration records would duplicate the joint ones
        self.parts = [_Objective(p, engine, inner) for p in problem.problems]
        self.history: list[dict[str, float]] = []

    def residuals(self, x: np.ndarray) -> np.ndarray:
        return np.concatenate([part.residuals(x[i]) for part, i in zip(self.parts, self.problem.index)])

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        jac = np.zeros((self.problem.rows[-1].stop, x.size))
        for part, i, rows in zip(self.parts, self.problem.index, self.problem.rows):
            jac[rows, i] = part.jacobian(x[i])
        return jac

    def chi2_batch(self, xs: np.ndarray) -> np.ndarray:
        return sum(part.chi2_batch(xs[:, i]) for part, i in zip(self.parts, self.problem.index))

    record_iteration = _Objective.record_iteration


def _labels(contrasts: Sequence[Contrast]) -> list[str]:
    labels = [c.label or f"c{k + 1}" for k, c in enumerate(contrasts)]
    for label in labels:
        if SEPARATOR in label or not label.strip():
            raise RefineError(f"contrast label {label!r} must be non-empty and free of {SEPARATOR!r}")
    if len(set(labels)) != len(labels):
        raise RefineError(f"contrast labels must differ, got {labels}")
    return labels


def _default_shared(problems: Sequence[Problem]) -> list[str]:
    """Stack parameters free in every contrast, with the same start value in each."""
    first = problems[0]
    out = []
    for j, name in enumerate(first.names):
        if name in PROBE_PARAMETERS:
            continue
        if all(name in p.names and math.isclose(p.x0[p.names.index(name)], first.x0[j]) for p in problems[1:]):
            out.append(name)
    return out


def build_joint_problem(
    contrasts: Sequence[Contrast],
    *,
    free: Sequence[str] | None = None,
    shared: Sequence[str] | None = None,
    bounds: dict[str, tuple[float, float]] | None = None,
    dr_floor: float | None = None,
    q_range: tuple[float, float] | None = None,
) -> JointProblem:
    """Every contrast's problem and the joint vector; a shared parameter takes the first contrast's start.

    ``free``: parameter names fitted in every contrast (default: each stack's bounded parameters);
    ``bounds``: name → (lo, hi) for every contrast (a shared parameter's range is the intersection
    of the contrasts' ranges).
    """
    if len(contrasts) < 2:
        raise RefineError(f"co-refinement needs at least two curves, got {len(contrasts)}")
    labels = _labels(contrasts)
    bounds = dict(bounds or {})

    def problems_for(stacks: Sequence[FilmStack], extra: dict[str, tuple[float, float]]) -> list[Problem]:
        out = []
        for c, stack, label in zip(contrasts, stacks, labels):
            try:
                out.append(
                    build_problem(
                        c.data,
                        stack,
                        free=free,
                        bounds={**bounds, **extra},
                        probe=c.probe,
                        scale=c.scale,
                        background=c.background,
                        dr_floor=dr_floor,
                        q_range=q_range,
                    )
                )
            except RefineError as exc:
                raise RefineError(f"contrast {label}: {exc}") from exc
        return out

    problems = problems_for([c.stack for c in contrasts], {})
    if shared is None:
        shared = _default_shared(problems)
    shared = list(dict.fromkeys(shared))
    joint_bounds: dict[str, tuple[float, float]] = {}
    stacks = [c.stack for c in contrasts]
    for name in shared:
        missing = [label for label, p in zip(labels, problems) if name not in p.names]
        if missing:
            raise RefineError(f"shared parameter {name!r} is not free in contrast(s) {', '.join(missing)}")
        js = [p.names.index(name) for p in problems]
        lo = max(p.lo[j] for p, j in zip(problems, js))
        hi = min(p.hi[j] for p, j in zip(problems, js))
        if not lo < hi:
            raise RefineError(f"shared parameter {name!r}: the contrasts' bounds do not overlap")
        value = float(np.clip(problems[0].x0[js[0]], lo, hi))
        joint_bounds[name] = (lo, hi)
        for k, p in enumerate(problems):
            what, i = p.slots[js[k]]
            if i >= 0:
                stacks[k] = stacks[k].with_value(i, what, value)
    if shared:
        problems = problems_for(stacks, joint_bounds)
        for name in shared:  # a shared probe parameter starts from the first contrast's value too
            for p in problems[1:]:
                p.x0[p.names.index(name)] = problems[0].x0[problems[0].names.index(name)]

    names, lo, hi, x0, index, rows = [], [], [], [], [], []
    position: dict[str, int] = {}
    start_row = 0
    for label, p in zip(labels, problems):
        picks = []
        for j, name in enumerate(p.names):
            key = name if name in shared else f"{label}{SEPARATOR}{name}"
            if key not in position:
                position[key] = len(names)
                names.append(key)
                lo.append(p.lo[j])
                hi.append(p.hi[j])
                x0.append(p.x0[j])
            picks.append(position[key])
        index.append(np.array(picks, dtype=int))
        rows.append(slice(start_row, start_row + p.q.size))
        start_row += p.q.size
    return JointProblem(
        problems, labels, names, np.array(lo), np.array(hi), np.array(x0, dtype=float), index, shared, rows
    )


def _replan(problem: JointProblem, x: np.ndarray) -> bool:
    """Give each contrast the resolution plan of its fitted stack; True when any plan changed."""
    return any([replan(p, x[i]) for p, i in zip(problem.problems, problem.index)])  # a list: every contrast


def _contrast_results(
    problem: JointProblem,
    fit: OptimizeResult,
    cov: np.ndarray,
    sigma: np.ndarray,
    at_bound: dict[str, str],
    undetermined: dict[str, str],
    *,
    engine: str,
    method: str,
    started: float,
) -> list[RefineResult]:
    """One RefineResult per contrast with its own curve and χ², and σ taken from the joint covariance."""
    out = []
    for p, i, rows in zip(problem.problems, problem.index, problem.rows):
        own = OptimizeResult(
            x=fit.x[i],
            cost=0.5 * float(np.sum(fit.fun[rows] ** 2)),
            jac=fit.jac[rows][:, i],
            success=fit.success,
            message=fit.message,
        )
        result = _assemble_result(
            p, own, [], engine=engine, scale_covariance=False, starts=1, start_chi2=math.nan, started=started
        )
        result.uncertainties = sigma[i]
        result.covariance = cov[np.ix_(i, i)]
        joint = [problem.names[k] for k in i]
        result.at_bound = {local: at_bound[j] for local, j in zip(p.names, joint) if j in at_bound}
        result.undetermined = {local: undetermined[j] for local, j in zip(p.names, joint) if j in undetermined}
        result.method = method
        result.message = str(fit.message)
        out.append(result)
    return out


def corefine(
    contrasts: Sequence[Contrast],
    *,
    free: Sequence[str] | None = None,
    shared: Sequence[str] | None = None,
    bounds: dict[str, tuple[float, float]] | None = None,
    dr_floor: float | None = None,
    q_range: tuple[float, float] | None = None,
    method: str = "lsq",
    multi_start: int = 0,
    seed: int = 0,
    max_nfev: int = 500,
    tolerance: float = 1e-9,
    population: int | None = None,
    generations: int = DE_GENERATIONS,
    de_tolerance: float = DE_TOLERANCE,
    scale_covariance: bool = False,
    engine: str = "fast",
    reporter: Reporter | None = None,
) -> JointRefineResult:
    """Fit several contrasts of one film together; χ² summed, shared parameters fitted once.

    Options mean what they mean for :func:`~workbench.analysis.refine.refine`; ``shared`` names the
    parameters fitted once for all contrasts (default: see the module docstring).
    """
    if engine not in ENGINES:
        raise RefineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if method not in METHODS:
        raise RefineError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    reporter = reporter or Reporter()
    t0 = time.perf_counter()
    problem = build_joint_problem(
        contrasts, free=free, shared=shared, bounds=bounds, dr_floor=dr_floor, q_range=q_range
    )
    objective = _JointObjective(problem, engine, reporter)
    start_chi2 = float(np.sum(objective.residuals(problem.x0) ** 2))
    fit, history, _ = optimize(
        objective,
        lambda x: _replan(problem, x),
        method=method,
        multi_start=multi_start,
        seed=seed,
        max_nfev=max_nfev,
        tolerance=tolerance,
        population=population,
        generations=generations,
        de_tolerance=de_tolerance,
    )
    fit.fun = objective.residuals(fit.x)
    n = int(fit.fun.size)
    chi2 = float(np.sum(fit.fun**2))
    cov, sigma = _covariance(fit.jac, chi2, n, len(problem.names), scale_covariance)
    at_bound, undetermined = _flags(problem, fit.x, sigma, fit.jac)
    per_contrast = _contrast_results(
        problem, fit, cov, sigma, at_bound, undetermined, engine=engine, method=method, started=t0
    )
    result = JointRefineResult(
        contrasts=per_contrast,
        labels=list(problem.labels),
        shared=list(problem.shared),
        names=list(problem.names),
        values=fit.x.copy(),
        uncertainties=sigma,
        covariance=cov,
        chi2=chi2,
        chi2_per_point=chi2 / n,
        n_points=n,
        history=history,
        seconds=time.perf_counter() - t0,
        converged=bool(fit.success),
        message=str(fit.message),
        method=method,
        bounds={name: (float(a), float(b)) for name, a, b in zip(problem.names, problem.lo, problem.hi)},
        at_bound=at_bound,
        undetermined=undetermined,
        start_chi2=start_chi2,
    )
    reporter.timing(STAGE, "corefine", result.seconds, int(getattr(fit, "nfev", 0) or 0))
    return result

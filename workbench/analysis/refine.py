"""Refinement: fit a film stack to a measured (or synthetic) curve with the differentiable kernel.

χ² = Σ ((R_model − R) / dR)², R_model the torch kernel with the data's own resolution, scale and
background.  The optimizer is scipy's trust-region-reflective least squares (``trf``), which
keeps every parameter inside its bounds; a network prediction is usually close enough that it
converges in a few tens of iterations.  Two engines give the model and its Jacobian:

- ``"torch"``: the differentiable kernel, exact forward-mode Jacobians (``torch.func.jacfwd``);
- ``"fast"``: the numba kernel for the curve and central differences for the Jacobian — the
  2P + 1 curves of one Jacobian are a single batched call, ~50× cheaper than ``jacfwd`` here, and
  the difference from the exact Jacobian (~1e-8 relative) is far below what the fit can notice.

Both use the same resolution plan, fixed for the whole fit so that the model is a smooth function
of the parameters.  A stack the shared plan cannot resolve (a thick layer, a waveguide resonance;
``physics.resolution.needs_own_rule``) gets its own adaptive plan; the fit is then repeated from the
optimum with the plan of the fitted stack, until the plan no longer changes (at most MAX_REPLANS).

Points without an error bar (dR ≤ 0 or not finite: reduction software writes R = 0, dR = 0 rows
as placeholders) are left out of χ² and counted (``RefineResult.n_left_out``): a dR of 1e-12 would
give such a point a weight of 1e24, and on a real 1,244 Å oxide film one such row moved the
thickness by 15 Å and χ²/N from 1.85 to 27.  ``dr_floor`` (dR ≥ dr_floor·|R| for every point)
applies only when asked for.  R ≤ 0 with dR > 0 stays in: it is a valid Gaussian measurement.
Curves without any dR column (simulations) are weighted by 1 % of |R| (``dr_floor`` overrides).

1σ uncertainties come from the Jacobian at the optimum, cov = (JᵀJ)⁻¹ (optionally scaled by
χ²/N).  The result marks what they cannot tell: parameters within 0.1 % of the bound range from a
bound (the optimum may lie beyond it: widen the bound) and undetermined ones (σ > |value|, or in a
direction where JᵀJ is singular: fix the parameter or tighten its bound); ``RefineResult.notes()``
says what to do.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import OptimizeResult, differential_evolution, least_squares
from scipy.stats import qmc

from ..data.measured import Measurement
from ..events import Reporter
from ..physics import FilmStack, Probe, ResolutionPlan, build_plan, critical_edge, sld_profile
from ..physics.kernel_fast import reflectivity_fast
from ..physics.kernel_torch import reflectivity_unsmeared
from ..physics.resolution import needs_own_rule, stack_plan
from ..physics.stack import PARAMETER_FIELDS
from .metrics import GOOD_CHI2, POOR_CHI2, parameter_unit

STAGE = "refine"
PROBE_PARAMETERS = ("probe.scale", "probe.background")
ENGINES = ("fast", "torch")
METHODS = ("lsq", "de", "auto")  # local least squares; differential evolution; DE then the least-squares polish
DE_POPULATION = 15  # members per free parameter (scipy's default popsize), at least DE_MIN_POPULATION in all
DE_MIN_POPULATION = 20
DE_GENERATIONS = 300
DE_TOLERANCE = 0.01  # stop when std(χ² of the population) ≤ this × |mean χ²| (scipy's ``tol``)
# central-difference step of the fast engine, relative to max(|x|, 1e-3 · (hi − lo))
FD_STEP = 1e-6
NO_DR_RELATIVE = 0.01  # dR = 1 % of |R| for a curve that carries no dR column at all
AT_BOUND = 1e-3  # a parameter within this fraction of its bound range from a bound is "at the bound"
SINGULAR_RTOL = 1e-7  # singular value of the column-scaled Jacobian below this × the largest: JᵀJ singular
MAX_REPLANS = 3  # refits from the optimum with the fitted stack's own resolution plan


class RefineError(ValueError):
    """A refinement request is inconsistent (unknown parameter, start outside bounds, ...)."""


@dataclass
class RefineResult:
    """A finished fit: the fitted stack and probe, values with 1σ uncertainties, χ², curves and bookkeeping."""

    stack: FilmStack
    scale: float
    background: float
    names: list[str]
    values: np.ndarray
    uncertainties: np.ndarray
    covariance: np.ndarray
    chi2: float
    chi2_per_point: float
    n_points: int
    history: list[dict[str, float]]
    q: np.ndarray
    r_fit: np.ndarray
    profile: tuple[np.ndarray, np.ndarray]
    seconds: float
    converged: bool
    message: str
    starts: int = 1
    start_chi2: float = math.nan
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)  # name → (lo, hi) actually used
    probe: Probe | None = None  # the data's Q points and resolution the fit used
    n_left_out: int = 0  # data points left out of χ²: dR ≤ 0 or not finite (or R not finite)
    left_out_q: np.ndarray = field(default_factory=lambda: np.zeros(0))  # their Q values
    at_bound: dict[str, str] = field(default_factory=dict)  # name → "lower" | "upper"
    undetermined: dict[str, str] = field(default_factory=dict)  # name → why its σ means nothing
    method: str = "lsq"  # how the optimum was found (METHODS)

    def table(self) -> list[dict[str, float | str | bool | None]]:
        """One row per free parameter: name, value, 1σ uncertainty and the flags (plain values, ready for JSON)."""
        return [
            {
                "name": n,
                "value": float(v),
                "uncertainty": float(u),
                "at_bound": self.at_bound.get(n),
                "undetermined": n in self.undetermined,
            }
            for n, v, u in zip(self.names, self.values, self.uncertainties)
        ]

    def flag(self, name: str) -> str:
        """A short mark for a table cell: "at upper bound", "undetermined", both, or ""."""
        marks = []
        if name in self.at_bound:
            marks.append(f"at {self.at_bound[name]} bound")
        if name in self.undetermined:
            marks.append("undetermined")
        return ", ".join(marks)

    def notes(self) -> list[str]:
        """What the numbers cannot tell, each with what to do about it (empty for a clean fit)."""
        out = []
        if self.n_left_out:
            where = ", ".join(f"{q:.4g}" for q in self.left_out_q[:5]) + (" …" if self.n_left_out > 5 else "")
            out.append(
                f"{_points(self.n_left_out)} without an error bar (dR ≤ 0 or not finite) left out of χ² "
                f"(Q = {where} Å⁻¹); pass dr_floor (CLI: --dr-floor) to weight them by a fraction of R instead"
            )
        values = dict(zip(self.names, self.values))
        sigmas = dict(zip(self.names, self.uncertainties))
        for name, side in self.at_bound.items():
            lo, hi = self.bounds[name]
            out.append(
                f"{name} = {values[name]:.6g} is at its {side} bound {lo if side == 'lower' else hi:.6g}: "
                "the best value may lie beyond it; widen the bound (or fix the parameter if the bound is physical)"
            )
        for name, why in self.undetermined.items():
            out.append(
                f"{name} = {values[name]:.6g} ± {sigmas[name]:.2g} is not determined by these data ({why}): "
                "fix it at a known value or tighten its bounds"
            )
        return out


def parameter_label(name: str) -> str:
    """A parameter's name with its unit for people: "siox.thickness (Å)", "probe.scale"."""
    unit = parameter_unit(name)
    return f"{name} ({unit})" if unit else name


def wide_sigma(result: RefineResult) -> list[str]:
    """Parameters whose 1σ exceeds their whole bound range (or is not finite): the data do not bound them."""
    out = []
    for name, sigma in zip(result.names, result.uncertainties):
        lo, hi = result.bounds.get(name, (-math.inf, math.inf))
        if not math.isfinite(sigma) or sigma > hi - lo:
            out.append(name)
    return out


def verdict(result: RefineResult) -> tuple[str, str]:
    """The fit's verdict from its numbers: (level, words), level "ok" for a good fit and "warn" otherwise.

    Good: χ²/N ≤ GOOD_CHI2 (acceptable up to POOR_CHI2), converged, no parameter at a bound and every
    σ determined.  Anything else is said with its reasons, so a poor fit never reads as a success.
    """
    x2 = result.chi2_per_point
    n = len(result.names)
    undetermined = list(dict.fromkeys([*result.undetermined, *wide_sigma(result)]))
    reasons = []
    if not math.isfinite(x2) or x2 > POOR_CHI2:
        reasons.append(f"χ²/N {x2:.3g} > {POOR_CHI2:g}: the model does not describe the data within their error bars")
    if result.at_bound:
        reasons.append(f"{len(result.at_bound)} of {n} at a bound ({_some(result.at_bound)}): widen the bounds")
    if undetermined:
        reasons.append(f"{len(undetermined)} of {n} undetermined ({_some(undetermined)}): fix them or tighten bounds")
    if not result.converged:
        reasons.append(f"did not converge ({result.message}): raise max evaluations")
    if reasons:
        poor = not math.isfinite(x2) or x2 > POOR_CHI2
        if not poor:  # the number a person reads first, whatever else needs attention
            reasons.insert(0, f"χ²/N {x2:.3g}")
        return "warn", f"{'poor fit' if poor else 'fit needs attention'}: " + "; ".join(reasons)
    word = "good fit" if x2 <= GOOD_CHI2 else "acceptable fit"
    return "ok", f"{word}: χ²/N {x2:.3g}, all {n} parameters inside their bounds and determined"


def _some(names, most: int = 4) -> str:
    """At most ``most`` names, then "…"."""
    names = list(names)
    return ", ".join(names[:most]) + (", …" if len(names) > most else "")


@dataclass
class Problem:
    """What is fitted: data, probe, the starting stack and the free parameters with their bounds."""

    q: np.ndarray
    r: np.ndarray
    dr: np.ndarray
    probe: Probe
    start: FilmStack
    names: list[str]
    lo: np.ndarray
    hi: np.ndarray
    x0: np.ndarray
    base: dict[str, torch.Tensor] = field(default_factory=dict)
    slots: list[tuple[str, int]] = field(default_factory=list)
    plan: ResolutionPlan | None = None
    calc_q: torch.Tensor | None = None
    left_out_q: np.ndarray = field(default_factory=lambda: np.zeros(0))  # data points not in χ²
    plan_key: tuple = ()  # what the plan was built for; a refit is needed when it changes


def parameter_name(stack: FilmStack, i: int, par: str) -> str:
    """The fit's name of layer ``i``'s parameter ``par``: ``"<layer name>.<par>"``."""
    return f"{stack.layers[i].name}.{par}"


def _resolve(stack: FilmStack, name: str) -> tuple[int, str]:
    """``"<layer name or index>.<par>"`` → (layer index, parameter field); RefineError names what is valid."""
    layer, _, par = name.rpartition(".")
    if par not in PARAMETER_FIELDS:
        raise RefineError(
            f"unknown parameter {name!r}: expected '<layer name>.<{'|'.join(PARAMETER_FIELDS)}>' "
            f"or one of {PROBE_PARAMETERS}"
        )
    for i, candidate in enumerate(stack.layers):
        if candidate.name == layer or str(i) == layer:
            return i, par
    raise RefineError(f"unknown layer {layer!r} in {name!r}; layers are {[layer.name for layer in stack.layers]}")


def build_problem(
    data: Measurement,
    start: FilmStack,
    *,
    free: Sequence[str] | None = None,
    bounds: dict[str, tuple[float, float]] | None = None,
    probe: Probe | None = None,
    scale: float = 1.0,
    background: float = 0.0,
    dr_floor: float | None = None,
    q_range: tuple[float, float] | None = None,
) -> Problem:
    """Collect data, resolution and free parameters; defaults: the stack's free bounds.

    Points whose dR is ≤ 0 or not finite are left out (``Problem.left_out_q``) unless ``dr_floor``
    is given, which makes every dR at least ``dr_floor``·|R|; a curve without a dR column is
    weighted by ``dr_floor`` (default 1 %) of |R|.
    """
    if dr_floor is not None and not (math.isfinite(dr_floor) and dr_floor >= 0):
        raise RefineError(f"dr_floor must be a fraction ≥ 0 of |R| (e.g. 0.01), got {dr_floor}")
    m = data.merge_duplicate_q() if data.has_duplicate_q else data
    keep = np.ones(m.q.size, dtype=bool)
    if q_range is not None:
        keep &= (m.q >= q_range[0]) & (m.q <= q_range[1])
    q, r = m.q[keep], m.r[keep]
    if m.dr is None:
        dr = (NO_DR_RELATIVE if dr_floor is None else dr_floor) * np.abs(r)
    else:
        dr = m.dr[keep]
        if dr_floor is not None:
            dr = np.fmax(dr, dr_floor * np.abs(r))  # fmax: a NaN dR takes the floor
    usable = np.isfinite(dr) & (dr > 0) & np.isfinite(r)
    if not usable.any():
        raise RefineError(
            f"none of the {q.size} data points has an error bar (dR > 0): give dR, or dr_floor to weight by |R|"
        )
    if probe is None:
        p = m.probe(scale=scale, background=background)
        probe = Probe(q[usable], dq=p.sigma[keep][usable], dq_is_fwhm=False, scale=scale, background=background)
    elif probe.q.size == q.size and not usable.all():
        probe = Probe(
            probe.q[usable], dq=probe.sigma[usable], dq_is_fwhm=False, scale=probe.scale, background=probe.background
        )
    left_out_q = q[~usable]
    q, r, dr = q[usable], r[usable], dr[usable]
    bounds = dict(bounds or {})
    if free is None:
        free = [parameter_name(start, b.i, b.par) for b in start.free_parameters]
    if not free:
        raise RefineError("nothing to fit: give free parameters or a stack with bounds")
    names, lo, hi, x0, slots = [], [], [], [], []
    for name in free:
        slot, value, a, b = _free_parameter(start, probe, name, bounds)
        names.append(name)
        lo.append(a)
        hi.append(b)
        x0.append(value)
        slots.append(slot)
    arrays = start.to_arrays()
    base = {f: torch.as_tensor(getattr(arrays, f)[0], dtype=torch.float64) for f in PARAMETER_FIELDS}
    plan, plan_key = _fit_plan(start, probe, slots, hi)
    return Problem(
        q=q,
        r=r,
        dr=dr,
        probe=probe,
        start=start,
        names=names,
        lo=np.array(lo),
        hi=np.array(hi),
        x0=np.array(x0, dtype=float),
        base=base,
        slots=slots,
        plan=plan,
        calc_q=torch.as_tensor(plan.calc_q),
        left_out_q=left_out_q,
        plan_key=plan_key,
    )


def _free_parameter(
    start: FilmStack, probe: Probe, name: str, bounds: dict[str, tuple[float, float]]
) -> tuple[tuple[str, int], float, float, float]:
    """One free parameter: its slot (field, layer index; -1 for the probe), start value and checked bounds.

    Bounds: ``bounds[name]`` if given, else the stack's own, else a default range around the start.
    """
    if name in PROBE_PARAMETERS:
        value = probe.scale if name == "probe.scale" else probe.background
        default = (0.5 * value, 2 * value) if name == "probe.scale" else (0.0, max(10 * abs(value), 1e-5))
        slot = (name, -1)
    else:
        i, par = _resolve(start, name)
        value = start.get(i, par)
        b = start.bound(i, par)
        default = (b.lo, b.hi) if b is not None and b.hi > b.lo else _default_bounds(par, value)
        slot = (par, i)
    a, b_ = bounds.get(name, default)
    if not a < b_:
        raise RefineError(f"bounds for {name} must satisfy lo < hi, got [{a}, {b_}]")
    if not a <= value <= b_:
        raise RefineError(f"start value of {name} ({value:g}) is outside its bounds [{a:g}, {b_:g}]")
    return slot, value, a, b_


def _fit_plan(
    stack: FilmStack, probe: Probe, slots: list[tuple[str, int]], hi: Sequence[float]
) -> tuple[ResolutionPlan, tuple]:
    """The resolution plan for a fit around ``stack``, and a key saying what it was built for.

    The shared plan, thick enough for the thickest film the bounds allow; or, for a stack that
    needs it (``needs_own_rule``), that stack's own adaptive plan.
    """
    a = stack.to_arrays()
    if needs_own_rule(probe, a.sld, a.isld, a.thickness)[0]:
        key = ("own", *(np.asarray(getattr(a, f)[0]).tobytes() for f in PARAMETER_FIELDS))
        return stack_plan(probe, a.sld[0], a.isld[0], a.thickness[0], a.roughness[0]), key
    thick = a.thickness[0].copy()
    for (what, i), top in zip(slots, hi):
        if what == "thickness":
            thick[i] = top
    total = float(np.sum(thick[1:-1]))
    edge = critical_edge(stack.substrate.sld, stack.ambient.sld) if stack.substrate.isld == 0 else None
    return build_plan(probe, 2.0 * max(total, 1.0), [] if edge is None else [edge]), ("shared", total, edge)


def _default_bounds(par: str, value: float) -> tuple[float, float]:
    """Bounds for a parameter the stack gives none for: a generous range around its start value."""
    if par == "sld":
        return value - 2.0, value + 2.0
    if par == "isld":
        return 0.0, max(1.0, 2 * value)
    if par == "thickness":
        return max(0.0, 0.5 * value), 1.5 * value + 10.0
    return 0.0, max(2 * value, 10.0)  # roughness


def model_curve(problem: Problem, x: torch.Tensor) -> torch.Tensor:
    """R(Q) of the stack with parameter vector ``x`` (physical units), differentiable."""
    parts = {f: problem.base[f].clone() for f in PARAMETER_FIELDS}
    scale = torch.tensor(problem.probe.scale, dtype=torch.float64)
    background = torch.tensor(problem.probe.background, dtype=torch.float64)
    for k, (what, i) in enumerate(problem.slots):
        if what == "probe.scale":
            scale = x[k]
        elif what == "probe.background":
            background = x[k]
        else:
            parts[what] = torch.cat([parts[what][:i], x[k : k + 1], parts[what][i + 1 :]])
    r = reflectivity_unsmeared(
        problem.calc_q, parts["sld"][None], parts["isld"][None], parts["thickness"][None], parts["roughness"][None]
    )
    if not problem.plan.identity:
        r = problem.plan.apply_torch(r)
    return scale * r[0] + background


def model_curves_fast(problem: Problem, xs: np.ndarray) -> np.ndarray:
    """R(Q) for a batch of parameter vectors ``xs`` (B, P) with the numba kernel, (B, nQ)."""
    xs = np.atleast_2d(xs)
    n = xs.shape[0]
    parts = {f: np.repeat(problem.base[f].numpy()[None], n, axis=0) for f in PARAMETER_FIELDS}
    scale = np.full(n, problem.probe.scale)
    background = np.full(n, problem.probe.background)
    for k, (what, i) in enumerate(problem.slots):
        if what == "probe.scale":
            scale = xs[:, k]
        elif what == "probe.background":
            background = xs[:, k]
        else:
            parts[what][:, i] = xs[:, k]
    return reflectivity_fast(
        problem.plan, parts["sld"], parts["isld"], parts["thickness"], parts["roughness"], scale, background
    )


def jacobian_fast(problem: Problem, x: np.ndarray) -> np.ndarray:
    """dR/dx (nQ, P) by central differences, all 2P curves in one batched kernel call."""
    h = FD_STEP * np.maximum(np.abs(x), 1e-3 * (problem.hi - problem.lo))
    steps = np.diag(h)
    curves = model_curves_fast(problem, np.concatenate([x + steps, x - steps]))
    p = x.size
    return ((curves[:p] - curves[p:]) / (2 * h[:, None])).T


def _stack_from(problem: Problem, x: np.ndarray) -> tuple[FilmStack, float, float]:
    """The starting stack, scale and background with the parameter vector ``x`` put in."""
    stack, scale, background = problem.start, problem.probe.scale, problem.probe.background
    for value, (what, i) in zip(x, problem.slots):
        if what == "probe.scale":
            scale = float(value)
        elif what == "probe.background":
            background = float(value)
        else:
            stack = stack.with_value(i, what, float(value))
    return stack, scale, background


class _Objective:
    """The weighted residuals (R_model − R) / dR of a problem and their Jacobian, by either engine.

    One object holds what ``least_squares`` calls: :meth:`residuals`, :meth:`jacobian` and the
    per-iteration :meth:`record_iteration`, which keeps the history of every start (and reports it).
    """

    def __init__(self, problem: Problem, engine: str, reporter: Reporter) -> None:
        self.problem = problem
        self.engine = engine
        self.reporter = reporter
        self.history: list[dict[str, float]] = []
        self._r_data = torch.as_tensor(problem.r)
        self._inv_dr_torch = torch.as_tensor(1.0 / problem.dr)
        self._inv_dr = 1.0 / problem.dr

    def residuals_torch(self, x: torch.Tensor) -> torch.Tensor:
        """The residuals as a differentiable function of ``x``: the torch engine's Jacobian is ``jacfwd`` of it."""
        return (model_curve(self.problem, x) - self._r_data) * self._inv_dr_torch

    def residuals(self, x: np.ndarray) -> np.ndarray:
        """The residuals at ``x``; checks Stop first, so that a fit can be cancelled between evaluations."""
        self.reporter.check_stop()
        if self.engine == "fast":
            res = (model_curves_fast(self.problem, x)[0] - self.problem.r) * self._inv_dr
        else:
            with torch.no_grad():
                res = self.residuals_torch(torch.as_tensor(x)).numpy()
        if not np.all(np.isfinite(res)):
            raise FloatingPointError(f"non-finite model curve at {dict(zip(self.problem.names, x))}")
        return res

    def chi2_batch(self, xs: np.ndarray) -> np.ndarray:
        """χ² of every row of ``xs`` (B, P) from one batched fast-engine call; a non-finite curve scores +inf."""
        self.reporter.check_stop()
        curves = model_curves_fast(self.problem, xs)
        chi2 = np.sum(((curves - self.problem.r) * self._inv_dr) ** 2, axis=1)
        return np.where(np.isfinite(chi2), chi2, np.inf)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """d(residuals)/dx (nQ, P): central differences ("fast") or forward-mode autograd ("torch")."""
        if self.engine == "fast":
            j = jacobian_fast(self.problem, x) * self._inv_dr[:, None]
        else:
            j = torch.func.jacfwd(self.residuals_torch)(torch.as_tensor(x)).numpy()
        if not np.all(np.isfinite(j)):
            raise FloatingPointError(f"non-finite gradient at {dict(zip(self.problem.names, x))}")
        return j

    def record_iteration(self, intermediate_result: OptimizeResult) -> None:
        """``least_squares`` callback (scipy hands over the iterate because of the parameter's name)."""
        values = dict(zip(self.problem.names, map(float, intermediate_result.x)))
        entry = {"iteration": len(self.history), "chi2": 2.0 * float(intermediate_result.cost), **values}
        self.history.append(entry)
        self.reporter.record(STAGE, "iteration", **entry)


def _starting_points(problem: Problem, multi_start: int, seed: int) -> list[np.ndarray]:
    """The given start, then ``multi_start`` points drawn uniformly inside the bounds (seeded: reproducible)."""
    starts = [problem.x0]
    rng = np.random.default_rng(seed)
    for _ in range(multi_start):
        starts.append(problem.lo + rng.random(problem.x0.size) * (problem.hi - problem.lo))
    return starts


def _best_fit(
    objective: _Objective, starts: Sequence[np.ndarray], *, max_nfev: int, tolerance: float
) -> tuple[OptimizeResult, list[dict[str, float]]]:
    """Run ``trf`` from every start; the lowest-cost fit and the iterations of that fit alone."""
    problem, reporter = objective.problem, objective.reporter
    best: tuple[OptimizeResult, list[dict[str, float]]] | None = None
    for k, x_start in enumerate(starts):
        if k > 0:
            reporter.log(STAGE, f"start {k + 1} of {len(starts)}")
        history_before = len(objective.history)
        res = least_squares(
            objective.residuals,
            np.clip(x_start, problem.lo, problem.hi),
            jac=objective.jacobian,
            bounds=(problem.lo, problem.hi),
            method="trf",
            x_scale="jac",
            max_nfev=max_nfev,
            callback=objective.record_iteration,
            ftol=tolerance,
            xtol=tolerance,
            gtol=tolerance,
        )
        if best is None or res.cost < best[0].cost:
            best = (res, objective.history[history_before:])
    return best


def _de_search(
    objective, *, population: int | None, generations: int, tolerance: float, seed: int
) -> tuple[OptimizeResult, list[dict[str, float]]]:
    """Differential evolution inside the bounds: the global search that a local fit from a poor start lacks.

    scipy's ``differential_evolution`` with ``vectorized=True``: each generation's whole population is
    one batch for ``objective.chi2_batch`` (the fast engine computes a batch of curves far cheaper than
    as many single calls).  The population is a seeded Latin hypercube with the start as one member,
    so the search never ends worse than its start.  Returns an OptimizeResult shaped like
    ``least_squares``' (x, cost = χ²/2, jac of the residuals at x) and one history entry per generation.
    """
    problem, reporter = objective.problem, objective.reporter
    p = problem.x0.size
    n = population if population is not None else max(DE_MIN_POPULATION, DE_POPULATION * p)
    if n < 5:
        raise RefineError(f"differential evolution needs a population of at least 5, got {n}")
    if generations < 1:
        raise RefineError(f"differential evolution needs at least 1 generation, got {generations}")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise RefineError(f"DE tolerance must be a positive fraction of χ² (e.g. 0.01), got {tolerance}")
    rng = np.random.default_rng(seed)
    init = qmc.scale(qmc.LatinHypercube(d=p, rng=rng).random(n - 1), problem.lo, problem.hi)
    init = np.vstack([np.clip(problem.x0, problem.lo, problem.hi), init])
    history: list[dict[str, float]] = []

    def generation(intermediate_result: OptimizeResult) -> None:
        values = dict(zip(problem.names, map(float, intermediate_result.x)))
        entry = {"iteration": len(history), "generation": len(history) + 1, "chi2": float(intermediate_result.fun)}
        history.append({**entry, **values})
        reporter.record(STAGE, "generation", **entry, **values)
        reporter.progress(STAGE, len(history), generations, "generations")

    res = differential_evolution(
        lambda xs: objective.chi2_batch(xs.T),
        list(zip(problem.lo, problem.hi)),
        maxiter=generations,
        tol=tolerance,
        rng=rng,
        init=init,
        polish=False,
        vectorized=True,
        updating="deferred",
        callback=generation,
    )
    if not math.isfinite(res.fun):
        raise FloatingPointError("differential evolution found no parameter set with a finite model curve")
    fit = OptimizeResult(
        x=np.asarray(res.x, dtype=float),
        cost=0.5 * float(res.fun),
        jac=objective.jacobian(res.x),
        success=bool(res.success),
        message=f"differential evolution: {res.message} ({len(history)} generations of {n})",
        nfev=int(res.nfev),
    )
    return fit, history


def _covariance(jac: np.ndarray, chi2: float, n_points: int, n_free: int, scale: bool) -> tuple[np.ndarray, np.ndarray]:
    """cov = (JᵀJ)⁺ at the optimum (× χ²/(N − P) when ``scale`` and N > P) and the 1σ uncertainties."""
    cov = np.linalg.pinv(jac.T @ jac)
    if scale and n_points > n_free:
        cov = cov * chi2 / (n_points - n_free)
    return cov, np.sqrt(np.clip(np.diag(cov), 0, None))


def _singular_parameters(jac: np.ndarray) -> np.ndarray:
    """(P,) bool: parameters in a direction where JᵀJ is singular (no effect, or one trades off exactly against others).

    Columns are scaled to unit norm first, so units do not matter; a right singular vector whose
    singular value is below SINGULAR_RTOL × the largest marks the parameters it mostly moves.
    """
    norms = np.linalg.norm(jac, axis=0)
    out = norms == 0
    if out.all():
        return out
    scaled = jac[:, ~out] / norms[~out]
    _, s, vt = np.linalg.svd(scaled, full_matrices=False)
    weak = s < SINGULAR_RTOL * s[0]
    involved = np.any(np.abs(vt[weak]) > 0.1, axis=0) if weak.any() else np.zeros(scaled.shape[1], dtype=bool)
    out[~out] = involved
    return out


def _flags(
    problem: Problem, x: np.ndarray, sigma: np.ndarray, jac: np.ndarray
) -> tuple[dict[str, str], dict[str, str]]:
    """Parameters at a bound (within AT_BOUND of the range) and undetermined ones, with the reason."""
    at_bound, undetermined = {}, {}
    tol = AT_BOUND * (problem.hi - problem.lo)
    singular = _singular_parameters(jac)
    for k, name in enumerate(problem.names):
        if x[k] - problem.lo[k] <= tol[k]:
            at_bound[name] = "lower"
        elif problem.hi[k] - x[k] <= tol[k]:
            at_bound[name] = "upper"
        if singular[k]:
            undetermined[name] = "JᵀJ is singular: the data cannot tell it apart from the other parameters"
        elif sigma[k] > abs(x[k]):
            undetermined[name] = "σ > |value|"
    return at_bound, undetermined


def _points(n: int) -> str:
    return f"{n} point" if n == 1 else f"{n} points"


def _fitted_curve(problem: Problem, x: np.ndarray, engine: str) -> np.ndarray:
    """R(Q) at ``x`` on the data's Q points, by the engine that fitted it."""
    if engine == "fast":
        return model_curves_fast(problem, x)[0]
    with torch.no_grad():
        return model_curve(problem, torch.as_tensor(x)).numpy()


def _assemble_result(
    problem: Problem,
    fit: OptimizeResult,
    history: list[dict[str, float]],
    *,
    engine: str,
    scale_covariance: bool,
    starts: int,
    start_chi2: float,
    started: float,
) -> RefineResult:
    """The :class:`RefineResult` of the best fit; ``started`` is the ``perf_counter`` time the refinement began."""
    n = problem.q.size
    chi2 = 2.0 * float(fit.cost)
    cov, sigma = _covariance(fit.jac, chi2, n, len(problem.names), scale_covariance)
    at_bound, undetermined = _flags(problem, fit.x, sigma, fit.jac)
    stack, scale, background = _stack_from(problem, fit.x)
    r_fit = _fitted_curve(problem, fit.x, engine)
    z, rho, _ = sld_profile(stack)
    return RefineResult(
        stack=stack,
        scale=scale,
        background=background,
        names=list(problem.names),
        values=fit.x.copy(),
        uncertainties=sigma,
        covariance=cov,
        chi2=chi2,
        chi2_per_point=chi2 / n,
        n_points=n,
        history=history,
        q=problem.q,
        r_fit=r_fit,
        profile=(z[0], rho[0]),
        seconds=time.perf_counter() - started,
        converged=bool(fit.success),
        message=str(fit.message),
        starts=starts,
        start_chi2=start_chi2,
        bounds={name: (float(a), float(b)) for name, a, b in zip(problem.names, problem.lo, problem.hi)},
        probe=problem.probe,
        n_left_out=int(problem.left_out_q.size),
        left_out_q=problem.left_out_q.copy(),
        at_bound=at_bound,
        undetermined=undetermined,
    )


def refine(
    data: Measurement,
    start: FilmStack,
    *,
    free: Sequence[str] | None = None,
    bounds: dict[str, tuple[float, float]] | None = None,
    probe: Probe | None = None,
    scale: float = 1.0,
    background: float = 0.0,
    dr_floor: float | None = None,
    q_range: tuple[float, float] | None = None,
    multi_start: int = 0,
    seed: int = 0,
    max_nfev: int = 500,
    tolerance: float = 1e-9,
    scale_covariance: bool = False,
    engine: str = "fast",
    method: str = "lsq",
    population: int | None = None,
    generations: int = DE_GENERATIONS,
    de_tolerance: float = DE_TOLERANCE,
    reporter: Reporter | None = None,
) -> RefineResult:
    """Fit ``start`` to ``data`` by ``method``:

    - ``"lsq"``: trust-region least squares from the start, plus ``multi_start`` random starts inside
      the bounds (seeded); fast and exact near a good start;
    - ``"de"``: differential evolution over the bounds (``population`` members, at most ``generations``
      generations, stopping when the population's χ² agree within ``de_tolerance``; seeded by ``seed``)
      for a start far from the answer (a thick film's fringes put a local fit in the wrong minimum);
    - ``"auto"``: DE to find the basin, then the least-squares polish from its best member.

    Uncertainties always come from the Jacobian at the optimum.  ``engine`` "fast" (numba curve,
    finite-difference Jacobian) or "torch" (autograd Jacobian) for the least squares; DE always
    evaluates its population with the fast engine.  ``dr_floor``: see :func:`build_problem` (points
    without an error bar are left out by default).
    """
    if engine not in ENGINES:
        raise RefineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if method not in METHODS:
        raise RefineError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    reporter = reporter or Reporter()
    t0 = time.perf_counter()
    problem = build_problem(
        data,
        start,
        free=free,
        bounds=bounds,
        probe=probe,
        scale=scale,
        background=background,
        dr_floor=dr_floor,
        q_range=q_range,
    )
    objective = _Objective(problem, engine, reporter)
    start_chi2 = float(np.sum(objective.residuals(problem.x0) ** 2))
    fit, history, starts = optimize(
        objective,
        lambda x: replan(problem, x),
        method=method,
        multi_start=multi_start,
        seed=seed,
        max_nfev=max_nfev,
        tolerance=tolerance,
        population=population,
        generations=generations,
        de_tolerance=de_tolerance,
    )
    result = _assemble_result(
        problem,
        fit,
        history,
        engine=engine,
        scale_covariance=scale_covariance,
        starts=starts,
        start_chi2=start_chi2,
        started=t0,
    )
    result.method = method
    reporter.timing(STAGE, "refine", result.seconds, int(fit.nfev))
    return result


def replan(problem: Problem, x: np.ndarray) -> bool:
    """Give ``problem`` the resolution plan of the stack at ``x``; True when the plan changed (refit needed)."""
    stack, _, _ = _stack_from(problem, x)
    plan, key = _fit_plan(stack, problem.probe, problem.slots, problem.hi)
    if key == problem.plan_key:
        return False
    problem.plan, problem.plan_key, problem.calc_q = plan, key, torch.as_tensor(plan.calc_q)
    return True


def optimize(
    objective,
    replanned: Callable[[np.ndarray], bool],
    *,
    method: str,
    multi_start: int,
    seed: int,
    max_nfev: int,
    tolerance: float,
    population: int | None,
    generations: int,
    de_tolerance: float,
) -> tuple[OptimizeResult, list[dict[str, float]], int]:
    """The fit of ``objective`` by ``method`` (see :func:`refine`), refitted while ``replanned(x)`` changes the
    resolution plan; returns the fit, its history and the number of starts.  Shared by refine and corefine."""
    problem, reporter = objective.problem, objective.reporter
    if method == "lsq":
        starts = _starting_points(problem, multi_start, seed)
        fit, history = _best_fit(objective, starts, max_nfev=max_nfev, tolerance=tolerance)
    else:
        starts = [problem.x0]
        fit, history = _de_search(
            objective, population=population, generations=generations, tolerance=de_tolerance, seed=seed
        )
        if method == "auto":
            reporter.log(STAGE, f"least-squares polish from the best of differential evolution (χ² {2 * fit.cost:.6g})")
            fit, more = _best_fit(objective, [fit.x], max_nfev=max_nfev, tolerance=tolerance)
            history = history + _renumbered(more, len(history))
    for _ in range(MAX_REPLANS):
        if not replanned(fit.x):
            break
        reporter.log(STAGE, "refitting with the resolution plan of the fitted stack")
        fit, more = _best_fit(objective, [fit.x], max_nfev=max_nfev, tolerance=tolerance)
        history = history + _renumbered(more, len(history))
    return fit, history, len(starts)


def _renumbered(history: list[dict[str, float]], first: int) -> list[dict[str, float]]:
    """History entries renumbered to follow ``first`` earlier ones (a polish after DE, a refit after a replan)."""
    return [{**entry, "iteration": first + k} for k, entry in enumerate(history)]


def refine_batch(
    measurements: Sequence[Measurement],
    starts: Sequence[FilmStack] | FilmStack,
    *,
    reporter: Reporter | None = None,
    **options,
) -> list[RefineResult]:
    """Refine many curves (for example every prediction of a test split), one fit after another.

    ``starts`` is one stack per measurement or a single stack for all; ``options`` go to
    :func:`refine`.  Progress events count finished fits; Stop cancels between (and inside) fits.
    """
    reporter = reporter or Reporter()
    if isinstance(starts, FilmStack):
        starts = [starts] * len(measurements)
    if len(starts) != len(measurements):
        raise RefineError(f"got {len(measurements)} measurements but {len(starts)} starting stacks")
    inner = Reporter(stop=reporter.stop)  # per-iteration records of every fit would flood listeners
    results = []
    for k, (data, start) in enumerate(zip(measurements, starts)):
        results.append(refine(data, start, reporter=inner, **options))
        reporter.progress(STAGE, k + 1, len(measurements), unit="fits")
    return results

"""One refinement entry point for every surface: a :class:`RefineRequest` in, a recorded run and files out.

``workbench refine`` (in its own process or ``--detach``-ed as a job) and the ``refine`` / ``dream``
job kinds call :func:`run_refinement`; none of them loads, fits or writes by itself.  So a fit run
as a job writes the same ``refinement.json`` as the same fit on the command line, to the last digit.

    request = RefineRequest(data=["run1.txt"], dq_convention="fwhm", stack=stack_meta(stack), out="fit1")
    outcome = run_refinement(request, reporter, workspace.registry)     # → completed / stopped

The request is JSON-able (the job's row holds it whole): the measured file(s), the start stack as
:func:`~workbench.data.family.stack_meta`, what is free and its bounds, the optimizer's options,
and what to write (a refl1d model, DREAM bands).  Several files are fitted together (contrasts of
one film, :func:`~workbench.analysis.corefine.corefine`): ``share`` and ``contrast`` say how.
``optimize=False`` skips the fit: DREAM samples around the stack as given (a fit done before),
its χ² and Jacobian σ evaluated there.  Writes into ``out``: ``refinement.json``, ``fit.csv`` and
``profile.csv`` (one curve) or ``fit_<label>.csv`` / ``profile_<label>.csv`` (several), ``refl1d/``
and ``bands/`` on request (``Bands.to_csv``; ``refinement.json`` keeps what ``Bands.from_csv`` needs
besides).  The fit's files are written before DREAM starts, so stopping DREAM keeps them (the run is
then ``stopped``).  A recorded run's DREAM generations are steps of stage ``uncertainty`` (≤ 1 a
second), and its fit's generations and iterations steps of stage ``refine`` (``step``, ``chi2``; ≤ 5 a
second, the last always), so a page following the job shows its progress and a live χ² chart.
:func:`load_result` reads a one-curve fit back from ``out`` as the :class:`RefineResult` it was.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..analysis.corefine import Contrast, JointRefineResult, build_joint_problem, corefine
from ..analysis.export_refl1d import export_refl1d
from ..analysis.joint_export import export_joint_refl1d
from ..analysis.refine import (
    DE_GENERATIONS,
    DE_TOLERANCE,
    METHODS,
    PROBE_PARAMETERS,
    RefineError,
    RefineResult,
    _resolve,
    build_problem,
    refine,
    verdict,
)
from ..analysis.uncertainty import STAGE as UNCERTAINTY_STAGE
from ..analysis.uncertainty import Bands, dream_bands, dream_joint_bands
from ..data.family import stack_from_meta, stack_meta
from ..data.measured import Measurement, load_measurement
from ..events import Cancelled, Record, Reporter, progress_steps
from ..fileio import write_text_atomic
from ..physics import FilmStack, Probe
from ..store.recorded import recorded_run
from ..store.registry import Registry

STAGE = "refine"


class RefineRequest(BaseModel):
    """Everything a refinement (or a DREAM-only sampling) needs, typed and JSON-able."""

    model_config = ConfigDict(extra="forbid")

    data: list[Path] = Field(min_length=1, description="measured curve file(s); several: contrasts of one film")
    dq_convention: Literal["fwhm", "sigma"] | None = Field(
        None, description="what the files' dQ column means, when their header does not say"
    )
    dq_over_q: float | None = Field(
        None, gt=0, lt=1, description="resolution (dQ/Q FWHM) of files without a dQ column (default: 0.0295)"
    )
    stack: dict[str, Any] = Field(description="the start stack as data.family.stack_meta: {layer_desc, layer_bound}")
    start: str = Field("the given stack", description="where the start stack came from (printed and recorded)")
    free: list[str] | None = Field(None, description="LAYER.PAR names to fit (default: the bounds' names, else all)")
    bounds: dict[str, tuple[float, float]] = Field(default_factory=dict, description="LAYER.PAR → (lo, hi)")
    share: list[str] | None = Field(None, description="several curves: parameters fitted once for all")
    contrast: dict[str, list[float]] = Field(
        default_factory=dict, description="several curves: LAYER.PAR → its start value in each curve, in file order"
    )
    scale: float = Field(1.0, description="starting scale factor")
    background: float = Field(0.0, description="starting background")
    dr_floor: float | None = Field(None, ge=0, description="make every dR at least this fraction of |R|")
    engine: Literal["fast", "torch"] = "fast"
    method: Literal[METHODS] = Field("lsq", description="lsq, de (differential evolution) or auto (DE + polish)")  # type: ignore[valid-type]
    population: int | None = Field(None, ge=5, description="DE population (default: 15 per free parameter, ≥ 20)")
    generations: int = Field(DE_GENERATIONS, ge=1, description="DE generations at most")
    de_tolerance: float = Field(DE_TOLERANCE, gt=0, description="DE stops when the population's χ² agree this well")
    multi_start: int = Field(0, ge=0, description="extra random least-squares starts inside the bounds")
    max_nfev: int = Field(500, ge=1, description="model evaluations per least-squares fit at most")
    seed: int = Field(0, description="seed of the random starts, DE and DREAM")
    optimize: bool = Field(True, description="False: no fit, DREAM samples around the stack as given")
    refl1d: bool = Field(False, description="also write a runnable refl1d model with the data")
    dream_samples: int = Field(0, ge=0, description="DREAM posterior samples for 68/95 % bands (0: none)")
    burn: int = Field(100, ge=0, description="DREAM burn-in generations (dropped before the samples are kept)")
    band_draws: int = Field(500, ge=10, description="posterior draws turned into R(Q) and SLD curves for the bands")
    out: Path = Field(description="output folder")
    name: str | None = Field(None, description="run name (default: the out folder's name)")

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, (str, Path)) else value

    @model_validator(mode="after")
    def _consistent(self) -> RefineRequest:
        if len(self.data) == 1 and (self.share or self.contrast):
            raise ValueError("share and contrast need several data files (contrasts of one film)")
        for name, values in self.contrast.items():
            if len(values) != len(self.data):
                raise ValueError(
                    f"contrast {name}: {len(values)} values for {len(self.data)} data files (one per file)"
                )
        for name, (lo, hi) in self.bounds.items():
            if not lo < hi:
                raise ValueError(f"bounds of {name!r} must satisfy lo < hi, got [{lo}, {hi}]")
        if not self.optimize and self.dream_samples <= 0:
            raise ValueError("optimize=False only samples DREAM around the given stack: set dream_samples > 0")
        return self

    @property
    def joint(self) -> bool:
        return len(self.data) > 1

    @property
    def run_kind(self) -> str:
        return "refine" if self.optimize else "dream"

    def resolved(self) -> RefineRequest:
        """The same request with absolute paths (a job's process starts in the workspace, not here)."""
        return self.model_copy(
            update={"data": [p.expanduser().resolve() for p in self.data], "out": self.out.expanduser().resolve()}
        )

    def fitted_names(self) -> list[str] | None:
        """What is free: ``free``, else the names ``bounds`` gives ranges for, else (None) the stack's bounded ones."""
        return self.free or (list(self.bounds) if self.bounds else None)

    def run_params(self) -> dict[str, Any]:
        """What the run registry keeps of the request (the History tab shows ``data``)."""
        r = self.resolved()
        out: dict[str, Any] = {
            "data": [str(p) for p in r.data] if self.joint else str(r.data[0]),
            "start": self.start,
            "free": self.fitted_names(),
            "bounds": {k: list(v) for k, v in self.bounds.items()},
        }
        if self.joint:
            out.update(share=self.share, contrast=self.contrast)
        out.update(
            method=self.method,
            population=self.population,
            generations=self.generations,
            de_tolerance=self.de_tolerance,
            multi_start=self.multi_start,
            max_nfev=self.max_nfev,
            seed=self.seed,
            engine=self.engine,
            out=str(r.out),
            optimize=self.optimize,
            dream_samples=self.dream_samples,
            samples=self.dream_samples,
            burn=self.burn,
            band_draws=self.band_draws,
            stack=self.stack,
        )
        return out


@dataclass
class Prepared:
    """A checked request's inputs: the measurements, the start stack, one curve's probe or the contrasts."""

    datas: list[Measurement]
    stack: FilmStack
    probe: Probe | None = None
    contrasts: list[Contrast] | None = None


@dataclass
class RefinementOutcome:
    """How a refinement ended and what it wrote; the CLI prints from it."""

    status: str  # completed | stopped
    out: Path
    run_id: str | None = None
    result: RefineResult | JointRefineResult | None = None
    summary: dict[str, Any] | None = None
    bands: Bands | list[Bands] | None = None
    message: str = ""  # why it stopped

    @property
    def files(self) -> list[Path]:
        return sorted(p for p in self.out.rglob("*") if p.is_file()) if self.out.is_dir() else []


# ---------------------------------------------------------------------------- checking
def load_data(path: str | Path, dq_convention: str | None) -> Measurement:
    """A measured curve; a missing file or an unstated dQ convention is a ValueError saying what to give."""
    if not Path(path).is_file():
        raise ValueError(f"data: {path}: no such file")
    try:
        return load_measurement(path, dq_convention=dq_convention)
    except ValueError as exc:
        if "dq_convention" in str(exc):
            raise ValueError(f"{exc} (set dq_convention; on the command line: --dq-convention fwhm|sigma)") from None
        raise


def start_stack(meta: dict[str, Any]) -> FilmStack:
    """The request's stack (ties of a family kept); ValueError naming ``stack`` when it is not one."""
    if not isinstance(meta, dict) or "layer_desc" not in meta:
        raise ValueError("stack: expected data.family.stack_meta's mapping {layer_desc, layer_bound}")
    try:
        return stack_from_meta(meta)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"stack: not a film stack: {exc}") from None


def _check_names(stack: FilmStack, names: list[str] | None, what: str) -> None:
    for name in names or ():
        if name in PROBE_PARAMETERS:
            continue
        try:
            _resolve(stack, name)
        except RefineError as exc:
            raise ValueError(f"{what}: {exc}") from None


def _probe(request: RefineRequest, data: Measurement) -> Probe | None:
    """The probe of a file without a dQ column when ``dq_over_q`` is given (else refine's default)."""
    if request.dq_over_q is None or data.dq_sigma is not None:
        return None
    merged = data.merge_duplicate_q() if data.has_duplicate_q else data
    return merged.probe(request.scale, request.background, default_dq_over_q=request.dq_over_q)


def _labels(paths: list[Path]) -> list[str]:
    """Each curve's label: its file name without suffix, made unique by its position when two are alike."""
    stems = [Path(p).stem.replace(":", "_") or f"c{k + 1}" for k, p in enumerate(paths)]
    return [stem if stems.count(stem) == 1 else f"{stem}_{k + 1}" for k, stem in enumerate(stems)]


def prepare(request: RefineRequest) -> Prepared:
    """Load and check everything the request names, before any run is recorded; ValueError naming the field."""
    stack = start_stack(request.stack)
    _check_names(stack, request.free, "free")
    _check_names(stack, list(request.bounds), "bounds")
    _check_names(stack, request.share, "share")
    _check_names(stack, list(request.contrast), "contrast")
    datas = [load_data(path, request.dq_convention) for path in request.data]
    free = request.fitted_names()
    if not request.joint:
        probe = _probe(request, datas[0])
        build_problem(  # the remaining checks: start inside bounds, error bars, something to fit
            datas[0],
            stack,
            free=free,
            bounds=request.bounds,
            probe=probe,
            scale=request.scale,
            background=request.background,
            dr_floor=request.dr_floor,
        )
        return Prepared(datas, stack, probe=probe)
    stacks = [stack] * len(datas)
    for name, values in request.contrast.items():
        i, par = _resolve(stack, name)
        stacks = [s.with_value(i, par, v) for s, v in zip(stacks, values)]
    contrasts = [
        Contrast(d, s, label=label, probe=_probe(request, d), scale=request.scale, background=request.background)
        for d, s, label in zip(datas, stacks, _labels(request.data))
    ]
    build_joint_problem(contrasts, free=free, shared=request.share, bounds=request.bounds, dr_floor=request.dr_floor)
    return Prepared(datas, stack, contrasts=contrasts)


def checked_request(request: RefineRequest | dict[str, Any], kind: str = "refine") -> RefineRequest:
    """A job's request, parsed, with absolute paths and everything it names checked (:func:`prepare`).

    ``kind`` "refine" fits (``optimize`` true); "dream" samples around the given stack without a
    fit (``optimize`` false, the default for it; ``dream_samples`` > 0).  ValueError naming the field.
    """
    if isinstance(request, RefineRequest):
        fields = request.model_dump()
    elif isinstance(request, dict):
        fields = dict(request)
    else:
        raise ValueError(f"a {kind} job needs a RefineRequest or its dict, got {type(request).__name__}")
    if kind == "dream":
        if fields.setdefault("optimize", False):
            raise ValueError("optimize: a dream job samples around the given stack without a fit; submit a refine job")
        if not fields.get("dream_samples"):
            raise ValueError("dream_samples: a dream job needs dream_samples > 0 (e.g. 20000)")
    try:
        typed = RefineRequest(**fields).resolved()
    except ValidationError as exc:
        parts = [f"{'.'.join(str(x) for x in e['loc']) or 'request'}: {e['msg']}" for e in exc.errors()]
        raise ValueError(f"the {kind} request is not valid: {'; '.join(parts)}") from None
    if kind == "refine" and not typed.optimize:
        raise ValueError("optimize: a refine job fits; submit a dream job to sample around a stack without a fit")
    prepare(typed)
    return typed


# ---------------------------------------------------------------------------- running
def _optimizer_options(request: RefineRequest) -> dict[str, Any]:
    if not request.optimize:  # least squares ends at its first evaluation: values stay, σ from the Jacobian there
        return {"method": "lsq", "multi_start": 0, "max_nfev": 1, "seed": request.seed, "engine": request.engine}
    return {
        "method": request.method,
        "population": request.population,
        "generations": request.generations,
        "de_tolerance": request.de_tolerance,
        "multi_start": request.multi_start,
        "max_nfev": request.max_nfev,
        "seed": request.seed,
        "engine": request.engine,
    }


def _fit(request: RefineRequest, prepared: Prepared, reporter: Reporter) -> RefineResult | JointRefineResult:
    options = _optimizer_options(request)
    if prepared.contrasts is None:
        result = refine(
            prepared.datas[0],
            prepared.stack,
            free=request.fitted_names(),
            bounds=request.bounds,
            probe=prepared.probe,
            scale=request.scale,
            background=request.background,
            dr_floor=request.dr_floor,
            reporter=reporter,
            **options,
        )
    else:
        result = corefine(
            prepared.contrasts,
            free=request.fitted_names(),
            shared=request.share,
            bounds=request.bounds,
            dr_floor=request.dr_floor,
            reporter=reporter,
            **options,
        )
    if not request.optimize:
        result.method = "none"
        result.converged = True
        result.message = "not refitted: the given stack evaluated (σ from the Jacobian there)"
        result.history = []
    return result


def fit_metrics(result: RefineResult | JointRefineResult, source: str | Path | None = None) -> dict[str, Any]:
    """What the run registry (History) keeps of a fit, one curve or several, in a job or a page's kernel alike:
    the data file's name, χ²/N, convergence, the verdict, each value and its 1σ."""
    level, words = verdict(result)
    out: dict[str, Any] = {} if source is None else {"data": Path(str(source)).name}
    out |= {"chi2_per_point": result.chi2_per_point, "converged": result.converged}
    out |= {"verdict": words, "verdict_level": level}
    for name, value, sigma in zip(result.names, result.values, result.uncertainties):
        out[str(name)] = float(value)
        out[f"{name}.sigma"] = float(sigma)
    return out


def run_refinement(
    request: RefineRequest,
    reporter: Reporter | None = None,
    registry: Registry | None = None,
    *,
    run_id: str | None = None,
    on_fit: Callable[[RefineResult | JointRefineResult], None] | None = None,
) -> RefinementOutcome:
    """Check, fit (unless ``optimize`` is False), write the files, export and sample DREAM; see the module docstring.

    Recorded in ``registry`` when given: as run ``run_id`` (a queued job's run, continued here) or a
    new ``refine`` (``dream`` without a fit) run.  ``on_fit`` sees the fit as soon as its files are
    written (the CLI prints it while DREAM runs).  Bad input is a ValueError before anything is
    recorded or written; Stop (``reporter.stop``) ends it ``stopped``.
    """
    reporter = reporter or Reporter()
    prepared = prepare(request)
    out = Path(request.out)
    outcome = RefinementOutcome("completed", out)
    if registry is None:
        try:
            _run(request, prepared, reporter, outcome, on_fit, None)
        except Cancelled as exc:
            outcome.status, outcome.message = "stopped", str(exc)
        return outcome
    recording = recorded_run(
        registry,
        request.run_kind,
        name=request.name or out.name,
        params=request.run_params(),
        reporter=reporter,
        run_id=run_id,
        resume=run_id is not None,
    )
    try:
        with recording as run:
            outcome.run_id = run.id
            _run(request, prepared, reporter, outcome, on_fit, run.metrics)
    except Cancelled as exc:
        outcome.status, outcome.message = "stopped", str(exc)
    return outcome


def _run(
    request: RefineRequest,
    prepared: Prepared,
    reporter: Reporter,
    outcome: RefinementOutcome,
    on_fit: Callable[[Any], None] | None,
    metrics: dict[str, Any] | None,
) -> None:
    fit_steps = _FitSteps(reporter) if metrics is not None and request.optimize else None  # a page follows them
    if fit_steps is not None:
        reporter.listeners.append(fit_steps)
    try:
        result = _fit(request, prepared, reporter)
    finally:
        if fit_steps is not None:
            reporter.listeners.remove(fit_steps)
            fit_steps.flush()
    outcome.result = result
    if metrics is not None:
        metrics.update(fit_metrics(result, request.data[0]))
    out = outcome.out
    out.mkdir(parents=True, exist_ok=True)
    if isinstance(result, JointRefineResult):
        summary = _joint_summary(request, result)
        for fit, data, label in zip(result.contrasts, prepared.datas, result.labels):
            _csv(out / f"fit_{label}.csv", "q,r,dr,r_fit", [fit.q, *_data_columns(data, fit.q), fit.r_fit])
            _csv(out / f"profile_{label}.csv", "z,sld", [fit.profile[0], fit.profile[1]])
    else:
        summary = _summary(request, result)
        _csv(out / "fit.csv", "q,r,dr,r_fit", [result.q, *_data_columns(prepared.datas[0], result.q), result.r_fit])
        _csv(out / "profile.csv", "z,sld", [result.profile[0], result.profile[1]])
    outcome.summary = summary
    if request.refl1d:
        if isinstance(result, JointRefineResult):
            script = export_joint_refl1d(out / "refl1d", result, prepared.datas)
        else:
            script = export_refl1d(out / "refl1d", result, prepared.datas[0], result.bounds)
        summary["refl1d_script"] = str(script)
    _write_summary(out, summary)
    if on_fit is not None:
        on_fit(result)
    if request.dream_samples > 0:
        reporter.log(
            STAGE, f"DREAM: {request.dream_samples} samples around the {'fit' if request.optimize else 'stack'}"
        )
        steps = (
            progress_steps(reporter, UNCERTAINTY_STAGE, "generation") if metrics is not None else None
        )  # a page follows
        if steps is not None:
            reporter.listeners.append(steps)
        try:
            outcome.bands = _dream(request, prepared, result, out, summary, reporter)
        finally:
            if steps is not None and steps in reporter.listeners:
                reporter.listeners.remove(steps)
        _write_summary(out, summary)
        if metrics is not None:
            first = outcome.bands[0] if isinstance(outcome.bands, list) else outcome.bands
            said = dream_metrics(first, request.dream_samples)
            if request.optimize:  # a refine run's "converged" is its fit's
                said["dream_converged"] = said.pop("converged")
            metrics.update(said)


class _FitSteps:
    """The fit's DE generations and least-squares iterations as recorded steps, ≤ 5 a second, the last kept.

    ``Record(refine, "epoch", epoch=k, step=, chi2=, what=)``: ``step`` counts as the Refine panel's
    χ² chart does (the generations, then the polish's iterations after them); ``what`` is
    "generation" or "iteration".  A throttled entry is kept and written at the next chance or by
    :meth:`flush` once the fit ends, so the chart ends at the fit's last χ².
    """

    def __init__(self, reporter: Reporter, every: float = 0.2) -> None:
        self.reporter, self.every = reporter, every
        self._last, self._count, self._generations = -math.inf, 0, 0
        self._pending: dict[str, Any] | None = None

    def __call__(self, event: Any) -> None:
        if not isinstance(event, Record) or event.stage != STAGE or event.name not in ("generation", "iteration"):
            return
        if event.name == "generation":
            self._generations = step = int(event.data["generation"])
        else:
            step = self._generations + int(event.data["iteration"])
        self._pending = {"step": step, "chi2": float(event.data["chi2"]), "what": event.name}
        if time.monotonic() - self._last >= self.every:
            self.flush()

    def flush(self) -> None:
        """Record the step held back by the throttle, if any."""
        if self._pending is None:
            return
        entry, self._pending = self._pending, None
        self._last, self._count = time.monotonic(), self._count + 1
        self.reporter.record(STAGE, "epoch", epoch=self._count, **entry)


def dream_metrics(bands: Bands, samples: int) -> dict[str, Any]:
    """What the run registry keeps of DREAM: samples asked and kept, band draws, convergence, time, each interval."""
    out: dict[str, Any] = {
        "samples": samples,
        "posterior_samples": bands.n_posterior,
        "band_draws": bands.n_draws,
        "converged": bands.converged,
        "seconds": bands.seconds,
    }
    for r in bands.parameter_table:
        out |= {f"{r['name']}.median": r["median"], f"{r['name']}.lo68": r["lo68"], f"{r['name']}.hi68": r["hi68"]}
    return out


def _bands_meta(bands: Bands) -> dict[str, Any]:
    """What ``Bands.from_csv`` needs beyond the CSVs, as ``refinement.json`` keeps it."""
    return {
        "converged": bands.converged,
        "parameters": bands.parameter_table,
        "n_posterior": bands.n_posterior,
        "n_draws": bands.n_draws,
        "seconds": bands.seconds,
    }


def _dream(
    request: RefineRequest,
    prepared: Prepared,
    result: RefineResult | JointRefineResult,
    out: Path,
    summary: dict[str, Any],
    reporter: Reporter,
) -> Bands | list[Bands]:
    """DREAM bands around ``result`` into ``out/bands``, recorded in ``summary``."""
    if isinstance(result, JointRefineResult):
        bands = dream_joint_bands(
            result,
            prepared.datas,
            samples=request.dream_samples,
            burn=request.burn,
            seed=request.seed,
            n_draws=request.band_draws,
            reporter=reporter,
        )
        summary["bands"] = {}
        for b, label in zip(bands, result.labels):
            sld_csv, r_csv = b.to_csv(out / "bands" / label)
            summary["bands"][label] = {"sld": str(sld_csv), "reflectivity": str(r_csv), **_bands_meta(b)}
        summary["bands_parameters"] = bands[0].parameter_table if bands else []
        return bands
    single = dream_bands(
        result.stack,
        prepared.datas[0],
        result.bounds,
        scale=result.scale,
        background=result.background,
        samples=request.dream_samples,
        burn=request.burn,
        seed=request.seed,
        n_draws=request.band_draws,
        reporter=reporter,
    )
    sld_csv, r_csv = single.to_csv(out / "bands")
    summary["bands"] = {"sld": str(sld_csv), "reflectivity": str(r_csv), **_bands_meta(single)}
    return single


# ---------------------------------------------------------------------------- files
def _write_summary(out: Path, summary: dict[str, Any]) -> None:
    write_text_atomic(out / "refinement.json", json.dumps(summary, indent=2, default=float))


def _csv(path: Path, header: str, columns: list[np.ndarray]) -> None:
    rows = np.column_stack(columns)
    write_text_atomic(path, header + "\n" + "\n".join(",".join(f"{v:.10g}" for v in row) for row in rows) + "\n")


def _data_columns(data: Measurement, q: np.ndarray) -> list[np.ndarray]:
    """Measured R and dR on the fitted Q points (duplicates merged as the fit did)."""
    m = data.merge_duplicate_q() if data.has_duplicate_q else data
    idx = np.searchsorted(m.q, q)
    dr = m.dr[idx] if m.dr is not None else np.full(q.size, np.nan)
    return [m.r[idx], dr]


def _summary(request: RefineRequest, result: RefineResult) -> dict[str, Any]:
    return {
        "data": str(request.data[0]),
        "start": request.start,
        "chi2_per_point": result.chi2_per_point,
        "chi2": result.chi2,
        "points": result.n_points,
        "left_out_points": result.n_left_out,
        "left_out_q": result.left_out_q.tolist(),
        "dr_floor": request.dr_floor,
        "start_chi2_per_point": result.start_chi2 / result.n_points,
        "seconds": result.seconds,
        "converged": result.converged,
        "message": result.message,
        "engine": request.engine,
        "method": result.method,
        "parameters": result.table(),
        "at_bound": result.at_bound,
        "undetermined": result.undetermined,
        "notes": result.notes(),
        "bounds": result.bounds,
        "start_chi2": result.start_chi2,
        "starts": result.starts,
        "covariance": np.asarray(result.covariance).tolist(),
        "scale": result.scale,
        "background": result.background,
        "stack": stack_meta(result.stack),
        "history": result.history,
    }


def load_result(out: str | Path, data: Measurement | None = None) -> RefineResult:
    """The one-curve fit a refinement wrote into ``out`` (``refinement.json``, ``fit.csv``, ``profile.csv``).

    Names, values, σ, covariance, χ², flags, history and bounds come from ``refinement.json`` as
    written; the curves from the CSVs (10 significant digits).  With ``data`` (the fitted file,
    loaded) the result also gets the fit's exact Q points and probe (resolution), as DREAM and the
    covariance bands need.  ValueError naming the file when it is missing, of several curves, or not a fit.
    """
    out = Path(out)
    path = out / "refinement.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (the refinement wrote nothing there)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not JSON: {exc}") from None
    if summary.get("labels"):
        raise ValueError(f"{path}: a co-refinement of {len(summary['labels'])} curves, not one fit")
    if "parameters" not in summary or "stack" not in summary:
        raise ValueError(f"{path}: no fitted parameters recorded")
    fit = _read_csv(out / "fit.csv", 4)
    profile = _read_csv(out / "profile.csv", 2)
    table = summary["parameters"]
    names = [str(r["name"]) for r in table]
    uncertainties = np.array([float(r["uncertainty"]) for r in table])
    cov = summary.get("covariance")
    scale, background = float(summary.get("scale", 1.0)), float(summary.get("background", 0.0))
    q, probe = fit[:, 0], None
    if data is not None:
        q, probe = _fitted_probe(data, q, scale, background)
    n = int(summary["points"])
    return RefineResult(
        stack=start_stack(summary["stack"]),
        scale=scale,
        background=background,
        names=names,
        values=np.array([float(r["value"]) for r in table]),
        uncertainties=uncertainties,
        covariance=np.array(cov, dtype=float) if cov is not None else np.diag(uncertainties**2),
        chi2=float(summary["chi2"]),
        chi2_per_point=float(summary["chi2_per_point"]),
        n_points=n,
        history=list(summary.get("history") or []),
        q=q,
        r_fit=fit[:, 3],
        profile=(profile[:, 0], profile[:, 1]),
        seconds=float(summary.get("seconds") or 0.0),
        converged=bool(summary.get("converged")),
        message=str(summary.get("message") or ""),
        starts=int(summary.get("starts") or 1),
        start_chi2=float(summary.get("start_chi2", float(summary.get("start_chi2_per_point", math.nan)) * n)),
        bounds={str(k): (float(v[0]), float(v[1])) for k, v in (summary.get("bounds") or {}).items()},
        probe=probe,
        n_left_out=int(summary.get("left_out_points") or 0),
        left_out_q=np.array(summary.get("left_out_q") or [], dtype=float),
        at_bound=dict(summary.get("at_bound") or {}),
        undetermined=dict(summary.get("undetermined") or {}),
        method=str(summary.get("method") or "lsq"),
    )


def _read_csv(path: Path, columns: int) -> np.ndarray:
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file (the refinement wrote nothing there)") from None
    if table.shape[1] != columns:
        raise ValueError(f"{path}: expected {columns} columns, found {table.shape[1]}")
    return table


def _fitted_probe(data: Measurement, q: np.ndarray, scale: float, background: float) -> tuple[np.ndarray, Probe]:
    """The data's exact Q points nearest the written ones, and the probe the fit used on them (as build_problem)."""
    m = data.merge_duplicate_q() if data.has_duplicate_q else data
    idx = np.clip(np.searchsorted(m.q, q), 1, m.q.size - 1)
    idx = np.where(np.abs(m.q[idx - 1] - q) < np.abs(m.q[idx] - q), idx - 1, idx)
    if not np.allclose(m.q[idx], q, rtol=1e-8, atol=0):
        raise ValueError(f"the fit's Q points are not those of {data.source}: load the file that was fitted")
    sigma = m.probe(scale=scale, background=background).sigma[idx]
    return m.q[idx], Probe(m.q[idx], dq=sigma, dq_is_fwhm=False, scale=scale, background=background)


def _joint_summary(request: RefineRequest, result: JointRefineResult) -> dict[str, Any]:
    return {
        "data": [str(p) for p in request.data],
        "labels": result.labels,
        "start": request.start,
        "method": result.method,
        "chi2_per_point": result.chi2_per_point,
        "chi2": result.chi2,
        "points": result.n_points,
        "start_chi2_per_point": result.start_chi2 / result.n_points,
        "seconds": result.seconds,
        "converged": result.converged,
        "message": result.message,
        "shared": result.shared,
        "parameters": result.table(),
        "at_bound": result.at_bound,
        "undetermined": result.undetermined,
        "notes": result.notes(),
        "bounds": result.bounds,
        "contrasts": [
            {
                "label": label,
                "chi2_per_point": fit.chi2_per_point,
                "points": fit.n_points,
                "left_out_points": fit.n_left_out,
                "scale": fit.scale,
                "background": fit.background,
                "stack": {"layer_desc": fit.stack.to_layer_desc(), "layer_bound": fit.stack.to_layer_bound()},
            }
            for fit, label in zip(result.contrasts, result.labels)
        ],
        "history": result.history,
    }

"""``workbench refine``: fit a film stack to a measured curve from the command line.

The start is a stack file (pyreflect's ``layer_desc``/``layer_bound`` in YAML or JSON), a
facility hand-fit spreadsheet, or a parameter-model bundle's prediction for the same curve.
Writes into ``--out``: ``refinement.json`` (fitted values ± 1σ, χ²/N, history), ``fit.csv``
(Q, R, dR, R_fit), ``profile.csv`` (z, SLD), and on request a refl1d model (``refl1d/``) and
DREAM bands (``bands/``).  Points without an error bar (dR ≤ 0) are left out of χ² and counted;
parameters at a bound and undetermined uncertainties are marked in the table and in
``refinement.json`` (``at_bound``, ``undetermined``, ``notes`` with what to do about each).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import ValidationError

from ..analysis.corefine import JointRefineResult
from ..analysis.predict import predict_measurement
from ..analysis.profile_fit import sorted_profile, stack_from_profile
from ..analysis.refine import DE_GENERATIONS, DE_TOLERANCE, METHODS, RefineResult
from ..batch.jobs import submit_job
from ..data.family import stack_meta
from ..data.handfit import load_handfit_spreadsheet
from ..data.parameters import stacks_from_parameters
from ..events import Reporter, tqdm_listener
from ..physics import FilmStack
from ..store.model_bundle import load_model
from ..workflows.refinement import RefineRequest, load_data, run_refinement
from .common import add_workspace_option, load_config_file, registry_of, validation_message, workspace_of
from .stacks import stack_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "refine",
        help="fit a film stack to measured curves (least squares or differential evolution, optional DREAM bands); "
        "several curves: co-refinement of contrasts with shared parameters",
    )
    p.add_argument(
        "data",
        nargs="+",
        help="measured curve(s): .txt/.dat (Q R [dR [dQ]]), .ort, or .npy; several files are fitted together "
        "(contrasts of one film)",
    )
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument(
        "--stack",
        help="starting stack: YAML/JSON with 'stack: {layer_desc, layer_bound}' (bounds = free ranges), "
        "or 'default' for the default stack",
    )
    start.add_argument("--handfit", help="starting stack: a facility hand-fit spreadsheet (CSV layer table)")
    start.add_argument(
        "--model",
        help="starting stack: a model bundle's prediction for this curve (a parameter model's stack, or an SLD "
        "model's profile fitted by the stack family it was trained on)",
    )
    p.add_argument(
        "--free",
        nargs="+",
        metavar="LAYER.PAR",
        help="parameters to fit (e.g. polymer.thickness probe.scale); default: every bounded parameter",
    )
    p.add_argument("--bounds", help="YAML/JSON mapping of LAYER.PAR to [lo, hi], overriding the stack's bounds")
    p.add_argument(
        "--dq-convention",
        choices=["fwhm", "sigma"],
        help="what the file's dQ column means (when its header does not say)",
    )
    p.add_argument(
        "--dq-over-q",
        type=float,
        default=None,
        metavar="FWHM",
        help="resolution of files without a dQ column, as dQ/Q FWHM (e.g. 0.05; default: 0.0295)",
    )
    p.add_argument(
        "--engine", choices=["fast", "torch"], default="fast", help="model and Jacobian engine (default: %(default)s)"
    )
    p.add_argument(
        "--method",
        choices=list(METHODS),
        default="lsq",
        help="lsq: least squares from the start; de: differential evolution over the bounds (a start far from the "
        "answer, a thick film); auto: DE, then the least-squares polish (default: %(default)s)",
    )
    p.add_argument(
        "--population", type=int, default=None, help="DE population (default: 15 per free parameter, at least 20)"
    )
    p.add_argument(
        "--generations", type=int, default=DE_GENERATIONS, help="DE generations at most (default: %(default)s)"
    )
    p.add_argument(
        "--de-tolerance",
        type=float,
        default=DE_TOLERANCE,
        help="DE stops when the population's χ² agree within this fraction (default: %(default)s)",
    )
    p.add_argument(
        "--share",
        nargs="+",
        metavar="LAYER.PAR",
        help="with several curves: parameters fitted once for all of them (default: every free stack parameter "
        "whose start is the same in every curve; scale, background and --contrast parameters per curve)",
    )
    p.add_argument(
        "--contrast",
        action="append",
        default=[],
        metavar="LAYER.PAR=V1,V2,...",
        help="with several curves: the start value of LAYER.PAR for each curve, in file order (e.g. the solvent's "
        "SLD: --contrast solvent.sld=6.36,-0.56,2.07); repeatable",
    )
    p.add_argument("--multi-start", type=int, default=0, help="extra random starts inside the bounds (default: 0)")
    p.add_argument(
        "--max-nfev", type=int, default=500, help="model evaluations per least-squares fit at most (default: 500)"
    )
    p.add_argument("--scale", type=float, default=1.0, help="starting scale factor (default: 1)")
    p.add_argument("--background", type=float, default=0.0, help="starting background (default: 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random starts and of DREAM (default: 0)")
    p.add_argument(
        "--dr-floor",
        type=float,
        default=None,
        metavar="FRACTION",
        help="make every dR at least FRACTION·|R| (default: none; points with dR ≤ 0 are left out of χ²)",
    )
    p.add_argument("--refl1d", action="store_true", help="also export a runnable refl1d model script with the data")
    p.add_argument(
        "--dream-samples", type=int, default=0, help="run bumps DREAM with this many samples for 68/95 %% bands"
    )
    p.add_argument(
        "--no-fit",
        action="store_true",
        help="no fit: DREAM samples around the start stack as given (e.g. a refinement.json's fitted stack, with its "
        "--scale and --background); needs --dream-samples",
    )
    p.add_argument("--out", default="refinement", help="output folder (default: %(default)s)")
    p.add_argument(
        "--detach",
        action="store_true",
        help="refine as a job in its own process; print its run id and return (follow: workbench runs watch ID)",
    )
    add_workspace_option(p)
    p.set_defaults(func=cmd_refine)


def _start_stack(args: argparse.Namespace, data) -> tuple[Any, str]:
    if args.stack == "default":
        return FilmStack.default(), "the default stack (its bounds are the free ranges)"
    if args.stack:
        return stack_file(args.stack), f"stack file {args.stack}"
    if args.handfit:
        return load_handfit_spreadsheet(args.handfit), f"hand fit {args.handfit}"

    bundle = load_model(args.model)  # a bundle or an ensemble (its members' mean)
    if bundle.task not in ("nr_params", "nr_sld"):
        raise ValueError(f"{args.model}: a {bundle.task} model predicts no film stack nor SLD profile of this curve")
    prediction = predict_measurement(bundle, data)
    if prediction.warning:
        print(f"warning: {prediction.warning}", file=sys.stderr)
    if bundle.task == "nr_params":
        return stacks_from_parameters(bundle.config, prediction.parameters[None, :])[0], f"prediction of {args.model}"
    # an SLD model: the stack family it was trained on, fitted to the predicted profile
    family = _family(bundle.config)
    fit = stack_from_profile(family, *sorted_profile(*prediction.profile))
    note = f", {len(fit.at_bound)} at a bound of the family ({', '.join(fit.at_bound[:3])})" if fit.at_bound else ""
    return fit.stack, f"{args.model}'s predicted profile, fitted by its stack family (profile RMS {fit.rms:.2f}{note})"


def _family(bundle_config: dict[str, Any]) -> FilmStack:
    """The stack family a model was trained on (values at the middle of their bounds)."""
    info = bundle_config["data"]["stack"]
    stack = FilmStack.from_pyreflect(info["layer_desc"], info["layer_bound"])
    for b in stack.free_parameters:
        stack = stack.with_value(b.i, b.par, 0.5 * (b.lo + b.hi))
    return stack


def _bounds(path: str | None) -> dict[str, tuple[float, float]]:
    if not path:
        return {}
    out = {}
    for name, pair in load_config_file(path).items():
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
            raise ValueError(f"{path}: bounds of {name!r} must be a [lo, hi] pair, got {pair!r}")
        out[str(name)] = (float(pair[0]), float(pair[1]))
    return out


def _contrast_values(specs: list[str], n: int) -> dict[str, list[float]]:
    """``--contrast LAYER.PAR=V1,...,Vn`` options → name → one start value per curve."""
    out = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"--contrast {spec!r}: expected LAYER.PAR=V1,V2,... (one value per data file)")
        try:
            numbers = [float(v) for v in values.split(",")]
        except ValueError:
            raise ValueError(f"--contrast {spec!r}: the values must be numbers separated by commas") from None
        if len(numbers) != n:
            raise ValueError(f"--contrast {spec!r}: {len(numbers)} values for {n} data files (one per file)")
        out[name.strip()] = numbers
    return out


def request_from_args(args: argparse.Namespace) -> RefineRequest:
    """The command line as a :class:`RefineRequest` (the start stack resolved here: a file, a hand fit, a model)."""
    if len(args.data) == 1 and (args.share or args.contrast):
        raise ValueError("--share and --contrast need several data files (contrasts of one film)")
    if args.no_fit and args.dream_samples <= 0:
        raise ValueError("--no-fit samples DREAM around the start stack without a fit: give --dream-samples N")
    first = load_data(args.data[0], args.dq_convention) if args.model else None  # a model predicts from the curve
    stack, origin = _start_stack(args, first)
    contrast = _contrast_values(args.contrast, len(args.data))
    try:
        return RefineRequest(
            data=args.data,
            dq_convention=args.dq_convention,
            dq_over_q=args.dq_over_q,
            stack=stack_meta(stack),
            start=origin,
            free=args.free,
            bounds=_bounds(args.bounds),
            share=args.share,
            contrast=contrast,
            scale=args.scale,
            background=args.background,
            dr_floor=args.dr_floor,
            engine=args.engine,
            method=args.method,
            population=args.population,
            generations=args.generations,
            de_tolerance=args.de_tolerance,
            multi_start=args.multi_start,
            max_nfev=args.max_nfev,
            seed=args.seed,
            optimize=not args.no_fit,
            refl1d=args.refl1d,
            dream_samples=args.dream_samples,
            out=args.out,
        )
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None


def cmd_refine(args: argparse.Namespace) -> int:
    request = request_from_args(args)
    if args.detach:
        return _detach(args, request)
    reporter = Reporter([tqdm_listener("uncertainty", "DREAM", "generations")])
    outcome = run_refinement(
        request, reporter, registry_of(args), on_fit=lambda result: _print_fit(result, request.start)
    )
    if outcome.status == "stopped":
        print(f"refinement stopped: {outcome.message}", file=sys.stderr)
        return 130
    summary = outcome.summary or {}
    if "refl1d_script" in summary:
        print(f"refl1d model: {summary['refl1d_script']}")
    if isinstance(outcome.bands, list):
        converged = outcome.bands[0].converged if outcome.bands else True
        print(
            f"DREAM bands: {outcome.out / 'bands'}" + ("" if converged else "  (not converged: raise --dream-samples)")
        )
    elif outcome.bands is not None:
        bands = summary["bands"]
        print(
            f"DREAM bands: {bands['sld']}, {bands['reflectivity']}"
            + ("" if outcome.bands.converged else "  (chains not converged: raise --dream-samples)")
        )
    print(f"results → {outcome.out / 'refinement.json'}")
    return 0


def _detach(args: argparse.Namespace, request: RefineRequest) -> int:
    """Queue the refinement (or DREAM-only sampling) as a job in its own process; print its run id."""
    run_id = submit_job(workspace_of(args), request.run_kind, request)
    print(run_id)
    what = "refinement" if request.optimize else "DREAM sampling"
    print(
        f"{what} as a job; follow it with: workbench runs watch {run_id} (stop: workbench runs stop {run_id})",
        file=sys.stderr,
    )
    return 0


def _print_fit(result: RefineResult | JointRefineResult, origin: str) -> None:
    if isinstance(result, JointRefineResult):
        _print_joint(result, origin)
        return
    left_out = f", {result.n_left_out} left out (no error bar)" if result.n_left_out else ""
    if result.method == "none":
        print(
            f"χ²/N {result.chi2_per_point:.4g} of the start, not refitted ({result.n_points} points{left_out}, "
            f"start: {origin})"
        )
    else:
        print(
            f"χ²/N {result.start_chi2 / result.n_points:.4g} → {result.chi2_per_point:.4g} in {result.seconds:.2f} s "
            f"({len(result.history)} iterations, {result.n_points} points{left_out}, start: {origin})"
        )
    for row in result.table():
        flag = result.flag(row["name"])
        print(f"  {row['name']:28s} {row['value']:12.5g} ± {row['uncertainty']:<9.2g}{f'  [{flag}]' if flag else ''}")
    for note in result.notes():
        print(f"note: {note}")


def _print_joint(result: JointRefineResult, origin: str) -> None:
    per = ", ".join(f"{label} {fit.chi2_per_point:.4g}" for fit, label in zip(result.contrasts, result.labels))
    print(
        f"χ²/N {result.start_chi2 / result.n_points:.4g} → {result.chi2_per_point:.4g} in {result.seconds:.2f} s "
        f"({result.method}, {len(result.contrasts)} curves, {result.n_points} points, start: {origin}); "
        f"per curve: {per}"
    )
    for row in result.table():
        flag = result.flag(row["name"])
        mark = ("  (shared)" if row["name"] in result.shared else "") + (f"  [{flag}]" if flag else "")
        print(f"  {row['name']:32s} {row['value']:12.5g} ± {row['uncertainty']:<9.2g}{mark}")
    for note in result.notes():
        print(f"note: {note}")

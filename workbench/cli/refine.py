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
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis.corefine import Contrast, JointRefineResult, corefine
from ..analysis.export_refl1d import export_refl1d
from ..analysis.joint_export import export_joint_refl1d
from ..analysis.predict import predict_measurement
from ..analysis.profile_fit import sorted_profile, stack_from_profile
from ..analysis.refine import DE_GENERATIONS, DE_TOLERANCE, METHODS, RefineError, _resolve, refine
from ..analysis.uncertainty import dream_bands, dream_joint_bands
from ..data.handfit import load_handfit_spreadsheet
from ..data.measured import load_measurement
from ..data.parameters import stacks_from_parameters
from ..events import Cancelled, Reporter, tqdm_listener
from ..fileio import write_text_atomic
from ..physics import FilmStack, Probe
from ..store.model_bundle import load_model
from .common import add_workspace_option, load_config_file, recording
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
    p.add_argument("--out", default="refinement", help="output folder (default: %(default)s)")
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


def _csv(path: Path, header: str, columns: list[np.ndarray]) -> None:
    rows = np.column_stack(columns)
    write_text_atomic(path, header + "\n" + "\n".join(",".join(f"{v:.10g}" for v in row) for row in rows) + "\n")


def _load(path: str, dq_convention: str | None):
    if not Path(path).is_file():
        raise ValueError(f"{path}: no such file")
    try:
        return load_measurement(path, dq_convention=dq_convention)
    except ValueError as exc:
        if "dq_convention" in str(exc):
            raise ValueError(f"{exc} (on the command line: --dq-convention fwhm|sigma)") from None
        raise


def _probe(args: argparse.Namespace, data) -> Probe | None:
    """The probe for a file without a dQ column when ``--dq-over-q`` is given (else refine's default)."""
    if args.dq_over_q is None or data.dq_sigma is not None:
        return None
    if not 0 < args.dq_over_q < 1:
        raise ValueError(f"--dq-over-q must be a fraction between 0 and 1 (e.g. 0.05), got {args.dq_over_q}")
    merged = data.merge_duplicate_q() if data.has_duplicate_q else data
    return merged.probe(args.scale, args.background, default_dq_over_q=args.dq_over_q)


def _fit_metrics(result) -> dict[str, Any]:
    """What the run registry keeps of a fit (one curve or several): χ²/N, convergence and every value."""
    values = {str(n): float(v) for n, v in zip(result.names, result.values)}
    return {"chi2_per_point": result.chi2_per_point, "converged": result.converged, **values}


def _optimizer_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "method": args.method,
        "population": args.population,
        "generations": args.generations,
        "de_tolerance": args.de_tolerance,
        "multi_start": args.multi_start,
        "max_nfev": args.max_nfev,
        "seed": args.seed,
        "engine": args.engine,
    }


def cmd_refine(args: argparse.Namespace) -> int:
    if len(args.data) > 1:
        return cmd_corefine(args)
    if args.share or args.contrast:
        raise ValueError("--share and --contrast need several data files (contrasts of one film)")
    args.data = args.data[0]
    data = _load(args.data, args.dq_convention)
    stack, origin = _start_stack(args, data)
    bounds = _bounds(args.bounds)
    free = args.free or (list(bounds) if bounds else None)
    reporter = Reporter()
    params = {
        "data": str(Path(args.data).resolve()),
        "start": origin,
        "free": free,
        "bounds": bounds,
        **_optimizer_options(args),
        "out": str(Path(args.out).resolve()),
    }
    try:
        # recorded in the workspace's run registry like the Refine panel's fits (the History tab lists both)
        with recording(args, "refine", name=Path(args.out).name, params=params, reporter=reporter) as run:
            result = refine(
                data,
                stack,
                free=free,
                bounds=bounds,
                probe=_probe(args, data),
                scale=args.scale,
                background=args.background,
                dr_floor=args.dr_floor,
                reporter=reporter,
                **_optimizer_options(args),
            )
            if run is not None:
                run.metrics.update(_fit_metrics(result))
    except Cancelled as exc:
        print(f"refinement stopped: {exc}", file=sys.stderr)
        return 130
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "data": str(args.data),
        "start": origin,
        "chi2_per_point": result.chi2_per_point,
        "chi2": result.chi2,
        "points": result.n_points,
        "left_out_points": result.n_left_out,
        "left_out_q": result.left_out_q.tolist(),
        "dr_floor": args.dr_floor,
        "start_chi2_per_point": result.start_chi2 / result.n_points,
        "seconds": result.seconds,
        "converged": result.converged,
        "message": result.message,
        "engine": args.engine,
        "method": result.method,
        "parameters": result.table(),
        "at_bound": result.at_bound,
        "undetermined": result.undetermined,
        "notes": result.notes(),
        "bounds": result.bounds,
        "scale": result.scale,
        "background": result.background,
        "stack": {"layer_desc": result.stack.to_layer_desc(), "layer_bound": result.stack.to_layer_bound()},
        "history": result.history,
    }
    _csv(out / "fit.csv", "q,r,dr,r_fit", [result.q, *_data_columns(data, result.q), result.r_fit])
    _csv(out / "profile.csv", "z,sld", [result.profile[0], result.profile[1]])
    left_out = f", {result.n_left_out} left out (no error bar)" if result.n_left_out else ""
    print(
        f"χ²/N {summary['start_chi2_per_point']:.4g} → {result.chi2_per_point:.4g} in {result.seconds:.2f} s "
        f"({len(result.history)} iterations, {result.n_points} points{left_out}, start: {origin})"
    )
    for row in result.table():
        flag = result.flag(row["name"])
        print(f"  {row['name']:28s} {row['value']:12.5g} ± {row['uncertainty']:<9.2g}{f'  [{flag}]' if flag else ''}")
    for note in result.notes():
        print(f"note: {note}")
    if args.refl1d:
        script = export_refl1d(out / "refl1d", result, data, result.bounds)
        summary["refl1d_script"] = str(script)
        print(f"refl1d model: {script}")
    if args.dream_samples > 0:
        reporter.listeners.append(tqdm_listener("uncertainty", "DREAM", "generations"))
        bands = dream_bands(
            result.stack,
            data,
            result.bounds,
            scale=result.scale,
            background=result.background,
            samples=args.dream_samples,
            seed=args.seed,
            reporter=reporter,
        )
        sld_csv, r_csv = bands.to_csv(out / "bands")
        summary["bands"] = {
            "sld": str(sld_csv),
            "reflectivity": str(r_csv),
            "converged": bands.converged,
            "parameters": bands.parameter_table,
        }
        print(
            f"DREAM bands: {sld_csv}, {r_csv}"
            + ("" if bands.converged else "  (chains not converged: raise --dream-samples)")
        )
    write_text_atomic(out / "refinement.json", json.dumps(summary, indent=2, default=float))
    print(f"results → {out / 'refinement.json'}")
    return 0


def _labels(paths: list[str]) -> list[str]:
    """Each curve's label: its file name without suffix, made unique by its position when two are alike."""
    stems = [Path(p).stem.replace(":", "_") or f"c{k + 1}" for k, p in enumerate(paths)]
    return [stem if stems.count(stem) == 1 else f"{stem}_{k + 1}" for k, stem in enumerate(stems)]


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


def _contrasts(args: argparse.Namespace) -> tuple[list[Contrast], list[Any], str]:
    """The curves, each with the start stack (its --contrast values put in), and where the start came from."""
    datas = [_load(path, args.dq_convention) for path in args.data]
    stack, origin = _start_stack(args, datas[0])
    labels = _labels(args.data)
    stacks = [stack] * len(datas)
    for name, values in _contrast_values(args.contrast, len(datas)).items():
        try:
            i, par = _resolve(stack, name)
        except RefineError as exc:
            raise ValueError(f"--contrast: {exc}") from None
        stacks = [s.with_value(i, par, v) for s, v in zip(stacks, values)]
    contrasts = [
        Contrast(d, s, label=label, probe=_probe(args, d), scale=args.scale, background=args.background)
        for d, s, label in zip(datas, stacks, labels)
    ]
    return contrasts, datas, origin


def cmd_corefine(args: argparse.Namespace) -> int:
    """Several curves of one film fitted together: shared parameters once, the rest per curve."""
    contrasts, datas, origin = _contrasts(args)
    bounds = _bounds(args.bounds)
    free = args.free or (list(bounds) if bounds else None)
    reporter = Reporter()
    params = {
        "data": [str(Path(p).resolve()) for p in args.data],
        "start": origin,
        "free": free,
        "share": args.share,
        "contrast": args.contrast,
        "bounds": bounds,
        **_optimizer_options(args),
        "out": str(Path(args.out).resolve()),
    }
    try:
        with recording(args, "refine", name=Path(args.out).name, params=params, reporter=reporter) as run:
            result = corefine(
                contrasts,
                free=free,
                shared=args.share,
                bounds=bounds,
                dr_floor=args.dr_floor,
                reporter=reporter,
                **_optimizer_options(args),
            )
            if run is not None:
                run.metrics.update(_fit_metrics(result))
    except Cancelled as exc:
        print(f"refinement stopped: {exc}", file=sys.stderr)
        return 130
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = _joint_summary(args, result, origin)
    for fit, data, label in zip(result.contrasts, datas, result.labels):
        _csv(out / f"fit_{label}.csv", "q,r,dr,r_fit", [fit.q, *_data_columns(data, fit.q), fit.r_fit])
        _csv(out / f"profile_{label}.csv", "z,sld", [fit.profile[0], fit.profile[1]])
    _print_joint(result, origin)
    if args.refl1d:
        script = export_joint_refl1d(out / "refl1d", result, datas)
        summary["refl1d_script"] = str(script)
        print(f"refl1d model: {script}")
    if args.dream_samples > 0:
        reporter.listeners.append(tqdm_listener("uncertainty", "DREAM", "generations"))
        bands = dream_joint_bands(result, datas, samples=args.dream_samples, seed=args.seed, reporter=reporter)
        summary["bands"] = {}
        for b, label in zip(bands, result.labels):
            sld_csv, r_csv = b.to_csv(out / "bands" / label)
            summary["bands"][label] = {"sld": str(sld_csv), "reflectivity": str(r_csv), "converged": b.converged}
        summary["bands_parameters"] = bands[0].parameter_table if bands else []
        print(
            f"DREAM bands: {out / 'bands'}" + ("" if bands[0].converged else "  (not converged: raise --dream-samples)")
        )
    write_text_atomic(out / "refinement.json", json.dumps(summary, indent=2, default=float))
    print(f"results → {out / 'refinement.json'}")
    return 0


def _joint_summary(args: argparse.Namespace, result: JointRefineResult, origin: str) -> dict[str, Any]:
    return {
        "data": list(args.data),
        "labels": result.labels,
        "start": origin,
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


def _data_columns(data, q: np.ndarray) -> list[np.ndarray]:
    """Measured R and dR on the fitted Q points (duplicates merged as the fit did)."""
    m = data.merge_duplicate_q() if data.has_duplicate_q else data
    idx = np.searchsorted(m.q, q)
    dr = m.dr[idx] if m.dr is not None else np.full(q.size, np.nan)
    return [m.r[idx], dr]

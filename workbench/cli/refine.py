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

from ..analysis.export_refl1d import export_refl1d
from ..analysis.predict import predict_measurement
from ..analysis.refine import refine
from ..analysis.uncertainty import dream_bands
from ..data.handfit import load_handfit_spreadsheet
from ..data.measured import load_measurement
from ..data.parameters import stacks_from_parameters
from ..events import Cancelled, Reporter, tqdm_listener
from ..fileio import write_text_atomic
from ..store.model_bundle import load_model_bundle
from .common import add_workspace_option, load_config_file, recording
from .stacks import stack_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("refine", help="fit a film stack to a measured curve (least squares, then optional DREAM bands)")
    p.add_argument("data", help="measured curve: .txt/.dat (Q R [dR [dQ]]), .ort, or .npy")
    start = p.add_mutually_exclusive_group(required=True)
    start.add_argument(
        "--stack", help="starting stack: YAML/JSON with 'stack: {layer_desc, layer_bound}' (bounds = free ranges)"
    )
    start.add_argument("--handfit", help="starting stack: a facility hand-fit spreadsheet (CSV layer table)")
    start.add_argument("--model", help="starting stack: a parameter-model bundle's prediction for this curve")
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
        "--engine", choices=["fast", "torch"], default="fast", help="model and Jacobian engine (default: %(default)s)"
    )
    p.add_argument("--multi-start", type=int, default=0, help="extra random starts inside the bounds (default: 0)")
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
    if args.stack:
        return stack_file(args.stack), f"stack file {args.stack}"
    if args.handfit:
        return load_handfit_spreadsheet(args.handfit), f"hand fit {args.handfit}"

    bundle = load_model_bundle(args.model)
    if bundle.task != "nr_params":
        raise ValueError(
            f"{args.model}: a {bundle.task} model predicts no film stack; use a parameter model (train --target params)"
        )
    prediction = predict_measurement(bundle, data)
    if prediction.warning:
        print(f"warning: {prediction.warning}", file=sys.stderr)
    return stacks_from_parameters(bundle.config, prediction.parameters[None, :])[0], f"prediction of {args.model}"


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


def cmd_refine(args: argparse.Namespace) -> int:
    if not Path(args.data).is_file():
        raise ValueError(f"{args.data}: no such file")
    try:
        data = load_measurement(args.data, dq_convention=args.dq_convention)
    except ValueError as exc:
        if "dq_convention" in str(exc):
            raise ValueError(f"{exc} (on the command line: --dq-convention fwhm|sigma)") from None
        raise
    stack, origin = _start_stack(args, data)
    bounds = _bounds(args.bounds)
    free = args.free or (list(bounds) if bounds else None)
    reporter = Reporter()
    params = {
        "data": str(Path(args.data).resolve()),
        "start": origin,
        "free": free,
        "bounds": bounds,
        "engine": args.engine,
        "multi_start": args.multi_start,
        "seed": args.seed,
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
                scale=args.scale,
                background=args.background,
                multi_start=args.multi_start,
                seed=args.seed,
                engine=args.engine,
                reporter=reporter,
            )
            if run is not None:
                run.metrics.update(
                    chi2_per_point=result.chi2_per_point,
                    converged=result.converged,
                    **{str(n): float(v) for n, v in zip(result.names, result.values)},
                )
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


def _data_columns(data, q: np.ndarray) -> list[np.ndarray]:
    """Measured R and dR on the fitted Q points (duplicates merged as the fit did)."""
    m = data.merge_duplicate_q() if data.has_duplicate_q else data
    idx = np.searchsorted(m.q, q)
    dr = m.dr[idx] if m.dr is not None else np.full(q.size, np.nan)
    return [m.r[idx], dr]

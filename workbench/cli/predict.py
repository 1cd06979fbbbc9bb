"""``workbench predict``: a model bundle's prediction for a measured curve, an NR array, or (χ models) SLD profiles.

Writes a JSON summary (profile or layer parameters, the computed curve, χ²/N and log-R RMSE
against the data, warnings such as a Q range the model was not trained on, and the trust verdict:
χ²/N with its N, the curve's distance to the training curves, parameters at a bound), and prints the
verdict, marked ⚠ when the prediction should not be trusted as is.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from ..analysis.predict import predict, predict_measurement, prior_bounds
from ..data.measured import load_measurement
from ..fileio import write_text_atomic
from ..store.model_bundle import ModelBundle, load_model
from ..training.chi_workflow import load_chi_experiment, predict_chi
from .common import load_config_file


def add_parser(sub: argparse._SubParsersAction) -> None:
    pr = sub.add_parser("predict", help="predict an SLD profile or layer parameters for a measured curve")
    pr.add_argument("--model", required=True, help="model bundle folder")
    pr.add_argument("--input", required=True, help="measured file (.txt/.dat/.ort/.npy) or an NR array .npy")
    pr.add_argument("--out", required=True, help="JSON file with the prediction and the computed curve")
    pr.add_argument("--dq-convention", choices=["fwhm", "sigma"], help="for text files that do not say")
    pr.add_argument("--index", type=int, help="curve index in a multi-curve .npy (single-curve prediction)")
    pr.add_argument(
        "--bounds",
        help="YAML/JSON of prior ranges, parameter name → [lo, hi], for a prior-bounds model (param_bounds); "
        "parameters not named keep the family's range",
    )
    pr.set_defaults(func=cmd_predict)


def _predict_chi(bundle: ModelBundle, args: argparse.Namespace) -> int:
    z_grid = None
    data = Path(args.input)
    if data.suffix == ".npy":
        profiles = np.atleast_2d(np.load(data, allow_pickle=False))
    else:
        table = np.loadtxt(data)
        z_grid = table[:, 0]
        _, sld = load_chi_experiment(data, z_grid)
        profiles = sld[None, :]
    chi, flags = predict_chi({**bundle.normalization, "model": bundle.model}, profiles)
    names = bundle.normalization.get("chi_names", ["chi_AB", "chi_substrate", "chi_air"])
    rows = []
    for i in range(len(chi)):
        rows.append(
            {
                "chi": dict(zip(names, map(float, chi[i]))),
                "outside_training_range": [n for n, f in zip(names, flags.chi[i]) if f],
                "profile_outside_training_values": bool(flags.profile[i]),
                "unlike_training_profiles": bool(flags.unlike_training[i]),
            }
        )
        flagged = (
            rows[-1]["outside_training_range"]
            or rows[-1]["unlike_training_profiles"]
            or rows[-1]["profile_outside_training_values"]
        )
        print(
            ", ".join(f"{k} = {v:.4g}" for k, v in rows[-1]["chi"].items())
            + ("   ⚠ FLAGGED: do not report" if flagged else "")
        )
    write_text_atomic(
        Path(args.out), json.dumps({"model": str(args.model), "input": str(args.input), "predictions": rows}, indent=2)
    )
    return 0


def _bounds(path: str | None) -> dict[str, list[float]] | None:
    """``--bounds``: a mapping of parameter name → [lo, hi] (None when not given)."""
    if not path:
        return None
    values = load_config_file(path)
    if not isinstance(values, dict) or not values:
        raise ValueError(f"{path}: --bounds needs a mapping of parameter name → [lo, hi]")
    return values


def cmd_predict(args: argparse.Namespace) -> int:
    bundle = load_model(args.model)  # a bundle or an ensemble (its members' mean)
    if bundle.task == "chi":
        return _predict_chi(bundle, args)
    out = Path(args.out)
    bounds = _bounds(args.bounds)
    ranges = prior_bounds(bundle, bounds) if bounds else None  # checked before the input is read
    if str(args.input).endswith(".npy") and args.index is None:
        curves = np.load(args.input, allow_pickle=False)
        pred = predict(bundle, curves, bounds)
        np.save(out.with_suffix(".npy"), pred)
        print(f"predicted {len(pred)} curves → {out.with_suffix('.npy')}")
        return 0
    m = load_measurement(args.input, dq_convention=args.dq_convention, index=args.index or 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict_measurement(bundle, m, bounds)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    summary = {"model": str(args.model), "input": str(args.input), "metrics": result.metrics, "warning": result.warning}
    if result.trust is not None:
        summary["trust"] = result.trust.to_dict()
    if result.profile is not None:
        summary["profile"] = {"z": result.profile[0].tolist(), "sld": result.profile[1].tolist()}
    if result.parameters is not None:
        summary["parameters"] = dict(zip(bundle.config["data"]["parameters"]["names"], map(float, result.parameters)))
    if ranges is not None:
        summary["bounds"] = dict(zip(bundle.config["data"]["parameters"]["names"], ranges.tolist()))
    summary["computed"] = {"q": result.q.tolist(), "r": result.computed.tolist()}
    write_text_atomic(out, json.dumps(summary, indent=2))
    print(
        f"χ²/N {result.metrics.get('chi2_per_point', float('nan')):.3g}, log-R RMSE "
        f"{result.metrics['log_r_rmse']:.3g} → {out}"
    )
    if result.trust is not None:
        mark = "⚠ " if result.trust.level == "warn" else ""
        print(f"{mark}trust: {result.trust.level}: {result.trust.words}")
    return 0

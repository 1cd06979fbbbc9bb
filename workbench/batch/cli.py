"""The ``workbench`` command line.

``workbench start`` is what the README's first quick-start command runs: it serves the dashboard
notebook (``notebooks/workbench.ipynb``) with Voilà on localhost.  ``workbench report`` is the
headless run: the default film stack (pyreflect's example) as an interactive Plotly HTML file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def _write_atomic(path: Path, text: str) -> None:
    from ..fileio import write_text_atomic

    write_text_atomic(path, text)


def cmd_start(args: argparse.Namespace) -> int:
    """Serve the dashboard notebook with Voilà (in this environment's kernel) until Ctrl-C.

    One launcher for ``start`` and ``dashboard`` (:func:`workbench.batch.dashboard.launch_dashboard`):
    the process becomes Voilà, so a signal that stops ``workbench start`` stops the server and its
    kernels too.  The notebook is found like every shipped notebook (checkout, prefix or --user install).
    """
    from .dashboard import launch_dashboard

    return int(launch_dashboard(args.port, getattr(args, "notebook", None), not args.no_browser, ip=args.ip,
                                workspace=args.workspace))


def cmd_report(args: argparse.Namespace) -> int:
    from ..physics import FilmStack, Probe
    from ..ui.figures import stack_figure

    t0 = time.perf_counter()
    stack = FilmStack.default()
    probe = Probe.from_grid(args.q_min, args.q_max, args.num_q, args.q_resolution)
    fig = stack_figure(stack, probe)
    out = Path(args.out).resolve()
    _write_atomic(out, fig.to_html(include_plotlyjs=True, full_html=True))
    print(f"default film stack ({len(stack.layers)} layers, {probe.q.size} Q points) computed in {time.perf_counter() - t0:.1f} s")
    print(f"wrote {out}  (open it in a browser: interactive R(Q) and SLD profile)")
    return 0


def load_config_file(path: str | os.PathLike) -> dict:
    """A YAML or JSON mapping from a file; errors name the file."""
    import json

    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{p}: cannot read ({exc.strerror})") from exc
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{p}: not valid {'JSON' if p.suffix.lower() == '.json' else 'YAML'}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{p}: expected a mapping of settings at the top level, got {type(data).__name__}")
    return data


def _stack_from(settings: dict):
    from ..physics import FilmStack

    stack = settings.pop("stack", None)
    if stack is None:
        return FilmStack.default()
    if not isinstance(stack, dict) or "layer_desc" not in stack:
        raise ValueError("'stack' must be a mapping with 'layer_desc' (and 'layer_bound'), pyreflect's format")
    return FilmStack.from_pyreflect(stack["layer_desc"], stack.get("layer_bound"))


def cmd_generate(args: argparse.Namespace) -> int:
    import signal

    from pydantic import ValidationError

    from ..data.generate import GeneratorConfig
    from ..events import Cancelled, Reporter, Timing, tqdm_listener

    settings = load_config_file(args.config) if args.config else {}
    stack = _stack_from(settings)
    for key in ("num_curves", "seed", "sampling", "sld_points", "chunk_size"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.noise:
        settings.setdefault("realism", {})["counting_noise"] = True
    try:
        config = GeneratorConfig(**settings)
    except ValidationError as exc:
        raise ValueError(_validation_message(exc)) from None
    reporter = Reporter([tqdm_listener("generate", "generating", "curves")])
    reporter.listeners.append(
        lambda e: print(f"{e.items} curves in {e.seconds:.1f} s ({e.rate:,.0f} curves/s)") if isinstance(e, Timing) else None
    )
    from .cli_store import generate_dataset, record_generated, recording, refuse_existing_dataset

    refuse_existing_dataset(args.out, args.overwrite)
    params = {"out": str(Path(args.out).resolve()), "generator": config.model_dump(mode="json"), "hub_repo": args.hub_repo}
    previous = signal.signal(signal.SIGINT, lambda *_: reporter.stop.stop("interrupted (Ctrl-C)"))
    try:
        with recording(args, "generate", name=Path(args.out).name, params=params, reporter=reporter) as run:
            out = generate_dataset(args, stack, config, reporter)
            record_generated(run, out, config)
    except Cancelled as exc:
        print(f"workbench generate: cancelled: {exc}; nothing was written to {args.out}", file=sys.stderr)
        return 130
    except FileExistsError as exc:
        raise ValueError(str(exc).replace("pass overwrite=True", "pass --overwrite")) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    print(f"wrote data set {out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import signal

    from pydantic import ValidationError

    from ..events import Record, Reporter, tqdm_listener
    from ..training import TrainConfig
    from ..training.nr_workflow import resume_nr_training, train_nr_model

    settings = load_config_file(args.config) if args.config else {}
    model = dict(settings.pop("model", {}) or {})
    for key in ("layers", "dropout", "kernel_size"):
        if getattr(args, key) is not None:
            model[key] = getattr(args, key)
    if args.model:
        model["kind"] = args.model
    for key in ("epochs", "batch_size", "learning_rate", "optimizer", "device", "seed", "weight_decay", "early_stopping"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    try:
        train = TrainConfig(**settings)
    except ValidationError as exc:
        raise ValueError(_validation_message(exc)) from None
    reporter = Reporter([tqdm_listener("train", "training", "batches")])
    reporter.listeners.append(
        lambda e: print(
            f"epoch {e.data['epoch']}: train {e.data['train_loss']:.4g} (eval mode {e.data['train_loss_eval']:.4g}), "
            f"validation {e.data['val_loss']:.4g}, {e.data['seconds']:.1f} s"
        ) if isinstance(e, Record) and e.name == "epoch" else None
    )
    checkpoint = args.checkpoint or (str(Path(args.out).with_suffix(".checkpoint.safetensors")))

    def on_interrupt(*_):  # first Ctrl-C pauses (checkpoint), a second one stops
        if reporter.pause.is_set():
            reporter.stop.stop("interrupted twice (Ctrl-C)")
        reporter.pause.set()

    from .cli_store import checkpoint_uploader, record_trained, recording, train_params

    if args.target == "chi":
        return _train_chi(args, model, train, reporter)
    if args.validation_split is not None and not 0 < args.validation_split < 0.5:
        raise ValueError(f"--validation-split must be between 0 and 0.5, got {args.validation_split}")
    previous = signal.signal(signal.SIGINT, on_interrupt)
    uploader = None
    try:
        with recording(args, "train", name=Path(args.out).name, params=train_params(args, train, model, args.resume or checkpoint),
                       reporter=reporter) as run:
            uploader = checkpoint_uploader(args, run, args.resume or checkpoint, reporter)
            if args.resume:
                out = resume_nr_training(args.resume, args.data, bundle_dir=args.out, reporter=reporter, epochs=args.epochs)
            else:
                preprocess = None
                if args.validation_split is not None:
                    from ..data.preprocess import PreprocessConfig

                    v = args.validation_split
                    preprocess = PreprocessConfig(split=(1 - 2 * v, v, v), seed=train.seed)
                out = train_nr_model(args.data, target=args.target, model=model, train=train, bundle_dir=args.out,
                                     checkpoint_path=checkpoint, reporter=reporter, name=Path(args.out).name,
                                     preprocess=preprocess)
            if uploader is not None:
                uploader.close()
            record_trained(run, out, args.target)
    finally:
        signal.signal(signal.SIGINT, previous)
        if uploader is not None:
            uploader.close()
    status = out.result.status
    if status == "paused":
        print(f"paused; resume with: workbench train --data {args.data} --out {args.out} --resume {out.result.checkpoint}"
              + (f"  (or: workbench runs resume {run.id})" if run is not None else ""))
        return 0
    if status == "stopped":
        print("stopped; nothing was saved", file=sys.stderr)
        return 130
    print(f"{status} after {out.result.epochs_done} epochs; test metrics:")
    for key, value in out.metrics.items():
        print(f"  {key}: {value}")
    print(f"wrote model bundle {out.bundle}")
    return 0


def _train_chi(args, model: dict, train, reporter) -> int:
    """SLD → χ on a folder with train_data.npy / train_pars.npy (pyreflect's χ workflow)."""
    from ..store.model_bundle import save_model_bundle
    from ..training.chi_workflow import load_chi_scft, train_chi
    from .cli_store import record_chi, recording, train_params

    _, profiles, chi, _, _ = load_chi_scft(args.data)
    model.pop("kind", None)
    with recording(args, "train", name=Path(args.out).name, params=train_params(args, train, model, None), reporter=reporter) as run:
        result = train_chi(profiles, chi, model_config=model or None, train_config=train, seed=train.seed, reporter=reporter)
        parts = result.parts()
        folder = save_model_bundle(args.out, result.model, task="chi", normalization=parts, metrics=parts["metrics"],
                                   history=result.history, train=train.model_dump(mode="json"), name=Path(args.out).name,
                                   overwrite=True)
        record_chi(run, result, folder)
    print("test metrics (physical units):")
    for key, value in parts["metrics"].items():
        print(f"  {key}: {value}")
    print(f"wrote model bundle {folder}")
    return 0


def _predict_chi(bundle, args) -> int:
    import json

    import numpy as np

    from ..training.chi_workflow import load_chi_experiment, predict_chi

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
        rows.append({
            "chi": dict(zip(names, map(float, chi[i]))),
            "outside_training_range": [n for n, f in zip(names, flags.chi[i]) if f],
            "profile_outside_training_values": bool(flags.profile[i]),
            "unlike_training_profiles": bool(flags.unlike_training[i]),
        })
        flagged = rows[-1]["outside_training_range"] or rows[-1]["unlike_training_profiles"] or rows[-1]["profile_outside_training_values"]
        print(", ".join(f"{k} = {v:.4g}" for k, v in rows[-1]["chi"].items()) + ("   ⚠ FLAGGED: do not report" if flagged else ""))
    _write_atomic(Path(args.out), json.dumps({"model": str(args.model), "input": str(args.input), "predictions": rows}, indent=2))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import json
    import warnings

    import numpy as np

    from ..analysis.predict import predict, predict_measurement
    from ..data.measured import load_measurement
    from ..store.model_bundle import load_model_bundle

    bundle = load_model_bundle(args.model)
    if bundle.task == "chi":
        return _predict_chi(bundle, args)
    out = Path(args.out)
    if str(args.input).endswith(".npy") and args.index is None:
        curves = np.load(args.input, allow_pickle=False)
        pred = predict(bundle, curves)
        np.save(out.with_suffix(".npy"), pred)
        print(f"predicted {len(pred)} curves → {out.with_suffix('.npy')}")
        return 0
    m = load_measurement(args.input, dq_convention=args.dq_convention, index=args.index or 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = predict_measurement(bundle, m)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    summary = {"model": str(args.model), "input": str(args.input), "metrics": result.metrics, "warning": result.warning}
    if result.profile is not None:
        summary["profile"] = {"z": result.profile[0].tolist(), "sld": result.profile[1].tolist()}
    if result.parameters is not None:
        summary["parameters"] = dict(zip(bundle.config["data"]["parameters"]["names"], map(float, result.parameters)))
    summary["computed"] = {"q": result.q.tolist(), "r": result.computed.tolist()}
    _write_atomic(out, json.dumps(summary, indent=2))
    print(f"χ²/N {result.metrics.get('chi2_per_point', float('nan')):.3g}, log-R RMSE {result.metrics['log_r_rmse']:.3g} → {out}")
    return 0


def _validation_message(exc) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err["loc"]) or "settings"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from ..physics.probe import DEFAULT_DQ_OVER_Q_FWHM, DEFAULT_NUM_Q, DEFAULT_Q_MAX, DEFAULT_Q_MIN
    from .cli_store import add_workspace_option

    parser = argparse.ArgumentParser(prog="workbench", description="Neutron reflectometry ML workbench")
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    start = sub.add_parser("start", help="start the Voilà dashboard (notebooks/workbench.ipynb) on this machine")
    start.add_argument("--port", type=int, default=8866, help="port to serve on (default: %(default)s)")
    start.add_argument("--ip", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)")
    start.add_argument("--workspace", help="workspace folder (default: $WORKBENCH_HOME, else ~/.workbench)")
    start.add_argument("--no-browser", action="store_true", help="do not open a browser")
    start.set_defaults(func=cmd_start)

    report = sub.add_parser("report", help="compute the default film stack and write an interactive HTML report")
    report.add_argument("--out", default="workbench-default.html", help="HTML file to write (default: %(default)s)")
    report.add_argument("--q-min", type=float, default=DEFAULT_Q_MIN, help="Å⁻¹ (default: %(default)s)")
    report.add_argument("--q-max", type=float, default=DEFAULT_Q_MAX, help="Å⁻¹ (default: %(default)s)")
    report.add_argument("--num-q", type=int, default=DEFAULT_NUM_Q, help="number of Q points (default: %(default)s)")
    report.add_argument("--q-resolution", type=float, default=DEFAULT_DQ_OVER_Q_FWHM, help="dQ/Q, FWHM (default: %(default)s)")
    report.set_defaults(func=cmd_report)

    gen = sub.add_parser("generate", help="generate a synthetic NR/SLD data set (pyreflect's layout) into a folder")
    gen.add_argument("--out", required=True, help="folder to write (must not hold a data set unless --overwrite)")
    gen.add_argument("--config", help="YAML or JSON file with generator settings and optionally 'stack'")
    gen.add_argument("--num-curves", type=int, help="numCurves")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--sampling", choices=["lhs", "uniform"])
    gen.add_argument("--sld-points", type=int, help="sldOutputPoints")
    gen.add_argument("--chunk-size", type=int, help="curves per chunk (memory vs. overhead)")
    gen.add_argument("--noise", action="store_true", help="add Poisson counting noise (REF_L-like dR/R)")
    gen.add_argument("--dask", help="'local' for a 2-worker LocalCluster, or a scheduler address tcp://host:port")
    gen.add_argument("--overwrite", action="store_true", help="replace an existing data set in --out")
    gen.add_argument("--hub-repo", help="Hub dataset repo: reuse the data set stored there, or upload it right after generating")
    add_workspace_option(gen)
    gen.set_defaults(func=cmd_generate)

    tr = sub.add_parser("train", help="train an NR → SLD or NR → parameter model on a data set; Ctrl-C pauses")
    tr.add_argument("--data", required=True, help="data-set folder (workbench generate, or a pyreflect pair)")
    tr.add_argument("--out", required=True, help="model bundle folder to write")
    tr.add_argument("--config", help="YAML or JSON with training settings (and 'model': {...})")
    tr.add_argument("--target", choices=["sld", "params", "chi"], default="sld",
                    help="sld: NR → SLD profile; params: NR → layer parameters; chi: SLD → χ (data: train_data.npy/train_pars.npy)")
    tr.add_argument("--model", choices=["compact", "parity_cnn", "param"], help="architecture (default: compact / param)")
    tr.add_argument("--layers", type=int, help="parity CNN: number of conv blocks")
    tr.add_argument("--dropout", type=float)
    tr.add_argument("--kernel-size", type=int, help="parity CNN: kernelSize")
    tr.add_argument("--epochs", type=int)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--learning-rate", type=float)
    tr.add_argument("--weight-decay", type=float)
    tr.add_argument("--early-stopping", type=int, help="patience in epochs")
    tr.add_argument("--optimizer", choices=["adam", "adamw", "sgd"])
    tr.add_argument("--validation-split", type=float, help="validationSplit: fraction held out for validation (0.1); as much again for test")
    tr.add_argument("--device", help="auto, cpu, cuda, cuda:1")
    tr.add_argument("--seed", type=int)
    tr.add_argument("--checkpoint", help="checkpoint file (default: next to --out)")
    tr.add_argument("--resume", help="continue a paused run from this checkpoint")
    tr.add_argument("--hub-repo", help="Hub model repo to upload checkpoints to (private; see --hub-every)")
    tr.add_argument("--hub-every", type=int, default=1, help="upload a checkpoint at most every N epochs (default: %(default)s)")
    add_workspace_option(tr)
    tr.set_defaults(func=cmd_train)

    pr = sub.add_parser("predict", help="predict an SLD profile or layer parameters for a measured curve")
    pr.add_argument("--model", required=True, help="model bundle folder")
    pr.add_argument("--input", required=True, help="measured file (.txt/.dat/.ort/.npy) or an NR array .npy")
    pr.add_argument("--out", required=True, help="JSON file with the prediction and the computed curve")
    pr.add_argument("--dq-convention", choices=["fwhm", "sigma"], help="for text files that do not say")
    pr.add_argument("--index", type=int, help="curve index in a multi-curve .npy (single-curve prediction)")
    pr.set_defaults(func=cmd_predict)

    from .cli_refine import add_refine_parser

    add_refine_parser(sub)

    from .cli_store import add_store_commands  # runs, hub

    add_store_commands(sub)

    from .cli_batch import add_batch_commands  # sweep, search, dashboard, notebooks, doctor

    add_batch_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:  # our validation errors say what is wrong; no traceback for them
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

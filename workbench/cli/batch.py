"""The batch subcommands of ``workbench``: sweep, search, notebooks, doctor.

Each command's options and its implementation sit together.  Exit codes: 0 success, 1 some runs failed or a
version mismatch was found, 2 bad input (the message names it), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from ..batch.doctor import report, run_doctor
from ..batch.jobs import submit_job
from ..batch.notebooks import copy_notebooks, shipped_notebooks
from ..batch.search import SearchConfig, run_search
from ..batch.sweep import grid, notebook_path, parameter_sets_from_mapping, parse_value_list, run_sweep
from ..events import Cancelled, Record, Reporter, tqdm_listener
from ..fileio import write_text_atomic
from ..plots.sweep import choose_metric, history_figure, sweep_figure
from .common import add_workspace_option, interrupts, load_config_file, validation_message, workspace_of


# ------------------------------------------------------------------ sweep
def cmd_sweep(args: argparse.Namespace) -> int:
    spec = load_config_file(args.file) if args.file else {}
    notebook = args.notebook or spec.get("notebook")
    if not notebook:
        raise ValueError(
            "name the notebook to sweep (a file, or a shipped one such as 'pipeline'), or give 'notebook' in --file"
        )
    nb = notebook_path(notebook)
    base = (
        parameter_sets_from_mapping({k: v for k, v in spec.items() if k != "notebook"}, args.file)
        if {"grid", "runs"} & set(spec)
        else [dict(spec.get("fixed") or {})]
    )
    axes: dict[str, list[str]] = {}
    for name, values in args.param or []:
        if name in axes:
            raise ValueError(f"-p {name} given twice; give all its values once, separated by commas")
        axes[name] = parse_value_list(values)
    sets = [{**b, **g} for b in base for g in grid(axes)] if axes else base
    if sets == [{}]:
        raise ValueError("nothing to sweep: give -p NAME v1,v2,... and/or --file with 'grid' or 'runs'")
    if args.detach:
        return _sweep_detached(args, nb, sets)

    def on_event(event) -> None:
        if isinstance(event, Record) and event.name == "run" and event.data["status"] == "skipped" and args.verbose:
            print(f"skip (done): {event.data['label']}")

    reporter = Reporter([tqdm_listener("sweep", "sweep", "runs"), on_event])
    with interrupts(reporter):
        try:
            result = run_sweep(
                nb,
                sets,
                args.out,
                workers=args.workers,
                scheduler=args.scheduler,
                processes=not args.threads,
                reporter=reporter,
                timeout=args.timeout,
            )
        except Cancelled as exc:
            print(
                f"workbench sweep: stopped ({exc}); finished runs are kept in {args.out}; run the same command to "
                "continue",
                file=sys.stderr,
            )
            return 130
    frame = result.frame
    if args.metric:
        choose_metric(frame, args.metric)
        write_text_atomic(result.chart, sweep_figure(frame, args.metric).to_html(include_plotlyjs=True, full_html=True))
    cols = [c for c in frame.columns if c.startswith("param.")] + ["status"]

    metric = choose_metric(frame, args.metric) if len(frame) else None
    if metric:
        cols.append(metric)
    print(frame[cols].to_string(index=False))
    ran = set(result.executed)
    done_now = sum(r["status"] == "completed" and r["key"] in ran for r in result.runs)
    print(f"{done_now} completed, {len(result.failed)} failed, {len(result.skipped)} skipped (already done)")
    for run in result.failed:
        print(
            f"failed: {', '.join(f'{k}={v}' for k, v in run['params'].items())}: {run['error']}\n  notebook: "
            f"{run['output']}",
            file=sys.stderr,
        )
    print(f"results: {result.csv}\nchart: {result.chart}\nmanifest: {result.folder / 'sweep.json'}")
    return 1 if result.failed else 0


def _sweep_detached(args: argparse.Namespace, nb: Path, sets: list[dict]) -> int:
    """Queue the sweep as a job in its own process (its runs on --scheduler's cluster if given); print its run id."""
    if args.metric:
        raise ValueError("--metric draws the chart at the end of a sweep run here; leave it out with --detach")
    request = {
        "notebook": str(nb),
        "runs": sets,
        "out": str(Path(args.out).resolve()),
        "workers": args.workers,
        "processes": not args.threads,
        "timeout": args.timeout,
    }
    run_id = submit_job(workspace_of(args), "sweep", request, scheduler=args.scheduler)
    print(run_id)
    print(
        f"sweeping as a job: follow it with `workbench runs watch {run_id}`, stop it with `workbench runs stop "
        f"{run_id}`; results in {args.out}",
        file=sys.stderr,
    )
    return 0


# ------------------------------------------------------------------ search
def _range(text: str, cast=float) -> tuple:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"a range is 'lo,hi', got {text!r}")
    try:
        return tuple(cast(p) for p in parts)
    except ValueError:
        raise ValueError(f"a range is two numbers 'lo,hi', got {text!r}") from None


def _choices(text: str, cast=int) -> list:
    try:
        return [cast(p.strip()) for p in text.split(",")]
    except ValueError:
        raise ValueError(f"expected numbers separated by commas, got {text!r}") from None


def cmd_search(args: argparse.Namespace) -> int:
    settings = load_config_file(args.config) if args.config else {}
    space = dict(settings.pop("space", {}) or {})
    for flag, key, parse in (
        ("lr", "learning_rate", _range),
        ("dropout", "dropout", _range),
        ("layers", "layers", lambda t: _range(t, int)),
        ("batch_size", "batch_size", _choices),
        ("width", "width", _choices),
        ("kernel_size", "kernel_size", _choices),
    ):
        value = getattr(args, flag)
        if value is not None:
            space[key] = None if value.lower() == "none" else parse(value)
    settings["space"] = space
    for key in (
        "study_name",
        "storage",
        "target",
        "model_kind",
        "epochs",
        "seed",
        "device",
        "workspace",
        "validation_split",
        "pruner_startup_trials",
        "pruner_warmup_epochs",
    ):
        value = getattr(args, key, None)
        if value is not None:
            settings[key] = value
    settings["dataset"] = args.data
    try:
        config = SearchConfig(**settings)
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None

    def on_event(event) -> None:
        if isinstance(event, Record) and event.name == "trial" and event.data["state"] != "RUNNING":
            d = event.data
            value = f"{d['value']:.4g}" if isinstance(d.get("value"), float) else "-"
            params = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in d["params"].items())
            tqdm_write(f"trial {d['number']}: {d['state'].lower()}, value {value} ({params})")

    from tqdm.auto import tqdm  # heavy (tqdm): imported on use

    tqdm_write = tqdm.write
    reporter = Reporter([tqdm_listener("search", "search", "trials"), on_event])
    with interrupts(reporter):
        try:
            result = run_search(config, args.trials, reporter=reporter, workers=args.workers, scheduler=args.scheduler)
        except Cancelled as exc:
            print(
                f"workbench search: stopped ({exc}); the study keeps the finished trials; run again to continue",
                file=sys.stderr,
            )
            return 130
    summary = {
        "study": config.study_name,
        "storage": result.storage,
        "trials": len(result.trials),
        "pruned": result.pruned,
        "best_value": result.best_value,
        "best_params": result.best_params,
        "best_settings": result.best_settings,
    }
    out = Path(args.out)
    write_text_atomic(out, json.dumps(summary, indent=2))
    write_text_atomic(out.with_suffix(".trials.csv"), result.trials.to_csv(index=False))

    write_text_atomic(
        out.with_suffix(".history.html"), history_figure(result.trials).to_html(include_plotlyjs=True, full_html=True)
    )
    print(f"{len(result.trials)} trials in study {config.study_name!r} ({result.pruned} pruned)")
    if result.best_settings is None:
        print("no trial completed yet", file=sys.stderr)
        return 1

    best = dict(result.best_settings["train"])
    best["model"] = result.best_settings["model"]
    write_text_atomic(out.with_suffix(".train.yaml"), yaml.safe_dump(best, sort_keys=False))
    print(f"best validation loss {result.best_value:.4g}: {json.dumps(result.best_settings)}")
    print(
        f"wrote {out}; train with these settings: workbench train --config {out.with_suffix('.train.yaml')} --data "
        "... --out ..."
    )
    return 0


# ------------------------------------------------------------------ dashboard, notebooks, doctor
def cmd_notebooks(args: argparse.Namespace) -> int:
    try:
        if args.list:
            for name, path in shipped_notebooks().items():
                print(f"{name}  {path}")
            return 0
        if not args.dest:
            raise ValueError("--dest DIR is required (the folder to copy the notebooks into)")
        report = copy_notebooks(args.dest, force=args.force)
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None
    for path in report.copied:
        print(f"copied {path}")
    for path in report.unchanged:
        print(f"up to date {path}")
    for path in report.kept:
        print(f"kept your edited {path} (pass --force to replace it with the shipped version)", file=sys.stderr)
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    versions, checks = run_doctor()
    if args.json:
        print(json.dumps({"versions": versions, "checks": [c.__dict__ for c in checks]}, indent=2))
    else:
        print(report(versions, checks))
    return 1 if any(c.status == "fail" for c in checks) else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add sweep, search, notebooks and doctor to the ``workbench`` subcommands."""
    sw = sub.add_parser(
        "sweep",
        help="run a notebook over a grid or a list of parameter sets, in parallel on Dask",
        description="Each run gets its own output notebook and JSON summary under --out; a failing run does not "
        "stop the others; running the same sweep again skips the runs already completed.",
    )
    sw.add_argument("notebook", nargs="?", help="notebook file, or a shipped notebook name (pipeline)")
    sw.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUES"),
        help="a parameter and its values separated by commas (grid axis), e.g. -p learning_rate 1e-3,3e-3",
    )
    sw.add_argument(
        "--file", help="YAML or JSON: 'grid' {name: [values]}, 'runs' [{...}], 'fixed' {...}, optional 'notebook'"
    )
    sw.add_argument("--out", required=True, help="sweep folder (runs/, sweep.json, results.csv, chart.html)")
    sw.add_argument("--workers", type=int, default=2, help="LocalCluster workers (default: %(default)s)")
    sw.add_argument(
        "--scheduler", help="address of an existing Dask scheduler (tcp://host:8786) instead of a LocalCluster"
    )
    sw.add_argument(
        "--threads", action="store_true", help="LocalCluster workers as threads of this process, not processes"
    )
    sw.add_argument("--metric", help="metric of the comparison chart (default: best_val_loss or the first reported)")
    sw.add_argument("--timeout", type=float, help="seconds a single cell may run before its run fails")
    sw.add_argument("-v", "--verbose", action="store_true", help="also list the runs skipped as done")
    sw.add_argument(
        "--detach",
        action="store_true",
        help="sweep as a job in its own process (outlives this shell; stop it with runs stop); print its run id",
    )
    add_workspace_option(sw)
    sw.set_defaults(func=cmd_sweep)

    se = sub.add_parser(
        "search",
        help="Optuna search over training settings (SQLite storage: resumable)",
        description="Adds --trials trials to the study (created, or continued when it exists). Ranges are "
        "'lo,hi', choices 'a,b,c'; 'none' fixes a setting.",
    )
    se.add_argument("--data", required=True, help="data-set folder to train on")
    se.add_argument("--trials", type=int, default=10, help="trials to add (default: %(default)s)")
    se.add_argument("--config", help="YAML or JSON with search settings and 'space': {...}")
    se.add_argument("--storage", help="SQLite file or Optuna storage URL (default: search.sqlite)")
    se.add_argument("--study", dest="study_name", help="study name (default: workbench-search)")
    se.add_argument("--target", choices=["sld", "params"])
    se.add_argument("--model", dest="model_kind", choices=["compact", "param", "parity_cnn"])
    se.add_argument("--epochs", type=int, help="epochs per trial")
    se.add_argument("--seed", type=int)
    se.add_argument("--device")
    se.add_argument("--validation-split", type=float)
    se.add_argument("--lr", help="learning-rate range lo,hi (log scale)")
    se.add_argument("--dropout", help="dropout range lo,hi")
    se.add_argument("--layers", help="layers range lo,hi")
    se.add_argument("--batch-size", help="batch-size choices, e.g. 16,32,64")
    se.add_argument("--width", help="compact/param: width choices")
    se.add_argument("--kernel-size", help="parity_cnn: kernel-size choices (odd)")
    se.add_argument("--pruner-startup-trials", type=int, help="trials completed before pruning starts")
    se.add_argument("--pruner-warmup-epochs", type=int, help="epochs of each trial never pruned")
    se.add_argument(
        "--workers", type=int, default=1, help="parallel trial processes on a LocalCluster (default: %(default)s)"
    )
    se.add_argument("--scheduler", help="address of an existing Dask scheduler")
    se.add_argument("--workspace", help="record each trial in this workspace's run registry")
    se.add_argument(
        "--out",
        default="search-best.json",
        help="best settings JSON; .trials.csv, .history.html and .train.yaml beside it (default: %(default)s)",
    )
    se.set_defaults(func=cmd_search)

    nb = sub.add_parser(
        "notebooks", help="copy the shipped notebooks into a folder (edited copies are kept unless --force)"
    )
    nb.add_argument("--dest", help="folder to copy into (created)")
    nb.add_argument("--force", action="store_true", help="replace copies you edited with the shipped versions")
    nb.add_argument("--list", action="store_true", help="list the shipped notebooks and where they are")
    nb.set_defaults(func=cmd_notebooks)

    do = sub.add_parser("doctor", help="versions of the Jupyter pieces that must match, and whether a GPU is visible")
    do.add_argument("--json", action="store_true", help="machine-readable output")
    do.set_defaults(func=cmd_doctor)

"""CLI commands and helpers for the run registry and the Hugging Face Hub.

``workbench generate`` / ``workbench train`` record their runs in the workspace registry
(``--workspace``, else ``$WORKBENCH_HOME``, else ``~/.workbench``) through :func:`recording`;
``workbench runs list|show|rename|delete|resume|compare`` read and manage that history and
``workbench hub push|pull`` move model bundles to and from a Hub repository.

Exit codes: 0 success, 1 the Hub failed (the local copy is kept), 2 bad input (unknown run id,
missing folder, bad settings), 130 stopped.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def add_workspace_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workspace", help="workspace folder with the run registry (default: $WORKBENCH_HOME or ~/.workbench)")


def workspace_of(args: argparse.Namespace):
    from ..store.workspace import Workspace

    return Workspace(getattr(args, "workspace", None))


@contextmanager
def recording(args: argparse.Namespace, kind: str, *, name: str | None, params: dict, reporter) -> Iterator[Any]:
    """``recorded_run`` in the CLI's workspace; yields None (and warns) when the registry cannot be opened."""
    import sqlite3

    from ..store.recorded import recorded_run

    try:
        registry = workspace_of(args).registry
    except (OSError, sqlite3.Error) as exc:
        print(f"warning: this run is not recorded: the workspace registry cannot be opened ({exc})", file=sys.stderr)
        yield None
        return
    with recorded_run(registry, kind, name=name, params=params, reporter=reporter) as run:
        yield run


def refuse_existing_dataset(out: str, overwrite: bool) -> None:
    if (Path(out) / "dataset.json").exists() and not overwrite:
        raise ValueError(f"{out} already holds a data set; choose another folder or pass --overwrite")


def generate_dataset(args: argparse.Namespace, stack, config, reporter) -> Path:
    """Generate into ``args.out``; with ``--hub-repo`` reuse the Hub's copy or upload right after generating."""
    from ..data.generate import generate_to_disk

    if getattr(args, "hub_repo", None):
        from ..store.hub import generate_or_fetch

        out, reused = generate_or_fetch(stack, config, args.out, repo_id=args.hub_repo, reporter=reporter,
                                        overwrite=args.overwrite, dask=args.dask, progress=False)
        if reused:
            print(f"reused the data set stored on the Hub ({args.hub_repo}); nothing was regenerated")
        return out
    return generate_to_disk(stack, config, args.out, reporter=reporter, overwrite=args.overwrite, dask=args.dask, progress=False)


def record_generated(run, out: Path, config) -> None:
    """Register the generated data set and attach its content hash to the run."""
    if run is None:
        return
    meta = json.loads((Path(out) / "dataset.json").read_text())
    run.registry.register_dataset(meta["content_hash"], Path(out).resolve(), config.model_dump(mode="json"))
    run.registry.update_run(run.id, dataset_hash=meta["content_hash"])
    run.metrics.update(curves=meta.get("counts", {}).get("curves"))


def train_params(args: argparse.Namespace, train, model: dict, checkpoint: str | None) -> dict:
    return {"target": args.target, "data": str(Path(args.data).resolve()), "out": str(Path(args.out).resolve()),
            "checkpoint": str(Path(checkpoint).resolve()) if checkpoint else None,
            "train": train.model_dump(mode="json"), "model": model}


def checkpoint_uploader(args: argparse.Namespace, run, checkpoint: str, reporter):
    """A :class:`~workbench.store.hub.CheckpointUploader` when ``--hub-repo`` was given, else None."""
    if not getattr(args, "hub_repo", None) or not checkpoint:
        return None
    from ..store.hub import CheckpointUploader

    name = run.id if run is not None else Path(args.out).name
    uploader = CheckpointUploader(args.hub_repo, checkpoint, name=name, every=args.hub_every,
                                  registry=run.registry if run is not None else None,
                                  run_id=run.id if run is not None else None, reporter=reporter)
    reporter.listeners.append(uploader)
    return uploader


def record_trained(run, outcome, target: str) -> None:
    """Status, metrics, pause checkpoint and the registered model of an NR training outcome."""
    if run is None:
        return
    from ..store.jobs import record_training_result

    res = outcome.result
    record_training_result(run, status=res.status, epochs_done=res.epochs_done, history=res.history, target=target,
                           metrics=outcome.metrics, bundle=outcome.bundle, checkpoint=res.checkpoint,
                           dataset_hash=outcome.trainer.context["dataset"]["content_hash"], best_val_loss=res.best_val_loss)


def record_chi(run, result, folder: Path) -> None:
    if run is None:
        return
    from ..store.jobs import record_training_result

    fit = result.train
    record_training_result(run, status=fit.status, epochs_done=fit.epochs_done, history=fit.history, target="chi",
                           metrics=result.metrics, bundle=folder, best_val_loss=fit.best_val_loss)


# ---------------------------------------------------------------------------- workbench runs
def _when(t: float) -> str:
    return _dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M")


def _short_metrics(metrics: dict) -> str:
    parts = []
    for key in ("val_loss", "best_val_loss"):
        if isinstance(metrics.get(key), (int, float)):
            parts.append(f"{key} {metrics[key]:.4g}")
    for key, value in (metrics.get("test") or {}).items():
        if key.endswith("r2") and isinstance(value, (int, float)):
            parts.append(f"{key} {value:.3f}")
    return ", ".join(parts[:3])


def _find(registry, run_id: str):
    try:
        return registry.find_run(run_id)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def cmd_runs(args: argparse.Namespace) -> int:
    ws = workspace_of(args)
    reg = ws.registry
    action = args.runs_command
    if action == "list":
        runs = reg.list_runs(kind=args.kind, status=args.status)
        if args.json:
            print(json.dumps([r.as_dict() for r in runs], indent=2, default=str))
            return 0
        if not runs:
            print(f"no runs recorded in {ws.db_path}")
            return 0
        print(f"{'id':34} {'name':24} {'kind':9} {'status':10} {'epoch':>5}  {'created':16}  metrics")
        for r in runs:
            epoch = "" if r.last_epoch is None else str(r.last_epoch)
            print(f"{r.id:34} {r.name[:24]:24} {r.kind:9} {r.status:10} {epoch:>5}  {_when(r.created):16}  {_short_metrics(r.metrics)}")
        return 0
    if action == "show":
        run = _find(reg, args.run_id)
        if args.json:
            print(json.dumps({**run.as_dict(), "epochs": reg.epochs(run.id), "logs": reg.logs(run.id),
                              "checkpoints": reg.checkpoints(run.id)}, indent=2, default=str))
            return 0
        print(f"run {run.id}: {run.name} ({run.kind}), {run.status}")
        print(f"  created {_when(run.created)}, updated {_when(run.updated)}; last epoch {run.last_epoch}")
        if run.error:
            print(f"  error: {run.error}")
        for label, value in (("data set", run.dataset_hash), ("model", run.model), ("folder", run.run_dir)):
            if value:
                print(f"  {label}: {value}")
        print(f"  params: {json.dumps(run.params, default=str)}")
        print(f"  metrics: {json.dumps(run.metrics, default=str)}")
        print(f"  versions: {', '.join(f'{k} {v}' for k, v in run.versions.items())}")
        epochs = reg.epochs(run.id)
        if epochs:
            print("  epoch  train_loss  val_loss")
            for e in epochs:
                print(f"  {e['epoch']:>5}  {e.get('train_loss', float('nan')):10.4g}  {e.get('val_loss', float('nan')):8.4g}")
        for line in reg.logs(run.id)[-args.logs:]:
            print(f"  [{line['level']}] {line['message']}")
        return 0
    if action == "rename":
        run = _find(reg, args.run_id)
        reg.rename_run(run.id, args.name)
        print(f"renamed {run.id} to {args.name!r}")
        return 0
    if action == "delete":
        run = _find(reg, args.run_id)
        if run.status == "running":
            raise ValueError(f"run {run.id} is still running; stop it first")
        own = reg.owned_dir(run)
        reg.delete_run(run.id)
        print(f"deleted run {run.id}" + (f" and its folder {own}" if own else "; no files of its own were removed"))
        return 0
    if action == "resume":
        return _resume(args, ws)
    if action == "compare":
        rows = reg.compare_runs([_find(reg, r).id for r in args.run_ids])
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
            return 0
        keys = rows[0]["differs"] if rows else []
        metric_keys = sorted({k for r in rows for k in r["metrics"] if isinstance(r["metrics"][k], (int, float))})
        width = max(12, *(len(r["id"]) for r in rows))
        print(f"{'':28}" + "".join(f"{r['id']:>{width + 2}}" for r in rows))
        for label, get in ([("name", lambda r: r["name"]), ("status", lambda r: r["status"]),
                            ("last epoch", lambda r: r["last_epoch"]), ("best val loss", lambda r: r["best_val_loss"])]
                           + [(k, lambda r, k=k: r["params"].get(k)) for k in keys]
                           + [(k, lambda r, k=k: r["metrics"].get(k)) for k in metric_keys]):
            cells = [get(r) for r in rows]
            print(f"{label[:28]:28}" + "".join(f"{(f'{c:.4g}' if isinstance(c, float) else str(c)):>{width + 2}}" for c in cells))
        return 0
    raise ValueError(f"unknown runs command {action!r}")


def _resume(args: argparse.Namespace, ws) -> int:
    import signal

    from ..events import Record, Reporter, tqdm_listener
    from ..store.jobs import resume_run

    reporter = Reporter([tqdm_listener("train", "training", "batches")])
    reporter.listeners.append(lambda e: print(
        f"epoch {e.data['epoch']}: train {e.data.get('train_loss', float('nan')):.4g}, validation {e.data.get('val_loss', float('nan')):.4g}"
    ) if isinstance(e, Record) and e.name == "epoch" else None)

    def on_interrupt(*_):
        if reporter.pause.is_set():
            reporter.stop.stop("interrupted twice (Ctrl-C)")
        reporter.pause.set()

    run = _find(ws.registry, args.run_id)
    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        done = resume_run(ws, run.id, reporter, epochs=args.epochs)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    print(f"run {done.id}: {done.status} at epoch {done.last_epoch}" + (f"; model {done.model}" if done.model else ""))
    if done.status == "paused":
        print(f"paused again; continue with: workbench runs resume {done.id}")
    return 130 if done.status == "stopped" else 0


# ---------------------------------------------------------------------------- workbench hub
def cmd_hub(args: argparse.Namespace) -> int:
    from ..events import Reporter, Warning_
    from ..store import hub as H

    reporter = Reporter([lambda e: print(f"warning: {e.message}", file=sys.stderr) if isinstance(e, Warning_) else None])
    try:
        if args.hub_command == "push":
            ref = H.push_model_bundle(args.bundle, args.repo, model_id=args.model_id, dataset=args.dataset,
                                      repo_type=args.repo_type, private=not args.public, revision=args.revision,
                                      reporter=reporter)
            print(f"pushed {args.bundle} to {ref}")
            _note_hub(args, ref)
            return 0
        ref = f"{args.repo}:models/{args.model_id}@{args.revision or 'main'}"
        folder = H.pull_model_bundle(args.repo, args.model_id, revision=args.revision, repo_type=args.repo_type, dest=args.out)
        if args.out:
            from ..store.model_bundle import load_model_bundle

            print(f"pulled {ref} → {folder} ({load_model_bundle(folder).task}; not registered: outside the workspace)")
            return 0
        from ..store.adopt import adopt_bundle

        folder, version = adopt_bundle(workspace_of(args), folder, name=args.model_id, hub=ref)
        print(f"pulled {ref} → {folder}, registered as {folder.name} v{version}")
        return 0
    except H.HubUploadError as exc:
        print(f"workbench hub {args.hub_command}: error: {exc}", file=sys.stderr)
        return 1
    except (H.HubError, ValueError) as exc:  # ValueError: a downloaded folder that is not a usable bundle
        print(f"workbench hub {args.hub_command}: error: {exc}", file=sys.stderr)
        return 1


def _note_hub(args: argparse.Namespace, ref) -> None:
    """Remember where a registered model was pushed (when the bundle is in the registry)."""
    try:
        reg = workspace_of(args).registry
        path = str(Path(args.bundle).resolve())
        for m in reg.list_models():
            if Path(m["path"]).resolve() == Path(path):
                reg.set_model_hub(m["name"], m["version"], str(ref))
    except Exception as exc:  # noqa: BLE001 - the push succeeded; the note is a convenience
        print(f"warning: pushed, but the registry was not updated ({exc})", file=sys.stderr)


# ---------------------------------------------------------------------------- workbench import-pyreflect
def cmd_import_pyreflect(args: argparse.Namespace) -> int:
    """pyreflect's trained CNN + its normalisation statistics → a registered bundle in the workspace."""
    import numpy as np

    from ..store.adopt import import_pyreflect

    try:
        q = None
        if args.q:
            q = np.load(args.q, allow_pickle=False)
            q = q[0, 0] if q.ndim == 3 else (q[0] if q.ndim == 2 else q)  # an NR array (N, 2, nQ) or a Q row
        folder, version = import_pyreflect(workspace_of(args), args.weights, args.stats, q=q, dq_over_q=args.dq_over_q,
                                           name=args.name)
    except (OSError, ValueError) as exc:
        print(f"workbench import-pyreflect: error: {exc}", file=sys.stderr)
        return 1
    print(f"pyreflect model → {folder}, registered as {folder.name} v{version}; predict with: workbench predict --model {folder} --input FILE --out result.json")
    return 0


def add_store_commands(sub) -> None:
    """``workbench runs ...``, ``workbench hub ...`` and ``workbench import-pyreflect``."""
    imp = sub.add_parser("import-pyreflect", help="make a model bundle from pyreflect's trained .pth and normalisation .npy")
    imp.add_argument("weights", help="pyreflect CNN state_dict (.pth), e.g. trained_nr_sld_model.pth")
    imp.add_argument("stats", help="pyreflect's normalisation statistics (.npy dict with 'nr' and 'sld')")
    imp.add_argument("--q", help="the training Q grid: a .npy of Q values or pyreflect's NR array (default: log-spaced "
                     "between the statistics' Q min and max, as pyreflect generates)")
    imp.add_argument("--dq-over-q", type=float, default=0.0294855, help="resolution dQ/Q (FWHM) of the training data")
    imp.add_argument("--name", help="model name (default: the weights file's name)")
    add_workspace_option(imp)
    imp.set_defaults(func=cmd_import_pyreflect)

    runs = sub.add_parser("runs", help="the run history: list, show, rename, delete, resume, compare")
    rsub = runs.add_subparsers(dest="runs_command", required=True)
    ls = rsub.add_parser("list", help="recorded runs, newest first")
    ls.add_argument("--kind", help="only this kind (generate, train, refine, sweep, ...)")
    ls.add_argument("--status", choices=["running", "completed", "failed", "stopped", "paused"])
    ls.add_argument("--json", action="store_true")
    show = rsub.add_parser("show", help="one run: parameters, metrics, epochs, log")
    show.add_argument("run_id", help="run id (or a unique prefix, or its name)")
    show.add_argument("--logs", type=int, default=20, help="last N log lines (default: %(default)s)")
    show.add_argument("--json", action="store_true")
    rn = rsub.add_parser("rename", help="give a run a new name")
    rn.add_argument("run_id")
    rn.add_argument("name")
    rm = rsub.add_parser("delete", help="forget a run and delete its own folder in the workspace")
    rm.add_argument("run_id")
    rs = rsub.add_parser("resume", help="continue a paused training run from its latest checkpoint (local or Hub)")
    rs.add_argument("run_id")
    rs.add_argument("--epochs", type=int, help="train to this many epochs in total")
    cmp_ = rsub.add_parser("compare", help="runs side by side: differing parameters and metrics")
    cmp_.add_argument("run_ids", nargs="+")
    cmp_.add_argument("--json", action="store_true")
    for p in (ls, show, rn, rm, rs, cmp_):
        add_workspace_option(p)
    runs.set_defaults(func=cmd_runs)

    hub = sub.add_parser("hub", help="push / pull model bundles to / from a Hugging Face Hub repository")
    hsub = hub.add_subparsers(dest="hub_command", required=True)
    push = hsub.add_parser("push", help="upload a model bundle to models/<model id>/ of a repository (private by default)")
    push.add_argument("bundle", help="model bundle folder")
    push.add_argument("--repo", required=True, help="repository id, user/name")
    push.add_argument("--model-id", help="folder name under models/ (default: the bundle folder's name)")
    push.add_argument("--dataset", help="data-set folder whose nr_train.npy / sld_train.npy go along")
    push.add_argument("--public", action="store_true", help="create the repository public (default: private)")
    pull = hsub.add_parser("pull", help="download models/<model id>/ at a revision into the workspace and register it")
    pull.add_argument("--repo", required=True, help="repository id, user/name")
    pull.add_argument("--model-id", required=True)
    pull.add_argument("--out", help="copy the bundle into this folder instead of the workspace (then it is not registered)")
    for p in (push, pull):
        p.add_argument("--repo-type", choices=["model", "dataset"], default="model")
        p.add_argument("--revision", help="branch, tag or commit (default: main)")
        add_workspace_option(p)
    hub.set_defaults(func=cmd_hub)

"""``workbench runs list|show|watch|stop|pause|resume|rename|delete|compare``: the workspace's run history.

``runs resume`` continues a paused, stopped or killed training run through the one training
pipeline (:func:`~workbench.workflows.training.resume_training`), whichever surface started it;
``--detach`` continues it as a job in its own process (:mod:`workbench.batch.jobs`).  ``runs watch``
follows a job's epochs and log until it ends; ``runs stop`` / ``runs pause`` send it a command
through the registry and wait for the job to acknowledge it.
Exit codes: 0 success, 1 the watched job failed, 2 bad input (unknown run id), 130 stopped.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import sys
import time

from ..batch.jobs import follow, pause_job, stop_job, submit_job, wait_for_job
from ..events import Reporter, tqdm_listener
from ..store.workspace import Workspace
from .common import add_workspace_option, interrupts, print_epochs, workspace_of


def add_parser(sub: argparse._SubParsersAction) -> None:
    runs = sub.add_parser("runs", help="the run history: list, show, rename, delete, resume, compare")
    rsub = runs.add_subparsers(dest="runs_command", required=True)
    ls = rsub.add_parser("list", help="recorded runs, newest first")
    ls.add_argument("--kind", help="only this kind (generate, train, refine, sweep, ...)")
    ls.add_argument("--status", choices=["queued", "running", "completed", "failed", "stopped", "paused"])
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
    rs.add_argument("--detach", action="store_true", help="resume as a job in its own process; print its id and return")
    rs.add_argument(
        "--scheduler",
        help="with --detach: run the job on a worker of this Dask scheduler, tcp://host:8786 (default "
        "$WORKBENCH_SCHEDULER; 'local': here); the workspace must be on a file system the workers share",
    )
    watch = rsub.add_parser("watch", help="follow a job's epochs and log live until it ends (Ctrl-C stops watching)")
    watch.add_argument("run_id")
    watch.add_argument("--poll", type=float, default=0.5, help="seconds between looks (default: %(default)s)")
    stop = rsub.add_parser("stop", help="ask a queued or running job to stop after its running step")
    stop.add_argument("run_id")
    pause = rsub.add_parser("pause", help="ask a running training job to write a checkpoint and pause")
    pause.add_argument("run_id")
    for p in (stop, pause):
        p.add_argument("--wait", action="store_true", help="also wait until the job has ended")
    cmp_ = rsub.add_parser("compare", help="runs side by side: differing parameters and metrics")
    cmp_.add_argument("run_ids", nargs="+")
    cmp_.add_argument("--json", action="store_true")
    for p in (ls, show, rn, rm, rs, cmp_, watch, stop, pause):
        add_workspace_option(p)
    runs.set_defaults(func=cmd_runs)


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


def _telemetry(run) -> str:
    t = run.telemetry or {}
    if run.status != "running" or "rss_mb" not in t:
        return ""
    gpu = f", GPU {t['gpu_mb']:.0f} MB" if "gpu_mb" in t else ""
    return f"CPU {t.get('cpu_percent', 0):.0f} %, {t['rss_mb']:.0f} MB{gpu}"


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
            print(
                f"{r.id:34} {r.name[:24]:24} {r.kind:9} {r.status:10} {epoch:>5}  {_when(r.created):16}  "
                f"{_telemetry(r) or _short_metrics(r.metrics)}"
            )
        return 0
    if action == "show":
        run = _find(reg, args.run_id)
        if args.json:
            print(
                json.dumps(
                    {
                        **run.as_dict(),
                        "epochs": reg.epochs(run.id),
                        "logs": reg.logs(run.id),
                        "checkpoints": reg.checkpoints(run.id),
                    },
                    indent=2,
                    default=str,
                )
            )
            return 0
        print(f"run {run.id}: {run.name} ({run.kind}), {run.status}")
        print(f"  created {_when(run.created)}, updated {_when(run.updated)}; last epoch {run.last_epoch}")
        if run.error:
            print(f"  error: {run.error}")
        for label, value in (("data set", run.dataset_hash), ("model", run.model), ("folder", run.run_dir)):
            if value:
                print(f"  {label}: {value}")
        if run.job:
            where = f"pid {run.pid} on {run.host}" if run.pid else "waiting for a worker"
            if run.job.get("scheduler"):
                where = f"Dask {run.job['scheduler']}, {where}"
            queued = reg.queue_position(run.id)
            print(f"  job: {where}, log {run.job.get('log')}" + (f", queue position {queued}" if queued else ""))
            if _telemetry(run):
                print(f"  using: {_telemetry(run)}")
        print(f"  params: {json.dumps(run.params, default=str)}")
        print(f"  metrics: {json.dumps(run.metrics, default=str)}")
        print(f"  versions: {', '.join(f'{k} {v}' for k, v in run.versions.items())}")
        epochs = reg.epochs(run.id)
        if epochs:
            print("  epoch  train_loss  val_loss")
            for e in epochs:
                print(
                    f"  {e['epoch']:>5}  {e.get('train_loss', float('nan')):10.4g}  "
                    f"{e.get('val_loss', float('nan')):8.4g}"
                )
        for line in reg.logs(run.id)[-args.logs :]:
            print(f"  [{line['level']}] {line['message']}")
        return 0
    if action == "rename":
        run = _find(reg, args.run_id)
        reg.rename_run(run.id, args.name)
        print(f"renamed {run.id} to {args.name!r}")
        return 0
    if action == "delete":
        run = _find(reg, args.run_id)
        if run.status in ("running", "queued"):
            raise ValueError(f"run {run.id} is still {run.status}; stop it first (workbench runs stop {run.id})")
        own = reg.owned_dir(run)
        reg.delete_run(run.id)
        print(f"deleted run {run.id}" + (f" and its folder {own}" if own else "; no files of its own were removed"))
        return 0
    if action == "resume":
        if args.scheduler and not args.detach:
            raise ValueError("--scheduler places a --detach job on a Dask worker: add --detach")
        return _resume_detached(args, ws) if args.detach else _resume(args, ws)
    if action == "watch":
        return _watch(args, ws)
    if action in ("stop", "pause"):
        return _command(args, ws)
    if action == "compare":
        rows = reg.compare_runs([_find(reg, r).id for r in args.run_ids])
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
            return 0
        keys = rows[0]["differs"] if rows else []
        metric_keys = sorted({k for r in rows for k in r["metrics"] if isinstance(r["metrics"][k], (int, float))})
        width = max(12, *(len(r["id"]) for r in rows))
        print(f"{'':28}" + "".join(f"{r['id']:>{width + 2}}" for r in rows))
        for label, get in (
            [
                ("name", lambda r: r["name"]),
                ("status", lambda r: r["status"]),
                ("last epoch", lambda r: r["last_epoch"]),
                ("best val loss", lambda r: r["best_val_loss"]),
            ]
            + [(k, lambda r, k=k: r["params"].get(k)) for k in keys]
            + [(k, lambda r, k=k: r["metrics"].get(k)) for k in metric_keys]
        ):
            cells = [get(r) for r in rows]
            print(
                f"{label[:28]:28}"
                + "".join(f"{(f'{c:.4g}' if isinstance(c, float) else str(c)):>{width + 2}}" for c in cells)
            )
        return 0
    raise ValueError(f"unknown runs command {action!r}")


def _resume(args: argparse.Namespace, ws: Workspace) -> int:
    from ..workflows.training import resume_training  # heavy (torch): only resuming trains; `runs list` stays quick

    reporter = Reporter([tqdm_listener("train", "training", "batches"), print_epochs])
    run = _find(ws.registry, args.run_id)
    try:
        with interrupts(reporter, pause_first=True):
            outcome = resume_training(run.id, ws.registry, reporter, epochs=args.epochs)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    done = ws.registry.get_run(run.id)
    print(f"run {done.id}: {done.status} at epoch {done.last_epoch}" + (f"; model {done.model}" if done.model else ""))
    if outcome.status == "paused":
        print(f"paused again; continue with: workbench runs resume {done.id}")
    return 130 if outcome.status == "stopped" else 0


def _resume_detached(args: argparse.Namespace, ws: Workspace) -> int:
    run = _find(ws.registry, args.run_id)
    run_id = submit_job(ws, "resume", {"run_id": run.id, "epochs": args.epochs}, scheduler=args.scheduler)
    print(run_id)
    print(f"resuming as a job; follow it with: workbench runs watch {run_id}", file=sys.stderr)
    return 0


def _watch(args: argparse.Namespace, ws: Workspace) -> int:
    run = _find(ws.registry, args.run_id)
    final: dict = {}
    try:
        for what, item in follow(ws.registry, run.id, poll=max(0.05, args.poll)):
            if what == "epoch":
                metrics = ", ".join(
                    f"{k} {v:.4g}" for k, v in item.items() if k in ("train_loss", "val_loss") and isinstance(v, float)
                )
                print(f"epoch {item['epoch']}: {metrics}", flush=True)
            elif what == "log":
                print(f"[{item['level']}] {item['message']}", flush=True)
            else:
                final = item
                position = ws.registry.queue_position(run.id) if item["status"] == "queued" else None
                print(f"status: {item['status']}" + (f" (queue position {position})" if position else ""), flush=True)
    except KeyboardInterrupt:
        print(f"\nstopped watching; the job goes on (workbench runs stop {run.id} stops it)", file=sys.stderr)
        return 0
    if final.get("error"):
        print(f"error: {final['error']}", file=sys.stderr)
    print(f"run {run.id}: {final.get('status')} at epoch {final.get('last_epoch')}")
    return {"failed": 1, "stopped": 130}.get(final.get("status", ""), 0)


def _command(args: argparse.Namespace, ws: Workspace) -> int:
    reg = ws.registry
    run = _find(reg, args.run_id)
    verb = args.runs_command
    send = stop_job if verb == "stop" else pause_job
    sent = time.time()
    command_id = send(reg, run.id, f"{verb} from the command line (workbench runs {verb})")
    while time.time() - sent < 10.0:
        acked = next((c["acked"] for c in reg.commands(run.id) if c["id"] == command_id), None)
        if acked is not None:
            print(f"{verb} acknowledged by job {run.id} after {acked - sent:.2f} s")
            break
        if reg.get_run(run.id).status not in ("running", "queued"):
            break
        time.sleep(0.05)
    else:
        print(f"{verb} sent to job {run.id}; it has not acknowledged yet (busy, or its process hangs)")
    if args.wait:
        done = wait_for_job(reg, run.id)
        print(f"run {done.id}: {done.status} at epoch {done.last_epoch}")
    return 0

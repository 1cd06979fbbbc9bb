"""Long jobs in their own processes: one call starts a generation or training from any surface.

    run_id = submit_job(workspace, "train", request)        # returns at once; the job runs on its own
    stop_job(workspace.registry, run_id)                     # from the CLI, another page, another notebook
    wait_for_job(workspace.registry, run_id)                 # → the finished RunRow

Why a process and not a thread of the kernel: a job then outlives the page, the kernel and the
command line that started it (idle-kernel culling, a closed tab, a lost VPN), and a job that runs
out of memory or crashes in native code takes nothing else down.  Why ``subprocess`` and not
``multiprocessing`` (spawn): a multiprocessing child belongs to its parent — it is joined or
terminated at the parent's exit, shares its resource tracker and needs an importable ``__main__``
(a notebook has none) — while ``python -m workbench.batch.job_worker`` in a new session, its output
in ``runs/<id>/job.log``, is on its own from the first instruction.  Nothing to install: no server,
no broker.

Everything goes through the run registry of the workspace (SQLite, WAL):

* the job's row holds what to run (``job``: kind, request, the limits), its status (``queued`` →
  ``running`` → ``completed`` / ``paused`` / ``stopped`` / ``failed``), epochs, logs, heartbeats
  with CPU % and memory every ~2 s (``telemetry``);
* the queue needs no daemon: a queued job's own process waits, and claims a slot in one write
  transaction when fewer than ``Limits.max_concurrent_jobs`` jobs run and no older job waits;
* commands (``stop``, ``pause``) are rows the job polls every 0.2 s and acknowledges;
* a job killed with SIGKILL or by the OOM killer is recorded as failed by the next reader (its
  process is gone), with its last epoch; a training resumes from its last checkpoint with
  ``submit_job(ws, "resume", {"run_id": ...})`` — in the same run, in a new process.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..limits import Limits
from ..store.registry import LIVE, Registry, RunRow, new_run_id
from ..store.workspace import Workspace
from .job_dask import DaskTarget, scheduler_address
from .sweep import check_sweep, load_manifest, notebook_path, parameter_sets_from_mapping

KINDS = ("generate", "train", "resume", "refine", "dream", "sweep", "ensemble")
RESUMABLE = ("paused", "failed", "stopped")
LOG_NAME = "job.log"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def _workspace(workspace: Workspace | str | os.PathLike) -> Workspace:
    return workspace if isinstance(workspace, Workspace) else Workspace(workspace)


def submit_job(
    workspace: Workspace | str | os.PathLike,
    kind: str,
    request: Any,
    *,
    name: str | None = None,
    limits: Limits | None = None,
    scheduler: str | None = None,
) -> str:
    """Queue a job and start its process; returns the run id at once.

    ``kind``: ``"train"`` (``request``: a :class:`~workbench.workflows.training.TrainRequest` or its
    dict), ``"generate"`` (``{"stack": data.family.stack_meta(stack), "config": GeneratorConfig
    fields, "out": folder, "overwrite": False}``) or ``"resume"`` (``{"run_id": ..., "epochs": None}``:
    a paused, stopped or failed training continued from its latest checkpoint, in the same run).
    ``"ensemble"`` (a training request's fields plus ``"ensemble_members": K``:
    :func:`~workbench.workflows.ensemble.run_ensemble`, K members on a data set or on the fly, calibrated).
    ``"sweep"`` (``{"notebook": file or shipped name, "out": folder, "grid": {name: [values]} and/or
    "runs": [{...}], "fixed": {...}, "workers": 2, "processes": True, "timeout": None}``: :func:`run_sweep`).
    The request is checked here, so a bad one is a ``ValueError`` now, not a failed job later.

    ``scheduler``: a Dask scheduler address (default ``$WORKBENCH_SCHEDULER``; ``"local"``: a local process)
    runs the job in one of its workers (:mod:`workbench.batch.job_dask`); a sweep job's process stays local and
    sends its notebook runs there.
    """
    ws = _workspace(workspace)
    limits = limits if limits is not None else Limits.from_env()
    if kind not in KINDS:
        raise ValueError(f"unknown job kind {kind!r}; expected one of {', '.join(KINDS)}")
    address = scheduler_address(scheduler)
    if kind == "sweep" and address and isinstance(request, dict):
        request, address = {"scheduler": address, **request}, None  # a light driver here, its runs on the cluster
    checked, params, default_name = _check_request(ws.registry, kind, request)
    target = DaskTarget(address, ws.root) if address else None  # unreachable, no workers, no shared disk: ValueError
    job = {
        "kind": kind,
        "request": checked,
        "max_concurrent": limits.max_concurrent_jobs,
        "memory_mb": limits.job_memory_mb,
        "queued": time.time(),
    }
    if target is not None:
        job["scheduler"] = address
    reg = ws.registry
    if kind == "resume":
        run_id = checked["run_id"]
        job["log"] = str(ws.run_dir(run_id) / LOG_NAME)
        reg.queue_run(run_id, job)
        reg.log(run_id, "queued to resume from its latest checkpoint in a job process")
    else:
        run_id = new_run_id(kind)
        job["log"] = str(ws.run_dir(run_id) / LOG_NAME)
        reg.start_run(
            kind,
            name=name or default_name,
            params=params,
            run_dir=ws.runs / run_id,
            run_id=run_id,
            status="queued",
            job=job,
        )
    try:
        if target is not None:
            reg.set_process(run_id, None)  # no process until a worker takes it (Registry.take_job)
            target.submit(run_id)
            reg.log(run_id, f"sent to the Dask scheduler {address} ({len(target.workers)} worker(s))")
        else:
            reg.set_process(run_id, _spawn(ws, run_id, Path(job["log"])))
    except OSError as exc:
        reg.finish_run(run_id, "failed", error=f"the job process could not be started: {exc}")
        raise
    finally:
        if target is not None:
            target.close()
    return run_id


def _check_request(reg: Registry, kind: str, request: Any) -> tuple[dict, dict, str | None]:
    """(the request as JSON, the run's params, a default run name); ValueError naming what is wrong."""
    if kind == "train":
        typed = _check_train(request)
        dumped = typed.model_dump(mode="json")
        return dumped, dumped, typed.run_name
    if kind == "ensemble":
        return _check_ensemble(request)
    if kind == "generate":
        return _check_generate(request)
    if kind == "sweep":
        return _check_sweep(request)
    if kind in ("refine", "dream"):
        return _check_refine(kind, request)
    run_id = (request or {}).get("run_id") if isinstance(request, dict) else None
    if not run_id:
        raise ValueError("a resume job needs {'run_id': ...}: the paused, stopped or failed training to continue")
    run = reg.find_run(str(run_id))
    if run.kind != "train":
        raise ValueError(f"run {run.id} is a {run.kind} run; only training runs can be resumed")
    if run.status not in RESUMABLE:
        raise ValueError(f"run {run.id} ({run.name}) is {run.status}; only a paused, stopped or failed run resumes")
    if not run.params.get("data") and not run.params.get("dataset") and not run.params.get("on_the_fly"):
        raise ValueError(f"run {run.id} does not record its data set, so it cannot be resumed")
    epochs = request.get("epochs")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a whole number ≥ 1, got {epochs!r}")
    return {"run_id": run.id, "epochs": epochs}, {}, None


def _check_train(request: Any) -> Any:
    """A training request (a TrainRequest or its dict) typed, its data set checked to exist."""
    from ..workflows.training import TrainRequest  # heavy (torch): only training requests need its types

    try:
        typed = request if isinstance(request, TrainRequest) else TrainRequest(**dict(request))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"the training request is not valid: {exc}") from None
    if typed.data is not None and not typed.data.exists():  # on the fly, the curves come with the request
        raise ValueError(f"data set {typed.data} does not exist")
    return typed


def _check_ensemble(request: Any) -> tuple[dict, dict, str]:
    from ..workflows.ensemble import MEMBERS, check_request, ensemble_params  # heavy (torch): ensembles only

    values = dict(request) if isinstance(request, dict) else {}
    members = values.pop(MEMBERS, None)
    typed = _check_train(values)
    check_request(typed, members)
    dumped = ensemble_params(typed, members)
    return dumped, dumped, typed.run_name


def _check_generate(request: Any) -> tuple[dict, dict, str]:
    from ..data.family import stack_from_meta, stack_meta  # heavy (numba kernels): only generation requests
    from ..data.generate import GeneratorConfig  # heavy (numba): only generation requests need its config
    from ..physics import FilmStack  # heavy (numba kernels): as above

    if not isinstance(request, dict) or "out" not in request:
        raise ValueError("a generate job needs {'out': folder, 'config': {...}, 'stack': {...}}")
    unknown = set(request) - {"out", "config", "stack", "overwrite"}
    if unknown:
        raise ValueError(f"unknown generate request field(s) {sorted(unknown)}; expected out, config, stack, overwrite")
    config = GeneratorConfig(**(request.get("config") or {}))
    stack_spec = request.get("stack")
    stack = FilmStack.default() if stack_spec is None else stack_from_meta(stack_spec)  # a family keeps its ties
    out = Path(request["out"]).expanduser().resolve()
    overwrite = bool(request.get("overwrite", False))
    if (out / "dataset.json").exists() and not overwrite:
        raise ValueError(f"{out} already holds a data set; choose another folder or pass overwrite")
    checked = {
        "out": str(out),
        "config": config.model_dump(mode="json"),
        "stack": stack_meta(stack),
        "overwrite": overwrite,
    }
    return checked, {"out": str(out), "generator": checked["config"], "hub_repo": None}, out.name


def _check_refine(kind: str, request: Any) -> tuple[dict, dict, str]:
    """A refinement (``refine``) or DREAM-only (``dream``) request: data files loaded, stack and names checked."""
    from ..workflows.refinement import checked_request  # heavy (torch, scipy): only refinement requests need it

    typed = checked_request(request, kind)
    return typed.model_dump(mode="json"), typed.run_params(), typed.name or typed.out.name


def _check_sweep(request: Any) -> tuple[dict, dict, str]:
    """A sweep request: the notebook found, the parameter sets typed by its declarations, the options checked."""
    fields = {"notebook", "out", "grid", "runs", "fixed", "workers", "scheduler", "processes", "timeout"}
    if not isinstance(request, dict) or not request.get("notebook") or not request.get("out"):
        raise ValueError("a sweep job needs {'notebook': file or shipped name, 'out': folder, 'grid' and/or 'runs'}")
    unknown = set(request) - fields
    if unknown:
        raise ValueError(f"unknown sweep request field(s) {sorted(unknown)}; expected {', '.join(sorted(fields))}")
    notebook = notebook_path(request["notebook"])
    spec = {k: request[k] for k in ("grid", "runs", "fixed") if request.get(k) is not None}
    if not {"grid", "runs"} & set(spec):
        raise ValueError("nothing to sweep: give 'grid' {name: [values]} and/or 'runs' [{name: value}, ...]")
    workers = request.get("workers", 2)
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ValueError(f"workers must be a whole number ≥ 1, got {workers!r}")
    timeout = request.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ValueError(f"timeout must be seconds > 0 (or None), got {timeout!r}")
    scheduler = request.get("scheduler")
    if scheduler is not None and not isinstance(scheduler, str):
        raise ValueError(f"scheduler must be an address such as tcp://host:8786, got {scheduler!r}")
    runs = check_sweep(notebook, parameter_sets_from_mapping(spec, "the sweep request"), workers)
    out = Path(request["out"]).expanduser().resolve()
    load_manifest(out)  # a corrupt manifest is refused now, not when the job starts
    checked = {
        "notebook": str(notebook),
        "out": str(out),
        "runs": runs,
        "workers": workers,
        "scheduler": scheduler or None,
        "processes": bool(request.get("processes", True)),
        "timeout": float(timeout) if timeout is not None else None,
    }
    params = {"notebook": str(notebook), "out": str(out), "runs": len(runs), "workers": workers, "scheduler": scheduler}
    return checked, params, out.name


def _spawn(ws: Workspace, run_id: str, log_path: Path) -> int:
    """Start ``python -m workbench.batch.job_worker ROOT RUN_ID`` detached: its own session, output to the log."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    detach: dict[str, Any] = (
        {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.DETACHED_PROCESS}  # type: ignore[attr-defined]
        if os.name == "nt"
        else {"start_new_session": True}  # no SIGHUP from a closed terminal, no SIGINT from the starter's Ctrl-C
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            [sys.executable, "-m", "workbench.batch.job_worker", str(ws.root), run_id],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            close_fds=True,
            cwd=str(ws.root),
            env=env,
            **detach,
        )
    # reap it when it ends while the starter lives (no zombie); after the starter exits, init does
    threading.Thread(target=proc.wait, name=f"reap-{run_id}", daemon=True).start()
    return proc.pid


# ---------------------------------------------------------------------------- commands from any surface
def stop_job(registry: Registry, run_id: str, reason: str = "stopped by user") -> int:
    """Ask a queued or running job to stop (after its running step); returns the command id."""
    run = _live_job(registry, run_id, "stopped")
    command = registry.send_command(run.id, "stop", reason)
    if run.job.get("scheduler") and run.pid is None:  # in the Dask scheduler's queue: no job process reads commands
        registry.drop_untaken(run.id, reason)
    return command


def pause_job(registry: Registry, run_id: str, reason: str = "paused by user") -> int:
    """Ask a running training job to write a checkpoint and end as ``paused``; returns the command id."""
    run = _live_job(registry, run_id, "paused")
    if run.kind != "train":
        raise ValueError(f"run {run.id} is a {run.kind} job: only a training can pause (stop it instead)")
    if run.status == "queued":
        raise ValueError(f"run {run.id} is queued and has nothing to checkpoint yet: stop it instead")
    return registry.send_command(run.id, "pause", reason)


def _live_job(registry: Registry, run_id: str, verb: str) -> RunRow:
    try:
        run = registry.find_run(run_id)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    if run.status not in LIVE:
        raise ValueError(f"run {run.id} ({run.name}) is {run.status}; only a queued or running job can be {verb}")
    if run.job is None:
        raise ValueError(
            f"run {run.id} runs inside the process that started it, not as a job: stop it there "
            "(Ctrl-C on the command line, the panel's Stop button)"
        )
    return run


def wait_for_job(registry: Registry, run_id: str, timeout: float | None = None, poll: float = 0.2) -> RunRow:
    """Block until the job has ended (completed, paused, stopped or failed); returns its row."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        run = registry.get_run(run_id)
        if run.status not in LIVE:
            return run
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"job {run_id} is still {run.status} after {timeout:.0f} s")
        time.sleep(poll)


def follow(registry: Registry, run_id: str, poll: float = 0.5) -> Iterator[tuple[str, dict]]:
    """What a job records as it happens: ``("epoch", row)``, ``("log", line)``, ``("status", run)`` on each
    change of status, until the job has ended (the last item is its final ``("status", run)``)."""
    seen: set[tuple[str, int]] = set()
    logs_seen = 0
    status = None
    while True:
        run = registry.get_run(run_id)
        for row in registry.epochs(run_id):
            if (row["stage"], row["epoch"]) not in seen:
                seen.add((row["stage"], row["epoch"]))
                yield "epoch", row
        lines = registry.logs(run_id)
        for line in lines[logs_seen:]:
            yield "log", line
        logs_seen = len(lines)
        if run.status != status:
            status = run.status
            yield "status", run.as_dict()
        if run.status not in LIVE:
            return
        time.sleep(poll)

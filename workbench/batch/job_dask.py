"""Jobs on a Dask cluster: the same job, run inside a worker process of a scheduler instead of a local process.

    run_id = submit_job(workspace, "generate", request, scheduler="tcp://cluster:8786")

:func:`~workbench.batch.jobs.submit_job` connects here first, so an unreachable scheduler, a cluster
with no workers, workers that cannot import the workbench or that do not see the workspace folder
(a shared file system is needed: the job reads and writes the registry and the data there) are a
``ValueError`` before anything is recorded.  The job is then sent with ``client.submit(..., pure=False)``
and ``distributed.fire_and_forget``: the scheduler keeps it after the submitter exits, like a detached
local job.  On the worker, :func:`run_on_worker` takes the job in the registry (one conditional write:
a job stopped before a worker took it, or re-run by Dask elsewhere after its first worker died, is not
run twice) and calls the same :func:`~workbench.batch.job_worker.run_job` as a local job process: it
waits for a slot of the workspace's queue, beats its heartbeat, obeys ``stop`` / ``pause`` commands.

What differs from a local job: the run's pid and host are the worker's; it is judged by its heartbeat
only (a dead worker shows the job failed after :data:`~workbench.store.registry.JOB_HEARTBEAT_TIMEOUT`);
``Limits.job_memory_mb`` is not applied (an address-space limit would stay on the worker for good: set
the workers' own ``--memory-limit``); its printed output goes to the worker's log, with a line in
``runs/<id>/job.log`` saying where it runs.

The default scheduler of every job is ``$WORKBENCH_SCHEDULER`` (an address; empty or ``local``: local
processes); an explicit ``scheduler="local"`` runs one job locally whatever the variable says.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Any

from ..store.workspace import Workspace
from .job_worker import run_job

ENV_VAR = "WORKBENCH_SCHEDULER"
LOCAL = "local"
CONNECT_TIMEOUT = 5.0  # s; a scheduler on the facility network answers in milliseconds
PROBE_PREFIX = ".dask-probe-"


def scheduler_address(scheduler: str | None) -> str | None:
    """Where a job runs: an address, or None for a local process (``scheduler``, else ``$WORKBENCH_SCHEDULER``)."""
    value = os.environ.get(ENV_VAR, "") if scheduler is None else scheduler
    if not isinstance(value, str):
        raise ValueError(f"a scheduler is an address such as tcp://host:8786 (or 'local'), got {value!r}")
    value = value.strip()
    return None if value in ("", LOCAL) else value


def _probe(path: str) -> dict[str, Any]:
    """Run on each worker: the probe file's text as that worker reads it (None: it cannot see it), and its host."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError:
        text = None
    return {"text": text, "host": socket.gethostname(), "pid": os.getpid()}


class DaskTarget:
    """A connection to a scheduler whose workers were checked to see the workspace; submits jobs to it."""

    def __init__(self, address: str, root: Path) -> None:
        self.address, self.root = address, Path(root)
        self.client = connect(address)
        try:
            self.workers = check_workers(self.client, address, self.root)
        except BaseException:
            self.close()
            raise

    def submit(self, run_id: str) -> str:
        """Send the job; the scheduler keeps it after this process exits. Returns the Dask task key."""
        from distributed import fire_and_forget  # heavy optional dependency (distributed): only jobs on Dask

        key = f"workbench-job-{run_id}"
        future = self.client.submit(run_on_worker, str(self.root), run_id, key=key, pure=False)
        fire_and_forget(future)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while not self._scheduler_has(key) and time.monotonic() < deadline:  # let the message reach it before we go
            time.sleep(0.05)
        return key

    def _scheduler_has(self, key: str) -> bool:
        try:
            return self.client.sync(self.client.scheduler.get_task_status, keys=[key]).get(key) is not None
        except Exception:  # noqa: BLE001 - only a courtesy wait; fire_and_forget already holds the task
            return True

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the scheduler may be gone; nothing of ours is lost with the client
            self.client.close()


def connect(address: str) -> Any:
    """A ``distributed.Client`` of ``address``; ValueError naming the address when it cannot be reached."""
    try:
        from distributed import Client  # heavy optional dependency (distributed): only jobs on Dask need it
    except ImportError as exc:
        raise ValueError(f"jobs on a Dask scheduler need the 'distributed' package: {exc}") from None
    try:
        return Client(address, timeout=f"{CONNECT_TIMEOUT}s", set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ValueError(
            f"cannot reach the Dask scheduler at {address!r} ({exc}); start it (dask scheduler) or give the address "
            "it prints, tcp://host:8786, or run the job locally without --scheduler"
        ) from None


def check_workers(client: Any, address: str, root: Path) -> dict[str, dict]:
    """Each worker's host and pid, once all are seen to read a file written now in the workspace; else ValueError."""
    probe = root / f"{PROBE_PREFIX}{secrets.token_hex(6)}"
    token = secrets.token_hex(16)
    probe.write_text(token, encoding="utf-8")
    try:
        seen = client.run(_probe, str(probe))
    except (ImportError, AttributeError) as exc:  # cloudpickle sends _probe by reference: workers import it
        raise ValueError(
            f"the workers of {address} cannot run workbench code ({type(exc).__name__}: {exc}); install the "
            "workbench in the workers' Python environment"
        ) from None
    finally:
        probe.unlink(missing_ok=True)
    if not seen:
        raise ValueError(
            f"the Dask scheduler at {address} has no workers; start some (dask worker {address}) and submit again"
        )
    blind = sorted(f"{w} ({info['host']})" for w, info in seen.items() if info["text"] != token)
    if blind:
        raise ValueError(
            f"the workspace {root} is not visible to the Dask worker(s) {', '.join(blind)}: a job on a cluster reads "
            "and writes the workspace there, so it must be on a shared file system mounted at the same path on every "
            "worker (or run the job locally without --scheduler)"
        )
    return seen


def run_on_worker(root: str, run_id: str) -> str:
    """The Dask task: take the job and run it in this worker process; returns how it ended."""
    if not (Path(root) / "registry.sqlite").is_file():  # never create an empty workspace on a worker's own disk
        raise FileNotFoundError(f"workspace {root} is not visible on worker host {socket.gethostname()}")
    ws = Workspace(root)
    registry = ws.registry
    if not registry.take_job(run_id):
        return registry.get_run(run_id).status  # stopped before a worker took it, or already run elsewhere
    log_path = Path((registry.get_run(run_id).job or {}).get("log") or ws.run_dir(run_id) / "job.log")
    where = f"Dask worker pid {os.getpid()} on {socket.gethostname()}"
    _append(log_path, f"job {run_id} runs in {where}; its output is in that worker's log\n")
    status = run_job(registry, run_id, own_process=False)
    _append(log_path, f"job {run_id} ended: {status}\n")
    return status


def _append(path: Path, line: str) -> None:
    with contextlib.suppress(OSError):  # the log file is a courtesy; the registry has the run's record
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as log:
            log.write(line)

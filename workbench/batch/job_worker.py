"""The process of one job: ``python -m workbench.batch.job_worker WORKSPACE RUN_ID`` (started by :func:`submit_job`).

It reads what to run from the run's ``job`` column, limits its own address space
(``Limits.job_memory_mb``), waits in the queue for a slot, then runs the job through the same entry
points as every other surface (:func:`~workbench.workflows.training.run_training`,
:func:`~workbench.data.generate.generate_to_disk`) with a reporter whose events go to the registry.
A monitor thread beats the heartbeat with the process's CPU % and memory every 2 s and polls the
registry for commands every 0.2 s, turning ``stop`` into ``reporter.stop`` and ``pause`` into
``reporter.pause`` (a training checkpoints and ends ``paused``).  SIGTERM stops it the same way.
Exit status: 0 completed, paused or stopped; 1 failed (the error is in the run and in ``job.log``).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..events import Cancelled, Record, Reporter, log, progress_steps
from ..store.recorded import recorded_run
from ..store.registry import LIVE, Registry
from ..store.workspace import Workspace

BEAT_SECONDS = 2.0
POLL_SECONDS = 0.2
QUEUE_POLL_SECONDS = 0.5


def limit_memory(megabytes: int) -> bool:
    """Cap this process's address space (RLIMIT_AS) at ``megabytes`` MiB; False where the platform cannot."""
    if megabytes <= 0:
        return False
    try:
        import resource  # POSIX only: absent on Windows
    except ImportError:
        return False
    limit = int(megabytes) * 2**20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return True


class Telemetry:
    """CPU % (of one core; 200 % is two cores busy) and memory of this process, with psutil or ``/proc``."""

    def __init__(self) -> None:
        try:
            import psutil  # optional: /proc below when it is not installed

            self._proc: Any = psutil.Process()
            self._proc.cpu_percent(None)
        except ImportError:
            self._proc = None
        self._last = (time.monotonic(), _cpu_seconds())

    def sample(self) -> dict[str, float]:
        now, cpu = time.monotonic(), _cpu_seconds()
        if self._proc is not None:
            percent = self._proc.cpu_percent(None)
            rss = self._proc.memory_info().rss
        else:
            then, before = self._last
            percent = 100.0 * (cpu - before) / max(now - then, 1e-6)
            rss = _rss_bytes()
        self._last = (now, cpu)
        out = {"time": time.time(), "cpu_percent": round(float(percent), 1), "rss_mb": round(rss / 2**20, 1)}
        out["cpu_seconds"] = round(cpu, 2)
        gpu = _gpu_bytes()
        if gpu is not None:
            out["gpu_mb"] = round(gpu / 2**20, 1)
        return out


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _rss_bytes() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return 0


def _gpu_bytes() -> int | None:
    torch = sys.modules.get("torch")  # only when the job imported torch: never import it for the telemetry
    if torch is None:
        return None
    try:
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return int(torch.cuda.memory_allocated())
    except Exception:  # noqa: BLE001 - telemetry must never break the job
        return None
    return None


class Monitor:
    """A daemon thread: heartbeat with telemetry every ``beat`` s, commands polled every ``poll`` s."""

    def __init__(
        self,
        registry: Registry,
        run_id: str,
        reporter: Reporter,
        *,
        beat: float = BEAT_SECONDS,
        poll: float = POLL_SECONDS,
    ) -> None:
        self.registry, self.run_id, self.reporter = registry, run_id, reporter
        self.beat, self.poll = beat, poll
        self.can_pause = False
        self.telemetry = Telemetry()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"job-monitor-{run_id}", daemon=True)

    def start(self) -> Monitor:
        self._thread.start()
        return self

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        next_beat = 0.0
        while not self._done.is_set():
            try:
                self.check_commands()
                if time.monotonic() >= next_beat:
                    self.registry.record_telemetry(self.run_id, self.telemetry.sample())
                    next_beat = time.monotonic() + self.beat
            except Exception as exc:  # noqa: BLE001 - a busy database must not kill the job; the next poll retries
                log.debug("job monitor of %s: %s", self.run_id, exc)
            self._done.wait(self.poll)

    def check_commands(self) -> None:
        for command in self.registry.pending_commands(self.run_id):
            reason = command["reason"]
            if command["command"] == "stop":
                self.reporter.stop.stop(reason or "stopped by user")
                self.registry.log(self.run_id, f"stop requested: {reason or 'by user'}")
            elif self.can_pause:
                self.reporter.pause.set()
                self.registry.log(self.run_id, f"pause requested: {reason or 'by user'}; writing a checkpoint")
            else:
                self.registry.log(self.run_id, "this job cannot pause now (only a running training can)", "warning")
            self.registry.ack_command(command["id"])


# ---------------------------------------------------------------------------- the kinds of job
def _train(registry: Registry, run_id: str, request: dict, reporter: Reporter) -> str:
    from ..workflows.training import TrainRequest, run_training  # heavy (torch): only a training job needs it

    return run_training(TrainRequest(**request), reporter, registry, run_id=run_id).status


def _ensemble(registry: Registry, run_id: str, request: dict, reporter: Reporter) -> str:
    from ..workflows.ensemble import from_params, run_ensemble  # heavy (torch): only an ensemble job needs it

    train_request, members = from_params(request)
    return run_ensemble(train_request, int(members), reporter, registry, run_id=run_id).status


def _resume(registry: Registry, run_id: str, request: dict, reporter: Reporter) -> str:
    from ..workflows.training import TrainRequest, latest_checkpoint, run_training  # heavy (torch): training only

    run = registry.get_run(run_id)
    train_request = TrainRequest.from_params(run.params)
    checkpoint = latest_checkpoint(registry, run, train_request)
    registry.log(run_id, f"resuming from checkpoint {checkpoint}")
    return run_training(
        train_request, reporter, registry, resume_from=checkpoint, run_id=run_id, epochs=request.get("epochs")
    ).status


def _generate(registry: Registry, run_id: str, request: dict, reporter: Reporter) -> str:
    from ..data.family import stack_from_meta  # heavy (numba kernels): only a generation job needs it
    from ..data.generate import GeneratorConfig, generate_to_disk  # heavy (numba): as above

    stack = stack_from_meta(request["stack"])  # a sample family's ties travel with it
    config = GeneratorConfig(**request["config"])
    reporter.listeners.append(progress_steps(reporter, "generate", "curves"))  # a follower's progress bar
    with recorded_run(registry, "generate", run_id=run_id, resume=True, reporter=reporter) as run:
        out = generate_to_disk(
            stack, config, request["out"], reporter=reporter, overwrite=request["overwrite"], progress=False
        )
        meta = json.loads((Path(out) / "dataset.json").read_text(encoding="utf-8"))
        registry.register_dataset(meta["content_hash"], Path(out).resolve(), config.model_dump(mode="json"))
        registry.update_run(run_id, dataset_hash=meta["content_hash"])
        run.metrics.update(curves=meta.get("counts", {}).get("curves"))
    return "completed"


def _sweep(registry: Registry, run_id: str, request: dict, reporter: Reporter) -> str:
    from .sweep import run_sweep  # heavy (papermill, distributed): only a sweep job needs them

    def log_ends(event: Any) -> None:  # each run's end as a log line of the job
        if isinstance(event, Record) and event.stage == "sweep" and event.name == "run":
            if event.data["status"] in ("completed", "failed"):
                error = f": {event.data['error']}" if event.data.get("error") else ""
                registry.log(run_id, f"run {event.data['label']} {event.data['status']}{error}", stage="sweep")

    reporter.listeners.extend([log_ends, progress_steps(reporter, "sweep", "runs")])
    with recorded_run(registry, "sweep", run_id=run_id, resume=True, reporter=reporter) as run:
        result = run_sweep(
            request["notebook"],
            request["runs"],
            request["out"],
            workers=request["workers"],
            scheduler=request.get("scheduler"),
            processes=request["processes"],
            reporter=reporter,
            timeout=request.get("timeout"),
        )
        run.metrics.update(
            completed=len(result.completed),
            failed=len(result.failed),
            skipped=len(result.skipped),
            results=str(result.csv),
        )
    return "completed"


def _refine(registry: Registry, run_id: str, request: dict, reporter: Reporter) -> str:
    """A refinement or DREAM-only job: Stop ends a fit between evaluations and DREAM between generations."""
    from ..workflows.refinement import RefineRequest, run_refinement  # heavy (torch, scipy, bumps): refinement only

    return run_refinement(RefineRequest(**request), reporter, registry, run_id=run_id).status


RUNNERS: dict[str, Callable[[Registry, str, dict, Reporter], str]] = {
    "train": _train,
    "ensemble": _ensemble,
    "resume": _resume,
    "generate": _generate,
    "sweep": _sweep,
    "refine": _refine,
    "dream": _refine,
}


# ---------------------------------------------------------------------------- the process
def wait_for_slot(registry: Registry, run_id: str, max_running: int, reporter: Reporter) -> None:
    """Wait (queued, heartbeat going) until the job may start; Cancelled when it is stopped meanwhile."""
    told = False
    while True:
        reporter.check_stop()
        if registry.claim_slot(run_id, max_running):
            return
        if not told:
            position = registry.queue_position(run_id)
            registry.log(run_id, f"queued (position {position}): {max_running} job(s) of this workspace run at once")
            told = True
        time.sleep(QUEUE_POLL_SECONDS)


def run_job(registry: Registry, run_id: str, *, own_process: bool = True) -> str:
    """Run the queued job ``run_id`` in this process; returns how it ended.

    ``own_process=False`` (a thread of a Dask worker, :mod:`workbench.batch.job_dask`): no memory limit and no
    SIGTERM handler, both of which would outlive the job in a process that is not its own.
    """
    run = registry.get_run(run_id)
    spec = run.job or {}
    kind = spec.get("kind")
    if kind not in RUNNERS:
        raise ValueError(f"run {run_id} holds no job this worker knows ({kind!r})")
    limited = own_process and limit_memory(int(spec.get("memory_mb") or 0))
    reporter = Reporter()
    monitor = Monitor(registry, run_id, reporter).start()
    previous = (
        signal.signal(signal.SIGTERM, lambda *_: reporter.stop.stop("terminated (SIGTERM)")) if own_process else None
    )
    limit = f", memory limit {spec['memory_mb']} MiB" if limited else ""
    print(f"job {run_id} ({kind}), pid {os.getpid()}{limit}", flush=True)  # noqa: T201 - stdout is the job's log
    try:
        try:
            wait_for_slot(registry, run_id, int(spec.get("max_concurrent") or 1), reporter)
        except Cancelled as exc:
            registry.finish_run(run_id, "stopped", error=f"{exc} (while queued)")
            return "stopped"
        monitor.can_pause = kind in ("train", "resume")
        try:
            return RUNNERS[kind](registry, run_id, spec.get("request") or {}, reporter)
        except Cancelled:
            return "stopped"
    except BaseException as exc:  # noqa: BLE001 - recorded in the run and the log; the process ends after it
        traceback.print_exc()
        if registry.get_run(run_id).status in LIVE:  # it failed before its run was recorded as running
            registry.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        return "failed"
    finally:
        if own_process:
            signal.signal(signal.SIGTERM, previous)
        monitor.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m workbench.batch.job_worker WORKSPACE RUN_ID", file=sys.stderr)  # noqa: T201
        return 2
    registry = Workspace(args[0]).registry
    status = run_job(registry, args[1])
    print(f"job {args[1]} ended: {status}", flush=True)  # noqa: T201 - stdout is the job's log
    return 1 if status == "failed" else 0


if __name__ == "__main__":
    raise SystemExit(main())

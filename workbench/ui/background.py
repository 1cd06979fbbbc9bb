"""Long work (generate, train, refine, DREAM) in a worker thread, with throttled delivery of its events.

The worker never prints or displays: a panel passes callbacks that set widget values.  Events
are buffered and handed over in batches at most ``max_rate`` times per second (the browser
cannot draw faster, and each push costs a message), plus once at the end.  Stop goes through
the reporter's :class:`~workbench.events.StopSignal`, pause through ``reporter.pause``.
:class:`FollowedJob` has the same face for a job that runs in its own process: it only reads the run
registry, so the job outlives the page and the kernel.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Self

from ..events import Cancelled, Event, Reporter
from .kernel_activity import kernel_busy

Batch = Callable[[list[Event]], None]


class _Threaded:
    """A daemon thread's lifecycle as a job's: start, running, join (``_thread`` is set by the subclass)."""

    _thread: threading.Thread

    def start(self) -> Self:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job (and its last callback); True when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()


class Job(_Threaded):
    """``fn(reporter)`` in a daemon thread; ``on_events`` gets event batches, then ``on_done`` or ``on_error``."""

    def __init__(
        self,
        fn: Callable[[Reporter], Any],
        *,
        on_events: Batch | None = None,
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        max_rate: float = 5.0,
        reporter: Reporter | None = None,
        name: str = "workbench-job",
    ) -> None:
        self.fn, self.on_events, self.on_done, self.on_error = fn, on_events, on_done, on_error
        self.interval = 1.0 / max_rate
        self.reporter = reporter or Reporter()
        self.reporter.listeners.append(self._collect)
        self._pending: list[Event] = []
        self._lock = threading.Lock()
        self._last_flush = 0.0
        self.result: Any = None
        self.error: BaseException | None = None
        self.cancelled = False
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # ------------------------------------------------------------------ control

    def stop(self, reason: str = "stopped by user") -> None:
        self.reporter.stop.stop(reason)

    def pause(self) -> None:
        self.reporter.pause.set()

    # ------------------------------------------------------------------ delivery
    def _collect(self, event: Event) -> None:
        with self._lock:
            self._pending.append(event)
            due = time.monotonic() - self._last_flush >= self.interval
        if due:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
            self._last_flush = time.monotonic()
        if batch and self.on_events is not None:
            self.on_events(batch)

    def _run(self) -> None:
        with kernel_busy():  # a running job keeps its kernel from being culled as idle
            self._work()

    def _work(self) -> None:
        t0 = time.perf_counter()
        try:
            self.result = self.fn(self.reporter)
        except Cancelled as exc:
            self.cancelled, self.error = True, exc
        except BaseException as exc:  # noqa: BLE001 - shown in the panel, never lost in a thread
            self.error = exc
        self.seconds = time.perf_counter() - t0
        try:
            self.flush()
        except Exception as exc:  # noqa: BLE001
            self.error = self.error or exc
        if self.error is not None:
            if self.on_error is not None:
                self.on_error(self.error)
        elif self.on_done is not None:
            try:
                self.on_done(self.result)
            except Exception as exc:  # noqa: BLE001
                self.error = exc
                if self.on_error is not None:
                    self.on_error(exc)


class FollowedJob(_Threaded):
    """A job process (``workbench.batch.jobs.submit_job``) followed through the run registry.

    Nothing runs here but a daemon thread that reads the run every ``poll`` seconds and hands what is
    new to ``on_update(epochs, logs, run)`` (the first call catches up with everything recorded so
    far), then ``on_end(run)`` once the run has ended.  Unlike :class:`Job` it never reports the
    kernel busy: following is not working, so the page's kernel may be culled while the job goes on.
    Same face as :class:`Job` (``running``, ``join``, ``stop``, ``pause``, ``seconds``), so a panel
    treats both alike; stop and pause are registry commands the job acknowledges within ~0.2 s.
    """

    def __init__(
        self,
        registry: Any,
        run_id: str,
        *,
        on_update: Callable[[list[dict], list[dict], Any], None],
        on_end: Callable[[Any], None],
        on_error: Callable[[BaseException], None] | None = None,
        poll: float = 0.5,
        name: str = "workbench-follow",
    ) -> None:
        self.registry, self.run_id = registry, run_id
        self.on_update, self.on_end, self.on_error = on_update, on_end, on_error
        self.poll = poll
        self.run: Any = None
        self.seconds = 0.0
        self._seen: set[tuple[str, int]] = set()
        self._logs_seen = 0
        self._detached = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def stop(self, reason: str = "stopped by user") -> None:
        from ..batch.jobs import stop_job  # ui may use batch; imported here to keep this module light

        stop_job(self.registry, self.run_id, reason)

    def pause(self) -> None:
        from ..batch.jobs import pause_job  # as above

        pause_job(self.registry, self.run_id, "paused from the dashboard")

    def detach(self) -> None:
        """Stop following (the job goes on)."""
        self._detached.set()

    def _loop(self) -> None:
        from ..store.registry import LIVE  # as above

        t0 = time.perf_counter()
        try:
            while not self._detached.is_set():
                run = self.registry.get_run(self.run_id)  # status first: epochs read after it are complete
                epochs = [e for e in self.registry.epochs(self.run_id) if (e["stage"], e["epoch"]) not in self._seen]
                self._seen.update((e["stage"], e["epoch"]) for e in epochs)
                logs = self.registry.logs(self.run_id)
                new_logs, self._logs_seen = logs[self._logs_seen :], len(logs)
                self.run, self.seconds = run, time.perf_counter() - t0
                self.on_update(epochs, new_logs, run)
                if run.status not in LIVE:
                    self.on_end(run)
                    return
                self._detached.wait(self.poll)
        except BaseException as exc:  # noqa: BLE001 - shown in the panel, never lost in a thread
            if self.on_error is not None:
                self.on_error(exc)


def live_job(registry: Any, kind: str) -> str | None:
    """The newest queued or running job process of ``kind`` in the workspace's registry (None: none, or no registry).

    What a panel attaches to when its page opens or its tab is shown."""
    if registry is None:
        return None
    from ..store.registry import LIVE  # as above

    live = [r for r in registry.list_runs(kind=kind) if r.status in LIVE and r.job is not None]
    return live[0].id if live else None


def follow_job(
    ctx: Any,
    run_id: str,
    *,
    on_update: Callable[[list[dict], list[dict], Any], None],
    on_end: Callable[[Any], None],
    on_error: Callable[[BaseException], None] | None,
    name: str,
) -> FollowedJob:
    """A started :class:`FollowedJob` of ``run_id`` in the app's registry, polled at the app's update rate."""
    rate = max(ctx.limits.max_updates_per_second, 0.1)
    return FollowedJob(
        ctx.registry(),
        run_id,
        on_update=on_update,
        on_end=on_end,
        on_error=on_error,
        poll=max(0.5, 1.0 / rate),
        name=name,
    ).start()

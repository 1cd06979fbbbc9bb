"""Long work (generate, train, refine, DREAM) in a worker thread, with throttled delivery of its events.

The worker never prints or displays: a panel passes callbacks that set widget values.  Events
are buffered and handed over in batches at most ``max_rate`` times per second (the browser
cannot draw faster, and each push costs a message), plus once at the end.  Stop goes through
the reporter's :class:`~workbench.events.StopSignal`, pause through ``reporter.pause``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..events import Cancelled, Event, Reporter
from .kernel_activity import kernel_busy

Batch = Callable[[list[Event]], None]


class Job:
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
    def start(self) -> Job:
        self._thread.start()
        return self

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job; True when it has finished."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

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

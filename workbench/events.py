"""One event vocabulary for every long computation (generation, training, refinement, sweeps).

Long work reports through a :class:`Reporter`: progress, log lines, warnings, timings and
stage-specific records, and it checks a stop signal between steps.  The panels, the run
registry, progress bars and the CLI are listeners — plain callables that receive events — so
the computation never knows who is watching.  A listener that raises is reported once through a
warning and then detached: a broken chart must not kill a training run.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("workbench")


@dataclass(frozen=True)
class Event:
    """Base class: every event has a stage name ('generate', 'train', ...) and a timestamp."""

    stage: str
    time: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class Progress(Event):
    done: int
    total: int
    unit: str = "items"


@dataclass(frozen=True)
class Log(Event):
    message: str
    level: str = "info"


@dataclass(frozen=True)
class Warning_(Event):
    message: str


@dataclass(frozen=True)
class Timing(Event):
    what: str
    seconds: float
    items: int = 0

    @property
    def rate(self) -> float:
        return self.items / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class Record(Event):
    """A stage-specific result record (an epoch's losses, a refinement step, a written chunk)."""

    name: str
    data: dict[str, Any]


Listener = Callable[[Event], None]


class Cancelled(Exception):
    """Raised by :meth:`StopSignal.check` when the user asked the computation to stop."""


class StopSignal:
    """A cooperative stop request, safe to set from another thread (a Stop button)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def stop(self, reason: str = "stopped by user") -> None:
        self.reason = reason
        self._event.set()

    def clear(self) -> None:
        self.reason = ""
        self._event.clear()

    @property
    def stopped(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled(self.reason or "stopped")


class Reporter:
    """What a long computation holds: listeners to notify and a stop signal to honour."""

    def __init__(self, listeners: Iterable[Listener] = (), stop: StopSignal | None = None) -> None:
        self.listeners: list[Listener] = list(listeners)
        self.stop = stop if stop is not None else StopSignal()
        # a pause request: computations that can checkpoint (training) save and return when set
        self.pause = threading.Event()

    def emit(self, event: Event) -> None:
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception as exc:  # noqa: BLE001 - a listener must never break the computation
                self.listeners.remove(listener)
                log.warning("detached event listener %r after it raised: %s", listener, exc)
                if not isinstance(event, Warning_):
                    self.emit(Warning_(event.stage, f"a listener failed and was detached: {exc}"))

    def progress(self, stage: str, done: int, total: int, unit: str = "items") -> None:
        self.emit(Progress(stage, done, total, unit))

    def log(self, stage: str, message: str, level: str = "info") -> None:
        self.emit(Log(stage, message, level))

    def warn(self, stage: str, message: str) -> None:
        self.emit(Warning_(stage, message))

    def timing(self, stage: str, what: str, seconds: float, items: int = 0) -> None:
        self.emit(Timing(stage, what, seconds, items))

    def record(self, stage: str, name: str, **data: Any) -> None:
        self.emit(Record(stage, name, data))

    def check_stop(self) -> None:
        self.stop.check()


def progress_steps(reporter: Reporter, stage: str, what: str, every: float = 1.0) -> Listener:
    """A listener that turns ``stage``'s progress into numbered steps, ``Record(stage, "epoch", epoch=k,
    <what>=done, total=...)``, at most every ``every`` s and always the last.

    The run registry keeps records, not progress events, so a page that follows a job process (or opens
    later) draws its progress bar from these steps.
    """
    state = {"step": 0, "last": -math.inf}

    def listen(event: Event) -> None:
        if not isinstance(event, Progress) or event.stage != stage:
            return
        now = time.monotonic()
        if event.done < event.total and now - state["last"] < every:
            return
        state["step"] += 1
        state["last"] = now
        reporter.record(stage, "epoch", epoch=state["step"], **{what: int(event.done)}, total=int(event.total))

    return listen


def tqdm_listener(stage: str, desc: str | None = None, unit: str = "curves") -> Listener:
    """A listener that drives a ``tqdm.auto`` bar (renders in notebooks and terminals)."""
    from tqdm.auto import tqdm  # heavy (tqdm): imported on use

    bar = None

    def listen(event: Event) -> None:
        nonlocal bar
        if isinstance(event, Progress) and event.stage == stage:
            if bar is None:
                bar = tqdm(total=event.total, desc=desc or stage, unit=unit, unit_scale=True)
            bar.update(event.done - bar.n)
            if event.done >= event.total:
                bar.close()
        elif isinstance(event, Warning_) and bar is not None:
            bar.write(f"warning: {event.message}")

    return listen

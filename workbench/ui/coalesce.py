"""Latest-value-only background work for live previews (a slider drag must not queue stale redraws).

:class:`Coalescer` runs ``fn(value)`` on one worker thread.  A value submitted while the worker is
idle starts at once (no debounce delay on a single change); values submitted while it is busy
replace each other, so when it finishes it computes only the newest one.  Like plopp's debounced
slider updates, but without a timer: a fast machine draws every step, a slow one skips the
intermediate ones instead of falling behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

_EMPTY = object()


class Coalescer:
    """One daemon worker computing the most recent submitted value; see the module docstring."""

    def __init__(
        self,
        fn: Callable[[Any], None],
        *,
        on_error: Callable[[BaseException], None] | None = None,
        name: str = "workbench-preview",
    ) -> None:
        self.fn, self.on_error, self.name = fn, on_error, name
        self._cond = threading.Condition()
        self._latest: Any = _EMPTY
        self._busy = False
        self._held = False
        self._thread: threading.Thread | None = None
        self.submitted = 0  # values handed in
        self.computed = 0  # values the worker ran fn on
        self.skipped = 0  # values replaced by a newer one before the worker got to them

    def submit(self, value: Any) -> None:
        """Hand in the newest value; returns at once."""
        with self._cond:
            if self._latest is not _EMPTY:
                self.skipped += 1
            self._latest = value
            self.submitted += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted value is computed (or skipped); True unless ``timeout`` ran out."""
        with self._cond:
            return self._cond.wait_for(lambda: self._latest is _EMPTY and not self._busy, timeout)

    @property
    def idle(self) -> bool:
        with self._cond:
            return self._latest is _EMPTY and not self._busy

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep the worker from starting new work inside the block (submissions still coalesce)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._busy)
            self._held = True
        try:
            yield
        finally:
            with self._cond:
                self._held = False
                self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._latest is not _EMPTY and not self._held)
                value, self._latest = self._latest, _EMPTY
                self._busy = True
            try:
                self.fn(value)
            except Exception as exc:  # noqa: BLE001 - reported, and the worker keeps serving
                if self.on_error is not None:
                    self.on_error(exc)
            finally:
                with self._cond:
                    self._busy = False
                    self.computed += 1
                    self._cond.notify_all()

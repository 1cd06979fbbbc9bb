"""Tell the Jupyter server that this kernel is busy while a background job runs, so idle culling spares it.

A job (generate, train, refine, DREAM, sweep) runs in a worker thread of the dashboard's kernel;
between cells the kernel reports "idle", and ``workbench start --cull-after`` (the server's
``cull_idle_timeout`` with ``cull_busy=False``) would shut it down mid-training once the page was
closed.  While at least one job runs, the kernel publishes ``execution_state: busy`` on IOPub
every :data:`BEAT_SECONDS` (a cell that ends meanwhile publishes "idle", which the next beat
overrides; each beat also renews the kernel's last activity), which is what the server's culler
reads; "idle" follows when the last job ends.  Outside a kernel (scripts, tests) this does nothing.

Only work that would die with the kernel counts: a job running in its own process (``submit_job``,
the Train panel's default) is merely *followed* by the page (:class:`~workbench.ui.background.FollowedJob`),
which never enters :func:`kernel_busy` — so a page that only follows a job is culled as idle like any
other, and the job goes on (a page opened later attaches to it).  :func:`running_jobs` says how many
in-kernel jobs hold the kernel now.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("workbench.ui")
BEAT_SECONDS = 2.0
_lock = threading.Lock()
_running = 0
_done = threading.Event()


def _publish(state: str) -> None:
    from ipykernel.kernelbase import Kernel  # heavy (ipykernel): only inside a kernel is there a status to publish

    if not Kernel.initialized():
        return
    kernel = Kernel.instance()
    if kernel.session is None or kernel.iopub_socket is None:
        return
    kernel.session.send(kernel.iopub_socket, "status", {"execution_state": state}, ident=kernel._topic("status"))


def running_jobs() -> int:
    """How many jobs of this kernel keep it reported busy now (0: the culler may shut it down when idle)."""
    return _running


@contextmanager
def kernel_busy() -> Iterator[None]:
    """The kernel reports busy from the first running job until the last one ends."""
    global _running, _done
    with _lock:
        _running += 1
        if _running == 1:
            _done = threading.Event()
            threading.Thread(target=_beat, args=(_done,), name="workbench-kernel-busy", daemon=True).start()
    try:
        yield
    finally:
        with _lock:
            _running -= 1
            if _running == 0:
                _done.set()


def _beat(done: threading.Event) -> None:
    """Publish busy now and every few seconds until ``done``, then idle."""
    while True:
        _safely(_publish, "busy")
        if done.wait(BEAT_SECONDS):
            break
    _safely(_publish, "idle")


def _safely(fn, state: str) -> None:
    try:
        fn(state)
    except Exception as exc:  # noqa: BLE001 - a missed status costs at most an early cull, never the job
        log.debug("could not publish kernel status %s: %s", state, exc)

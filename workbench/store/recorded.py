"""One way for the UI, the CLI, notebooks and sweeps to record a job in the registry.

    with recorded_run(ws.registry, "train", params=settings) as run:
        outcome = train_nr_model(..., reporter=run.reporter, checkpoint_path=run.dir / "checkpoint.safetensors")
        run.metrics.update(outcome.metrics)
        if outcome.result.status == "paused":
            run.status = "paused"

Inside the block the run is ``running``: its events are recorded as they happen (epochs, logs,
timings) and a background thread beats its heartbeat, so a long step without events does not
look dead while a killed process soon does.  On leaving the block the run is ``completed`` (or
whatever ``run.status`` says); on :class:`~workbench.events.Cancelled` or Ctrl-C it is
``stopped``; on any other exception ``failed`` with the message — and the exception propagates.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import Cancelled, Reporter, log
from .registry import Registry


@dataclass
class RecordedRun:
    """A running, recorded job: its id, the reporter to hand to the computation, metrics to fill."""

    id: str
    registry: Registry
    reporter: Reporter
    metrics: dict[str, Any] = field(default_factory=dict)
    status: str | None = None  # set "paused" (or "stopped") when the job ended that way
    model: str | None = None  # the model it produced (a bundle path or name)
    run_dir: Path | None = None

    @property
    def dir(self) -> Path:
        """This run's own folder ``<workspace>/runs/<id>`` (created, and recorded as its run_dir)."""
        if self.run_dir is None:
            root = self.registry.workspace_root
            if root is None:
                raise ValueError("this registry has no workspace root; pass run_dir= to recorded_run")
            self.run_dir = root / "runs" / self.id
            self.registry.update_run(self.id, run_dir=self.run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return self.run_dir

    def log(self, message: str, level: str = "info") -> None:
        self.registry.log(self.id, message, level)


def _beat(registry: Registry, run_id: str, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        try:
            registry.heartbeat(run_id)
        except Exception as exc:  # noqa: BLE001 - a missed beat must not kill the job; the next one may succeed
            log.debug("heartbeat of run %s failed: %s", run_id, exc)


@contextmanager
def recorded_run(
    registry: Registry,
    kind: str,
    *,
    name: str | None = None,
    params: dict | None = None,
    dataset_hash: str | None = None,
    model: str | None = None,
    run_dir: str | os.PathLike | None = None,
    reporter: Reporter | None = None,
    run_id: str | None = None,
    resume: bool = False,
) -> Iterator[RecordedRun]:
    """Record a job from start to end; see the module docstring.

    ``resume=True`` with ``run_id`` continues an existing (paused) run instead of starting one.
    """
    if resume:
        if run_id is None:
            raise ValueError("resume=True needs the run_id of the run to continue")
        registry.reopen_run(run_id)
        if params:
            registry.update_run(run_id, params=params)
        existing = registry.get_run(run_id)
        run_dir = run_dir if run_dir is not None else existing.run_dir
    else:
        run_id = registry.start_run(
            kind, name=name, params=params, dataset_hash=dataset_hash, model=model, run_dir=run_dir, run_id=run_id
        )
    reporter = reporter if reporter is not None else Reporter()
    listener = registry.listener(run_id)
    reporter.listeners.append(listener)
    run = RecordedRun(run_id, registry, reporter, run_dir=Path(run_dir) if run_dir is not None else None, model=model)
    stop = threading.Event()
    beat = threading.Thread(
        target=_beat,
        args=(registry, run_id, stop, max(0.05, min(registry.heartbeat_timeout / 4, 30.0))),
        name=f"heartbeat-{run_id}",
        daemon=True,
    )
    beat.start()
    try:
        yield run
    except (Cancelled, KeyboardInterrupt) as exc:
        registry.finish_run(
            run_id, "stopped", metrics=run.metrics, error=str(exc) or type(exc).__name__, model=run.model
        )
        raise
    except BaseException as exc:
        registry.finish_run(
            run_id, "failed", metrics=run.metrics, error=f"{type(exc).__name__}: {exc}", model=run.model
        )
        raise
    else:
        registry.finish_run(run_id, run.status or "completed", metrics=run.metrics, model=run.model)
    finally:
        stop.set()
        beat.join(timeout=5)
        if listener in reporter.listeners:
            reporter.listeners.remove(listener)

"""What the panels share: the workspace, the limits, the stack model, the current selections, autosave.

Panels talk to each other only through this object: a panel that produces something (a data
set, a model, a prediction, a measurement) publishes it with :meth:`AppContext.publish`, and
panels that use it subscribe.  Stack, probe and panel settings autosave (debounced, atomically)
to the workspace's ``settings.json`` and are restored when the dashboard opens again.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..limits import Limits
from ..fileio import write_text_atomic
from ..store.workspace import Workspace
from .model import StackModel

log = logging.getLogger("workbench.ui")
SETTINGS_VERSION = 1
MEASURED = "measured"


class AppContext:
    """Shared state of one Workbench app."""

    def __init__(self, workspace: Workspace | str | Path | None = None, *, limits: Limits | None = None,
                 restore: bool = True, autosave_delay: float = 1.0) -> None:
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self.limits = limits or Limits.from_env()
        self.model = StackModel(limits=self.limits)
        self.settings: dict[str, dict[str, Any]] = {}
        self.current: dict[str, Any] = {}
        self.charts: dict[str, Any] = {}  # chart name -> figure, for the Files panel's data downloads
        self.restore_error: str | None = None
        self._subscribers: dict[str, list[Callable[[Any], None]]] = {}
        self._autosave_delay = autosave_delay
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        if restore:
            self.load_settings()
        self.model.observe(lambda what: self.schedule_save())

    # ------------------------------------------------------------------ publish / subscribe
    def subscribe(self, topic: str, callback: Callable[[Any], None]) -> None:
        self._subscribers.setdefault(topic, []).append(callback)

    def publish(self, topic: str, value: Any) -> None:
        """Set ``current[topic]`` and tell every subscriber ('dataset', 'model', 'prediction', ...)."""
        self.current[topic] = value
        for callback in list(self._subscribers.get(topic, [])):
            try:
                callback(value)
            except Exception as exc:  # noqa: BLE001 - one broken view must not break the others
                log.warning("subscriber of %r failed: %s", topic, exc)

    # ------------------------------------------------------------------ workspace listings
    @property
    def measured_dir(self) -> Path:
        path = self.workspace.root / MEASURED
        path.mkdir(exist_ok=True)
        return path

    def datasets(self) -> list[Path]:
        """Data-set folders in the workspace, newest first."""
        found = [p for p in self.workspace.datasets.iterdir() if (p / "nr_train.npy").is_file()]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def models(self) -> list[Path]:
        """Model bundle folders in the workspace, newest first."""
        found = [p for p in self.workspace.models.iterdir() if (p / "config.json").is_file() and not p.name.startswith(".")]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def measurements(self) -> list[Path]:
        """Measured curves uploaded to the workspace."""
        return sorted(p for p in self.measured_dir.iterdir()
                      if p.suffix.lower() in (".txt", ".dat", ".ort", ".npy") and not p.name.startswith("."))

    def registry(self):
        """The run registry, or None while it cannot be opened (the dashboard still works)."""
        try:
            return self.workspace.registry
        except Exception as exc:  # noqa: BLE001
            log.warning("run registry unavailable: %s", exc)
            return None

    # ------------------------------------------------------------------ settings
    def panel_settings(self, name: str) -> dict[str, Any]:
        return self.settings.setdefault(name, {})

    def update_settings(self, name: str, **values: Any) -> None:
        self.panel_settings(name).update(values)
        self.schedule_save()

    def load_settings(self) -> None:
        path = self.workspace.settings_path
        if not path.is_file():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if "stack" in data:
                self.model.load_dict(data)
            self.settings = {k: dict(v) for k, v in data.get("panels", {}).items() if isinstance(v, dict)}
        except Exception as exc:  # noqa: BLE001 - a damaged settings file must not stop the app
            self.restore_error = f"could not restore {path}: {exc}; using the defaults"
            log.warning(self.restore_error)

    def save_settings(self) -> Path:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        data = {"version": SETTINGS_VERSION, **self.model.to_dict(), "panels": self.settings}
        return write_text_atomic(self.workspace.settings_path, json.dumps(data, indent=1))

    def schedule_save(self) -> None:
        """Save after a quiet period (a slider drag writes once, not per step)."""
        if self._autosave_delay <= 0:
            self.save_settings()
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self._autosave_delay, self._save_quietly)
            self._timer.daemon = True
            self._timer.start()

    def _save_quietly(self) -> None:
        try:
            self.save_settings()
        except Exception as exc:  # noqa: BLE001
            log.warning("autosave failed: %s", exc)

    def reset_settings(self) -> None:
        """Defaults everywhere: stack, bounds, probe and panel settings."""
        self.settings = {}
        self.model.reset()
        self.publish("reset", True)
        self.save_settings()

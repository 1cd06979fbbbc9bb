"""What the panels share: the workspace, the limits, the film stack, the current selections, autosave.

Panels talk to each other only through this object's typed traits: a panel that produces
something sets it (``ctx.announce(dataset=folder)``) and panels that use it follow it
(``ctx.follow("dataset", callback)``, a traitlets observer that logs instead of raising, so one
broken view never breaks the others).  ``ctx.stack`` is the editable film stack and probe.
Stack, probe and panel settings autosave (debounced, atomically) to the workspace's
``settings.json`` and are restored when the dashboard opens again.

The types behind the Train tab's saved settings (``training.config``, ``models.settings``) import no torch, so
a returning user's saved settings are checked without loading it (tests/test_lazy_import.py).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import traitlets as T

from ..data.generate import GeneratorConfig
from ..data.realism import Realism
from ..fileio import write_text_atomic
from ..forms import FieldSpec, field_specs
from ..limits import Limits
from ..models.settings import SETTINGS
from ..store.workspace import Workspace
from ..training.config import SplitSettings, TrainConfig
from .stack_model import StackModel

log = logging.getLogger("workbench.ui")
SETTINGS_VERSION = 1
MEASURED = "measured"


class AppContext(T.HasTraits):
    """Shared state of one Workbench app: typed traits the panels set and follow."""

    dataset = T.Instance(Path, allow_none=True, help="the data-set folder last generated, uploaded or chosen")
    bundle = T.Instance(Path, allow_none=True, help="the model bundle folder last trained, uploaded or activated")
    measurement = T.Instance(Path, allow_none=True, help="the measured file last uploaded")
    prediction = T.Any(None, allow_none=True, help="the last prediction (Predict tab), what Refine starts from")
    refined = T.Any(None, allow_none=True, help="the last refinement result (Refine tab)")
    runs_version = T.Int(0, help="bumped when a run was recorded or changed: the History tab refreshes")

    def __init__(
        self,
        workspace: Workspace | str | Path | None = None,
        *,
        limits: Limits | None = None,
        restore: bool = True,
        autosave_delay: float = 1.0,
    ) -> None:
        super().__init__()
        self.workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
        self.limits = limits or Limits.from_env()
        self.stack = StackModel(limits=self.limits)
        self.settings: dict[str, dict[str, Any]] = {}
        self.charts: dict[str, Any] = {}  # chart name -> figure, for the Files panel's data downloads
        self.restore_error: str | None = None
        self._autosave_delay = autosave_delay
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        self._seen_mtime = self._settings_mtime()  # the saved settings this context has seen
        if restore:
            self.load_settings()
        self.stack.observe(lambda what: self.schedule_save())

    # ------------------------------------------------------------------ shared selections
    def announce(self, **values: Any) -> None:
        """Set shared traits and tell their followers, also when a value is the same as before (a retrained bundle)."""
        for name, value in values.items():
            if name not in self.trait_names() or name.startswith("_"):
                raise AttributeError(f"AppContext has no shared trait {name!r}")
            if isinstance(value, str):
                value = Path(value)
            old = getattr(self, name)
            if old is value or (isinstance(old, Path) and old == value):
                self.notify_change(T.Bunch(name=name, old=old, new=value, owner=self, type="change"))
            else:
                setattr(self, name, value)

    def runs_changed(self) -> None:
        """A run was recorded or changed (the History tab follows ``runs_version``)."""
        self.runs_version += 1

    def follow(self, name: str, callback: Callable[[Any], None]) -> None:
        """``callback(new value)`` after each change of the trait ``name``; a failing callback is logged, not raised."""

        def observer(change: T.Bunch) -> None:
            try:
                callback(change["new"])
            except Exception as exc:  # noqa: BLE001 - one broken view must not break the others
                log.warning("follower of %r failed: %s", name, exc)

        self.observe(observer, name)

    # ------------------------------------------------------------------ workspace listings
    @property
    def measured_dir(self) -> Path:
        path = self.workspace.root / MEASURED
        path.mkdir(exist_ok=True)
        return path

    def datasets(self) -> list[Path]:
        """Data-set folders in the workspace, newest first."""
        found = [
            p
            for p in self.workspace.datasets.iterdir()
            if (p / "nr_train.npy").is_file() and not p.name.startswith(".")
        ]  # not a generation in progress
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def models(self) -> list[Path]:
        """Model bundle and ensemble folders in the workspace, newest first."""
        found = [
            p
            for p in self.workspace.models.iterdir()
            if ((p / "config.json").is_file() or (p / "ensemble.json").is_file()) and not p.name.startswith(".")
        ]
        return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)

    def measurements(self) -> list[Path]:
        """Measured curves uploaded to the workspace."""
        return sorted(
            p
            for p in self.measured_dir.iterdir()
            if p.suffix.lower() in (".txt", ".dat", ".ort", ".npy") and not p.name.startswith(".")
        )

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
        """Restore the stack, probe and panel settings saved in the workspace.

        Each saved value is checked against the typed field behind it (:func:`saved_setting_specs`); a value
        that does not fit (``train.model = 'x'`` from an old link, ``epochs: 1e400``), a damaged stack or a
        damaged file falls back to the default, and ``restore_error`` names each such setting (the Film stack
        panel shows it): a bad saved setting never breaks a panel.
        """
        path = self.workspace.settings_path
        self._seen_mtime = self._settings_mtime()
        if not path.is_file():
            return
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
            self.restore_error = f"could not restore {path}: {exc}; using the defaults"
            log.warning(self.restore_error)
            return
        problems: list[str] = []
        if "stack" in data:
            try:
                self._check_saved_probe(data.get("probe", {}))
                self.stack.load_dict(data)
            except Exception as exc:  # noqa: BLE001 - a damaged saved stack must not stop the app
                problems.append(f"the film stack and probe ({exc}): the default stack is used")
        panels = data.get("panels", {})
        if not isinstance(panels, dict):
            problems.append("panels: not an object; the panels' defaults are used")
            panels = {}
        specs = saved_setting_specs()
        self.settings = {}
        for name, values in panels.items():
            if isinstance(values, dict):
                self.settings[str(name)] = _checked(str(name), values, specs, problems)
            else:
                problems.append(f"{name}: {values!r} is not a group of settings; its defaults are used")
        if problems:
            self.restore_error = f"some saved settings in {path} were not restored: " + "; ".join(problems)
            log.warning(self.restore_error)

    def reload_if_changed(self) -> bool:
        """Restore the saved settings again when another page saved them after this context read them.

        A preheated dashboard kernel builds its app minutes before a visitor claims it; this brings its stack,
        probe and panel settings up to what the workspace holds now.  Returns whether anything was reloaded.
        """
        if self._settings_mtime() == self._seen_mtime:
            return False
        self.load_settings()
        return True

    def _settings_mtime(self) -> int | None:
        try:
            return self.workspace.settings_path.stat().st_mtime_ns
        except OSError:
            return None

    def _check_saved_probe(self, probe: Any) -> None:
        """The saved probe's grid within ``Limits`` before anything is computed on it (``num_q: 1e9`` would
        allocate 8 GB for the Q grid alone)."""
        if not isinstance(probe, dict):
            raise ValueError(f"probe: expected an object, got {probe!r}")
        n = probe.get("num_q")
        if n is not None and not (isinstance(n, int) and 2 <= n <= self.limits.max_q_points):
            raise ValueError(f"probe.num_q = {n!r} is outside 2..{self.limits.max_q_points} (Limits.max_q_points)")
        for key in ("q_min", "q_max"):
            q = probe.get(key)
            if q is not None and (isinstance(q, bool) or not isinstance(q, (int, float)) or q not in self.limits.q):
                raise ValueError(
                    f"probe.{key} = {q!r} is outside {self.limits.q.lo:g}..{self.limits.q.hi:g} Å⁻¹ (Limits.q)"
                )

    def save_settings(self) -> Path:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        data = {"version": SETTINGS_VERSION, **self.stack.to_dict(), "panels": self.settings}
        path = write_text_atomic(self.workspace.settings_path, json.dumps(data, indent=1))
        self._seen_mtime = self._settings_mtime()
        return path

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
        self.stack.reset()
        self.save_settings()


def saved_setting_specs(*, train: bool = True) -> dict[str, dict[str, FieldSpec]]:
    """The typed fields behind each group of saved panel settings, by dotted group name.

    ``generate`` holds the Generate panel's :class:`GeneratorConfig` fields and ``generate.realism`` its
    :class:`Realism`; ``train`` the :class:`TrainConfig` fields, the validation split and the model kind,
    ``train.models.<kind>`` each kind's settings (left out with ``train=False``).
    """
    groups = {"generate": field_specs(GeneratorConfig), "generate.realism": field_specs(Realism)}
    if train:
        groups.update(_train_specs())
    return {group: {s.name: s for s in fields} for group, fields in groups.items()}


def _train_specs() -> dict[str, list[FieldSpec]]:
    model = FieldSpec("model", "choice", "compact", choices=tuple(SETTINGS))
    return {
        "train": [*field_specs(TrainConfig), *field_specs(SplitSettings), model],
        **{f"train.models.{kind}": field_specs(cls) for kind, cls in SETTINGS.items()},
    }


def _checked(group: str, values: dict[str, Any], specs: dict[str, dict[str, FieldSpec]], problems: list[str]) -> dict:
    """``values`` without the entries that do not fit their typed field (each named in ``problems``)."""
    fields = specs.get(group, {})
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{group}.{key}"
        nested = any(g == name or g.startswith(f"{name}.") for g in specs)
        if nested:
            if isinstance(value, dict):
                out[key] = _checked(name, value, specs, problems)
            else:
                problems.append(f"{name} = {value!r} is not a group of settings; its defaults are used")
            continue
        spec = fields.get(key)
        if spec is not None:
            try:
                spec.clamp(value)
            except (ValueError, TypeError, OverflowError) as exc:
                said = str(exc) if isinstance(exc, ValueError) else f"{key} = {value!r} is not a {spec.kind}"
                problems.append(f"{group}.{said}; the default {spec.default!r} is used")
                continue
        out[key] = value
    return out

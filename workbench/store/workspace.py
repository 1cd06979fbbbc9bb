"""The workspace: one folder holding data sets, model bundles, run folders and the run registry.

    <root>/datasets/          generated data sets
    <root>/models/            model bundles
    <root>/runs/<run id>/     what a run owns: checkpoints, outputs (deleted with the run)
    <root>/registry.sqlite    runs, epochs, logs, checkpoints, data sets, models (WAL mode)
    <root>/settings.json      the UI's autosaved stack / probe / settings

The root is ``$WORKBENCH_HOME`` when set, else the ``workspace`` key of the user's config file
(``$XDG_CONFIG_HOME/workbench/config.yaml``, default ``~/.config/workbench/config.yaml``), else
``~/.workbench``; a notebook, the CLI (``--workspace``) or a sweep may pass another folder.
"""

from __future__ import annotations

import os
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .registry import Registry

if TYPE_CHECKING:
    from .registry import Registry

ENV_VAR = "WORKBENCH_HOME"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def config_path() -> Path:
    """The user's workbench config file (YAML)."""
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".config") / "workbench" / "config.yaml"


def _configured_root() -> Path | None:
    path = config_path()
    if not path.is_file():
        return None

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: cannot read the workbench config ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping such as 'workspace: /data/me/workbench'")
    value = data.get("workspace")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{path}: 'workspace' must be a folder path, got {value!r}")
    return Path(os.path.expandvars(value.strip())).expanduser()


def default_root() -> Path:
    """``$WORKBENCH_HOME`` if set (and not empty), else the config file's ``workspace``, else ``~/.workbench``."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        return Path(env).expanduser()
    return _configured_root() or Path.home() / ".workbench"


def check_run_id(run_id: str) -> str:
    """A run id is one path component (letters, digits, ``._-``): it names a folder under ``runs/``."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or run_id in (".", ".."):
        raise ValueError(f"invalid run id {run_id!r}: expected letters, digits, '.', '_' or '-' (no slashes)")
    return run_id


class Workspace:
    """A workspace folder; created on first use."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = (Path(root).expanduser() if root is not None else default_root()).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.datasets = self.root / "datasets"
        self.models = self.root / "models"
        self.runs = self.root / "runs"
        self.db_path = self.root / "registry.sqlite"
        self.settings_path = self.root / "settings.json"
        for folder in (self.datasets, self.models, self.runs):
            folder.mkdir(exist_ok=True)

    @classmethod
    def default(cls) -> Workspace:
        return cls(None)

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.db_path, workspace_root=self.root)

    def run_dir(self, run_id: str) -> Path:
        """``runs/<run_id>``, created."""
        path = self.runs / check_run_id(run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"

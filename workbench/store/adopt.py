"""Bring a model bundle made elsewhere (pulled from the Hub, uploaded in the browser) into a workspace.

The bundle is checked by loading it, copied atomically under ``<workspace>/models/`` (a free folder
name, never over an existing model) and registered like a trained model, so the Predict tab, the
History tab and ``workbench runs`` see it.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..fileio import copy_folder_atomic, free_path, safe_name
from .model_bundle import load_model_bundle
from .workspace import Workspace

TARGET_OF_TASK = {"nr_sld": "sld", "nr_params": "params", "chi": "chi"}


def register_bundle(workspace: Workspace, folder: str | os.PathLike, *, hub: str | None = None) -> int:
    """Register the bundle in ``folder`` under its folder name (next version); returns the version.

    It becomes the active model of its target when that target has none yet.
    """
    folder = Path(folder).resolve()
    bundle = load_model_bundle(folder)
    target = TARGET_OF_TASK.get(bundle.task)
    if target is None:
        raise ValueError(f"{folder}: unknown task {bundle.task!r} (expected one of {', '.join(TARGET_OF_TASK)})")
    dataset = (bundle.config.get("data") or {}).get("dataset") or {}
    registry = workspace.registry
    version = registry.register_model(folder.name, None, target=target, path=folder, metrics={"test": bundle.metrics},
                                      dataset_hash=dataset.get("content_hash"),
                                      active=registry.active_model(target) is None)
    if hub:
        registry.set_model_hub(folder.name, version, hub)
    return version


def adopt_bundle(workspace: Workspace, source: str | os.PathLike, *, name: str | None = None,
                 hub: str | None = None) -> tuple[Path, int]:
    """Copy the bundle folder ``source`` into the workspace's models and register it.

    Returns the new folder and its registry version. ``source`` is loaded first: a folder that is not
    a valid bundle raises before anything is written.
    """
    source = Path(source)
    bundle = load_model_bundle(source)
    folder = free_path(workspace.models, safe_name(name or bundle.name or source.name, "model"))
    copy_folder_atomic(source, folder)
    return folder, register_bundle(workspace, folder, hub=hub)

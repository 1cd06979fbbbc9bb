"""Bring a model made elsewhere (pulled from the Hub, uploaded in the browser, trained in pyreflect) into a workspace.

The bundle is checked by loading it, copied atomically under ``<workspace>/models/`` (a free folder
name, never over an existing model) and registered like a trained model, so the Predict tab, the
History tab and ``workbench runs`` see it.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from ..fileio import copy_folder_atomic, free_path, safe_name
from ..limits import Limits
from ..physics.probe import DEFAULT_DQ_OVER_Q_FWHM
from .model_bundle import BundleError, ModelBundle, load_model_bundle, read_bundle_info
from .pyreflect_import import bundle_from_pyreflect
from .workspace import Workspace

TARGET_OF_TASK = {"nr_sld": "sld", "nr_params": "params", "chi": "chi"}


def register_bundle(workspace: Workspace, folder: str | os.PathLike, *, hub: str | None = None) -> int:
    """Register the bundle in ``folder`` under its folder name (next version); returns the version.

    It becomes the active model of its target when that target has none yet.
    """
    folder = Path(folder).resolve()
    config, metrics = read_bundle_info(folder)
    target = TARGET_OF_TASK.get(config.get("task"))
    if target is None:
        expected = ", ".join(TARGET_OF_TASK)
        raise BundleError(f"{folder}: unknown task {config.get('task')!r} (expected one of {expected})")
    dataset = (config.get("data") or {}).get("dataset") or {}
    registry = workspace.registry
    version = registry.register_model(
        folder.name,
        None,
        target=target,
        path=folder,
        metrics={"test": metrics},
        dataset_hash=dataset.get("content_hash"),
        active=registry.active_model(target) is None,
    )
    if hub:
        registry.set_model_hub(folder.name, version, hub)
    return version


def adopt_bundle(
    workspace: Workspace,
    source: str | os.PathLike,
    *,
    name: str | None = None,
    hub: str | None = None,
    bundle: ModelBundle | None = None,
) -> tuple[Path, int]:
    """Copy the bundle folder ``source`` into the workspace's models and register it.

    Returns the new folder and its registry version. ``source`` is loaded first (unless the caller
    passes it already loaded as ``bundle``): a folder that is not a valid bundle raises before
    anything is written.
    """
    source = Path(source)
    bundle = bundle or load_model_bundle(source)
    folder = free_path(workspace.models, safe_name(name or bundle.name or source.name, "model"))
    copy_folder_atomic(source, folder)
    return folder, register_bundle(workspace, folder, hub=hub)


def import_pyreflect(
    workspace: Workspace,
    weights: str | os.PathLike,
    stats: str | os.PathLike | dict,
    *,
    q: Any = None,
    dq_over_q: float = DEFAULT_DQ_OVER_Q_FWHM,
    name: str | None = None,
) -> tuple[Path, int]:
    """pyreflect's trained CNN + its normalisation statistics → a registered bundle in the workspace.

    Named after ``name`` or the weights file; returns the folder and its registry version.  Weights or
    statistics that are not pyreflect's raise :class:`BundleError` naming the file (torch's loader raises
    RuntimeError, UnpicklingError, EOFError, ... on damaged files).
    """
    limits = Limits.from_env()
    size = Path(weights).stat().st_size
    if size > limits.max_model_bytes:
        raise BundleError(f"{weights}: {size / 2**20:.0f} MiB, above Limits.max_model_bytes")
    folder = free_path(workspace.models, safe_name(name or Path(weights).stem, "pyreflect-model"))
    try:
        bundle_from_pyreflect(weights, stats, folder, q=q, dq_over_q=dq_over_q, name=folder.name)
    except BundleError:
        raise
    except (ValueError, RuntimeError, EOFError, pickle.UnpicklingError, KeyError, IndexError, TypeError) as exc:
        raise BundleError(
            f"{weights}: not pyreflect CNN weights that fit these statistics ({str(exc)[:300]})"
        ) from None
    return folder, register_bundle(workspace, folder)

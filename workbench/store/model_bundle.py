"""Model bundles: a trained model as a folder of safetensors and JSON — never a pickle.

    model.safetensors   the weights
    config.json         architecture, task, hyperparameters, Q grid and probe, data set reference
    normalization.json  the preprocessing and the fitted normalisers of inputs and targets
    metrics.json        held-out test metrics in physical units
    history.json        per-epoch losses
    README.md           a short model card

A bundle is written into a temporary folder beside the target and renamed into place, so a
half-written bundle never appears under the real name and an existing one is never damaged.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..fileio import replace_folder
from ..models import build_model, count_parameters
from ..versions import package_versions

FORMAT = "workbench-model/1"
FILES = ("model.safetensors", "config.json", "normalization.json", "metrics.json", "history.json", "README.md")


class BundleError(ValueError):
    """A model bundle is missing a file or is inconsistent; the message names the file."""


@dataclass
class ModelBundle:
    """A loaded model (eval mode) with everything needed to use it on new data."""

    model: nn.Module
    config: dict[str, Any]
    normalization: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    path: Path | None = None
    inference: nn.Module | None = field(default=None, repr=False)  # frozen copy for fast CPU prediction

    @property
    def task(self) -> str:
        return self.config["task"]

    @property
    def name(self) -> str:
        return self.config.get("name") or (self.path.name if self.path else "model")


def _card(config: dict[str, Any], metrics: dict[str, Any], n_params: int) -> str:
    lines = [
        f"# {config.get('name', 'workbench model')}",
        "",
        f"- task: **{config['task']}**; architecture: `{config['model']['kind']}` ({n_params:,} parameters)",
        f"- trained with workbench {config['versions'].get('workbench')}, torch {config['versions'].get('torch')} on "
        f"{config['created']}",
    ]
    ds = config.get("data", {}).get("dataset") or {}
    if ds:
        lines.append(f"- data set: {ds.get('curves', '?')} curves, content hash `{str(ds.get('content_hash'))[:16]}`")
    train = config.get("train", {})
    if train:
        lines.append(
            f"- training: {train.get('optimizer')} lr {train.get('learning_rate')}, batch {train.get('batch_size')}, "
            f"{train.get('epochs')} epochs"
        )
    lines += ["", "## Test metrics (physical units)", ""]
    for key, value in metrics.items():
        if isinstance(value, float):
            lines.append(f"- {key}: {value:.6g}")
        elif isinstance(value, dict):
            lines.append(
                f"- {key}: "
                + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in value.items())
            )
    lines += [
        "",
        "Load with `workbench.store.model_bundle.load_model_bundle(path)` (safetensors + JSON, no pickle).",
        "",
    ]
    return "\n".join(lines)


def save_model_bundle(
    folder: str | os.PathLike,
    model: nn.Module,
    *,
    task: str,
    normalization: dict[str, Any],
    data: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    history: list[dict[str, Any]] | None = None,
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a bundle atomically; refuses to replace an existing one unless ``overwrite``."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} already exists and is not empty; choose another name or pass overwrite=True")
    folder.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "format": FORMAT,
        "name": name or folder.name,
        "task": task,
        "model": dict(getattr(model, "config", {})),
        "data": data or {},
        "train": train or {},
        "versions": package_versions(("workbench", "torch", "refl1d", "numpy")),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if "kind" not in config["model"]:
        raise BundleError(f"{type(model).__name__} has no config with a 'kind': it cannot be rebuilt from a bundle")
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        for fname, payload in (
            ("config.json", config),
            ("normalization.json", normalization),
            ("metrics.json", metrics or {}),
            ("history.json", history or []),
        ):
            (tmp / fname).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        (tmp / "README.md").write_text(_card(config, metrics or {}, count_parameters(model)), encoding="utf-8")
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing (a model bundle needs {', '.join(FILES[:3])})") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path}: invalid JSON ({exc})") from exc


def read_bundle_info(folder: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """config.json and metrics.json of a bundle, checked, without building the model or reading weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a model bundle folder")
    config = _read_json(folder / "config.json")
    if config.get("format") != FORMAT:
        raise BundleError(f"{folder / 'config.json'}: unknown format {config.get('format')!r} (expected {FORMAT})")
    metrics = _read_json(folder / "metrics.json") if (folder / "metrics.json").exists() else {}
    return config, metrics


def load_model_bundle(folder: str | os.PathLike, *, device: str | torch.device = "cpu") -> ModelBundle:
    """Rebuild the model from config.json and load its safetensors weights (eval mode)."""
    folder = Path(folder)
    config, metrics = read_bundle_info(folder)
    normalization = _read_json(folder / "normalization.json")
    history = _read_json(folder / "history.json") if (folder / "history.json").exists() else []
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise BundleError(f"{weights}: missing")
    model = build_model(config["model"])
    try:
        model.load_state_dict(load_file(str(weights)))
    except RuntimeError as exc:
        raise BundleError(f"{weights}: weights do not fit the architecture in config.json ({str(exc)[:200]})") from exc
    model.to(device).eval()
    return ModelBundle(model, config, normalization, metrics, history, folder)

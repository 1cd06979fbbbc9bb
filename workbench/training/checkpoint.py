"""Checkpoints without pickle: tensors in one safetensors file, everything else as JSON metadata.

A checkpoint holds the model and optimizer state, the RNG state, the epoch (and batch) reached,
the loss history, the best validation loss and weights, and whatever the caller adds
(normalisation statistics, split indices, a reference to the exact data set).  It is written to
a temporary file and renamed, so a crash mid-write never corrupts the previous checkpoint.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

META_KEY = "workbench"


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for pid, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(pid), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, pid, name = key.split(".", 2)
            state.setdefault(int(pid), {})[name] = value
    for pid, values in meta.get("scalars", {}).items():
        state.setdefault(int(pid), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    meta: dict[str, Any],
    *,
    best_state: dict[str, torch.Tensor] | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint atomically; ``meta`` must be JSON-serialisable."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt_meta = None
    if optimizer is not None:
        opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
        tensors.update(opt_tensors)
    if best_state is not None:
        tensors.update({f"best.{k}": v.detach().cpu().contiguous() for k, v in best_state.items()})
    for k, v in (extra_tensors or {}).items():
        tensors[f"extra.{k}"] = v.detach().cpu().contiguous()
    blob = {"meta": meta, "optimizer": opt_meta}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={META_KEY: json.dumps(blob)})
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, Any], dict | None]:
    """(tensor groups {'model', 'best', 'extra', 'optim'}, meta, optimizer state dict or None)."""
    from safetensors import safe_open  # heavy (safetensors): imported on use

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here")
    with safe_open(str(path), framework="pt") as fh:
        header = fh.metadata() or {}
    if META_KEY not in header:
        raise ValueError(f"{path}: not a workbench checkpoint (no '{META_KEY}' metadata)")
    blob = json.loads(header[META_KEY])
    tensors = load_file(str(path))
    groups: dict[str, dict[str, torch.Tensor]] = {"model": {}, "best": {}, "extra": {}, "optim": {}}
    for key, value in tensors.items():
        group, name = key.split(".", 1)
        groups.setdefault(group, {})[name] = value
    optim = None
    if blob.get("optimizer") is not None:
        optim = _unflatten_optimizer({f"optim.{k}": v for k, v in groups["optim"].items()}, blob["optimizer"])
    return groups, blob["meta"], optim

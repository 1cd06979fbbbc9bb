"""A pyreflect-trained CNN (``.pth``) and its normalisation statistics as a workbench model bundle.

pyreflect saves the weights (``torch.save(model.state_dict())``) and, separately, the min/max it
normalised with (``np.save(path, {"nr": {"x": {...}, "y": {...}}, "sld": {...}})``, a pickled
``.npy``). Both are needed to predict: the network sees (log10 R − min) / (max − min) and returns
z and ρ rows scaled the same way. pyreflect's scaling is one global min-max per row, which is the
workbench's ``minmax`` normaliser, so the bundle predicts exactly what pyreflect would.

The statistics file is a pickle; it is read with an unpickler that builds only plain containers,
numbers and NumPy scalars/arrays, so a hostile upload cannot run code.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from ..data.preprocess import PreprocessConfig
from ..models.parity_cnn import load_pyreflect_state_dict
from ..physics.probe import DEFAULT_DQ_OVER_Q_FWHM
from .model_bundle import BundleError, save_model_bundle

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _DataOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a statistics file")


def read_pyreflect_stats(source: str | os.PathLike | bytes) -> dict[str, dict[str, dict[str, float]]]:
    """pyreflect's normalisation statistics: ``{"nr"|"sld": {"x"|"y": {"min", "max"}}}`` as floats.

    Raises :class:`BundleError` (a ``ValueError``) naming the file for anything else.
    """
    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    where = "the statistics" if isinstance(source, bytes) else str(source)
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            np.lib.format.read_array_header_1_0(f)
        else:
            np.lib.format.read_array_header_2_0(f)
        raw = _DataOnly(f).load()
    except pickle.UnpicklingError as exc:
        raise BundleError(f"{where}: not pyreflect normalisation statistics (a pickled .npy dict): {exc}") from None
    except Exception as exc:  # noqa: BLE001 - damaged bytes make header parsing and unpickling raise any kind
        # (TokenError, TypeError, MemoryError, OverflowError, SystemError, ... on 114 of 3,000 mutated files)
        raise BundleError(
            f"{where}: not pyreflect normalisation statistics (a pickled .npy dict): {type(exc).__name__}: "
            f"{str(exc)[:200]}"
        ) from None
    if isinstance(raw, np.ndarray) and raw.dtype == object and raw.shape == ():
        raw = raw.item()
    stats: dict[str, dict[str, dict[str, float]]] = {}
    for part in ("nr", "sld"):
        for axis in ("x", "y"):
            for k in ("min", "max"):
                value, path = raw, []
                for key in (part, axis, k):
                    path.append(key)
                    try:
                        value = value[key]
                    except (TypeError, KeyError, IndexError, ValueError, AttributeError):
                        raise BundleError(
                            f"{where}: expected {{'nr'|'sld': {{'x'|'y': {{'min', 'max'}}}}}}, missing "
                            f"'{'.'.join(path)}'"
                        ) from None
                stats.setdefault(part, {}).setdefault(axis, {})[k] = _stat_value(value, f"{where}: {part}.{axis}.{k}")
    for part, axes in stats.items():
        for axis, mm in axes.items():
            if not mm["max"] > mm["min"]:
                raise BundleError(f"{where}: {part}.{axis} needs finite min < max, got {mm}")
    return stats


def _stat_value(value: Any, what: str) -> float:
    """One statistic as a finite float (a Python or NumPy number, or a one-element array)."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "fiu":
        value = value.reshape(()).item()
    if isinstance(value, np.generic) and value.dtype.kind in "fiu":
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BundleError(f"{what} must be a number, got {type(value).__name__}")
    try:
        out = float(value)
    except OverflowError:
        raise BundleError(f"{what} is too large for a float") from None
    if not math.isfinite(out):
        raise BundleError(f"{what} needs finite min < max, got {out}")
    return out


def bundle_from_pyreflect(
    weights: str | os.PathLike,
    stats: str | os.PathLike | dict,
    dest: str | os.PathLike,
    *,
    q: np.ndarray | None = None,
    dq_over_q: float = DEFAULT_DQ_OVER_Q_FWHM,
    name: str | None = None,
) -> Path:
    """Write a workbench bundle (task ``nr_sld``) from pyreflect's weights and statistics.

    ``q`` is the model's Q grid; by default pyreflect's own: log-spaced between the statistics'
    Q min and max, as many points as the weights take. Raises ``ValueError`` naming what is wrong.
    """
    model = load_pyreflect_state_dict(weights)
    st = stats if isinstance(stats, dict) else read_pyreflect_stats(stats)
    n_q = int(model.config["n_q"])
    if q is None:
        q = np.logspace(math.log10(st["nr"]["x"]["min"]), math.log10(st["nr"]["x"]["max"]), n_q)
    q = np.asarray(q, dtype=np.float64).ravel()
    if q.size != n_q or not np.all(np.diff(q) > 0) or q[0] <= 0:
        raise ValueError(
            f"the Q grid must be {n_q} increasing positive values (the weights take {n_q} points), got {q.size}"
        )
    pre = PreprocessConfig(apply_log_transform=True, clip_min=1e-8, normalization="minmax", per_point=False)
    nr_y, sld = st["nr"]["y"], st["sld"]
    normalization = {
        "preprocess": pre.model_dump(mode="json"),
        "x": {"method": "minmax", "per_point": False, "stats": {"min": nr_y["min"], "max": nr_y["max"]}},
        "y": {
            "method": "minmax",
            "per_point": False,
            "stats": {"min": [sld["x"]["min"], sld["y"]["min"]], "max": [sld["x"]["max"], sld["y"]["max"]]},
        },
    }
    data = {
        "q": q.tolist(),
        "probe": {"dq_over_q": float(dq_over_q)},
        "sld_points": int(model.config["n_z"]),
        "source": {"pyreflect": {"weights": Path(weights).name, "stats": st}},
    }
    return save_model_bundle(
        dest, model, task="nr_sld", normalization=normalization, data=data, name=name or Path(weights).stem
    )

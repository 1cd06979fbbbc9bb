"""Model bundles: a trained model as a folder of safetensors and JSON — never a pickle.

    model.safetensors   the weights
    config.json         architecture, task, hyperparameters, Q grid and probe, data set reference
    normalization.json  the preprocessing and the fitted normalisers of inputs and targets
    metrics.json        held-out test metrics in physical units
    history.json        per-epoch losses
    README.md           a short model card

A bundle is written into a temporary folder beside the target and renamed into place, so a
half-written bundle never appears under the real name and an existing one is never damaged.

A bundle may come from a stranger (a browser upload, the Hub), so loading trusts nothing in it
before it is checked against :class:`~workbench.limits.Limits`: the JSON files' sizes, every size
in the model config (``max_model_dimension``), the parameter count of the architecture the config
describes (worked out on PyTorch's ``meta`` device, which allocates nothing) and the safetensors
header (tensor names, dtypes, shapes, byte offsets, total size) against that architecture.  Only
then is the model built and the weights read.  A 4.7 KB zip whose config asked for a 1000 × 1000
parity CNN used to cost 7 s and 2.3 GB before being refused; now it is refused in milliseconds.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..data.family import card_lines
from ..fileio import replace_folder, write_text_atomic
from ..limits import Limits
from ..models import MODEL_KINDS, build_model, count_parameters
from ..models.settings import SETTINGS, model_settings
from ..versions import package_versions

FORMAT = "workbench-model/1"
FILES = ("model.safetensors", "config.json", "normalization.json", "metrics.json", "history.json", "README.md")
TASKS = ("nr_sld", "nr_params", "chi")
# bytes per element of the safetensors dtypes (https://github.com/huggingface/safetensors, format.md)
_DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit on its JSON header


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
    lines += card_lines(config.get("data", {}).get("stack"))  # the stack or family and ranges trained for
    train = config.get("train", {})
    if train:
        lines.append(
            f"- training: {train.get('optimizer')} lr {train.get('learning_rate')}, batch {train.get('batch_size')}, "
            f"{train.get('epochs')} epochs"
        )
    run = train.get("run") or {}
    if run.get("kept_epoch") is not None:
        loss = run.get("best_val_loss")
        lines.append(
            f"- weights of epoch {run['kept_epoch']} of {run.get('epochs_done')}"
            + (f" (best validation loss {loss:.4g})" if isinstance(loss, float) else "")
            + f"; {run.get('stop_reason', '')}; {run.get('threads')} CPU threads, {run.get('seconds', 0):.0f} s"
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


def _read_json(path: Path, limits: Limits | None = None) -> Any:
    limits = limits or Limits.from_env()
    try:
        size = path.stat().st_size
        if size > limits.max_json_bytes:
            raise BundleError(
                f"{path}: {size / 2**20:.1f} MiB, above the limit of {limits.max_json_bytes / 2**20:.0f} MiB for a "
                "bundle's JSON file (Limits.max_json_bytes)"
            )
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing (a model bundle needs {', '.join(FILES[:3])})") from None
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BundleError(f"{path}: invalid JSON ({str(exc)[:200]})") from None
    except IsADirectoryError:
        raise BundleError(f"{path}: a folder, expected a JSON file") from None


def read_bundle_info(
    folder: str | os.PathLike, *, limits: Limits | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """config.json and metrics.json of a bundle, checked, without building the model or reading weights."""
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a model bundle folder")
    config = _read_json(folder / "config.json", limits)
    if not isinstance(config, dict):
        raise BundleError(f"{folder / 'config.json'}: expected a JSON object, got {type(config).__name__}")
    if config.get("format") != FORMAT:
        raise BundleError(f"{folder / 'config.json'}: unknown format {config.get('format')!r} (expected {FORMAT})")
    if config.get("task") not in TASKS:
        raise BundleError(
            f"{folder / 'config.json'}: unknown task {config.get('task')!r} (expected one of {', '.join(TASKS)})"
        )
    for key in ("data", "train", "versions"):
        if not isinstance(config.get(key, {}), dict):
            raise BundleError(f"{folder / 'config.json'}: '{key}' must be an object")
    metrics = _read_json(folder / "metrics.json", limits) if (folder / "metrics.json").exists() else {}
    if not isinstance(metrics, dict):
        raise BundleError(f"{folder / 'metrics.json'}: expected a JSON object, got {type(metrics).__name__}")
    return config, metrics


def check_model_config(model: Any, limits: Limits, where: str) -> dict[str, Any]:
    """A bundle's ``config["model"]`` checked against ``limits`` before anything is built (see the module docstring).

    Every size must be a whole number up to ``limits.max_model_dimension``; the chosen settings must be
    valid for the kind (:mod:`workbench.models.settings`).
    """
    if not isinstance(model, dict):
        raise BundleError(f"{where}: 'model' must be an object with a 'kind', got {type(model).__name__}")
    kind = model.get("kind")
    if kind not in MODEL_KINDS:
        raise BundleError(f"{where}: unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    cap = limits.max_model_dimension
    for key, value in model.items():
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and len(value) > 64:
            raise BundleError(f"{where}: model.{key} lists {len(value)} sizes; at most 64")
        for v in values:
            if isinstance(v, bool) or v is None:
                continue
            if isinstance(v, int) and not 0 <= v <= cap:
                raise BundleError(f"{where}: model.{key} = {v} is outside 0..{cap:,} (Limits.max_model_dimension)")
            if isinstance(v, float) and not math.isfinite(v):
                raise BundleError(f"{where}: model.{key} = {v} is not a finite number")
            if isinstance(v, str) and len(v) > 64:
                raise BundleError(f"{where}: model.{key} is {len(v)} characters long; expected a short name")
            if not isinstance(v, (int, float, str)):
                raise BundleError(f"{where}: model.{key} must be a number, a name or a list of sizes, got {v!r}")
    chosen = {k: v for k, v in model.items() if k in SETTINGS[kind].model_fields}
    try:
        model_settings(chosen)
    except ValueError as exc:
        raise BundleError(f"{where}: {exc}") from None
    return model


def read_safetensors_header(path: str | os.PathLike, limits: Limits) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name → (dtype, shape) from a safetensors file's header, every entry checked against the file.

    The header must be a JSON object whose entries' byte ranges tile the data exactly; the file must
    be at most ``limits.max_model_bytes`` and hold at most ``limits.max_model_parameters`` elements.
    Nothing beyond the header is read.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > limits.max_model_bytes:
        raise BundleError(
            f"{path}: {size / 2**20:.0f} MiB, above the limit of {limits.max_model_bytes / 2**20:.0f} MiB "
            "(Limits.max_model_bytes)"
        )
    with open(path, "rb") as fh:
        head = fh.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 2 <= n <= min(size - 8, MAX_HEADER_BYTES):
            raise BundleError(f"{path}: not a safetensors file (header length {n} in a {size}-byte file)")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise BundleError(f"{path}: damaged safetensors header ({str(exc)[:200]})") from None
    if not isinstance(header, dict):
        raise BundleError(f"{path}: damaged safetensors header (not a JSON object)")
    data_bytes = size - 8 - n
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(entry, dict) and set(entry) == {"dtype", "shape", "data_offsets"}):
            raise BundleError(f"{path}: tensor {name!r}: expected dtype, shape and data_offsets, got {entry!r}"[:300])
        dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        if dtype not in _DTYPE_BYTES:
            raise BundleError(f"{path}: tensor {name!r}: unknown dtype {dtype!r}")
        if not (isinstance(shape, list) and len(shape) <= 8 and all(_whole(d) for d in shape)):
            raise BundleError(f"{path}: tensor {name!r}: shape must be up to 8 sizes ≥ 0, got {shape!r}"[:300])
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_whole(o) for o in offsets)):
            raise BundleError(f"{path}: tensor {name!r}: data_offsets must be [begin, end], got {offsets!r}"[:300])
        begin, end = offsets
        if not begin <= end <= data_bytes or end - begin != math.prod(shape) * _DTYPE_BYTES[dtype]:
            raise BundleError(
                f"{path}: tensor {name!r}: shape {shape} of {dtype} does not fit bytes {begin}..{end} of the "
                f"{data_bytes}-byte data"
            )
        tensors[name] = (dtype, tuple(shape))
        spans.append((begin, end))
    covered = 0
    for begin, end in sorted(spans):
        if begin != covered:
            raise BundleError(f"{path}: the tensors' byte ranges overlap or leave gaps (at byte {begin})")
        covered = end
    if covered != data_bytes:
        raise BundleError(f"{path}: the tensors cover {covered} of the {data_bytes} data bytes")
    elements = sum(math.prod(shape) for _, shape in tensors.values())
    if elements > limits.max_model_parameters:
        raise BundleError(
            f"{path}: {elements:,} weights, above the limit of {limits.max_model_parameters:,} "
            "(Limits.max_model_parameters)"
        )
    return tensors


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def load_model_bundle(
    folder: str | os.PathLike, *, device: str | torch.device = "cpu", limits: Limits | None = None
) -> ModelBundle:
    """Rebuild the model from config.json and load its safetensors weights (eval mode), all checked first."""
    folder = Path(folder)
    limits = limits or Limits.from_env()
    config, metrics = read_bundle_info(folder, limits=limits)
    normalization = _read_json(folder / "normalization.json", limits)
    history = _read_json(folder / "history.json", limits) if (folder / "history.json").exists() else []
    if not isinstance(normalization, dict) or not isinstance(history, list):
        raise BundleError(f"{folder}: normalization.json must be an object and history.json a list")
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise BundleError(f"{weights}: missing")
    where = str(folder / "config.json")
    model_config = check_model_config(config.get("model"), limits, where)
    tensors = read_safetensors_header(weights, limits)
    try:
        with torch.device("meta"):  # the architecture's shapes, without allocating its weights
            skeleton = build_model(model_config)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise BundleError(f"{where}: cannot build a {model_config['kind']} model from it ({exc})") from None
    n_params = count_parameters(skeleton)
    if n_params > limits.max_model_parameters:
        raise BundleError(
            f"{where}: the {model_config['kind']} model it describes has {n_params:,} parameters, above the limit "
            f"of {limits.max_model_parameters:,} (Limits.max_model_parameters)"
        )
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise BundleError(
            f"{weights}: weights do not fit the architecture in config.json (missing {missing[:3]}, "
            f"unexpected {extra[:3]})"
        )
    for name, shape in expected.items():
        if tensors[name][1] != shape:
            raise BundleError(
                f"{weights}: tensor {name!r} has shape {list(tensors[name][1])}, the architecture in config.json "
                f"needs {list(shape)}"
            )
    model = build_model(model_config)
    try:
        model.load_state_dict(load_file(str(weights)))
    except Exception as exc:  # safetensors raises its own SafetensorError, torch a RuntimeError
        raise BundleError(f"{weights}: weights do not fit the architecture in config.json ({str(exc)[:200]})") from exc
    model.to(device).eval()
    return ModelBundle(model, config, normalization, metrics, history, folder)


# ---------------------------------------------------------------------------- ensembles
ENSEMBLE_FORMAT = "workbench-ensemble/1"
ENSEMBLE_FILE = "ensemble.json"
MAX_MEMBERS = 32  # an ensemble's members are loaded together; a stranger's manifest cannot ask for more


@dataclass
class Ensemble:
    """K model bundles trained on one data set and split with different seeds, loaded together.

    On disk: ``ensemble.json`` (format, member folder names, calibration) beside the member bundle
    folders.  It answers ``config``, ``normalization``, ``task``, ``name`` and ``path`` like a
    :class:`ModelBundle` (those of its first member: all share the data, split and normalisers),
    so :func:`workbench.analysis.predict.predict` gives the members' mean prediction.
    """

    members: list[ModelBundle]
    info: dict[str, Any]
    path: Path | None = None

    @property
    def config(self) -> dict[str, Any]:
        return self.members[0].config

    @property
    def normalization(self) -> dict[str, Any]:
        return self.members[0].normalization

    @property
    def task(self) -> str:
        return self.members[0].task

    @property
    def name(self) -> str:
        return self.info.get("name") or (self.path.name if self.path else "ensemble")

    @property
    def calibration(self) -> dict[str, Any]:
        return self.info.get("calibration") or {}


def is_ensemble(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds an ensemble (an ``ensemble.json``), without reading it."""
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def write_ensemble_info(folder: str | os.PathLike, info: dict[str, Any]) -> Path:
    """Write ``ensemble.json`` (atomically) into a folder that already holds the member bundles."""
    payload = {"format": ENSEMBLE_FORMAT, **info}
    return write_text_atomic(Path(folder) / ENSEMBLE_FILE, json.dumps(payload, indent=2) + "\n")


def read_ensemble_info(folder: str | os.PathLike, *, limits: Limits | None = None) -> dict[str, Any]:
    """``ensemble.json`` checked: its format, 2..MAX_MEMBERS member folders named inside it, finite calibration."""
    folder = Path(folder)
    manifest = folder / ENSEMBLE_FILE
    if not manifest.is_file():
        raise BundleError(
            f"{folder}: not an ensemble (no {ENSEMBLE_FILE}); train one with `workbench ensemble` or "
            "workbench.workflows.ensemble.run_ensemble"
        )
    info = _read_json(manifest, limits)
    if not isinstance(info, dict) or info.get("format") != ENSEMBLE_FORMAT:
        got = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise BundleError(f"{manifest}: unknown format {got!r} (expected {ENSEMBLE_FORMAT})")
    members = info.get("members")
    if not isinstance(members, list) or not 2 <= len(members) <= MAX_MEMBERS:
        raise BundleError(f"{manifest}: 'members' must list 2 to {MAX_MEMBERS} member folders, got {members!r}"[:300])
    for name in members:
        if not isinstance(name, str) or not name or name != Path(name).name or name.startswith("."):
            raise BundleError(f"{manifest}: member {name!r} must be the name of a folder inside the ensemble"[:300])
    factors = (info.get("calibration") or {}).get("factors") or {}
    for level, values in factors.items():
        flat = values if isinstance(values, list) else [values]
        if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in flat):
            raise BundleError(f"{manifest}: calibration factor of {level!r} must be positive numbers, got {values!r}")
    return info


def load_ensemble(
    folder: str | os.PathLike, *, device: str | torch.device = "cpu", limits: Limits | None = None
) -> Ensemble:
    """Load an ensemble's members (each checked as :func:`load_model_bundle` does) and check they belong together:
    one task, one data set (content hash), one Q grid and the same preprocessing and split.  Members trained on
    the fly each drew their own stream (and fitted their normalisers on it), so they share instead one sample
    family (the generation stack), one Q grid and the same preprocessing but for its seed."""
    folder = Path(folder)
    info = read_ensemble_info(folder, limits=limits)
    members = [load_model_bundle(folder / name, device=device, limits=limits) for name in info["members"]]
    first = members[0]
    on_the_fly = all(m.config.get("data", {}).get("on_the_fly") for m in members)
    shared = (
        (
            ("sample family", lambda b: b.config.get("data", {}).get("stack")),
            (
                "preprocessing",
                lambda b: {k: v for k, v in b.normalization.get("preprocess", {}).items() if k != "seed"},
            ),
        )
        if on_the_fly
        else (
            ("data set", lambda b: (b.config.get("data", {}).get("dataset") or {}).get("content_hash")),
            ("preprocessing and split", lambda b: b.normalization.get("preprocess")),
        )
    )
    for m in members[1:]:
        for what, get in (
            ("task", lambda b: b.task),
            *shared,
            ("Q grid", lambda b: b.config.get("data", {}).get("q")),
            ("parameters", lambda b: b.normalization.get("y", {}).get("names")),
        ):
            if get(m) != get(first):
                raise BundleError(
                    f"{m.path}: its {what} differs from {first.path}'s; the members of an ensemble share it"
                )
    return Ensemble(members, info, folder)


def load_model(folder: str | os.PathLike, **kw: Any) -> ModelBundle | Ensemble:
    """A model bundle or an ensemble, whichever ``folder`` holds."""
    return load_ensemble(folder, **kw) if is_ensemble(folder) else load_model_bundle(folder, **kw)

"""Model bundles, training data and checkpoints on the Hugging Face Hub (or a facility mirror).

Layout in a Hub repository (model or dataset type, private by default):
    models/<model id>/          a model bundle (safetensors weights, config.json, normalization.json,
                                metrics.json, history.json, README.md card with the test metrics) and,
                                when given, nr_train.npy / sld_train.npy (+ dataset.json) of its data set
    datasets/<key>/             a generated data set, uploaded right after generation; <key> is
                                derived from the generator settings so a retry finds and reuses it
    checkpoints/<run>/checkpoint.safetensors
                                the latest training checkpoint (each upload is a commit)

* ``HF_ENDPOINT`` (a facility mirror) and ``HF_HUB_OFFLINE=1`` (load from the cache only) are read
  when a function is called, not when ``huggingface_hub`` was imported; ``endpoint=`` overrides.
* Tokens come only from the environment (``HF_TOKEN``) or ``huggingface_hub``'s login: nothing
  here accepts a token to store, and nothing written (bundles, logs, registry) contains one.
* A failed upload keeps the local copy, says so (a ``Warning_`` event and the error message) and is
  retried with exponential backoff first.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from ..data.dataset import FORMAT, load_dataset
from ..data.generate import generate_to_disk
from ..events import Event, Log, Reporter, Warning_, log
from ..fileio import copy_folder_atomic
from .model_bundle import load_model_bundle
from .registry import Registry, redact

STAGE = "hub"
MODELS, DATASETS, CHECKPOINTS = "models", "datasets", "checkpoints"
DATASET_FILES = ("nr_train.npy", "sld_train.npy", "dataset.json")
_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


class HubError(RuntimeError):
    """Something on the Hub is missing or unreachable; the message says what and where."""


class HubUploadError(HubError):
    """An upload failed after its retries; the local copy is kept (``local``)."""

    def __init__(self, message: str, local: Path | None = None) -> None:
        super().__init__(message)
        self.local = local


@dataclass(frozen=True)
class HubRef:
    """A folder or file in a Hub repository at a revision: ``model:user/repo:models/x@<commit>``."""

    repo_id: str
    repo_type: str
    path: str
    revision: str | None = None

    def __str__(self) -> str:
        return f"{self.repo_type}:{self.repo_id}:{self.path}" + (f"@{self.revision}" if self.revision else "")

    @classmethod
    def parse(cls, text: str) -> HubRef:
        body, _, revision = text.partition("@")
        parts = body.split(":", 2)
        if len(parts) != 3 or parts[0] not in ("model", "dataset"):
            raise ValueError(f"{text!r} is not a Hub reference like 'model:user/repo:models/name@revision'")
        return cls(parts[1], parts[0], parts[2], revision or None)


# ---------------------------------------------------------------------------- settings read at call time
def hub_endpoint(endpoint: str | None = None) -> str | None:
    """``endpoint``, else ``$HF_ENDPOINT``, else None (huggingface.co)."""
    value = endpoint or os.environ.get("HF_ENDPOINT", "").strip()
    return value.rstrip("/") if value else None


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set to 1/true/yes/on (checked at call time)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _cache_dir(cache_dir: str | os.PathLike | None) -> str | None:
    if cache_dir is not None:
        return str(cache_dir)
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(name):
            return os.environ[name]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def _api(endpoint: str | None):
    from huggingface_hub import HfApi  # heavy (huggingface_hub): imported on use

    return HfApi(endpoint=hub_endpoint(endpoint))  # token: HF_TOKEN or the saved login, looked up per request


def _component(name: str, what: str) -> str:
    if not _COMPONENT.match(name or ""):
        raise ValueError(f"{what} {name!r} must be one path component of letters, digits, '.', '_' or '-'")
    return name


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}")[:300]


def _emit_warning(reporter: Reporter | None, message: str) -> None:
    if reporter is not None:
        reporter.emit(Warning_(STAGE, message))
    else:
        log.warning(message)


def _transient(exc: BaseException) -> bool:
    """Worth retrying: server errors, rate limits, timeouts, dropped connections."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled  # heavy (huggingface_hub): imported on use

    if isinstance(exc, OfflineModeIsEnabled):
        return False
    if isinstance(exc, HfHubHTTPError):
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return status is None or status in (408, 429) or status >= 500
    return isinstance(exc, (ConnectionError, TimeoutError)) or type(exc).__module__.split(".")[0] in ("httpx", "httpx2")


def with_retries(
    fn: Callable[[], Any],
    *,
    what: str,
    local: Path | None = None,
    attempts: int = 4,
    base_delay: float = 1.0,
    reporter: Reporter | None = None,
) -> Any:
    """Call ``fn``; on a transient failure wait ``base_delay · 2^k`` s and try again, ``attempts`` times in all.

    The last failure raises :class:`HubUploadError` saying that the local copy is kept.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            kept = f"; the local copy is kept at {local}" if local is not None else ""
            if not _transient(exc) or attempt == attempts:
                message = f"{what} failed after {attempt} attempt{'s' if attempt > 1 else ''} ({_short(exc)}){kept}"
                _emit_warning(reporter, message)
                raise HubUploadError(message, local) from exc
            delay = base_delay * 2 ** (attempt - 1)
            _emit_warning(
                reporter, f"{what} failed (attempt {attempt} of {attempts}: {_short(exc)}); retrying in {delay:.3g} s"
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def _commit_files(
    files: dict[str, Path],
    repo_id: str,
    *,
    repo_type: str,
    private: bool,
    revision: str | None,
    endpoint: str | None,
    message: str,
) -> str:
    """Create the repo if needed and commit ``{path in repo: local file}``; returns the commit id."""
    from huggingface_hub import CommitOperationAdd  # heavy (huggingface_hub): imported on use

    api = _api(endpoint)
    api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    ops = [CommitOperationAdd(path_in_repo=p, path_or_fileobj=str(f)) for p, f in sorted(files.items())]
    info = api.create_commit(repo_id, ops, commit_message=message, repo_type=repo_type, revision=revision)
    return str(info.oid)


def _snapshot(
    repo_id: str,
    pattern: str,
    *,
    repo_type: str,
    revision: str | None,
    endpoint: str | None,
    cache_dir: str | os.PathLike | None,
    local_only: bool | None,
    what: str,
) -> Path:
    from huggingface_hub import snapshot_download  # heavy (huggingface_hub): imported on use
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )  # heavy (huggingface_hub): imported on use

    offline = hub_offline() if local_only is None else local_only
    where = f"{repo_type} repo {repo_id} at revision {revision or 'main'}"
    try:
        root = snapshot_download(
            repo_id,
            repo_type=repo_type,
            revision=revision,
            allow_patterns=[pattern],
            cache_dir=_cache_dir(cache_dir),
            endpoint=hub_endpoint(endpoint),
            local_files_only=offline,
        )
    except RepositoryNotFoundError as exc:
        raise HubError(
            f"{where}: repository not found (or private and no token: set HF_TOKEN or run `hf auth login`)"
        ) from exc
    except LocalEntryNotFoundError as exc:
        hint = (
            "HF_HUB_OFFLINE=1 and it is not in the local cache; download it once online"
            if offline
            else f"the Hub ({hub_endpoint(endpoint) or 'huggingface.co'}) cannot be reached and it is not cached"
        )
        raise HubError(f"{what} from {where}: {hint}") from exc
    except HfHubHTTPError as exc:
        raise HubError(f"{what} from {where}: {_short(exc)}") from exc
    return Path(root)


# ---------------------------------------------------------------------------- model bundles
def push_model_bundle(
    bundle: str | os.PathLike,
    repo_id: str,
    *,
    model_id: str | None = None,
    dataset: str | os.PathLike | None = None,
    repo_type: str = "model",
    private: bool = True,
    revision: str | None = None,
    endpoint: str | None = None,
    reporter: Reporter | None = None,
    attempts: int = 4,
    base_delay: float = 1.0,
) -> HubRef:
    """Upload a model bundle to ``models/<model_id>/`` (with its data set's NR/SLD arrays when ``dataset``).

    Returns the reference with the commit id; raises :class:`HubUploadError` (local copy kept) when
    every attempt failed.
    """
    bundle = Path(bundle)
    if not (bundle / "config.json").is_file() or not (bundle / "model.safetensors").is_file():
        raise ValueError(f"{bundle}: not a model bundle (needs config.json and model.safetensors)")
    model_id = _component(model_id or bundle.name, "model id")
    prefix = f"{MODELS}/{model_id}"
    files = {f"{prefix}/{f.name}": f for f in sorted(bundle.iterdir()) if f.is_file() and not f.name.startswith(".")}
    if dataset is not None:
        ds = Path(dataset)
        missing = [n for n in DATASET_FILES[:2] if not (ds / n).is_file()]
        if missing:
            raise ValueError(f"{ds}: not a data set folder (missing {', '.join(missing)})")
        files.update({f"{prefix}/{n}": ds / n for n in DATASET_FILES if (ds / n).is_file()})
    oid = with_retries(
        lambda: _commit_files(
            files,
            repo_id,
            repo_type=repo_type,
            private=private,
            revision=revision,
            endpoint=endpoint,
            message=f"Upload model {model_id}",
        ),
        what=f"upload of model bundle {bundle.name} to {repo_id}",
        local=bundle,
        attempts=attempts,
        base_delay=base_delay,
        reporter=reporter,
    )
    if reporter is not None:
        reporter.log(STAGE, f"pushed {bundle} to {repo_type} repo {repo_id}/{prefix} (commit {oid[:10]})")
    return HubRef(repo_id, repo_type, prefix, oid)


def pull_model_bundle(
    repo_id: str,
    model_id: str,
    *,
    revision: str | None = None,
    repo_type: str = "model",
    dest: str | os.PathLike | None = None,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_only: bool | None = None,
) -> Path:
    """Download ``models/<model_id>/`` at ``revision`` (branch, tag or commit) and return the bundle folder.

    The files land in the Hugging Face cache (so ``HF_HUB_OFFLINE=1`` later loads them from there);
    with ``dest`` they are also copied into that folder, which is returned instead.
    """
    model_id = _component(model_id, "model id")
    root = _snapshot(
        repo_id,
        f"{MODELS}/{model_id}/*",
        repo_type=repo_type,
        revision=revision,
        endpoint=endpoint,
        cache_dir=cache_dir,
        local_only=local_only,
        what=f"model {model_id}",
    )
    folder = root / MODELS / model_id
    if not (folder / "config.json").is_file():
        found = sorted(p.name for p in (root / MODELS).iterdir()) if (root / MODELS).is_dir() else []
        where = f"{repo_type} repo {repo_id} at revision {revision or 'main'}"
        if hub_offline() if local_only is None else local_only:
            raise HubError(
                f"model {model_id} from {where}: HF_HUB_OFFLINE=1 and it is not in the local cache"
                + (f" (cached: {', '.join(found)})" if found else "")
                + "; download it once online"
            )
        raise HubError(
            f"{where} has no model bundle {MODELS}/{model_id}/" + (f" (it has {', '.join(found)})" if found else "")
        )
    return copy_folder_atomic(folder, Path(dest)) if dest is not None else folder


def load_hub_model(repo_id: str, model_id: str, **kwargs: Any):
    """:func:`pull_model_bundle` then :func:`~workbench.store.model_bundle.load_model_bundle`."""

    return load_model_bundle(pull_model_bundle(repo_id, model_id, **kwargs))


# ---------------------------------------------------------------------------- training data
def dataset_key(stack: Any, config: Any) -> str:
    """A key for the data set that ``generate_to_disk(stack, config)`` writes (same settings → same key).

    A sample family's ties change what is drawn, so they are part of the key (a stack without ties keeps
    the key it always had)."""

    spec = {
        "format": FORMAT,
        "generator": config.model_dump(mode="json"),
        "layer_desc": stack.to_layer_desc(),
        "layer_bound": stack.to_layer_bound(),
    }
    ties = [t.model_dump(mode="json") for t in getattr(stack, "ties", None) or []]
    if ties:
        spec["ties"] = ties
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:24]


def upload_dataset(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    key: str | None = None,
    repo_type: str = "dataset",
    private: bool = True,
    endpoint: str | None = None,
    reporter: Reporter | None = None,
    attempts: int = 4,
    base_delay: float = 1.0,
) -> HubRef:
    """Upload a data-set folder to ``datasets/<key>/`` (key: its content hash unless given)."""
    folder = Path(folder)
    meta_path = folder / "dataset.json"
    if not meta_path.is_file():
        raise ValueError(f"{folder}: not a generated data set (no dataset.json)")
    key = _component(key or json.loads(meta_path.read_text())["content_hash"], "data set key")
    prefix = f"{DATASETS}/{key}"
    files = {
        f"{prefix}/{f.name}": f
        for f in sorted(folder.iterdir())
        if f.is_file() and not f.name.startswith(".") and f.suffix in (".npy", ".json")
    }
    oid = with_retries(
        lambda: _commit_files(
            files,
            repo_id,
            repo_type=repo_type,
            private=private,
            revision=None,
            endpoint=endpoint,
            message=f"Upload training data {key}",
        ),
        what=f"upload of training data {folder.name} to {repo_id}",
        local=folder,
        attempts=attempts,
        base_delay=base_delay,
        reporter=reporter,
    )
    if reporter is not None:
        reporter.log(
            STAGE, f"uploaded training data {folder} to {repo_type} repo {repo_id}/{prefix} (commit {oid[:10]})"
        )
    return HubRef(repo_id, repo_type, prefix, oid)


def find_dataset(repo_id: str, key: str, *, repo_type: str = "dataset", endpoint: str | None = None) -> bool:
    """True when ``datasets/<key>/dataset.json`` is in the repository (False when the repo or folder is absent)."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        RepositoryNotFoundError,
    )  # heavy (huggingface_hub): imported on use

    try:
        entries = _api(endpoint).list_repo_tree(
            repo_id, path_in_repo=f"{DATASETS}/{key}", repo_type=repo_type, recursive=True
        )
        return any(getattr(e, "path", "") == f"{DATASETS}/{key}/dataset.json" for e in entries)
    except (RepositoryNotFoundError, EntryNotFoundError):
        return False


def download_dataset(
    repo_id: str,
    key: str,
    dest: str | os.PathLike,
    *,
    repo_type: str = "dataset",
    revision: str | None = None,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_only: bool | None = None,
) -> Path:
    """Download ``datasets/<key>/`` into ``dest`` and check its content hash."""

    root = _snapshot(
        repo_id,
        f"{DATASETS}/{_component(key, 'data set key')}/*",
        repo_type=repo_type,
        revision=revision,
        endpoint=endpoint,
        cache_dir=cache_dir,
        local_only=local_only,
        what=f"training data {key}",
    )
    folder = root / DATASETS / key
    if not (folder / "dataset.json").is_file():
        raise HubError(f"{repo_type} repo {repo_id} has no training data {DATASETS}/{key}/")
    out = copy_folder_atomic(folder, Path(dest))
    load_dataset(out, verify_hash=True)
    return out


def generate_or_fetch(
    stack: Any,
    config: Any,
    out_dir: str | os.PathLike,
    *,
    repo_id: str,
    repo_type: str = "dataset",
    private: bool = True,
    endpoint: str | None = None,
    reporter: Reporter | None = None,
    attempts: int = 4,
    base_delay: float = 1.0,
    **generate_kwargs: Any,
) -> tuple[Path, bool]:
    """The data set for ``(stack, config)``: downloaded when the Hub has it, else generated and uploaded at once.

    Returns ``(folder, reused)``.  The upload happens right after generation, before any training,
    so a run that fails later keeps its data on the Hub and a retry reuses it instead of
    regenerating.  A failed upload only warns: the local data set is complete and kept.
    """

    key = dataset_key(stack, config)
    if (Path(out_dir) / "dataset.json").exists() and not generate_kwargs.get("overwrite"):
        raise FileExistsError(f"{out_dir} already holds a data set; choose another folder or pass overwrite=True")
    if not hub_offline():
        try:
            if find_dataset(repo_id, key, repo_type=repo_type, endpoint=endpoint):
                out = download_dataset(repo_id, key, out_dir, repo_type=repo_type, endpoint=endpoint)
                if reporter is not None:
                    reporter.log(STAGE, f"reused training data {key} from {repo_id} (not regenerated) → {out}")
                return out, True
        except Exception as exc:  # noqa: BLE001 - the Hub being unreachable must not stop a generation
            _emit_warning(
                reporter, f"could not look up training data {key} on {repo_id} ({_short(exc)}); generating locally"
            )
    out = generate_to_disk(stack, config, out_dir, reporter=reporter, **generate_kwargs)
    try:
        upload_dataset(
            out,
            repo_id,
            key=key,
            repo_type=repo_type,
            private=private,
            endpoint=endpoint,
            reporter=reporter,
            attempts=attempts,
            base_delay=base_delay,
        )
    except HubUploadError:
        pass  # already reported as a warning; the local data set stays
    return Path(out), False


# ---------------------------------------------------------------------------- checkpoints
def checkpoint_position(path: str | os.PathLike) -> tuple[int, int]:
    """(epochs completed, batch reached) of a checkpoint, read from its safetensors header only."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    meta = json.loads(header.get("__metadata__", {}).get("workbench", "{}")).get("meta", {})
    return int(meta.get("epoch", 0)), int(meta.get("batch", 0))


class CheckpointUploader:
    """A Reporter listener that uploads the trainer's checkpoint to the Hub every ``every`` epochs.

    The trainer writes its checkpoint atomically (periodically and when paused); the uploader
    notices a new file on the next event, hard-links that version aside (the trainer may replace
    the file meanwhile) and uploads it in a background thread to ``checkpoints/<name>/`` — a pause
    checkpoint always, periodic ones when at least ``every`` epochs passed since the last upload.
    With a registry and run id, each uploaded checkpoint is recorded with its Hub reference, so
    :func:`workbench.workflows.training.resume_training` can resume from the Hub when the local file is gone.
    Call :meth:`close` (or use ``with``) to wait for the uploads.
    """

    def __init__(
        self,
        repo_id: str,
        checkpoint_path: str | os.PathLike,
        *,
        name: str,
        every: int = 1,
        repo_type: str = "model",
        private: bool = True,
        endpoint: str | None = None,
        registry: Registry | None = None,
        run_id: str | None = None,
        reporter: Reporter | None = None,
        attempts: int = 4,
        base_delay: float = 1.0,
    ) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1 epoch, got {every}")
        self.repo_id, self.repo_type, self.private, self.endpoint = repo_id, repo_type, private, endpoint
        self.path = Path(checkpoint_path)
        self.path_in_repo = f"{CHECKPOINTS}/{_component(name, 'checkpoint name')}/checkpoint.safetensors"
        self.every, self.registry, self.run_id, self.reporter = every, registry, run_id, reporter
        self.attempts, self.base_delay = attempts, base_delay
        self.uploaded: list[HubRef] = []
        self.failed: list[str] = []
        self._seen: int | None = self.path.stat().st_mtime_ns if self.path.exists() else None
        self._last_epoch: int | None = None
        self._sent: int | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-checkpoint")
        self._futures: list[Future] = []

    def __call__(self, event: Event) -> None:
        if self._closed or (isinstance(event, Warning_) and event.stage == STAGE):
            return
        # the trainer logs "paused at epoch ..." right after writing the pause checkpoint: always upload that one
        self.poll(force=isinstance(event, Log) and event.message.startswith("paused at epoch"))

    def poll(self, force: bool = False) -> None:
        """Upload the checkpoint file if it changed since the last look and is due (``force``: due anyway)."""
        try:
            mtime = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return
        with self._lock:
            if mtime == self._seen and not (force and mtime != self._sent):
                return
            self._seen = mtime
            epoch, batch = checkpoint_position(self.path)
            due = force or batch > 0 or self._last_epoch is None or epoch - self._last_epoch >= self.every
            if not due:
                return
            self._last_epoch, self._sent = epoch, mtime
            frozen = self.path.with_name(f".{self.path.name}.upload-{epoch}-{batch}-{mtime}")  # one name per version
            frozen.unlink(missing_ok=True)
            try:
                os.link(self.path, frozen)
            except OSError:
                shutil.copyfile(self.path, frozen)
            self._futures.append(self._pool.submit(self._upload, frozen, epoch, batch))

    def _upload(self, frozen: Path, epoch: int, batch: int) -> None:
        where = f"epoch {epoch}" + (f", batch {batch}" if batch else "")
        try:
            oid = with_retries(
                lambda: _commit_files(
                    {self.path_in_repo: frozen},
                    self.repo_id,
                    repo_type=self.repo_type,
                    private=self.private,
                    revision=None,
                    endpoint=self.endpoint,
                    message=f"Checkpoint at {where}",
                ),
                what=f"upload of checkpoint ({where}) to {self.repo_id}",
                local=self.path,
                attempts=self.attempts,
                base_delay=self.base_delay,
                reporter=self.reporter,
            )
        except HubUploadError as exc:
            self.failed.append(str(exc))
            return
        finally:
            frozen.unlink(missing_ok=True)
        ref = HubRef(self.repo_id, self.repo_type, self.path_in_repo, oid)
        self.uploaded.append(ref)
        if self.registry is not None and self.run_id is not None:
            self.registry.add_checkpoint(self.run_id, self.path, epoch, hub=str(ref))
        if self.reporter is not None:
            self.reporter.log(STAGE, f"uploaded checkpoint ({where}) to {ref}")

    def close(self) -> None:
        """Upload a last changed checkpoint, if any, and wait for all uploads (a second call does nothing)."""
        if self._closed:
            return
        self.poll()
        self._closed = True
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def download_checkpoint(
    ref: HubRef | str,
    dest: str | os.PathLike,
    *,
    endpoint: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_only: bool | None = None,
) -> Path:
    """Fetch a checkpoint uploaded by :class:`CheckpointUploader` and copy it to the file ``dest``."""
    from huggingface_hub import hf_hub_download  # heavy (huggingface_hub): imported on use
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
    )  # heavy (huggingface_hub): imported on use

    ref = HubRef.parse(ref) if isinstance(ref, str) else ref
    offline = hub_offline() if local_only is None else local_only
    try:
        cached = hf_hub_download(
            ref.repo_id,
            ref.path,
            repo_type=ref.repo_type,
            revision=ref.revision,
            cache_dir=_cache_dir(cache_dir),
            endpoint=hub_endpoint(endpoint),
            local_files_only=offline,
        )
    except (HfHubHTTPError, LocalEntryNotFoundError) as exc:
        raise HubError(f"cannot fetch checkpoint {ref}: {_short(exc)}") from exc
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.download")
    shutil.copyfile(cached, tmp)
    os.replace(tmp, dest)
    return dest

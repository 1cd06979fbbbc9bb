"""Data-set bundles on disk: pyreflect's ``nr_train.npy``/``sld_train.npy`` plus what pyreflect loses.

A bundle is a folder:

* ``nr_train.npy``  (N, 2, nQ): rows Q, R — pyreflect's name and layout;
* ``sld_train.npy`` (N, 2, nZ): rows z, ρ, substrate side first — pyreflect's name and layout;
* ``params.npy``    (N, P): the sampled parameters, named in ``dataset.json``;
* ``dr_train.npy``  (N, nQ): 1σ errors of R, only when counting noise was simulated;
* ``dataset.json``: generator config, film stack and bounds, probe, seed, versions, counts and a
  content hash.

Large arrays are streamed: a file gets its final ``.npy`` header first and rows are written at
their offsets (in any order, by any worker).  The whole bundle is written into a hidden sibling
folder ``.<name>.partial-<pid>@<host>.<random>`` and committed by one rename of the complete
folder, ``dataset.json`` included (:func:`commit_folder`), so a killed generation never leaves a
folder that looks whole: before, a kill after the arrays were renamed and before ``dataset.json``
was written left 60,000 curves that ``load_dataset`` accepted with no hash and no parameters, and
random kills left ``.partial`` files (152 MB) that nothing removed.  :func:`clean_stale_partials`
removes the leftovers of dead generations on this host; ``load_dataset`` refuses a partial folder
and arrays that are symlinks out of the folder.  The content hash is SHA-256 over per-block digests
(blocks of ``sampling.BLOCK`` curves, in order), so it does not depend on how the work was chunked.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import replace_folder, write_text_atomic
from .npyfile import NpyFormatError, load_npy
from .sampling import BLOCK

NR_FILE = "nr_train.npy"
SLD_FILE = "sld_train.npy"
PARAMS_FILE = "params.npy"
DR_FILE = "dr_train.npy"
META_FILE = "dataset.json"
FORMAT = "workbench-dataset/1"
ARRAY_FILES = (NR_FILE, SLD_FILE, PARAMS_FILE, DR_FILE)
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.partial-(?P<pid>\d+)@(?P<host>.+)\.[^.]+$")


class DatasetError(ValueError):
    """A data set on disk is missing, malformed or inconsistent; the message says which file and why."""


# --------------------------------------------------------------------------- writing
class NpyStreamWriter:
    """An ``.npy`` file of known final shape, filled row-block by row-block at any offset."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.partial = self.path.with_name(f".{self.path.name}.partial")
        with open(self.partial, "wb") as fh:
            fh.write(_npy_header(self.shape, self.dtype))
            self.offset = fh.tell()
            fh.truncate(self.offset + self.row_bytes * self.shape[0])

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize

    def write_rows(self, start: int, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or start < 0 or start + rows.shape[0] > self.shape[0]:
            raise ValueError(
                f"{self.path.name}: rows {start}..{start + rows.shape[0]} of shape {rows.shape} do not fit {self.shape}"
            )
        pwrite_rows(self.partial, self.offset + start * self.row_bytes, rows)

    def finish(self) -> None:
        with open(self.partial, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.partial, self.path)


def partial_folder(out: Path) -> Path:
    """A new hidden folder beside ``out`` for a bundle being written, named after this process and host."""
    out.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{out.name}.partial-{os.getpid()}@{socket.gethostname()}."
    return Path(tempfile.mkdtemp(dir=out.parent, prefix=prefix))


def is_partial(folder: Path) -> bool:
    """Whether ``folder`` is an unfinished bundle (being written, or left by a killed generation)."""
    return _PARTIAL.match(folder.name) is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def clean_stale_partials(parent: Path) -> list[Path]:
    """Remove the partial bundles in ``parent`` (and the ``.partial`` files of older versions inside its
    folders) left by generations that died on this host; returns what was removed.

    A partial folder of a live process, or of another host (a shared file system), is left alone; so is
    the ``.<name>.old`` copy of a replaced data set unless ``<name>`` is whole again (a kill between the
    two renames of an overwrite leaves the old data there, hidden, and nothing under ``<name>``).
    """
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    host = socket.gethostname()
    for entry in parent.iterdir():
        match = _PARTIAL.match(entry.name)
        if match and entry.is_dir() and match["host"] == host and not _pid_alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
        elif entry.name.startswith(".") and entry.name.endswith(".old") and entry.is_dir():
            if (parent / entry.name[1:-4] / META_FILE).exists():  # the replacement is in place: the old copy is spare
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        elif entry.is_dir() and not entry.name.startswith(".") and not (entry / META_FILE).exists():
            for old in entry.glob(".*.npy.partial"):  # written in place by versions before the folder commit
                old.unlink(missing_ok=True)
                removed.append(old)
    return removed


def commit_folder(tmp: Path, out: Path, *, overwrite: bool) -> Path:
    """Move the complete bundle ``tmp`` to ``out`` in one rename (replacing an old bundle when ``overwrite``).

    ``out`` may be missing or an empty folder; a folder holding anything but a data set is never replaced.
    """
    check_target(out, overwrite=overwrite)
    if out.is_dir() and not any(out.iterdir()):
        os.chmod(tmp, 0o755)  # noqa: S103 - a folder of data others on the hub may read, as mkdir would make it
        os.replace(tmp, out)  # rename(2) replaces an empty folder in one step
        return out
    return replace_folder(tmp, out)


def check_target(out: Path, *, overwrite: bool) -> None:
    """Refuse to write a bundle into ``out`` when it holds a data set (unless ``overwrite``) or other files."""
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; a data set is a folder")
    entries = [e.name for e in out.iterdir() if not e.name.startswith(".")] if out.is_dir() else []  # hidden: leftovers
    if not entries:
        return
    foreign = sorted(e for e in entries if e not in (*ARRAY_FILES, META_FILE))
    if foreign:
        raise FileExistsError(
            f"{out} holds files that are not part of a data set ({', '.join(foreign[:5])}); generate into a new "
            "or empty folder"
        )
    if not overwrite:
        raise FileExistsError(f"{out} already holds a data set; choose another folder or pass overwrite=True")


HEADER_ALIGN = 4096


def _npy_header(shape: tuple[int, ...], dtype: np.dtype) -> bytes:
    """A version-2.0 .npy header padded to 4096 bytes, so rows start page-aligned (O_DIRECT)."""
    d = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    text = repr(d).encode("latin1")
    prefix = b"\x93NUMPY\x02\x00"
    pad = HEADER_ALIGN - (len(prefix) + 4 + len(text) + 1) % HEADER_ALIGN
    body = text + b" " * pad + b"\n"
    return prefix + len(body).to_bytes(4, "little") + body


def pwrite_rows(path: str | os.PathLike, offset: int, rows: np.ndarray) -> None:
    """Write ``rows`` at ``offset``; page-aligned writes bypass the page cache (O_DIRECT) where possible.

    Streaming gigabytes through the page cache costs memory the kernel must first find (and on VMs
    that return freed memory to the host, fresh pages are slow); direct writes avoid both.
    """
    view = memoryview(rows).cast("B")
    aligned = offset % HEADER_ALIGN == 0 and len(view) % HEADER_ALIGN == 0 and rows.ctypes.data % HEADER_ALIGN == 0
    if aligned and hasattr(os, "O_DIRECT"):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_DIRECT)
        except OSError:
            fd = None
        if fd is not None:
            try:
                written = 0
                while written < len(view):
                    written += os.pwrite(fd, view[written:], offset + written)
                return
            except OSError:
                pass  # file system without O_DIRECT support: fall back to a buffered write
            finally:
                os.close(fd)
    fd = os.open(path, os.O_WRONLY)
    try:
        written = 0
        while written < len(view):
            written += os.pwrite(fd, view[written:], offset + written)
    finally:
        os.close(fd)


def block_digests(arrays: Iterable[np.ndarray], start: int) -> list[tuple[int, str]]:
    """(block index, digest) of every block of curves in a chunk starting at ``start`` (a block multiple)."""
    arrays = [np.ascontiguousarray(a) for a in arrays]
    n = arrays[0].shape[0]
    out = []
    for a0 in range(0, n, BLOCK):
        h = hashlib.sha256()
        for a in arrays:
            h.update(memoryview(a[a0 : a0 + BLOCK]).cast("B"))
        out.append(((start + a0) // BLOCK, h.hexdigest()))
    return out


def combine_digests(digests: dict[int, str]) -> str:
    h = hashlib.sha256()
    for block in sorted(digests):
        h.update(bytes.fromhex(digests[block]))
    return h.hexdigest()


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


# --------------------------------------------------------------------------- reading
@dataclass
class Dataset:
    """A loaded data set: arrays (memory-mapped from disk for large sets) and its description."""

    nr: np.ndarray
    sld: np.ndarray
    params: np.ndarray | None = None
    dr: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def n(self) -> int:
        return int(self.nr.shape[0])

    @property
    def q(self) -> np.ndarray:
        return np.asarray(self.nr[0, 0], dtype=np.float64)

    @property
    def parameter_names(self) -> list[str]:
        return list(self.meta.get("parameter_names", []))

    @property
    def content_hash(self) -> str | None:
        return self.meta.get("content_hash")


def _load_npy(path: Path, mmap: bool) -> np.ndarray:
    try:
        return load_npy(path, mmap=mmap)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except (NpyFormatError, OSError) as exc:
        raise DatasetError(f"{path}: not a readable .npy array ({exc})") from None


def _inside(folder: Path, name: str) -> Path:
    """``folder/name``, refused when it is a symlink that leads out of ``folder`` (a data set is one folder)."""
    path = folder / name
    if path.is_symlink():
        target = path.resolve()
        if folder.resolve() not in target.parents:
            raise DatasetError(
                f"{path}: a symbolic link to {target}, outside the data-set folder; copy the file into the folder"
            )
    return path


def _check_curves(path: Path, a: np.ndarray, what: str) -> None:
    if a.ndim != 3 or a.shape[1] != 2:
        raise DatasetError(
            f"{path}: {what} must have shape (N, 2, points) with rows ({'Q, R' if what == 'NR' else 'z, SLD'}), got "
            f"{a.shape}"
        )
    if a.dtype not in (np.float32, np.float64):
        raise DatasetError(f"{path}: {what} must be float32 or float64, got {a.dtype}")
    if a.shape[0] == 0 or a.shape[2] < 2:
        raise DatasetError(f"{path}: {what} is empty (shape {a.shape})")
    _check_finite(path, a, what)


def _check_finite(path: Path, a: np.ndarray, what: str, chunk: int = 65536) -> None:
    for s in range(0, a.shape[0], chunk):
        block = np.asarray(a[s : s + chunk])
        bad = ~np.isfinite(block)
        if bad.any():
            idx = np.argwhere(bad)[0]
            idx[0] += s
            raise DatasetError(f"{path}: {what} has a non-finite value at index {tuple(int(i) for i in idx)}")


def _check_meta(path: Path, meta: Any) -> None:
    """The parts of dataset.json the loader relies on have the types it expects."""
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    names = meta.get("parameter_names")
    if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        raise DatasetError(f"{path}: parameter_names must be a list of names")
    if not isinstance(meta.get("counts", {}), dict):
        raise DatasetError(f"{path}: counts must be an object like {{'curves': N}}")
    if not isinstance(meta.get("content_hash", ""), (str, type(None))):
        raise DatasetError(f"{path}: content_hash must be a hex string")


def load_dataset(path: str | os.PathLike, *, mmap: bool = True, verify_hash: bool = False) -> Dataset:
    """Load a bundle folder (ours or a plain pyreflect pair) and validate it; errors say what is wrong."""
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder (a data set is a folder with {NR_FILE} and {SLD_FILE})")
    if is_partial(folder):
        raise DatasetError(f"{folder}: an unfinished data set (a generation still running, or killed); not loaded")
    meta: dict[str, Any] = {}
    if _inside(folder, META_FILE).exists():
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise DatasetError(f"{folder / META_FILE}: invalid JSON ({str(exc)[:200]})") from None
        _check_meta(folder / META_FILE, meta)
    nr = _load_npy(_inside(folder, NR_FILE), mmap)
    sld = _load_npy(_inside(folder, SLD_FILE), mmap)
    _check_curves(folder / NR_FILE, nr, "NR")
    _check_curves(folder / SLD_FILE, sld, "SLD")
    if nr.shape[0] != sld.shape[0]:
        raise DatasetError(f"{folder}: {NR_FILE} has {nr.shape[0]} curves but {SLD_FILE} has {sld.shape[0]}")
    q = np.asarray(nr[0, 0])
    if np.any(np.diff(q) <= 0) or q[0] <= 0:
        raise DatasetError(f"{folder / NR_FILE}: row 0 (Q) of curve 0 must be positive and increasing")
    params = dr = None
    if _inside(folder, PARAMS_FILE).exists():
        params = _load_npy(folder / PARAMS_FILE, mmap)
        if params.ndim != 2 or params.shape[0] != nr.shape[0]:
            raise DatasetError(f"{folder / PARAMS_FILE}: expected shape ({nr.shape[0]}, P), got {params.shape}")
        names = meta.get("parameter_names")
        if names is not None and len(names) != params.shape[1]:
            raise DatasetError(
                f"{folder / META_FILE}: {len(names)} parameter names for {params.shape[1]} columns in {PARAMS_FILE}"
            )
    if _inside(folder, DR_FILE).exists():
        dr = _load_npy(folder / DR_FILE, mmap)
        if dr.shape != (nr.shape[0], nr.shape[2]):
            raise DatasetError(f"{folder / DR_FILE}: expected shape {(nr.shape[0], nr.shape[2])}, got {dr.shape}")
    counts = meta.get("counts", {})
    if counts and counts.get("curves") != nr.shape[0]:
        raise DatasetError(f"{folder / META_FILE}: says {counts.get('curves')} curves but {NR_FILE} has {nr.shape[0]}")
    data = Dataset(nr=nr, sld=sld, params=params, dr=dr, meta=meta, path=folder)
    if verify_hash:
        expected = meta.get("content_hash")
        actual = dataset_hash(data)
        if expected is not None and expected != actual:
            raise DatasetError(
                f"{folder}: content hash mismatch (dataset.json {expected[:12]}…, files {actual[:12]}…): the files "
                "were changed"
            )
    return data


def dataset_hash(data: Dataset) -> str:
    """Content hash of the arrays (same definition as at generation time)."""
    digests: dict[int, str] = {}
    arrays = [a for a in (data.nr, data.sld, data.params, data.dr) if a is not None]
    for s in range(0, data.n, 64 * BLOCK):
        chunk = [np.asarray(a[s : s + 64 * BLOCK]) for a in arrays]
        digests.update(block_digests(chunk, s))
    return combine_digests(digests)


def import_pyreflect(nr_path: str | os.PathLike, sld_path: str | os.PathLike) -> Dataset:
    """Load a plain pyreflect pair of ``.npy`` files (any names) as a data set."""
    nr = _load_npy(Path(nr_path), mmap=True)
    sld = _load_npy(Path(sld_path), mmap=True)
    _check_curves(Path(nr_path), nr, "NR")
    _check_curves(Path(sld_path), sld, "SLD")
    if nr.shape[0] != sld.shape[0]:
        raise DatasetError(f"{nr_path} has {nr.shape[0]} curves but {sld_path} has {sld.shape[0]}")
    meta = {"format": "pyreflect", "source": {"nr": str(nr_path), "sld": str(sld_path)}}
    return Dataset(nr=nr, sld=sld, meta=meta, path=Path(nr_path).parent)

"""Atomic writes: a temp file (or folder) beside the target, then rename — never half a file."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically, with the usual 0644-minus-umask permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def replace_folder(tmp: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Move the finished folder ``tmp`` (a sibling of ``dest``) to ``dest``, replacing any old one.

    Readers see the old folder or the new one, never a half-written one; the old copy is removed
    only after the new one is in place.
    """
    tmp, dest = Path(tmp), Path(dest)
    os.chmod(tmp, 0o755)  # noqa: S103 - a folder of data others on the hub may read, as mkdir would make it
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(tmp, dest)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, dest)
    return dest


def safe_name(text: str, default: str = "item") -> str:
    """A file-system-safe single path component from user input (letters, digits, ``._-``)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip(".-")[:64]
    return name or default


def free_path(parent: str | os.PathLike, name: str) -> Path:
    """``parent/name``, or ``stem-1.suffix``, ``stem-2.suffix``, ... when taken (never over existing work)."""
    path = Path(parent) / name
    stem, suffix, k = path.stem, path.suffix, 1
    while path.exists():
        path = path.with_name(f"{stem}-{k}{suffix}")
        k += 1
    return path


def copy_folder_atomic(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the regular files of ``src`` (following symlinks) into ``dest``, replacing it atomically."""
    src, dest = Path(src), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
    try:
        for f in sorted(src.iterdir()):
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
        replace_folder(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest

"""``.npy`` files from strangers: the header is read and checked against the bytes before any array exists.

``np.load`` trusts a file's header: an empty file raised EOFError, a broken header
``tokenize.TokenError``, a zip named ``.npy`` came back as an ``NpzFile`` (AttributeError further on),
and a header declaring a huge shape raised MemoryError (or reserved gigabytes) before the short data
was noticed.  Here the header is parsed inside one guard, the dtype must be plain numbers (never
objects: nothing is unpickled), and the declared shape must account for exactly the bytes that
follow it; only then is the array read (or memory-mapped), so a lying header costs nothing.
Errors are :class:`NpyFormatError` (a ``ValueError``) saying what is wrong; callers prefix the file.
"""

from __future__ import annotations

import io
import math
import os
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAX_HEADER_BYTES = 10_000  # numpy's own default limit on a header's length
_HEADER_ERRORS = (
    ValueError,
    EOFError,
    SyntaxError,
    tokenize.TokenError,
    UnicodeDecodeError,
    TypeError,
    KeyError,
    OverflowError,
    MemoryError,
    RecursionError,
)


class NpyFormatError(ValueError):
    """Bytes that are not a plain numeric ``.npy`` array; the message says what is wrong."""


@dataclass(frozen=True)
class NpyHeader:
    """What a checked header declares: shape, dtype, memory order and where the data starts."""

    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    offset: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_header(fh: BinaryIO, size: int, kinds: str = "fiu") -> NpyHeader:
    """The checked header of the ``.npy`` bytes in ``fh`` (``size`` bytes in all; dtype kinds in ``kinds``)."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=MAX_HEADER_BYTES)
        elif version in ((2, 0), (3, 0)):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=MAX_HEADER_BYTES)
        else:
            raise NpyFormatError(f"unknown .npy format version {version}")
    except NpyFormatError:
        raise
    except _HEADER_ERRORS as exc:
        raise NpyFormatError(f"not a .npy array ({type(exc).__name__}: {str(exc)[:200]})") from None
    if dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None or dtype.kind not in kinds:
        wanted = {"f": "floats", "i": "integers", "u": "unsigned integers", "c": "complex numbers"}
        raise NpyFormatError(
            f"array of dtype {dtype}; expected {' or '.join(wanted.get(k, k) for k in kinds)} "
            "(objects are never unpickled)"
        )
    if any(n < 0 for n in shape):
        raise NpyFormatError(f"the header declares a negative size in shape {shape}")
    header = NpyHeader(tuple(int(n) for n in shape), dtype, bool(fortran), fh.tell())
    if header.offset + header.nbytes != size:
        raise NpyFormatError(
            f"the header declares shape {header.shape} of {dtype} ({header.nbytes:,} bytes) but "
            f"{size - header.offset:,} bytes of data follow it (a truncated or damaged file)"
        )
    return header


def load_npy(source: str | os.PathLike | bytes, *, mmap: bool = False, kinds: str = "fiu") -> np.ndarray:
    """A plain numeric array from a ``.npy`` file or its bytes, header checked first (see the module docstring).

    ``mmap`` maps a file read-only instead of reading it (large data sets).
    """
    if isinstance(source, bytes):
        header = read_header(io.BytesIO(source), len(source), kinds)
        flat = np.frombuffer(source, dtype=header.dtype, count=math.prod(header.shape), offset=header.offset)
        return flat.reshape(header.shape, order="F" if header.fortran_order else "C")
    path = Path(source)
    with open(path, "rb") as fh:
        header = read_header(fh, os.fstat(fh.fileno()).st_size, kinds)
        if not mmap or header.nbytes == 0:
            flat = np.fromfile(fh, dtype=header.dtype, count=math.prod(header.shape))
            return flat.reshape(header.shape, order="F" if header.fortran_order else "C")
    order = "F" if header.fortran_order else "C"
    return np.memmap(path, dtype=header.dtype, mode="r", offset=header.offset, shape=header.shape, order=order)


def declared_header(data: bytes) -> NpyHeader | None:
    """The header of ``.npy`` bytes whatever their dtype (objects included), or None when it is not one."""
    fh = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh, max_header_size=MAX_HEADER_BYTES)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh, max_header_size=MAX_HEADER_BYTES)
    except _HEADER_ERRORS:
        return None
    return NpyHeader(tuple(int(n) for n in shape), dtype, bool(fortran), fh.tell())

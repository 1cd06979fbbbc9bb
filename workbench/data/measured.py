"""Measured reflectivity curves: load the files scientists have, check them, put them on a model grid.

Formats: text tables (2–4 columns Q, R, dR, dQ; whitespace or comma separated; ``#`` comments and
text header lines, e.g. REF_L and refnx/Platypus files), ORSO ``.ort`` files (via orsopy) and
pyreflect-layout ``.npy`` arrays (rows Q, R).

Conventions: Q in Å⁻¹, R dimensionless, dR an absolute 1σ error.  dQ is stored as 1σ
(``Measurement.dq_sigma``); the convention the file used is kept in ``dq_convention_of_file``.

How the dQ convention of a file is decided (never guessed silently):
1. ORSO files say it per column (``value_is: sigma | FWHM``, in any case; absent means σ, the ORSO
   default).  A FWHM is converted by the column's ``distribution`` (gaussian: ÷ 2.3548, triangular:
   ÷ √6, uniform: ÷ √12; lorentzian has no σ and is refused); ``value_is: variance`` (σ², not in the
   ORSO standard but written by some reductions) is converted to σ = √variance; anything else is
   refused.  ``fwhm`` in lower case used to be recorded as FWHM but left unconverted (dQ 2.35× too wide).
2. Text files: a header line naming the resolution column (``dQ``, ``dQz``, ``sQz``, ``ΔQ`` or
   "resolution") together with ``FWHM`` or ``sigma``/``σ`` decides it — REF_L writes ``dQ [FWHM]``.
3. Otherwise the ``dq_convention`` argument (``"fwhm"`` or ``"sigma"``) is required for a file with
   a dQ column; refnx/Platypus ``.txt`` files carry no header and are FWHM, so pass ``"fwhm"``.
4. An argument that contradicts what the file states is an error (one of the two is wrong).

Non-positive R (background-subtracted points at high Q) are kept and counted
(``Measurement.n_nonpositive``); ``Measurement.positive()`` drops them for log-scale plots.
Repeated Q values (REF_L stitches overlapping angles) are kept; ``merge_duplicate_q()`` averages
them when a strictly increasing grid is needed (``probe()``, ``resample()``).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from workbench.physics.probe import DEFAULT_DQ_OVER_Q_FWHM, FWHM_PER_SIGMA, Probe

from .npyfile import NpyFormatError, load_npy

DqConvention = Literal["fwhm", "sigma"]
# σ of a FWHM by the distribution an ORSO error column names (its default: gaussian)
_FWHM_TO_SIGMA = {"gaussian": 1.0 / FWHM_PER_SIGMA, "triangular": 1.0 / np.sqrt(6.0), "uniform": 1.0 / np.sqrt(12.0)}
_ORSO_MAGIC = "# # ORSO reflectivity data file"
_NAMES = ("Q", "R", "dR", "dQ")


class MeasurementError(ValueError):
    """A measured-data file is malformed; the message names the file, the line and what would be right."""

    def __init__(self, path: str | os.PathLike, where: str | None, problem: str) -> None:
        self.path = str(path)
        self.where = where
        super().__init__(f"{self.path}: {where}: {problem}" if where else f"{self.path}: {problem}")


def _frozen(a: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return None
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Measurement:
    """One measured curve: Q (Å⁻¹), R, dR (1σ, absolute) and dQ (1σ), each dR/dQ possibly unknown (None)."""

    q: np.ndarray
    r: np.ndarray
    dr: np.ndarray | None
    dq_sigma: np.ndarray | None
    source: str
    dq_convention_of_file: DqConvention | Literal["variance"] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("q", "r", "dr", "dq_sigma"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        for name in ("r", "dr", "dq_sigma"):
            value = getattr(self, name)
            if value is not None and value.shape != self.q.shape:
                raise ValueError(f"{name} has shape {value.shape} but q has {self.q.shape}")

    def __len__(self) -> int:
        return self.q.size

    @property
    def n_nonpositive(self) -> int:
        """How many points have R ≤ 0 (kept in the data; they cannot be shown on a log axis)."""
        return int(np.count_nonzero(self.r <= 0))

    @property
    def positive_mask(self) -> np.ndarray:
        """True where R > 0, i.e. where log R is defined."""
        return self.r > 0

    @property
    def has_duplicate_q(self) -> bool:
        return bool(np.any(np.diff(self.q) == 0))

    def _subset(self, keep: np.ndarray, **metadata: Any) -> Measurement:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[keep]

        return replace(
            self,
            q=self.q[keep],
            r=self.r[keep],
            dr=pick(self.dr),
            dq_sigma=pick(self.dq_sigma),
            metadata={**self.metadata, **metadata},
        )

    def positive(self) -> Measurement:
        """A copy without the R ≤ 0 points, for log-scale plots (fits should use all points)."""
        return self._subset(self.positive_mask, dropped_nonpositive=self.n_nonpositive)

    def merge_duplicate_q(self) -> Measurement:
        """A copy with points at equal Q averaged, so that Q is strictly increasing.

        R is the inverse-variance weighted mean when every dR > 0 (dR = 1/√Σw), else the plain
        mean (dR = √Σ dR² / n); dQ is the mean.  Stitched REF_L files repeat Q in the overlaps.
        """
        if not self.has_duplicate_q:
            return self
        uq, inverse, counts = np.unique(self.q, return_inverse=True, return_counts=True)
        weighted = self.dr is not None and bool(np.all(self.dr > 0))
        w = 1.0 / self.dr**2 if weighted else np.ones_like(self.r)
        wsum = np.bincount(inverse, w)
        r = np.bincount(inverse, w * self.r) / wsum
        dr = None
        if self.dr is not None:
            dr = 1.0 / np.sqrt(wsum) if weighted else np.sqrt(np.bincount(inverse, self.dr**2)) / counts
        dq = None if self.dq_sigma is None else np.bincount(inverse, self.dq_sigma) / counts
        return replace(
            self,
            q=uq,
            r=r,
            dr=dr,
            dq_sigma=dq,
            metadata={**self.metadata, "merged_duplicate_q": int(self.q.size - uq.size)},
        )

    def probe(
        self,
        scale: float = 1.0,
        background: float = 0.0,
        *,
        default_dq_over_q: float = DEFAULT_DQ_OVER_Q_FWHM,
        default_is_fwhm: bool = True,
    ) -> Probe:
        """A Probe at the measured Q: pointwise 1σ dQ when known, else ``default_dq_over_q``.

        Q must be strictly increasing: call ``merge_duplicate_q()`` first on stitched data.
        """
        if self.has_duplicate_q:
            i = int(np.flatnonzero(np.diff(self.q) == 0)[0])
            raise MeasurementError(
                self.source,
                None,
                f"Q repeats (Q[{i}] = Q[{i + 1}] = {self.q[i]}); a Probe needs "
                "strictly increasing Q: use measurement.merge_duplicate_q().probe(...)",
            )
        if self.dq_sigma is not None:
            return Probe(self.q, dq=self.dq_sigma, dq_is_fwhm=False, scale=scale, background=background)
        return Probe(
            self.q, dq_over_q=default_dq_over_q, dq_is_fwhm=default_is_fwhm, scale=scale, background=background
        )

    def __repr__(self) -> str:
        parts = [
            f"{self.q.size} points",
            f"Q {self.q[0]:.4g}–{self.q[-1]:.4g} Å⁻¹",
            "dR" if self.dr is not None else "no dR",
            f"dQ (file: {self.dq_convention_of_file})" if self.dq_sigma is not None else "no dQ",
        ]
        if self.n_nonpositive:
            parts.append(f"{self.n_nonpositive} with R ≤ 0")
        return f"Measurement({self.source!r}: {', '.join(parts)})"


# ----------------------------------------------------------------------------------------------- loading


def load_measurement(
    path: str | os.PathLike,
    *,
    dq_convention: DqConvention | None = None,
    columns: Sequence[int | None] | None = None,
    index: int = 0,
) -> Measurement:
    """Load one measured curve from a text table, an ORSO ``.ort`` file or a pyreflect ``.npy`` array.

    dq_convention : ``"fwhm"`` or ``"sigma"``: what the file's dQ column is (see the module docstring
        for when it is required).
    columns : text tables only: 0-based column indices of (Q, R[, dR[, dQ]]) in the file, ``None`` for
        an absent one, e.g. ``(0, 2, 3, 1)`` for a Q, dQ, R, dR file.  Default: the file's 2–4 columns
        in the order Q, R, dR, dQ.
    index : which curve of a batched ``.npy`` (N, 2, nQ) or which data set of a multi-set ``.ort``.
    """
    path = Path(path)
    convention = _check_convention(dq_convention)
    if path.suffix.lower() == ".npy":
        if columns is not None:
            raise ValueError("columns applies to text files; a .npy array has rows Q, R")
        return _load_npy(path, index)
    text = _read_text(path)
    if text.startswith(_ORSO_MAGIC) or path.suffix.lower() == ".ort":
        if columns is not None:
            raise ValueError("columns applies to plain text tables; ORSO files name their columns")
        return _load_orso(path, text, convention, index)
    if index != 0:
        raise ValueError(f"index={index} applies to batched .npy and multi-set .ort files, not to {path.name}")
    return _load_text(path, text, convention, columns)


def _check_convention(value: str | None) -> DqConvention | None:
    if value is None:
        return None
    low = str(value).lower()
    if low not in ("fwhm", "sigma"):
        raise ValueError(f"dq_convention must be 'fwhm' or 'sigma' (1σ), got {value!r}")
    return low  # type: ignore[return-value]


def _read_text(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MeasurementError(
            path,
            None,
            f"not a text file ({exc.reason} at byte {exc.start}); expected a "
            "text table, an ORSO .ort file or a .npy array",
        ) from None
    return text.lstrip("\ufeff")  # a file saved twice with a byte-order mark has two: neither is header text


def _parse_rows(path: Path, lines: Iterable[tuple[int, str]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Numeric rows of a text table, with their 1-based line numbers and the header lines before them.

    ``#`` lines are comments anywhere; lines whose first field is not a number are header text while no
    data has been read.  A line that starts with a number is data: a bad field later in it is an error
    naming the line, never a reason to take the line as header text and drop it.  After the first data
    line, text, a missing field or a change in column count is an error.
    """
    header: list[str] = []
    rows: list[list[float]] = []
    line_numbers: list[int] = []
    first_line = 0
    for n, raw in lines:
        s = raw.strip()
        if not s:
            continue
        if s.startswith("#"):
            if not rows:
                header.append(s.lstrip("#").strip())
            continue
        if not rows and not _starts_with_number(s):  # header text such as "Q R dR dQ"
            header.append(s)
            continue
        fields = [f.strip() for f in s.split(",")] if "," in s else s.split()
        if "," in s and any(len(f.split()) > 1 for f in fields):
            raise MeasurementError(
                path,
                f"line {n}",
                "fields separated by both commas and spaces (a decimal comma?); use one separator and a decimal point",
            )
        values = []
        for k, f in enumerate(fields):
            try:
                values.append(float(f))
            except ValueError:
                what = "an empty field" if not f else f"{f!r} is not a number"
                raise MeasurementError(
                    path,
                    f"line {n}",
                    f"column {k + 1}: {what}; data lines must hold only numbers (comment lines start with '#')",
                ) from None
        if rows and len(values) != len(rows[0]):
            raise MeasurementError(
                path,
                f"line {n}",
                f"{len(values)} columns, but the first data line "
                f"(line {first_line}) has {len(rows[0])}; every data line needs the same "
                "number of columns",
            )
        if not rows:
            first_line = n
        rows.append(values)
        line_numbers.append(n)
    if not rows:
        raise MeasurementError(
            path,
            None,
            "no data lines found; expected rows of 2–4 numbers (Q, R, dR, dQ) after optional '#' header lines",
        )
    return header, np.array(rows, dtype=np.float64), np.array(line_numbers)


_FIRST_FIELD = re.compile(r"[^,\s]+")


def _starts_with_number(line: str) -> bool:
    """Whether the first whitespace- or comma-separated field of ``line`` is a number (then the line is data)."""
    match = _FIRST_FIELD.match(line)
    if match is None:
        return False
    try:
        float(match.group())
    except ValueError:
        return False
    return True


_DQ_LABEL = re.compile(r"\bd\s*q(z)?\b|\bsq(z)?\b|Δ\s*q|delta\s*q|resolution", re.IGNORECASE)
_FWHM_WORD = re.compile(r"fwhm", re.IGNORECASE)
_SIGMA_WORD = re.compile(r"sigma|σ|std\b|standard deviation", re.IGNORECASE)


def _convention_in_header(header: Sequence[str]) -> DqConvention | Literal["both"] | None:
    """What the header says about dQ: 'fwhm', 'sigma', None (nothing) or 'both' (contradictory)."""
    said = set()
    for line in header:
        if _DQ_LABEL.search(line):
            if _FWHM_WORD.search(line):
                said.add("fwhm")
            if _SIGMA_WORD.search(line):
                said.add("sigma")
    if len(said) > 1:
        return "both"
    return said.pop() if said else None


def _load_text(
    path: Path, text: str, convention: DqConvention | None, columns: Sequence[int | None] | None
) -> Measurement:
    header, table, line_numbers = _parse_rows(path, enumerate(text.splitlines(), start=1))
    ncols = table.shape[1]
    if columns is None:
        if not 2 <= ncols <= 4:
            raise MeasurementError(
                path,
                f"line {line_numbers[0]}",
                f"{ncols} columns; expected 2–4 (Q, R, dR, dQ), or pass columns=(iQ, iR, idR, idQ) to pick them",
            )
        picks: list[int | None] = list(range(ncols)) + [None] * (4 - ncols)
    else:
        picks = list(columns) + [None] * (4 - len(columns))
        used = [c for c in picks if c is not None]
        if not 2 <= len(columns) <= 4 or picks[0] is None or picks[1] is None or len(set(used)) != len(used):
            raise ValueError(f"columns must give distinct indices for Q and R and optionally dR, dQ; got {columns}")
        if any(not 0 <= c < ncols for c in used):
            raise MeasurementError(
                path,
                f"line {line_numbers[0]}",
                f"{ncols} columns, but columns={tuple(columns)} asks for index {max(used)}",
            )
    q, r, dr, dq = (None if c is None else table[:, c] for c in picks)
    _validate(path, q, r, dr, dq, lambda i: f"line {line_numbers[i]}")

    file_convention = None
    stated_by = None
    if dq is not None:
        stated = _convention_in_header(header)
        if stated == "both":
            if convention is None:
                raise MeasurementError(
                    path,
                    None,
                    "the header mentions both FWHM and sigma for dQ; pass "
                    "dq_convention='fwhm' or 'sigma' to say which the dQ column is",
                )
            stated = None
        if stated and convention and stated != convention:
            raise MeasurementError(
                path,
                None,
                f"the header says dQ is {stated}, but dq_convention={convention!r} "
                "was given; drop the argument or correct it",
            )
        if stated is None and convention is None:
            raise MeasurementError(
                path,
                None,
                "the file has a dQ column but does not say whether it is FWHM or "
                "1σ; pass dq_convention='fwhm' (refnx/Platypus, REF_L) or 'sigma' (refl1d, ORSO)",
            )
        file_convention = stated or convention
        stated_by = "header" if stated else "argument"
        if file_convention == "fwhm":
            dq = dq / FWHM_PER_SIGMA
    return Measurement(
        q,
        r,
        dr,
        dq,
        str(path),
        file_convention,
        {"format": "text", "header": header, "dq_convention_from": stated_by, "columns": tuple(picks)},
    )


def _validate(path: Path, q, r, dr, dq, where: Callable[[int], str]) -> None:
    """Finite values everywhere, Q > 0 and non-decreasing, dR ≥ 0, dQ ≥ 0; else an error at the first bad point."""
    for name, a in zip(_NAMES, (q, r, dr, dq)):
        if a is None:
            continue
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            i = int(bad[0])
            raise MeasurementError(path, where(i), f"{name} = {a[i]}; every value must be a finite number")
    bad = np.flatnonzero(q <= 0)
    if bad.size:
        i = int(bad[0])
        raise MeasurementError(path, where(i), f"Q = {q[i]}; Q must be > 0 Å⁻¹")
    bad = np.flatnonzero(np.diff(q) < 0)
    if bad.size:
        i = int(bad[0]) + 1
        raise MeasurementError(
            path,
            where(i),
            f"Q = {q[i]} is smaller than the previous Q = {q[i - 1]}; Q must be in increasing order (sort the rows)",
        )
    for name, a in (("dR", dr), ("dQ", dq)):
        if a is not None and np.any(a < 0):
            i = int(np.flatnonzero(a < 0)[0])
            raise MeasurementError(path, where(i), f"{name} = {a[i]}; {name} must be ≥ 0")


def _load_npy(path: Path, index: int) -> Measurement:
    try:
        a = load_npy(path, mmap=True)
    except (NpyFormatError, OSError) as exc:
        raise MeasurementError(path, None, f"not a readable .npy array of numbers ({exc})") from None
    shape = a.shape
    if a.ndim == 2 and shape[0] == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[1] != 2 or a.shape[2] == 0:
        raise MeasurementError(
            path, None, f"array of shape {shape}; expected (2, nQ), (1, 2, nQ) or (N, 2, nQ) with rows Q, R"
        )
    if not 0 <= index < a.shape[0]:
        raise MeasurementError(
            path, None, f"index={index} but the file holds {a.shape[0]} curve(s) (index 0–{a.shape[0] - 1})"
        )
    q, r = np.array(a[index], dtype=np.float64)
    _validate(path, q, r, None, None, lambda i: f"curve {index}, point {i}")
    return Measurement(q, r, None, None, str(path), None, {"format": "npy", "index": index, "n_curves": a.shape[0]})


def _load_orso(path: Path, text: str, convention: DqConvention | None, index: int) -> Measurement:
    from orsopy.fileio import Column, ErrorColumn, load_orso  # heavy (orsopy): imported on use

    # Parse the numbers ourselves first: orsopy's reader does not report line numbers.
    blocks: list[list[tuple[int, str]]] = [[]]
    for n, line in enumerate(text.splitlines(), start=1):
        if line.startswith("# data_set") and any(not s.startswith("#") and s.strip() for _, s in blocks[-1]):
            blocks.append([])
        blocks[-1].append((n, line))
    if not 0 <= index < len(blocks):
        raise MeasurementError(path, None, f"index={index} but the file holds {len(blocks)} data set(s)")
    _, table, line_numbers = _parse_rows(path, blocks[index])
    try:
        dataset = load_orso(str(path))[index]
    except Exception as exc:  # orsopy raises many kinds; name the file and keep the cause
        raise MeasurementError(path, None, f"not a valid ORSO file ({type(exc).__name__}: {exc})") from exc
    info = dataset.info
    cols = info.columns
    if not isinstance(cols, list) or not all(isinstance(c, (Column, ErrorColumn)) for c in cols):
        raise MeasurementError(path, None, "each header column must be {name: ..., unit: ...} or an error column")
    if table.shape[1] != len(cols):
        raise MeasurementError(
            path, f"line {line_numbers[0]}", f"{table.shape[1]} data columns but the header declares {len(cols)}"
        )
    names = [c.name for c in cols]
    if names[:2] != ["Qz", "R"]:
        raise MeasurementError(path, None, f"columns {names}; ORSO files start with Qz, R")
    unit = str(cols[0].unit or "1/angstrom").replace(" ", "").lower()
    q_factor = {"1/angstrom": 1.0, "1/a": 1.0, "1/å": 1.0, "1/nm": 0.1}.get(unit)
    if q_factor is None:
        raise MeasurementError(path, None, f"Qz unit {cols[0].unit!r}; expected 1/angstrom or 1/nm")

    def error_column(of: str) -> tuple[np.ndarray | None, str | None, float]:
        """The raw error column of ``of``, what it holds ('sigma', 'fwhm' or 'variance') and its σ factor."""
        for k, c in enumerate(cols):
            if c.name != f"s{of}":
                continue
            if not isinstance(c, ErrorColumn):
                return table[:, k], "sigma", 1.0  # plain "sQz" column: the ORSO default, 1σ
            said = str(c.value_is or "sigma")
            kind = said.lower()  # ORSO spells it FWHM; files written by hand say fwhm too
            if kind in ("sigma", "variance"):
                return table[:, k], kind, 1.0
            if kind != "fwhm":
                raise MeasurementError(path, None, f"s{of}: value_is {said!r}; expected sigma, FWHM or variance")
            shape = str(c.distribution or "gaussian").lower()
            factor = _FWHM_TO_SIGMA.get(shape)
            if factor is None:
                raise MeasurementError(
                    path,
                    None,
                    f"s{of}: a {shape} distribution given as FWHM has no σ to convert to; "
                    "expected gaussian, triangular or uniform",
                )
            return table[:, k], "fwhm", factor
        return None, None, 1.0

    dr, dr_kind, dr_factor = error_column("R")
    dq, file_convention, dq_factor = error_column("Qz")
    q = table[:, 0]
    _validate(path, q, table[:, 1], dr, dq, lambda i: f"line {line_numbers[i]}")
    if dq is not None and convention is not None and convention != file_convention:
        raise MeasurementError(
            path,
            None,
            f"the ORSO header says sQz is {file_convention}, but "
            f"dq_convention={convention!r} was given; drop the argument or correct it",
        )
    # variances (σ²) become σ; the checks above already refused negative ones
    dr = None if dr is None else (np.sqrt(dr) if dr_kind == "variance" else dr * dr_factor)
    dq = None if dq is None else (np.sqrt(dq) if file_convention == "variance" else dq * dq_factor)
    return Measurement(
        q * q_factor,
        table[:, 1],
        dr,
        None if dq is None else dq * q_factor,
        str(path),
        file_convention,
        {
            "format": "orso",
            "data_set": info.data_set,
            "dq_convention_from": "orso" if dq is not None else None,
            "orso_header": info.to_yaml(),
        },
    )


# ----------------------------------------------------------------------------------------------- resampling


@dataclass(frozen=True, eq=False)
class Resampled:
    """A measured curve on a model's Q grid; ``outside`` marks model points beyond the measured Q range (NaN there)."""

    q: np.ndarray
    r: np.ndarray
    dr: np.ndarray | None
    outside: np.ndarray


def resample(measurement: Measurement, q_model: Sequence[float] | np.ndarray) -> Resampled:
    """Put a measured curve onto the model grid ``q_model`` (Å⁻¹) by interpolation between neighbours.

    Between two measured points that both have R > 0, log R is interpolated linearly in Q (R falls
    by decades, so this follows the curve); otherwise R itself is (R ≤ 0 points stay usable).  dR is
    interpolated linearly; interpolated points are correlated, so treat it as indicative.  Model points
    outside [Q_min, Q_max] of the data are not extrapolated: they get NaN and ``outside`` is True.
    Repeated measured Q are merged first (``merge_duplicate_q``).  At a model Q equal to a measured
    Q the measured values are returned exactly.
    """
    m = measurement.merge_duplicate_q()
    qm = np.array(q_model, dtype=np.float64).ravel()
    if not np.all(np.isfinite(qm)):
        raise ValueError("q_model must be finite")
    if m.q.size < 2:
        raise ValueError(f"{m.source}: resampling needs at least 2 distinct measured Q, got {m.q.size}")
    outside = (qm < m.q[0]) | (qm > m.q[-1])
    i = np.clip(np.searchsorted(m.q, qm, side="right") - 1, 0, m.q.size - 2)
    t = (qm - m.q[i]) / (m.q[i + 1] - m.q[i])

    def interp(y: np.ndarray, log: np.ndarray | bool) -> np.ndarray:
        y0, y1 = y[i], y[i + 1]
        lin = y0 + t * (y1 - y0)
        with np.errstate(divide="ignore", invalid="ignore"):
            logv = np.exp(np.log(y0) + t * (np.log(y1) - np.log(y0)))
        out = np.where(log, logv, lin)
        out = np.where(t == 0, y0, np.where(t == 1, y1, out))
        return np.where(outside, np.nan, out)

    r = interp(m.r, (m.r[i] > 0) & (m.r[i + 1] > 0))
    dr = None if m.dr is None else interp(m.dr, False)
    return Resampled(qm, r, dr, outside)


# ----------------------------------------------------------------------------------------------- saving


def save_orso(
    path: str | os.PathLike,
    measurement: Measurement,
    *,
    sample_name: str | None = None,
    comment: str | None = None,
) -> Path:
    """Write ``measurement`` as an ORSO ``.ort`` file (columns Qz, R[, sR[, sQz as 1σ]]), atomically.

    The file is written to a temporary file in the same directory and moved into place with
    ``os.replace``, so a reader never sees a half-written file.
    """
    from orsopy.fileio import Column, ErrorColumn, Orso, OrsoDataset  # heavy (orsopy): imported on use
    from orsopy.fileio import save_orso as orso_save  # heavy (orsopy): imported on use

    path = Path(path)
    columns: list[Any] = [Column("Qz", "1/angstrom"), Column("R")]
    data = [measurement.q, measurement.r]
    if measurement.dr is not None:
        columns.append(ErrorColumn("R", "uncertainty", "sigma"))
        data.append(measurement.dr)
    if measurement.dq_sigma is not None:
        if measurement.dr is None:
            raise ValueError("ORSO puts sQz in the 4th column after sR; this measurement has dQ but no dR")
        columns.append(ErrorColumn("Qz", "resolution", "sigma"))
        data.append(measurement.dq_sigma)
    info = Orso.empty()
    info.columns = columns
    info.data_source.experiment.probe = "neutron"
    info.data_source.sample.name = sample_name
    info.data_source.measurement.data_files = [measurement.source]
    dataset = OrsoDataset(info, np.column_stack(data))

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            orso_save([dataset], f, comment=comment)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


__all__ = ["DqConvention", "Measurement", "MeasurementError", "Resampled", "load_measurement", "resample", "save_orso"]

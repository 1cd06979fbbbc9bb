"""Generators of hostile inputs, one family per untrusted entry point, shared by the tests and the benchmark.

Each family builds one input from a ``random.Random`` (a valid file, structure or query, then 0–3
mutations), hands it to the loader a user's file would reach, and classifies what happened:

* ``accepted``: the loader returned, and the result passed the family's checks (no NaN, Q > 0 and
  increasing, every row that starts with a number kept, values as written, limits held, ...);
* ``clean``: the loader refused with the project's error type for that entry point, naming the problem;
* ``escape``: any other exception (a bug: a traceback where a message was due);
* ``garbage``: the loader returned something that fails the checks (silently wrong).

``tests/test_fuzz_inputs.py`` drives the families with hypothesis (seeded, bounded), and
``benchmarks/bench_fuzz.py`` runs them at scale and counts the four outcomes per family.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import random
import re
import struct
import tempfile
import time
import types
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import yaml

from workbench.data.measured import MeasurementError, load_measurement
from workbench.limits import Limits
from workbench.models import build_model
from workbench.physics import FilmStack, Probe, reflectivity
from workbench.physics.stack import DEFAULT_LAYER_BOUND, DEFAULT_LAYER_DESC, StackError
from workbench.store.model_bundle import BundleError, load_model_bundle, save_model_bundle
from workbench.store.pyreflect_import import read_pyreflect_stats
from workbench.store.workspace import Workspace
from workbench.ui.app import TABS, URL_CHOICES, apply_query_string
from workbench.ui.context import AppContext, saved_setting_specs
from workbench.ui.files_panel import UploadError, store_bundle

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


@dataclass
class Outcome:
    """What one input did: ``accepted``, ``clean`` (the project's error), ``escape`` or ``garbage``."""

    kind: str
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.kind in ("accepted", "clean")


def _escape(exc: BaseException) -> Outcome:
    return Outcome("escape", f"{type(exc).__name__}: {str(exc)[:300]}")


# --------------------------------------------------------------------------------------------- mutations
TOKENS = [
    "nan", "inf", "-inf", "1e400", "-0", "1,5", "0.0.1", "#", "\ufeff", "\x00", "\t", ",", ", ", ";", "e", "E",
    "-", "+", ".", "x", "Q", "\u00a0", "\u2009", "\r", "\n", "\r\n", "0", "9" * 40, "٣", "", "'", '"', "{", "}",
]  # fmt: skip


def mutate_text(rnd: random.Random, text: str, n: int) -> str:
    """``text`` with ``n`` random edits: characters and tokens replaced, inserted or deleted, lines moved."""
    for _ in range(n):
        lines = text.split("\n")
        op = rnd.randrange(9)
        pos = rnd.randrange(len(text) + 1)
        if op == 0 and text:  # replace a character
            text = text[:pos] + rnd.choice(TOKENS) + text[pos + 1 :]
        elif op == 1:  # insert a token
            text = text[:pos] + rnd.choice(TOKENS) + text[pos:]
        elif op == 2 and text:  # delete a span
            text = text[:pos] + text[pos + rnd.randint(1, 4) :]
        elif op == 3:  # duplicate a line
            k = rnd.randrange(len(lines))
            lines.insert(k, lines[k])
            text = "\n".join(lines)
        elif op == 4 and len(lines) > 1:  # delete a line
            del lines[rnd.randrange(len(lines))]
            text = "\n".join(lines)
        elif op == 5 and len(lines) > 1:  # swap two lines
            a, b = rnd.randrange(len(lines)), rnd.randrange(len(lines))
            lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
        elif op == 6:  # byte-order marks in front
            text = "\ufeff" * rnd.randint(1, 3) + text
        elif op == 7:  # truncate
            text = text[:pos]
        else:  # a decimal comma in one number
            text = re.sub(r"(\d)\.(\d)", r"\1,\2", text, count=1)
    return text


def mutate_bytes(rnd: random.Random, data: bytes, n: int) -> bytes:
    """``data`` with ``n`` random byte flips, insertions, deletions or a truncation."""
    b = bytearray(data)
    for _ in range(n):
        op = rnd.randrange(4)
        pos = rnd.randrange(len(b) + 1)
        if op == 0 and b and pos < len(b):
            b[pos] = rnd.randrange(256)
        elif op == 1:
            b[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        elif op == 2 and b:
            del b[pos : pos + rnd.randint(1, 16)]
        else:
            del b[pos:]
    return bytes(b)


def _starts_with_number(line: str) -> bool:
    """The rule stated in the issue, written independently of the loader: a line whose first field is a number."""
    first = re.match(r"[^,\s]+", line)
    if first is None:
        return False
    try:
        float(first.group())
    except ValueError:
        return False
    return True


def _curve_invariants(m) -> str | None:
    """What is wrong with an accepted measurement (None when nothing)."""
    for name in ("q", "r", "dr", "dq_sigma"):
        a = getattr(m, name)
        if a is not None and not np.all(np.isfinite(a)):
            return f"{name} has a non-finite value"
    if m.q.size == 0:
        return "no points"
    if np.any(m.q <= 0):
        return "Q ≤ 0"
    if np.any(np.diff(m.q) < 0):
        return "Q decreases"
    for name in ("dr", "dq_sigma"):
        a = getattr(m, name)
        if a is not None and np.any(a < 0):
            return f"{name} < 0"
    return None


# --------------------------------------------------------------------------------------------- measured: text
def _number(rnd: random.Random, x: float) -> str:
    return rnd.choice([repr, "{:.6e}".format, "{:g}".format, "{:.10g}".format])(float(x))


def _table(rnd: random.Random) -> dict[str, Any]:
    n = rnd.randint(1, 25)
    ncol = rnd.choice([2, 3, 4])
    q0 = 10 ** rnd.uniform(-3, -1.5)
    q = [q0]
    for _ in range(n - 1):
        q.append(q[-1] + (0.0 if rnd.random() < 0.05 else rnd.uniform(1e-4, 1e-2)))
    r = [10 ** rnd.uniform(-8, 0) * (-1 if rnd.random() < 0.05 else 1) for _ in q]
    dr = [abs(x) * rnd.uniform(0.01, 0.2) for x in r]
    dq = [x * rnd.uniform(0.01, 0.05) for x in q]
    return {"n": n, "ncol": ncol, "cols": [q, r, dr, dq][:ncol]}


def case_measured_text(rnd: random.Random, tmp: Path) -> Outcome:
    """A text table (REF_L-like, refnx-like, comma separated, with headers) with random edits."""
    t = _table(rnd)
    sep = rnd.choice([" ", "\t", ",", ", ", "  "])
    header = rnd.choice(
        [[], ["# Q R dR dQ"], ["Q R dR dQ"], ["# REF_L reduced", "# Q [1/A] R dR dQ [FWHM]"], ["# dQ sigma"], ["Q,R"]]
    )
    texts = [[_number(rnd, c[i]) for c in t["cols"]] for i in range(t["n"])]
    body = [sep.join(row) for row in texts]
    newline = rnd.choice(["\n", "\r\n"])
    text = newline.join(header + body) + newline
    edits = 0 if rnd.random() < 0.25 else rnd.randint(1, 3)
    text = mutate_text(rnd, text, edits)
    convention = rnd.choice([None, "fwhm", "sigma"])
    path = tmp / rnd.choice(["curve.txt", "curve.dat", "curve.csv"])
    raw = text.encode("utf-8") if rnd.random() < 0.95 else text.encode("utf-8") + bytes([0xFF, 0xFE, 0x80])
    path.write_bytes(raw)
    try:
        m = load_measurement(path, dq_convention=convention)
    except MeasurementError:
        return Outcome("clean")
    except Exception as exc:  # noqa: BLE001 - the fuzz counts what escapes
        return _escape(exc)
    problem = _curve_invariants(m)
    if problem:
        return Outcome("garbage", problem)
    decoded = raw.decode("utf-8-sig").lstrip("\ufeff")
    data_lines = [s.strip() for s in decoded.splitlines()]
    expected_rows = sum(1 for s in data_lines if s and not s.startswith("#") and _starts_with_number(s))
    if expected_rows != len(m):
        return Outcome("garbage", f"{expected_rows} lines start with a number but {len(m)} rows were loaded")
    if edits == 0:
        q, r = (np.array([float(row[k]) for row in texts]) for k in (0, 1))
        if not (np.array_equal(m.q, q) and np.array_equal(m.r, r)):
            return Outcome("garbage", "values differ from the file")
        if t["ncol"] == 4:
            stated = {"# Q [1/A] R dR dQ [FWHM]": "fwhm", "# dQ sigma": "sigma"}.get(header[-1] if header else "")
            dq = np.array([float(row[3]) for row in texts])
            want = dq / FWHM_PER_SIGMA if (stated or convention) == "fwhm" else dq
            if not np.allclose(m.dq_sigma, want, rtol=1e-12):
                return Outcome("garbage", "dQ not converted to 1σ as the file/argument says")
    return Outcome("accepted")


# --------------------------------------------------------------------------------------------- measured: ORSO
ORSO_VALUE_IS = ["sigma", "FWHM", "fwhm", "Fwhm", "variance", "Variance", "hwhm", "5", "null", "[1, 2]"]
ORSO_DISTRIBUTIONS = ["gaussian", "triangular", "uniform", "lorentzian", "cauchy", "null"]
ORSO_UNITS = ["1/angstrom", "1/nm", "1/A", "angstrom", "5", "null", "1 / angstrom"]
_TO_SIGMA = {"gaussian": 1 / FWHM_PER_SIGMA, "null": 1 / FWHM_PER_SIGMA, "triangular": 1 / math.sqrt(6)}
_TO_SIGMA["uniform"] = 1 / math.sqrt(12)
_Q_FACTOR = {"1/angstrom": 1.0, "1/nm": 0.1, "1/A": 1.0, "1 / angstrom": 1.0, "null": 1.0}


def _orso_text(rnd: random.Random) -> tuple[str, np.ndarray, str, str, str]:
    t = _table(rnd)
    while len(t["cols"]) < 4:
        t = _table(rnd)
    value_is, dist, unit = rnd.choice(ORSO_VALUE_IS), rnd.choice(ORSO_DISTRIBUTIONS), rnd.choice(ORSO_UNITS)
    extra = "" if dist == "null" and rnd.random() < 0.5 else f", distribution: {dist}"
    lines = [
        "# # ORSO reflectivity data file | 1.2 standard | YAML encoding | https://www.reflectometry.org/",
        "# data_source:",
        "#   owner: {name: null, affiliation: null}",
        "#   experiment: {title: null, instrument: null, start_date: null, probe: neutron}",
        "#   sample: {name: null}",
        "#   measurement:",
        "#     instrument_settings: {incident_angle: {magnitude: null}, wavelength: {magnitude: null}}",
        "#     data_files: []",
        "# reduction: {software: {name: null}}",
        "# data_set: 0",
        "# columns:",
        f"# - {{name: Qz, unit: {unit}}}",
        "# - {name: R}",
        "# - {error_of: R, error_type: uncertainty, value_is: sigma}",
        f"# - {{error_of: Qz, error_type: resolution, value_is: {value_is}{extra}}}",
        "# # Qz (1/angstrom)    R    sR    sQz",
    ]
    table = np.array(t["cols"]).T
    body = [" ".join(repr(float(x)) for x in row) for row in table]
    return "\n".join(lines + body) + "\n", table, value_is, dist, unit


def case_measured_orso(rnd: random.Random, tmp: Path) -> Outcome:
    """An ORSO file with every spelling of the resolution's value_is, distributions, Q units, and random edits."""
    text, table, value_is, dist, unit = _orso_text(rnd)
    edits = 0 if rnd.random() < 0.5 else rnd.randint(1, 3)
    text = mutate_text(rnd, text, edits)
    path = tmp / "curve.ort"
    path.write_text(text, encoding="utf-8")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # orsopy warns about spellings it does not know; the loader decides
            m = load_measurement(path)
    except MeasurementError:
        return Outcome("clean")
    except Exception as exc:  # noqa: BLE001 - the fuzz counts what escapes
        return _escape(exc)
    problem = _curve_invariants(m)
    if problem:
        return Outcome("garbage", problem)
    if edits == 0:
        kind = "sigma" if value_is == "null" else value_is.lower()  # absent: σ, the ORSO default
        if kind not in ("sigma", "fwhm", "variance") or unit not in _Q_FACTOR:
            return Outcome("garbage", f"value_is {value_is!r} / unit {unit!r} accepted")
        if kind == "fwhm" and dist not in _TO_SIGMA:
            return Outcome("garbage", f"a {dist} FWHM accepted")
        raw = table[:, 3]
        sigma = raw * _TO_SIGMA[dist] if kind == "fwhm" else (np.sqrt(raw) if kind == "variance" else raw)
        if not np.allclose(m.dq_sigma, sigma * _Q_FACTOR[unit], rtol=1e-12):
            return Outcome("garbage", f"dQ given as {value_is} ({dist}) not converted to 1σ")
    return Outcome("accepted")


# --------------------------------------------------------------------------------------------- measured: .npy
def _npy_header_variants(rnd: random.Random, shape: tuple[int, ...]) -> str:
    descr = rnd.choice(["'<f8'", "'<f4'", "'|O'", "'<c16'", "'|b1'", "'|V8'", "[('a', '<f8')]", "'<i8'", "'>f8'", "1"])
    shp = rnd.choice(
        [str(shape), "(2, 10**12)", "(-1, 5)", "()", "(2, 1000000000000)", "(2, -3)", "[2, 3]", "(2.5, 3)", "None"]
    )
    order = rnd.choice(["False", "True", "1", "'x'"])
    return "{" + f"'descr': {descr}, 'fortran_order': {order}, 'shape': {shp}, " + "}"


def _npy_bytes(header: str, body: bytes, version: int = 1) -> bytes:
    text = header.encode("latin1")
    prefix = b"\x93NUMPY" + bytes([version, 0])
    size = 4 if version > 1 else 2
    pad = (64 - (len(prefix) + size + len(text) + 1) % 64) % 64
    text = text + b" " * pad + b"\n"
    return prefix + len(text).to_bytes(size, "little") + text + body


def case_measured_npy(rnd: random.Random, tmp: Path) -> Outcome:
    """pyreflect-layout .npy arrays with damaged headers, lying shapes, other dtypes, zips and pickles."""
    n = rnd.randint(1, 30)
    q = np.cumsum(np.full(n, 0.001)) + 0.005
    a = np.stack([q, 10 ** -np.linspace(0, 6, n)])
    if rnd.random() < 0.3:
        a = np.stack([a] * rnd.randint(1, 3))
    a = a.astype(rnd.choice([np.float64, np.float32]))
    buf = io.BytesIO()
    np.save(buf, a)
    data = buf.getvalue()
    op = rnd.randrange(8)
    if op == 1:
        data = mutate_bytes(rnd, data, rnd.randint(1, 4))
    elif op == 2:
        data = _npy_bytes(_npy_header_variants(rnd, a.shape), a.tobytes(), rnd.choice([1, 2, 3]))
    elif op == 3:
        data = b""
    elif op == 4:
        zbuf = io.BytesIO()
        np.savez(zbuf, a=a)
        data = zbuf.getvalue()
    elif op == 5:
        pbuf = io.BytesIO()
        np.save(pbuf, np.array([{"q": 1}, None], dtype=object), allow_pickle=True)
        data = pbuf.getvalue()
    elif op == 6:
        data = data[: rnd.randrange(len(data))]
    elif op == 7:  # header text edits
        head_end = data.index(b"\n") + 1
        data = mutate_text(rnd, data[:head_end].decode("latin1"), 2).encode("latin1", "replace") + data[head_end:]
    path = tmp / "curve.npy"
    path.write_bytes(data)
    try:
        m = load_measurement(path)
    except MeasurementError:
        return Outcome("clean")
    except Exception as exc:  # noqa: BLE001 - the fuzz counts what escapes
        return _escape(exc)
    problem = _curve_invariants(m)
    if problem:
        return Outcome("garbage", problem)
    if op == 0 and not (np.array_equal(m.q, a.reshape(-1, 2, n)[0, 0]) and len(m) == n):
        return Outcome("garbage", "values differ from the array")
    return Outcome("accepted")


# --------------------------------------------------------------------------------------------- stacks
HOSTILE_VALUES: list[Any] = [
    math.inf, -math.inf, math.nan, "1e400", 10**400, True, None, [1.0], {"a": 1}, -5.0, 1e6, 2000.0, 1.7, "12",
    "thick", 1e308, -1e-300, 0.0, 40.0, -20.0, 6e5, "", "nan", 7,
]  # fmt: skip
HOSTILE_INDICES: list[Any] = [0, 1, 2, 3, 1.7, math.inf, "1", True, -1, 99, 2.0, None, [1], 10**400]
HOSTILE_BOUNDS: list[Any] = [
    [1.0, 2.0], [1, 2, 3], "12", [5.0, 1.0], [1.0], None, [math.inf, 1.0], ["a", "b"], (1.0, 2.0), [0.0, 4e5],
    [1.0, 2000.0], [-3.0, 1.0], {"lo": 1}, [True, 2.0], [10**400, 1],
]  # fmt: skip
_CAP_FIELDS = ("sld", "isld", "roughness")


def _number_value(v: Any) -> float | None:
    """What a layer value must become if it is accepted (None: it must be refused)."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    try:
        out = float(v)
    except (ValueError, OverflowError):
        return None
    return out if math.isfinite(out) else None


def _random_stack(rnd: random.Random) -> tuple[list[Any], list[Any]]:
    desc = [dict(d) for d in DEFAULT_LAYER_DESC]
    bound = [dict(b) for b in DEFAULT_LAYER_BOUND]
    if rnd.random() < 0.3:
        keep = rnd.randint(2, len(desc))
        desc = [desc[0], *desc[1 : keep - 1], desc[-1]]
        bound = [b for b in bound if b["i"] < keep - 1]
    for _ in range(rnd.randint(0, 3)):
        target = rnd.randrange(4)
        if target == 0:
            entry = rnd.choice(desc)
            entry[rnd.choice(["sld", "isld", "thickness", "roughness"])] = rnd.choice(HOSTILE_VALUES)
        elif target == 1:
            entry = rnd.choice(desc)
            entry[rnd.choice(["name", "density"])] = rnd.choice(["x", 5, None, "", ["a"]])
        elif target == 2 and bound:
            entry = rnd.choice(bound)
            key = rnd.choice(["i", "par", "bounds", "extra"])
            pool = {"i": HOSTILE_INDICES, "bounds": HOSTILE_BOUNDS, "par": ["sld", "thickness", "density", 5, None]}
            entry[key] = rnd.choice(pool.get(key, [1]))
        else:
            layer = {"name": f"extra{rnd.randrange(9)}", "sld": rnd.uniform(-2, 8), "thickness": rnd.uniform(1, 500)}
            desc.insert(rnd.randint(1, len(desc) - 1), layer)
    return desc, bound


def _check_stack(stack: FilmStack, desc: list[Any], bound: list[Any]) -> str | None:
    limits = Limits.from_env()
    for layer, entry in zip(stack.layers, desc):
        for field in ("sld", "isld", "thickness", "roughness"):
            if field in entry:
                want = _number_value(entry[field])
                if want is None or getattr(layer, field) != want:
                    return f"layer {layer.name!r} {field}: {entry[field]!r} became {getattr(layer, field)!r}"
        if not isinstance(entry.get("name", ""), str):
            return f"name {entry.get('name')!r} accepted"
        for field in _CAP_FIELDS:
            if getattr(layer, field) not in limits.parameter(field):
                return f"layer {layer.name!r} {field} outside the limits"
    for b, entry in zip(stack.bounds, bound):
        i = entry["i"]
        if isinstance(i, bool) or not (isinstance(i, int) or (isinstance(i, float) and i.is_integer())) or b.i != i:
            return f"index {i!r} became {b.i}"
        if not isinstance(entry["bounds"], (list, tuple)) or len(entry["bounds"]) != 2:
            return f"bounds {entry['bounds']!r} accepted"
    total = sum(
        max([layer.thickness] + [b.hi for b in stack.bounds if b.i == i and b.par == "thickness"])
        for i, layer in enumerate(stack.layers[1:-1], start=1)
    )
    if total > limits.max_total_thickness:
        return f"film of {total} Å accepted"
    return None


@functools.lru_cache(maxsize=1)
def _small_probe() -> Probe:
    return Probe.from_grid(0.008, 0.2, 40, 0.03)


def case_stack(rnd: random.Random, tmp: Path) -> Outcome:
    """pyreflect layer_desc / layer_bound with hostile values, directly or through a YAML stack file's text."""
    desc, bound = _random_stack(rnd)
    if rnd.random() < 0.3:  # as a stack file would give it: YAML text, edited, parsed
        text = mutate_text(rnd, yaml.safe_dump({"layer_desc": desc, "layer_bound": bound}), rnd.randint(0, 2))
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            return Outcome("clean")
        if not isinstance(parsed, dict):
            return Outcome("clean")
        desc, bound = parsed.get("layer_desc"), parsed.get("layer_bound")
    try:
        stack = FilmStack.from_pyreflect(desc, bound)
    except StackError:
        return Outcome("clean")
    except Exception as exc:  # noqa: BLE001 - the fuzz counts what escapes
        return _escape(exc)
    try:
        problem = _check_stack(stack, desc, bound or [])
        stack.physics_warnings()
        r = reflectivity(stack, _small_probe())
    except Exception as exc:  # noqa: BLE001 - an accepted stack must be usable
        return Outcome("garbage", f"accepted, then {type(exc).__name__}: {exc}")
    if problem:
        return Outcome("garbage", problem)
    if not np.all(np.isfinite(r)):
        return Outcome("garbage", "R(Q) of an accepted stack is not finite")
    return Outcome("accepted")


# --------------------------------------------------------------------------------------------- URL values
URL_DEFAULTS = {"tab": "stack", "num_curves": 0, "epochs": 0, "model": "", "workspace": "", "summary_path": ""}
URL_VALUES = [
    "train", "stack", "files", "nope", "", "5", "-5", "1e400", "nan", "inf", "9" * 300, "compact", "parity_cnn",
    "param", "chi", "x", "%00", "%FF", "../etc", "/tmp/x", "é", "1.5", " 7 ", "0x10", "True", "[1]", "&", "=",
]  # fmt: skip


def case_url(rnd: random.Random, tmp: Path) -> Outcome:
    """A Voilà query string: known, unknown and path parameters with hostile values."""
    keys = [*URL_DEFAULTS, "unknown", ""]
    parts = []
    for _ in range(rnd.randint(0, 6)):
        value = rnd.choice(URL_VALUES) if rnd.random() < 0.8 else "".join(chr(rnd.randrange(32, 0x3000)) for _ in "ab")
        parts.append(f"{rnd.choice(keys)}={quote(value) if rnd.random() < 0.5 else value}")
    query = mutate_text(rnd, "&".join(parts), rnd.randint(0, 2))
    notes: list[str] = []
    try:
        with warnings.catch_warnings(record=True):
            warnings.simplefilter("always")
            out = apply_query_string(dict(URL_DEFAULTS), query, notes=notes)
    except Exception as exc:  # noqa: BLE001 - a link must never raise
        return _escape(exc)
    if set(out) != set(URL_DEFAULTS) or out["workspace"] != "" or out["summary_path"] != "":
        return Outcome("garbage", f"paths or keys changed: {out}")
    for key, default in URL_DEFAULTS.items():
        if type(out[key]) is not type(default):
            return Outcome("garbage", f"{key} became {out[key]!r}")
    if out["tab"] not in TABS or out["model"] not in URL_CHOICES["model"]:
        return Outcome("garbage", f"tab/model {out['tab']!r}/{out['model']!r} let through")
    return Outcome("clean" if notes else "accepted")


# --------------------------------------------------------------------------------------------- saved settings
SETTING_VALUES: list[Any] = [
    "x", "many", math.inf, -math.inf, math.nan, 10**30, -5, 0, 1.5, True, None, [1, 2], {"a": 1}, "compact", "chi",
    "lhs", "adam", "lion", 7, 1e308, "", 0.3,
]  # fmt: skip
SETTING_KEYS = {
    "train": ["model", "epochs", "seed", "optimizer", "learning_rate", "batch_size", "validation_split", "device",
              "models", "chi_folder", "early_stopping", "schedule"],
    "generate": ["num_curves", "seed", "sampling", "fixed_z_grid", "realism", "consistent", "q_resolution"],
}  # fmt: skip
GOOD_SETTINGS: dict[str, list[Any]] = {
    "model": ["compact", "chi", "param"], "epochs": [5, 20], "seed": [0, 3], "optimizer": ["adam", "sgd"],
    "learning_rate": [1e-3, 0.01], "batch_size": [32, 64], "validation_split": [0.1, 0.2], "device": ["auto", "cpu"],
    "chi_folder": ["", "chi"], "early_stopping": [None, 3], "schedule": ["none", "cosine"], "num_curves": [100, 5000],
    "sampling": ["lhs", "uniform"], "fixed_z_grid": [True, False], "consistent": [True, False],
    "q_resolution": [0.03, 0.0],
}  # fmt: skip


def _random_settings(rnd: random.Random) -> Any:
    panels: dict[str, Any] = {}
    hostile = rnd.random() < 0.7
    for panel, keys in SETTING_KEYS.items():
        values: dict[str, Any] = {}
        for key in rnd.sample(keys, rnd.randint(0, len(keys))):
            bad = hostile and rnd.random() < 0.5
            if key == "models":
                width = rnd.choice(SETTING_VALUES) if bad else 16
                values[key] = {rnd.choice(["compact", "chi", "x"]): {"width": width}}
            elif key == "realism":
                values[key] = rnd.choice([5, None, [], {"counting_noise": "x"}]) if bad else {"counting_noise": True}
            else:
                values[key] = rnd.choice(SETTING_VALUES) if bad else rnd.choice(GOOD_SETTINGS[key])
        panels[panel] = values if not hostile or rnd.random() < 0.95 else rnd.choice([5, "x", None])
    data: Any = {"version": 1, "panels": panels}
    if rnd.random() < 0.5:
        desc, bound = _random_stack(rnd) if hostile else (DEFAULT_LAYER_DESC, DEFAULT_LAYER_BOUND)
        data["stack"] = {"layer_desc": desc, "layer_bound": bound}
        probe = {"q_min": rnd.choice([0.008, -1.0, "x", math.inf]), "num_q": rnd.choice([308, 0, 10**9])}
        data["probe"] = probe if hostile else {"q_min": 0.01, "num_q": 200}
    return data if not hostile or rnd.random() < 0.95 else rnd.choice([[], "x", 5])


def case_settings(rnd: random.Random, tmp: Path) -> Outcome:
    """A workspace's settings.json with values of the wrong type, out of range, infinite or nested wrongly."""
    ws = tmp / "ws"
    ws.mkdir(exist_ok=True)
    text = json.dumps(_random_settings(rnd), default=str)
    text = mutate_text(rnd, text, 1) if rnd.random() < 0.1 else text
    (ws / "settings.json").write_text(text, encoding="utf-8")
    try:
        ctx = AppContext(ws, autosave_delay=0)
    except Exception as exc:  # noqa: BLE001 - a settings file must never stop the app
        return _escape(exc)
    specs = saved_setting_specs()

    def survivors(group: str, values: dict) -> str | None:
        for key, value in values.items():
            name = f"{group}.{key}"
            if isinstance(value, dict) and any(g == name or g.startswith(name + ".") for g in specs):
                bad = survivors(name, value)
                if bad:
                    return bad
            elif key in specs.get(group, {}):
                try:
                    specs[group][key].clamp(value)
                except (ValueError, TypeError, OverflowError):
                    return f"{name} = {value!r} kept"
            elif any(g == name or g.startswith(name + ".") for g in specs):
                return f"{name} = {value!r} kept"
        return None

    for group, values in ctx.settings.items():
        if not isinstance(values, dict):
            return Outcome("garbage", f"{group} is not a group")
        bad = survivors(group, values)
        if bad:
            return Outcome("garbage", bad)
    try:
        ctx.stack.stack  # noqa: B018 - the restored (or default) stack must be valid
    except Exception as exc:  # noqa: BLE001
        return Outcome("garbage", f"restored stack invalid: {exc}")
    return Outcome("clean" if ctx.restore_error else "accepted")


# --------------------------------------------------------------------------------------------- bundles (zip uploads)
@functools.lru_cache(maxsize=1)
def _bundle_files() -> dict[str, bytes]:
    """A tiny valid compact-model bundle, as its files' bytes (built once per process)."""
    model = build_model({"kind": "compact", "n_q": 16, "n_z": 16, "width": 4, "stages": 1, "latent": 4})
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_model_bundle(
            Path(tmp) / "tiny",
            model,
            task="nr_sld",
            normalization={"x": {"method": "minmax"}, "y": {"method": "minmax"}},
            data={"q": list(np.linspace(0.01, 0.2, 16))},
        )
        return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


CONFIG_VALUES: list[Any] = [1000, 10**9, -1, "x", 1.5, None, [4, 4], True, 10**30, 0, 100_000, 1e400, {"a": 1}]


def _mutate_bundle(rnd: random.Random, files: dict[str, bytes]) -> dict[str, bytes]:
    files = dict(files)
    op = rnd.randrange(6)
    if op == 0:  # the model config
        config = json.loads(files["config.json"])
        for _ in range(rnd.randint(1, 3)):
            key = rnd.choice(["n_q", "n_z", "width", "stages", "latent", "kind", "act", "dropout", "layers", "new"])
            config["model"][key] = rnd.choice([*CONFIG_VALUES, "parity_cnn", "chi", "param", "relu"])
        if rnd.random() < 0.2:
            config = rnd.choice([[], "x", {**config, "task": "evil"}, {**config, "format": 2}, {**config, "model": 5}])
        files["config.json"] = json.dumps(config).encode()
    elif op == 1:  # the safetensors header, re-encoded with a consistent or a lying length
        raw = files["model.safetensors"]
        n = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + n])
        name = rnd.choice([k for k in header if k != "__metadata__"])
        field = rnd.choice(["shape", "dtype", "data_offsets"])
        header[name][field] = rnd.choice(
            {
                "shape": [[10**9, 10**9], [4, 1, 7], [], [-1], ["a"], [2**40]],
                "dtype": ["F64", "F16", "X", None, "BOOL"],
                "data_offsets": [[0, 10**12], [5, 3], [0], [-8, 0], [0, 0]],
            }[field]
        )
        text = json.dumps(header).encode()
        length = len(text) if rnd.random() < 0.8 else rnd.choice([0, 2**63, len(text) + 5, 10**8])
        files["model.safetensors"] = struct.pack("<Q", length % 2**64) + text + raw[8 + n :]
    elif op == 2:
        name = rnd.choice(list(files))
        files[name] = mutate_bytes(rnd, files[name], rnd.randint(1, 3))
    elif op == 3:
        name = rnd.choice(["normalization.json", "history.json", "metrics.json"])
        files[name] = rnd.choice([b"[]", b"{}", b"5", b"\xff\xfe", b"[" * 5000, b'"x"', b'{"a": NaN}'])
    elif op == 4:
        del files[rnd.choice(list(files))]
    return files


def _empty_name(data: bytes, marker: bytes) -> bytes:
    """The zip ``data`` with its last entry's one-character name ``marker`` removed (zipfile cannot write "")."""
    local = data.rindex(b"PK\x03\x04", 0, data.index(b"PK\x01\x02"))
    assert data[local + 30 : local + 31] == marker
    data = data[: local + 26] + b"\x00\x00" + data[local + 28 : local + 30] + data[local + 31 :]
    central = data.rindex(b"PK\x01\x02")
    assert data[central + 46 : central + 47] == marker
    data = data[: central + 28] + b"\x00\x00" + data[central + 30 : central + 46] + data[central + 47 :]
    end = data.rindex(b"PK\x05\x06")
    size, offset = struct.unpack("<II", data[end + 12 : end + 20])
    return data[: end + 12] + struct.pack("<II", size - 1, offset - 1) + data[end + 20 :]


def _zip(rnd: random.Random, files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with (
        warnings.catch_warnings(),  # zipfile warns about the duplicate names written on purpose
        zipfile.ZipFile(buf, "w", rnd.choice([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])) as archive,
    ):
        warnings.simplefilter("ignore")
        prefix = rnd.choice(["", "tiny/", "a/b/"])
        for name, data in files.items():
            archive.writestr(prefix + name, data)
        op = rnd.randrange(8)
        if op == 1:
            archive.writestr(
                rnd.choice([".", " ", "../evil.txt", "/abs.txt", "a/../../evil", "\\win.txt", "a/.."]), b"x"
            )
        elif op == 2:
            archive.writestr(prefix + "config.json", b"{}")  # a second entry of the same name
        elif op == 3:
            for k in range(rnd.choice([10, 70])):
                archive.writestr(f"f{k}.txt", b"")
    data = buf.getvalue()
    if op == 7:  # an entry with an empty name, last in the archive
        buf2 = io.BytesIO(data)
        with zipfile.ZipFile(buf2, "a") as archive:
            archive.writestr("Z", b"x")
        data = _empty_name(buf2.getvalue(), b"Z")
    if op == 4:  # a declared size that lies (central directory entries)
        data = re.sub(
            rb"PK\x01\x02(.{20})(.{4})",
            lambda m: b"PK\x01\x02" + m.group(1) + struct.pack("<I", rnd.choice([0, 1, 2**31])),
            data,
            count=1,
            flags=re.DOTALL,
        )
    elif op == 5:
        data = mutate_bytes(rnd, data, rnd.randint(1, 3))
    elif op == 6:
        data = data[: rnd.randrange(len(data) + 1)]
    return data


def _stray_files(tmp: Path, ws: Workspace, kept: Path | None) -> list[str]:
    """Files under ``tmp`` that an upload should not have left: anything but the registry and the kept bundle."""
    stray = []
    for p in tmp.rglob("*"):
        if p.is_file() and not (p.parent == ws.root and p.name.startswith("registry.sqlite")):
            if kept is None or kept not in p.parents:
                stray.append(str(p.relative_to(tmp)))
    return sorted(stray)


def case_bundle_zip(rnd: random.Random, tmp: Path) -> Outcome:
    """A zipped model bundle as the Files tab receives it: bad configs, safetensors headers, entries, sizes."""
    ws = Workspace(tmp / "ws")
    ctx = types.SimpleNamespace(workspace=ws, limits=Limits())
    files = _bundle_files() if rnd.random() < 0.15 else _mutate_bundle(rnd, _bundle_files())
    data = _zip(rnd, files)
    t0 = time.perf_counter()
    try:
        folder = store_bundle(ctx, "upload.zip", data, ctx.limits.max_upload_bytes)
    except UploadError:
        folder, outcome = None, Outcome("clean")
    except Exception as exc:  # noqa: BLE001 - the fuzz counts what escapes
        folder, outcome = None, _escape(exc)
    else:
        outcome = Outcome("accepted")
        if ws.models not in folder.parents:
            outcome = Outcome("garbage", f"stored at {folder}")
        else:
            bundle = load_model_bundle(folder)
            n = sum(p.numel() for p in bundle.model.parameters())
            if n > ctx.limits.max_model_parameters:
                outcome = Outcome("garbage", f"{n} parameters accepted")
    stray = _stray_files(tmp, ws, folder)
    if stray:
        outcome = Outcome("garbage", f"files written outside the bundle's folder: {stray[:3]}")
    outcome.seconds = time.perf_counter() - t0
    return outcome


def case_bundle_folder(rnd: random.Random, tmp: Path) -> Outcome:
    """A bundle folder as ``hub pull`` and ``adopt`` read it: load_model_bundle must refuse with BundleError."""
    files = _mutate_bundle(rnd, _bundle_files())
    folder = tmp / "bundle"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    t0 = time.perf_counter()
    try:
        load_model_bundle(folder)
    except BundleError:
        outcome = Outcome("clean")
    except Exception as exc:  # noqa: BLE001 - the fuzz counts what escapes
        outcome = _escape(exc)
    else:
        outcome = Outcome("accepted")
    outcome.seconds = time.perf_counter() - t0
    return outcome


# --------------------------------------------------------------------------------------------- pyreflect statistics
def _stats() -> dict[str, Any]:
    return {
        "nr": {"x": {"min": 0.008, "max": 0.2}, "y": {"min": -8.0, "max": 0.0}},
        "sld": {"x": {"min": 0.0, "max": 450.0}, "y": {"min": -1.0, "max": 5.0}},
    }


STAT_VALUES: list[Any] = [
    "1", math.nan, math.inf, 10**400, [1.0], np.array([1.0, 2.0]), np.float32(3.0), np.array(2.0), None, True,
    {"min": 1}, -1e308, np.int64(4), b"x", complex(1, 2),
]  # fmt: skip


def case_stats(rnd: random.Random, tmp: Path) -> Outcome:
    """pyreflect's pickled normalisation statistics, structurally altered or with damaged bytes."""
    stats: Any = _stats()
    for _ in range(rnd.randint(0, 2)):
        part, axis, key = rnd.choice(["nr", "sld"]), rnd.choice(["x", "y"]), rnd.choice(["min", "max"])
        op = rnd.randrange(4)
        try:
            if op == 0:
                stats[part][axis][key] = rnd.choice(STAT_VALUES)
            elif op == 1:
                del stats[part][axis][key]
            elif op == 2:
                stats[part] = rnd.choice([[1, 2], "x", None, {"x": 5}])
            else:
                stats = rnd.choice([[stats], "stats", 5, np.arange(4)])
        except (TypeError, KeyError, IndexError):
            pass  # an earlier edit replaced the structure: nothing left to edit there
    buf = io.BytesIO()
    np.save(buf, np.array(stats, dtype=object) if not isinstance(stats, np.ndarray) else stats, allow_pickle=True)
    data = buf.getvalue()
    if rnd.random() < 0.5:
        data = mutate_bytes(rnd, data, rnd.randint(1, 5))
    try:
        out = read_pyreflect_stats(data)
    except BundleError:
        return Outcome("clean")
    except Exception as exc:  # noqa: BLE001 - the fuzz counts what escapes
        return _escape(exc)
    for part in ("nr", "sld"):
        for axis in ("x", "y"):
            lo, hi = out[part][axis]["min"], out[part][axis]["max"]
            if not (type(lo) is float and type(hi) is float and math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                return Outcome("garbage", f"{part}.{axis} = {lo!r}, {hi!r}")
    return Outcome("accepted")


FAMILIES: dict[str, Callable[[random.Random, Path], Outcome]] = {
    "measured text": case_measured_text,
    "measured ORSO": case_measured_orso,
    "measured .npy": case_measured_npy,
    "stack definitions": case_stack,
    "URL values": case_url,
    "saved settings": case_settings,
    "bundle zips (upload)": case_bundle_zip,
    "bundle folders (hub, adopt)": case_bundle_folder,
    "pyreflect statistics": case_stats,
}


def run_case(family: str, rnd: random.Random, base: str | os.PathLike | None = None) -> Outcome:
    """One input of ``family`` in a fresh temporary folder under ``base``."""
    with tempfile.TemporaryDirectory(dir=base, prefix="fuzz-") as tmp:
        t0 = time.perf_counter()
        outcome = FAMILIES[family](rnd, Path(tmp))
        outcome.seconds = outcome.seconds or time.perf_counter() - t0
        return outcome

"""Reflectivity throughput and accuracy: workbench fast/torch engines vs refl1d and refnx.

What is compared
----------------
All engines compute R(Q) for pyreflect's default film stack (Si / SiOx / five polymer layers /
air, ``FilmStack.default()``) with its parameters drawn uniformly inside the default bounds
(seeded ``numpy.random.default_rng``), on pyreflect's 308 log-spaced Q points, both unsmeared
and smeared with the default ``Probe()`` resolution (constant dQ/Q = 0.0294855 FWHM):

* ``workbench fast``  – ``reflectivity(stacks, probe, engine="fast")`` (numba, float64) on one
  ``StackArrays`` batch of N stacks (default 50,000);
* ``workbench torch`` – ``reflectivity(..., engine="torch")``, float64 on the CPU, on a batch of
  5,000 (forward only; the inputs do not require grad);
* ``refl1d per curve`` – one refl1d ``Experiment`` per stack, the way pyreflect generates its
  training curves (``refl1d_engine.reflectivity_refl1d``), on 300 stacks; smeared uses refl1d's
  own resolution (R on the data points, Gaussian truncated at ±3σ);
* ``refnx abeles`` – unsmeared: refnx's batched ``abeles_vectorised`` on 5,000 stacks (the
  per-curve C ``abeles`` loop is timed too and reported in a footnote and the JSON); smeared:
  ``refnx.reflect.reflectivity(q, slabs, dq=2.94855)`` (refnx's own constant-dQ/Q smearing,
  ``dq`` in percent FWHM), looped per curve because it does not batch, on 300 stacks.

Timing: one warm-up call (numba/refl1d compile on first use and are not counted), then the best
of 3 calls; throughput is curves per second.  numba, torch and refnx use all cores (``--threads``).

Accuracy: maximum relative error max |R / R_ref − 1| over all stacks and Q points,
* unsmeared, against refl1d and refnx on the same 300 stacks (refnx orders layers the other way
  round: fronting first, and a layer's roughness is the interface above it; see
  :func:`to_refnx_layers`);
* smeared, against a converged Gaussian integral (``tests/converged_smearing.py``, 120
  Gauss–Legendre nodes per side, split at the substrate critical edge) on 20 stacks.

Hard stacks (issue 14; ``--n-hard`` seeded stacks per family, 0 skips): films outside the default
family — one 1,500–3,000 Å layer denser than the substrate, 25 layers, absorption up to isld 1,
a D2O ambient (with negative SLDs), roughness 1–1.5× the layer — smeared with the default probe,
against a brute-force Gaussian average of refnx's exact curve (``tests/brute_smearing.py``:
Gauss–Legendre panels split at every critical edge and every resonance narrower than σ/20),
over the points where R ≥ 1e-30 (below, R falls faster across a window than the Gaussian, and the
±7σ cut sets the value).  Columns: the fast and torch engines, the
baseline (``--baseline``), refl1d's own smearing and refnx's ``reflectivity(dq=%)``.

Multilayers: the issue's supermirror (Si / n × [70 Å SLD 9.4, 80 Å SLD −1.95] / air) with 100, 300
and 800 layers on 4,000 Q points, unsmeared: non-finite values per engine and the largest
difference from the torch engine and from refnx where refnx is finite.

Baseline (``--baseline REV``): the physics of a git revision (``git show REV:workbench/physics/…``,
loaded as its own package), timed interleaved with the current fast engine on the same batch, so
that "before / after" comes from one run on one machine state.  ``c581d52`` is the revision before
issue 14.

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_reflectivity.py [--n 50000] [--json out.json]
    PYTHONPATH=. .venv/bin/python benchmarks/bench_reflectivity.py --baseline c581d52 --threads 1
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import numba
import torch
from _report import finish

from workbench.physics import FilmStack, Probe, StackArrays, critical_edge, reflectivity
from workbench.physics.refl1d_engine import reflectivity_refl1d

TARGET_UNSMEARED = 150_000.0  # curves/s, fast path, float64, 2 cores (from the issue)
TARGET_SMEARED = 100_000.0

ROWS = ("workbench fast", "workbench torch", "refl1d per curve (pyreflect's way)", "refnx abeles")
BASELINE_ROW = "workbench fast (baseline)"
HARD_FAMILIES = ("thick layer", "25 layers", "absorbing", "D2O ambient", "rough")
MULTILAYERS = (100, 300, 800)
HARD_FLOOR = 1e-30  # R below this is not compared: there the ±7σ cut of the Gaussian, not the quadrature, sets it


# --------------------------------------------------------------------------- inputs
def sample_stacks(stack: FilmStack, n: int, seed: int) -> StackArrays:
    """``n`` copies of ``stack`` with every bounded parameter drawn uniformly in its bounds."""
    rng = np.random.default_rng(seed)
    base = stack.to_arrays()
    arrays = {name: np.repeat(getattr(base, name), n, axis=0) for name in ("sld", "isld", "thickness", "roughness")}
    for b in stack.bounds:
        arrays[b.par][:, b.i] = rng.uniform(b.lo, b.hi, n)
    return StackArrays(arrays["sld"], arrays["isld"], arrays["thickness"], arrays["roughness"])


def to_refnx_layers(a: StackArrays) -> np.ndarray:
    """refnx's (B, L, 4) layer array [thickness, sld, isld, roughness] from workbench arrays.

    The workbench (like refl1d) lists the substrate first and the ambient last, and roughness[j]
    is the interface on top of layer j (between j and j + 1).  refnx lists the fronting (the
    ambient, where the beam enters) first and the backing (substrate) last, and the roughness of
    a layer is the interface above it, towards the fronting.  So the layers are reversed, and
    refnx layer k = workbench layer L − 1 − k carries workbench roughness[L − 1 − k]; the
    fronting's roughness is unused (0).
    """
    b, n = a.sld.shape
    out = np.zeros((b, n, 4))
    out[:, :, 0] = a.thickness[:, ::-1]
    out[:, :, 1] = a.sld[:, ::-1]
    out[:, :, 2] = a.isld[:, ::-1]
    out[:, 1:, 3] = a.roughness[:, ::-1]
    return out


# --------------------------------------------------------------------------- timing
def best_of(fn: Callable[[], Any], repeats: int = 3, warmup: int = 1) -> tuple[float, Any]:
    """Best wall time of ``repeats`` calls after ``warmup`` untimed ones, and the last result."""
    result = None
    for _ in range(warmup):
        result = fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def max_rel(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(x) / np.asarray(ref) - 1.0)))


def as_numpy(r: Any) -> np.ndarray:
    return r.detach().cpu().numpy() if isinstance(r, torch.Tensor) else np.asarray(r)


# --------------------------------------------------------------------------- engines
def engine_fast(a: StackArrays, probe: Probe) -> np.ndarray:
    return reflectivity(a, probe, engine="fast")


def engine_torch(a: StackArrays, probe: Probe) -> np.ndarray:
    with torch.no_grad():
        return as_numpy(reflectivity(a, probe, engine="torch", dtype=torch.float64, device="cpu"))


def engine_refl1d(a: StackArrays, probe: Probe) -> np.ndarray:
    return reflectivity_refl1d(a, probe)


def refnx_kernels() -> dict[str, Callable] | None:
    """refnx's C per-curve ``abeles``, the batched ``abeles_vectorised`` and ``reflectivity``; None if absent."""
    try:
        from refnx.reflect import reflect_model
        from refnx.reflect._creflect import abeles
        from refnx.reflect._cyreflect import abeles_vectorised
    except ImportError:
        return None
    return {"abeles": abeles, "abeles_vectorised": abeles_vectorised, "reflectivity": reflect_model.reflectivity}


def engine_refnx_vectorised(kernels: dict, layers: np.ndarray, probe: Probe, threads: int) -> np.ndarray:
    return kernels["abeles_vectorised"](probe.q, layers, threads=threads)


def engine_refnx_loop(kernels: dict, layers: np.ndarray, probe: Probe, threads: int) -> np.ndarray:
    """Per curve: C ``abeles`` unsmeared, ``reflectivity(dq=percent FWHM)`` smeared."""
    out = np.empty((layers.shape[0], probe.q.size))
    if probe.smeared:
        dq_percent = 100.0 * probe.dq_over_q  # refnx: constant dQ/Q in percent, FWHM
        for b in range(layers.shape[0]):
            out[b] = kernels["reflectivity"](probe.q, layers[b], dq=dq_percent, threads=threads)
    else:
        for b in range(layers.shape[0]):
            out[b] = kernels["abeles"](probe.q, layers[b], threads=threads)
    return out


# --------------------------------------------------------------------------- baseline
def load_baseline(rev: str) -> dict[str, Any]:
    """The fast engine of git revision ``rev``: its physics modules, loaded as a package of their own.

    Numba caches the compiled kernels beside the copied files (one folder per commit), so only the
    first run with a revision pays for compiling them.
    """
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    name = f"wb_baseline_{sha}"
    root = Path(tempfile.gettempdir()) / "workbench-bench-baseline"
    package = root / name
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").touch()
    for module in ("kernel_fast", "simd_math", "resolution", "probe"):
        text = subprocess.run(
            ["git", "show", f"{sha}:workbench/physics/{module}.py"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        path = package / f"{module}.py"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    sys.path.insert(0, str(root))
    kernel = importlib.import_module(f"{name}.kernel_fast")
    resolution = importlib.import_module(f"{name}.resolution")
    return {"rev": sha, "kernel": kernel, "resolution": resolution}


def engine_baseline(base: dict[str, Any], a: StackArrays, probe: Probe) -> np.ndarray:
    """The baseline's reflectivity(..., engine="fast") for one substrate/ambient pair (its plan_for, inlined)."""
    res = base["resolution"]
    if not probe.smeared:
        plan = res.identity_plan(probe.q)
    else:
        total = float(np.max(np.sum(a.thickness[:, 1:-1], axis=1))) if a.thickness.shape[1] > 2 else 0.0
        quantized = math.ceil(2.0 * max(total, 1.0) / 100.0) * 100.0
        edge = res.critical_edge(float(a.sld[0, 0]), float(a.sld[0, -1])) if a.isld[0, 0] == 0 else None
        plan = res.build_plan(probe, quantized, [] if edge is None else [edge])
    return base["kernel"].reflectivity_fast(plan, a.sld, a.isld, a.thickness, a.roughness)


# --------------------------------------------------------------------------- hard stacks, multilayers
def hard_stack(family: str, seed: int) -> StackArrays:
    """One seeded stack of a family from issue 14 (substrate Si first, ambient last)."""
    rng = np.random.default_rng(seed)
    n = {"thick layer": 5, "25 layers": 27}.get(family, 6)
    sld = rng.uniform(-0.56, 6.4, n)
    isld = np.zeros(n)
    thickness = rng.uniform(10.0, 300.0, n)
    roughness = rng.uniform(0.0, 20.0, n - 1)
    sld[0], sld[-1] = 2.07, 0.0
    if family == "thick layer":
        k = int(rng.integers(1, n - 1))
        thickness[k], sld[k] = rng.uniform(1500.0, 3000.0), rng.uniform(3.0, 6.4)
    elif family == "absorbing":
        isld[:-1] = rng.uniform(0.0, 1.0, n - 1)
    elif family == "D2O ambient":
        sld[-1] = 6.36
    elif family == "rough":
        thickness = rng.uniform(20.0, 100.0, n)
        roughness = thickness[:-1] * rng.uniform(1.0, 1.5, n - 1)
    thickness[0] = thickness[-1] = 0.0
    return StackArrays(sld[None], isld[None], thickness[None], roughness[None])


def hard_accuracy(args: argparse.Namespace, base: dict[str, Any] | None, kernels: dict | None) -> dict[str, Any]:
    """Max relative error per family and engine against the brute-force average of refnx's exact curve."""
    from brute_smearing import brute_smear

    probe = Probe()
    engines: dict[str, Callable[[StackArrays], np.ndarray]] = {
        "fast": lambda a: engine_fast(a, probe),
        "torch": lambda a: engine_torch(a, probe),
        "refl1d": lambda a: engine_refl1d(a, probe),
    }
    if base is not None:
        engines["baseline"] = lambda a: engine_baseline(base, a, probe)
    if kernels is not None:
        engines["refnx"] = lambda a: engine_refnx_loop(kernels, to_refnx_layers(a), probe, 1)
    table: dict[str, dict[str, float]] = {}
    for k, family in enumerate(HARD_FAMILIES):
        errors = {name: 0.0 for name in engines}
        for s in range(args.n_hard):
            a = hard_stack(family, args.seed + 100 * k + s)
            ref = brute_smear(probe.q, probe.sigma, a, density=20.0, minimum=600)
            keep = ref >= HARD_FLOOR
            for name, fn in engines.items():
                errors[name] = max(errors[name], max_rel(fn(a)[keep], ref[keep]))
        table[family] = errors
        print(f"  {family:<12s} " + "  ".join(f"{n} {e:.1e}" for n, e in errors.items()), flush=True)
    return table


def multilayer(n: int) -> StackArrays:
    """The issue's supermirror: Si / n alternating 70 Å (SLD 9.4) and 80 Å (SLD −1.95) layers, σ 5 Å / air."""
    sld = np.array([2.07, *[9.4 if k % 2 == 0 else -1.95 for k in range(n)], 0.0])
    thickness = np.array([0.0, *[70.0 if k % 2 == 0 else 80.0 for k in range(n)], 0.0])
    return StackArrays(sld[None], np.zeros((1, n + 2)), thickness[None], np.full((1, n + 1), 5.0))


def multilayer_check(base: dict[str, Any] | None, kernels: dict | None) -> dict[str, Any]:
    """Non-finite values per engine on 4,000 Q points, and agreement where the references are finite."""
    probe = Probe(np.linspace(0.005, 0.3, 4000), dq_over_q=None)
    rows: dict[str, Any] = {}
    for n in MULTILAYERS:
        a = multilayer(n)
        t0 = time.perf_counter()
        fast = engine_fast(a, probe)[0]
        seconds = time.perf_counter() - t0
        curves: dict[str, np.ndarray | str] = {"fast": fast, "torch": engine_torch(a, probe)[0]}
        if base is not None:
            curves["baseline"] = engine_baseline(base, a, probe)[0]
        if kernels is not None:
            curves["refnx"] = kernels["abeles"](probe.q, to_refnx_layers(a)[0])
        try:
            curves["refl1d"] = engine_refl1d(a, probe)[0]
        except Exception as exc:  # noqa: BLE001 - the report says how the reference failed (ZeroDivisionError)
            curves["refl1d"] = f"{type(exc).__name__}"
        nonfinite = {k: (v if isinstance(v, str) else int(np.sum(~np.isfinite(v)))) for k, v in curves.items()}
        refnx = curves.get("refnx")
        ok = np.isfinite(refnx) if isinstance(refnx, np.ndarray) else None
        rows[str(n)] = {
            "nonfinite": nonfinite,
            "fast_vs_torch": max_rel(fast, curves["torch"]),
            "fast_vs_refnx_where_finite": None if ok is None else max_rel(fast[ok], refnx[ok]),
            "fast_seconds": seconds,
        }
        print(f"  {n:4d} layers: non-finite " + ", ".join(f"{k} {v}" for k, v in nonfinite.items()), flush=True)
    return rows


# --------------------------------------------------------------------------- benchmark
def run(args: argparse.Namespace) -> dict[str, Any]:
    threads = min(args.threads, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(threads)
    torch.set_num_threads(threads)

    load_before = os.getloadavg()
    stack = FilmStack.default()
    smeared = Probe()
    assert smeared.dq_is_fwhm and smeared.dq_over_q is not None
    probes = {"unsmeared": smeared.unsmeared(), "smeared": smeared}
    batch = sample_stacks(stack, args.n, args.seed)

    def small(k: int) -> StackArrays:
        """The first ``k`` stacks of the same batch."""
        return batch[: min(k, args.n)]

    ref_set, conv_set = small(args.n_refl1d), small(args.n_converged)
    edge = critical_edge(float(batch.sld[0, 0]), float(batch.sld[0, -1]))
    kernels = refnx_kernels()
    base = load_baseline(args.baseline) if args.baseline else None

    speed: dict[str, dict[str, float | None]] = {row: {"unsmeared": None, "smeared": None} for row in ROWS}
    sizes: dict[str, int] = {}
    extra: dict[str, Any] = {}
    curves: dict[str, dict[str, np.ndarray]] = {row: {} for row in ROWS}  # on ref_set / conv_set

    def timed(row: str, kind: str, fn: Callable[[], Any], n: int) -> Any:
        t, result = best_of(fn, repeats=args.repeats)
        speed[row][kind] = n / t
        print(f"  {row:<36s} {kind:<9s} N={n:<6d} best {t * 1e3:9.1f} ms  {n / t:12,.0f} curves/s", flush=True)
        return result

    print(f"timing (best of {args.repeats} after one warm-up call)", flush=True)
    speed[BASELINE_ROW] = {"unsmeared": None, "smeared": None}
    for kind, probe in probes.items():
        row = ROWS[0]
        sizes[row] = args.n
        if base is None:
            timed(row, kind, partial(engine_fast, batch, probe), args.n)
        else:  # interleaved: each repeat times the current engine, then the baseline
            now, then = partial(engine_fast, batch, probe), partial(engine_baseline, base, batch, probe)
            now(), then()
            best = {row: float("inf"), BASELINE_ROW: float("inf")}
            for _ in range(args.repeats):
                for name, fn in ((row, now), (BASELINE_ROW, then)):
                    t0 = time.perf_counter()
                    fn()
                    best[name] = min(best[name], time.perf_counter() - t0)
            for name, t in best.items():
                speed[name][kind] = args.n / t
                print(f"  {name:<36s} {kind:<9s} N={args.n:<6d} best {t * 1e3:9.1f} ms  {args.n / t:12,.0f} curves/s")
            extra[f"fast / baseline {base['rev']} speed, {kind}"] = best[BASELINE_ROW] / best[row]
        curves[row][kind] = engine_fast(ref_set, probe)
        if kind == "smeared":
            curves[row]["converged_set"] = engine_fast(conv_set, probe)

        row = ROWS[1]
        tb = small(args.n_torch)
        sizes[row] = tb.batch
        timed(row, kind, partial(engine_torch, tb, probe), tb.batch)
        curves[row][kind] = engine_torch(ref_set, probe)
        if kind == "smeared":
            curves[row]["converged_set"] = engine_torch(conv_set, probe)

        row = ROWS[2]
        sizes[row] = ref_set.batch
        curves[row][kind] = timed(row, kind, partial(engine_refl1d, ref_set, probe), ref_set.batch)
        if kind == "smeared":
            curves[row]["converged_set"] = curves[row][kind][: conv_set.batch]

        row = ROWS[3]
        if kernels is None:
            continue
        if kind == "unsmeared":
            vb = small(args.n_refnx)
            vlayers = to_refnx_layers(vb)
            sizes[row] = vb.batch
            timed(row, kind, partial(engine_refnx_vectorised, kernels, vlayers, probe, threads), vb.batch)
            rlayers = to_refnx_layers(ref_set)
            t, loop = best_of(partial(engine_refnx_loop, kernels, rlayers, probe, threads), repeats=args.repeats)
            extra["refnx C abeles per curve, unsmeared curves/s"] = ref_set.batch / t
            print(
                f"  {'refnx C abeles, per-curve loop':<36s} {kind:<9s} N={ref_set.batch:<6d} "
                f"best {t * 1e3:9.1f} ms  {ref_set.batch / t:12,.0f} curves/s",
                flush=True,
            )
            curves[row][kind] = engine_refnx_vectorised(kernels, rlayers, probe, threads)
            extra["refnx C abeles vs abeles_vectorised, max rel"] = max_rel(loop, curves[row][kind])
        else:
            rlayers = to_refnx_layers(ref_set)
            curves[row][kind] = timed(
                row, kind, partial(engine_refnx_loop, kernels, rlayers, probe, threads), ref_set.batch
            )
            curves[row]["converged_set"] = curves[row][kind][: conv_set.batch]

    if kernels is None:
        print(f"  {ROWS[3]}: skipped (refnx is not installed; `pip install -e .[bench]`)")

    print(f"converged smearing reference on {conv_set.batch} stacks ...", flush=True)
    from converged_smearing import converged_smear

    converged = converged_smear(smeared.q, smeared.sigma, conv_set, edge, nodes=120)

    errors: dict[str, dict[str, float | None]] = {}
    refl1d_u = curves[ROWS[2]]["unsmeared"]
    refnx_u = curves[ROWS[3]].get("unsmeared")
    for row in ROWS:
        c = curves[row]
        if not c:
            errors[row] = {"vs_refl1d": None, "vs_refnx": None, "vs_converged_smeared": None, "smeared_vs_refl1d": None}
            continue
        errors[row] = {
            "vs_refl1d": None if row == ROWS[2] else max_rel(c["unsmeared"], refl1d_u),
            "vs_refnx": None if (refnx_u is None or row == ROWS[3]) else max_rel(c["unsmeared"], refnx_u),
            "vs_converged_smeared": max_rel(c["converged_set"], converged),
            "smeared_vs_refl1d": None if row == ROWS[2] else max_rel(c["smeared"], curves[ROWS[2]]["smeared"]),
        }

    hard = None
    if args.n_hard > 0:
        print(
            f"hard stacks ({args.n_hard} per family) against the brute-force average of refnx's curve ...", flush=True
        )
        hard = hard_accuracy(args, base, kernels)
    print("multilayers, 4,000 Q points, unsmeared ...", flush=True)
    layers = multilayer_check(base, kernels)

    fast = speed[ROWS[0]]
    targets = {
        kind: {"target": target, "measured": fast[kind], "met": fast[kind] >= target}
        for kind, target in (("unsmeared", TARGET_UNSMEARED), ("smeared", TARGET_SMEARED))
    }
    return {
        "config": {
            "stack": "FilmStack.default() sampled uniformly in its bounds",
            "n_q": int(smeared.q.size),
            "dq_over_q_fwhm": smeared.dq_over_q,
            "seed": args.seed,
            "batch_sizes": sizes,
            "n_accuracy_unsmeared": ref_set.batch,
            "n_accuracy_converged": conv_set.batch,
            "repeats": args.repeats,
            "dtype": "float64",
        },
        "threads": {
            "loadavg_after": Path("/proc/loadavg").read_text().strip() if Path("/proc/loadavg").exists() else None,
            "numba": numba.get_num_threads(),
            "torch": torch.get_num_threads(),
            "refnx": threads,
            "cpu_count": os.cpu_count(),
            "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
        },
        "platform": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "numba": numba.__version__,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
        },
        "curves_per_s": speed,
        "max_rel_error": errors,
        "hard_stacks_max_rel_error": hard,
        "multilayers": layers,
        "baseline": None if base is None else base["rev"],
        "extra": extra,
        "targets": targets,
        "refnx_available": kernels is not None,
    }


# --------------------------------------------------------------------------- report
def _fmt_speed(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def _fmt_err(v: float | None) -> str:
    return "—" if v is None else f"{v:.2e}"


def print_report(res: dict[str, Any]) -> None:
    cfg, thr = res["config"], res["threads"]
    print()
    print(
        f"R(Q) of pyreflect's default stack, {cfg['n_q']} Q points, float64; "
        f"smeared: dQ/Q = {cfg['dq_over_q_fwhm']} FWHM"
    )
    print(f"threads: numba {thr['numba']}, torch {thr['torch']}, refnx {thr['refnx']} (cpu_count {thr['cpu_count']})")
    before, after = thr["load_average_1min_before_after"]
    print(
        f"1-min load average before/after: {before:.2f} / {after:.2f} (other processes on these cores slow every row)"
    )
    print("batch sizes: " + ", ".join(f"{k} {v}" for k, v in cfg["batch_sizes"].items()))
    header = ("engine", "unsmeared c/s", "smeared c/s", "vs refl1d", "vs refnx", "vs converged")
    widths = (36, 14, 14, 10, 10, 13)
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))
    print(line)
    print("-" * len(line))
    if res["baseline"]:
        b = res["curves_per_s"][BASELINE_ROW]
        cells = (_fmt_speed(b["unsmeared"]), _fmt_speed(b["smeared"]), "", "", "")
        print(
            f"{BASELINE_ROW + ' ' + res['baseline']:<36s}  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths[1:]))
        )
    for row in ROWS:
        s, e = res["curves_per_s"][row], res["max_rel_error"][row]
        if row == ROWS[3] and not res["refnx_available"]:
            print(f"{row:<36s}  skipped: refnx is not installed")
            continue
        cells = (
            _fmt_speed(s["unsmeared"]),
            _fmt_speed(s["smeared"]),
            _fmt_err(e["vs_refl1d"]),
            _fmt_err(e["vs_refnx"]),
            _fmt_err(e["vs_converged_smeared"]),
        )
        print(row.ljust(widths[0]) + "  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths[1:])))
    print(
        f"errors: max |R/R_ref - 1|; vs refl1d / vs refnx unsmeared on {cfg['n_accuracy_unsmeared']} stacks, "
        f"vs converged smeared on {cfg['n_accuracy_converged']} stacks"
    )
    print("refnx row: unsmeared = abeles_vectorised (batched), smeared = refnx.reflect.reflectivity(dq=%) per curve")
    for k, v in res["extra"].items():
        print(f"  {k}: {v:,.4g}")
    sm = {row: res["max_rel_error"][row]["smeared_vs_refl1d"] for row in ROWS}
    print(
        "smeared vs refl1d's own smearing (max rel): "
        + ", ".join(f"{k} {_fmt_err(v)}" for k, v in sm.items() if v is not None)
    )
    if res["hard_stacks_max_rel_error"]:
        hard = res["hard_stacks_max_rel_error"]
        names = list(next(iter(hard.values())))
        print()
        print(
            "hard stacks, smeared (default probe), max |R/R_brute - 1| (brute force: refnx abeles, split at every edge)"
        )
        print(f"{'family':<14s}" + "".join(f"{n:>12s}" for n in names))
        for family, errors in hard.items():
            print(f"{family:<14s}" + "".join(f"{errors[n]:>12.1e}" for n in names))
    print()
    print("multilayers (Si / n x [70 A 9.4, 80 A -1.95] / air), 4,000 Q points, unsmeared: non-finite values")
    for n, row in res["multilayers"].items():
        nonfinite = ", ".join(f"{k} {v}" for k, v in row["nonfinite"].items())
        vs_refnx = row["fast_vs_refnx_where_finite"]
        print(
            f"  {n:>4s} layers: {nonfinite}; fast vs torch {row['fast_vs_torch']:.1e}"
            + ("" if vs_refnx is None else f", vs refnx where finite {vs_refnx:.1e}")
            + f"; fast {row['fast_seconds'] * 1e3:.0f} ms"
        )
    print()
    for kind, t in res["targets"].items():
        verdict = "MET" if t["met"] else "NOT MET"
        print(
            f"target fast path {kind:<9s} >= {t['target']:>9,.0f} curves/s (float64, 2 cores): "
            f"{t['measured']:,.0f} -> {verdict}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=50_000, help="batch size of the fast path (default 50000)")
    parser.add_argument("--n-torch", type=int, default=5_000, help="batch size of the torch path (default 5000)")
    parser.add_argument("--n-refnx", type=int, default=5_000, help="batch of refnx abeles_vectorised (default 5000)")
    parser.add_argument("--n-refl1d", type=int, default=300, help="stacks for refl1d, per-curve refnx and errors (300)")
    parser.add_argument("--n-converged", type=int, default=20, help="stacks for the converged reference (20)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement, best is kept (3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-hard", type=int, default=4, help="seeded stacks per hard family (default 4; 0 skips)")
    parser.add_argument(
        "--baseline", default=None, metavar="REV", help="also time the fast engine of this git revision (e.g. c581d52)"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    return finish(run(args), print_report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())

"""Synthetic training-data generation: workbench vs pyreflect's ``ReflectivityDataGenerator``.

What is compared
----------------
Every row generates NR curves (R on pyreflect's 308 log-spaced Q points, resolution smeared with
dQ/Q = 0.0294855 FWHM) *and* 900-point SLD profiles for pyreflect's default film stack
(``FilmStack.default()``: Si / SiOx / five polymer layers / air, parameters Latin-hypercube
sampled inside its 19 bounds) — the defaults of ``GeneratorConfig`` and of pyreflect:

* ``pyreflect ReflectivityDataGenerator`` – pyreflect-nr's generator
  (``pyreflect/input/reflectivity_data_generator.py``) built on ``layer_desc`` / ``layer_bound`` =
  ``FilmStack.default().to_layer_desc()`` / ``.to_layer_bound()``; ``generate(n)`` runs one refl1d
  ``Experiment`` per curve (R and ``smooth_profile``) and returns float32 arrays, all in memory.
  Timed on ``--n-pyreflect`` curves (default 500), best of ``--repeats`` after a 20-curve warm-up,
  each call on a fresh generator (it appends to its lists, never resets them).  Its console output
  (typer, tqdm) and refl1d's deprecation warning are silenced.  pyreflect-nr pins torch 2.5.1, so it
  is installed with ``pip install --no-deps pyreflect-nr`` plus ``typer``; its ``pyreflect.input``
  package also imports scikit-learn, so when that is missing the generator's file is loaded on its
  own.  If it cannot be loaded its row is skipped with the reason.
* ``workbench (in memory)`` – ``generate(FilmStack.default(), GeneratorConfig(num_curves=N, seed=0))``
  with N = ``--n-memory`` (default 100,000): best of ``--repeats`` after a 2,048-curve warm-up (numba
  compiles on first use).
* ``workbench (to disk)`` – ``generate_to_disk(...)`` of ``--n-disk`` curves (default 1,000,000)
  with their SLD profiles into a fresh folder under ``--tmp-dir`` (deleted afterwards; 1M curves
  are ~10 GB).  One run, timed around the call (it ends with an fsync of every file); numba is
  warmed up first in the same process.
* optionally (``--dask``) the same to-disk generation of ``--n-dask`` curves on a 2-worker Dask
  ``LocalCluster`` (``dask="local"``) and, for the same config, in one process: the two
  ``dataset.json`` ``content_hash`` values must be equal.

Each row runs in its own freshly *spawned* child process, so its peak memory is that of exactly
that work: the child's high-water RSS (``VmHWM`` of ``/proc/self/status``, which an exec resets;
``ru_maxrss`` is recorded too, but Linux carries the parent's high-water mark into it across
fork/exec).  It includes the ~0.3 GB of importing the workbench (numba, torch).  Dask workers are
separate processes and are not in the Dask row's figure.

Physics check (``--n-physics`` parameter sets, default 5): the curves and profiles that
``generate(...)`` returns are compared with pyreflect's module-level
``calculate_reflectivity(q, model_description)`` — what its generator runs per curve — for model
descriptions built from the same sampled parameters, and both R are compared with a converged
Gaussian-smearing integral (``tests/converged_smearing.py``, 120 Gauss–Legendre nodes per side):

* R: max |R_ours / R_pyreflect − 1| over Q, and each against the converged reference.  refl1d's
  default smearing treats R as piecewise linear between the data points and cuts the Gaussian at
  ±3σ and at the ends of the Q range, so pyreflect is off by several per cent up to ~20 % (mostly
  at Q_max); ours agrees with the converged integral to ~1e-4 (float32 output).
* SLD: pyreflect resamples refl1d's ``smooth_profile`` (dz = 0.1 Å) to 900 points over
  [z_0, z_last of refl1d's grid] and shifts z to start at 0 (pyreflect-nr 1.4.6 interpolates
  linearly with ``np.interp``; older versions used a ``CubicSpline``); ours evaluates the profile
  directly at 900 points over refl1d's range [left, right].  Reported as max |Δρ| / max |ρ|:
  as generated (float32, each on its own z grid: refl1d's last grid point lies up to dz beyond
  ``right``, so the two grids differ by up to 0.1 Å at the end), and with ours evaluated at
  pyreflect's own z points (float64), which leaves only pyreflect's interpolation error
  (≤ dz²/8 · max ρ'').  The profile itself equals refl1d's to 1e-12 (``tests/test_profile.py``).

Targets (from the issue): ≥ 50× pyreflect's curves/s, judged on the in-memory row (the same work
as pyreflect's generator: NR + SLD as float32 arrays in memory; the to-disk ratio is printed too);
1,000,000 curves with SLD profiles in under 60 s on 2 cores and peak memory under 2 GB (2048 MB),
judged on the to-disk row (the way large sets are made; 60 s is not judged when ``--n-disk`` is
smaller than 1,000,000).

Run from the repository root::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_generation.py [--n-disk 1000000] [--dask] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import io
import json
import multiprocessing as mp
import os
import platform
import queue
import resource
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from _report import finish

from workbench.data.generate import GeneratorConfig, generate, generate_to_disk
from workbench.data.sampling import BLOCK, apply_parameters
from workbench.physics import FilmStack

TARGET_SPEEDUP = 50.0  # × pyreflect's curves/s
TARGET_CURVES = 1_000_000  # with SLD profiles ...
TARGET_SECONDS = 60.0  # ... in under this on 2 cores
TARGET_PEAK_MB = 2048.0

ROW_PYREFLECT = "pyreflect ReflectivityDataGenerator"
ROW_MEMORY = "workbench (in memory)"
ROW_DISK = "workbench (to disk)"
ROW_DASK = "workbench (to disk, Dask 2 workers)"
ROW_DASK_REF = "workbench (to disk, same N, 1 process)"


# --------------------------------------------------------------------------- helpers
def peak_rss_mb() -> dict[str, float]:
    """This process's high-water RSS in MB: ``VmHWM`` (Linux) and ``ru_maxrss``."""
    out: dict[str, float] = {}
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out["ru_maxrss"] = ru / (2**20 if sys.platform == "darwin" else 1024)  # bytes on macOS, kB on Linux
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                out["vmhwm"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    out["peak"] = out.get("vmhwm", out["ru_maxrss"])
    return out


def first_touch_gb_per_s(megabytes: int = 256) -> float:
    """Rate at which this process gets fresh memory from the OS (a page fault per page on first write).

    On bare metal this is several GB/s.  A virtual machine whose balloon driver reports free pages
    back to its host (virtio-balloon free page reporting) gets ~0.3 GB/s for memory that was freed
    a few seconds earlier: every fresh array and every page-cache page of a written file pays it.
    """
    t0 = time.perf_counter()
    a = np.ones(megabytes * 2**20 // 8)
    seconds = time.perf_counter() - t0
    del a
    return megabytes / 1024 / seconds


def thread_info() -> dict[str, Any]:
    import numba

    return {"numba": numba.get_num_threads(), "NUMBA_NUM_THREADS": numba.config.NUMBA_NUM_THREADS}


def bundle_bytes(folder: Path) -> dict[str, int]:
    """Apparent size and allocated size of every file in a bundle folder."""
    files = [p for p in folder.iterdir() if p.is_file()]
    return {
        "apparent": sum(p.stat().st_size for p in files),
        "allocated": sum(p.stat().st_blocks * 512 for p in files),
    }


def best_of(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float]]:
    """Best wall time of ``repeats`` calls, and all of them."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), times


@contextlib.contextmanager
def quiet() -> Any:
    """Silence stdout, stderr (tqdm, typer.echo) and warnings (refl1d's QProbe ``data=`` deprecation)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield


# --------------------------------------------------------------------------- pyreflect
def load_pyreflect() -> tuple[ModuleType | None, str]:
    """pyreflect's ``reflectivity_data_generator`` module and how it was loaded (or why not)."""
    name = "pyreflect.input.reflectivity_data_generator"
    try:
        return importlib.import_module(name), f"import {name}"
    except ImportError as exc:
        first_error = f"{type(exc).__name__}: {exc}"
    # pyreflect.input/__init__ also imports its data processors (scikit-learn, torch); the generator
    # itself needs only typer, tqdm, scipy and refl1d, so load its file on its own.
    try:
        spec = importlib.util.find_spec("pyreflect")
    except ImportError as exc:
        return None, f"{first_error}; {type(exc).__name__}: {exc}"
    if spec is None or not spec.submodule_search_locations:
        return None, f"{first_error} (pyreflect-nr is not installed: pip install --no-deps pyreflect-nr typer)"
    path = Path(next(iter(spec.submodule_search_locations))) / "input" / "reflectivity_data_generator.py"
    try:
        file_spec = importlib.util.spec_from_file_location("pyreflect_reflectivity_data_generator", path)
        module = importlib.util.module_from_spec(file_spec)
        file_spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - report any failure and skip the row
        return None, f"{first_error}; loading {path} failed: {type(exc).__name__}: {exc}"
    return module, f"{path} loaded on its own ({first_error} in pyreflect.input)"


def pyreflect_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pyreflect-nr")
    except PackageNotFoundError:
        return "not installed"


def pyreflect_generator(module: ModuleType, stack: FilmStack) -> Any:
    """A fresh ``ReflectivityDataGenerator`` on ``stack`` (its own copies of layer_desc/layer_bound)."""
    n_inner = len(stack.layers) - 3  # pyreflect's num_layers: the layers between SiOx and the ambient
    with quiet():
        return module.ReflectivityDataGenerator(
            num_layers=n_inner, layer_desc=stack.to_layer_desc(), layer_bound=stack.to_layer_bound()
        )


def model_description(stack: FilmStack, values: np.ndarray) -> dict[str, Any]:
    """pyreflect's model description of ``stack`` with one row of sampled values (bound order)."""
    layers = stack.to_layer_desc()
    for value, b in zip(values, stack.bounds):
        layers[b.i][b.par] = float(value)
    return {"layers": layers, "scale": 1, "background": 0}


# --------------------------------------------------------------------------- child processes
def _child_pyreflect(n: int, repeats: int) -> dict[str, Any]:
    module, how = load_pyreflect()
    if module is None:
        return {"skipped": how}
    stack = FilmStack.default()
    with quiet():
        nr, sld = pyreflect_generator(module, stack).generate(20)  # refl1d's first-use costs
    assert nr.shape == (20, 2, 308) and sld.shape == (20, 2, 900), (nr.shape, sld.shape)

    def once() -> None:
        gen = pyreflect_generator(module, stack)
        with quiet():
            gen.generate(n)

    best, times = best_of(once, repeats)
    return {"n": n, "seconds": best, "times": times, "loaded": how, "version": pyreflect_version()}


def _child_memory(n: int, seed: int, repeats: int) -> dict[str, Any]:
    stack = FilmStack.default()
    generate(stack, GeneratorConfig(num_curves=2 * BLOCK, seed=seed + 1))  # numba compile / cache load
    config = GeneratorConfig(num_curves=n, seed=seed)
    shapes: list[tuple[int, ...]] = []

    def once() -> None:
        data = generate(stack, config)
        shapes[:] = [data.nr.shape, data.sld.shape]

    best, times = best_of(once, repeats)
    return {"n": n, "seconds": best, "times": times, "shapes": shapes}


def _child_disk(n: int, seed: int, out_dir: str, dask: str | None) -> dict[str, Any]:
    stack = FilmStack.default()
    t0 = time.perf_counter()
    generate(stack, GeneratorConfig(num_curves=2 * BLOCK, seed=seed + 1))  # numba compile / cache load
    warmup = time.perf_counter() - t0
    config = GeneratorConfig(num_curves=n, seed=seed)
    t0 = time.perf_counter()
    folder = generate_to_disk(stack, config, out_dir, dask=dask)
    seconds = time.perf_counter() - t0
    meta = json.loads((folder / "dataset.json").read_text())
    return {
        "n": n,
        "seconds": seconds,
        "warmup_seconds": warmup,
        "generation_seconds_in_meta": meta["generation_seconds"],
        "content_hash": meta["content_hash"],
        "bytes": bundle_bytes(folder),
        "dask": dask,
    }


CHILD_TASKS: dict[str, Callable[..., dict[str, Any]]] = {
    "pyreflect": _child_pyreflect,
    "memory": _child_memory,
    "disk": _child_disk,
}


def _child_main(task: str, kwargs: dict[str, Any], results: mp.Queue) -> None:
    """Entry point of a spawned child: run one task, add its peak memory and threads, send it back."""
    try:
        out = CHILD_TASKS[task](**kwargs)
        out["threads"] = thread_info()
        out["memory_mb"] = peak_rss_mb()
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        out = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    results.put(out)


def in_child(task: str, timeout: float = 3600.0, **kwargs: Any) -> dict[str, Any]:
    """Run ``CHILD_TASKS[task](**kwargs)`` in a freshly spawned process and return its result."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=_child_main, args=(task, kwargs, results), daemon=False)  # Dask needs children
    t0 = time.perf_counter()
    proc.start()
    out: dict[str, Any] | None = None
    while out is None:
        try:
            out = results.get(timeout=2.0)
        except queue.Empty:
            if not proc.is_alive():
                out = {"error": f"child process died with exit code {proc.exitcode}"}
            elif time.perf_counter() - t0 > timeout:
                proc.terminate()
                out = {"error": f"child process timed out after {timeout:.0f} s"}
    proc.join()
    out["child_wall_seconds"] = time.perf_counter() - t0
    return out


def disk_run(n: int, seed: int, tmp_dir: Path, dask: str | None) -> dict[str, Any]:
    """One to-disk generation in a child process into a temporary folder that is removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="bench_generation_", dir=tmp_dir))
    try:
        return in_child("disk", n=n, seed=seed, out_dir=str(folder / "bundle"), dask=dask)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------- physics check
def physics_check(n_sets: int, seed: int) -> dict[str, Any]:
    """Our generated curves/profiles vs pyreflect's ``calculate_reflectivity`` on the same parameters."""
    module, how = load_pyreflect()
    if module is None:
        return {"skipped": how}
    from converged_smearing import converged_smear

    from workbench.physics import critical_edge, sld_profile
    from workbench.physics.kernel_profile import profile_range_numpy, sld_profiles_fast
    from workbench.physics.refl1d_engine import sld_profile_refl1d

    stack = FilmStack.default()
    config = GeneratorConfig(num_curves=n_sets, seed=seed)
    ours = generate(stack, config)
    arrays = apply_parameters(stack, ours.params)
    probe = config.probe()
    q = probe.q
    edge = critical_edge(float(arrays.sld[0, 0]), float(arrays.sld[0, -1]))
    converged = converged_smear(q, probe.sigma, arrays, edge, nodes=120)

    rows = []
    for k in range(n_sets):
        with quiet():
            r_py, z_py, rho_py = module.calculate_reflectivity(q, model_description(stack, ours.params[k]))
        # what pyreflect's generator stores: z shifted to start at 0, float32
        z_py = np.asarray(z_py, dtype=np.float64)
        z0 = z_py - z_py.min()
        r_ours = ours.nr[k, 1].astype(np.float64)
        z_ours, rho_ours = ours.sld[k, 0].astype(np.float64), ours.sld[k, 1].astype(np.float64)
        rho_py32 = np.asarray(rho_py, dtype=np.float32).astype(np.float64)
        scale = float(np.max(np.abs(rho_py)))
        # ours evaluated at pyreflect's own z points (float64): leaves only its interpolation error
        a = arrays[k : k + 1]
        left, _ = profile_range_numpy(a.thickness, a.roughness)
        step = np.array([(z_py[-1] - z_py[0]) / (z_py.size - 1)])
        rho_same = sld_profiles_fast(a.sld, a.thickness, a.roughness, left, step, z_py.size, dtype=np.float64)[0]
        # and at refl1d's own smooth_profile points (dz = 0.1 Å), before pyreflect resamples them
        z_raw, rho_raw, _ = sld_profile_refl1d(
            FilmStack.from_pyreflect(model_description(stack, ours.params[k])["layers"])
        )
        rho_raw_ours = sld_profile(a, z=z_raw)[1][0]
        rel = np.abs(r_ours / r_py - 1.0)
        rows.append(
            {
                "R_ours_vs_pyreflect": float(rel.max()),
                "R_ours_vs_pyreflect_at_q": float(q[rel.argmax()]),
                "R_ours_vs_converged": float(np.max(np.abs(r_ours / converged[k] - 1.0))),
                "R_pyreflect_vs_converged": float(np.max(np.abs(r_py / converged[k] - 1.0))),
                "SLD_as_generated": float(np.max(np.abs(rho_ours - rho_py32)) / scale),
                "SLD_same_z": float(np.max(np.abs(rho_same - rho_py)) / scale),
                "SLD_vs_refl1d_raw": float(np.max(np.abs(rho_raw_ours - rho_raw)) / scale),
                "z_grid_max_diff_A": float(np.max(np.abs(z_ours - z0))),
            }
        )
    worst = {key: max(r[key] for r in rows) for key in rows[0] if key != "R_ours_vs_pyreflect_at_q"}
    return {"n_sets": n_sets, "seed": seed, "loaded": how, "per_set": rows, "max": worst}


# --------------------------------------------------------------------------- benchmark
def run(args: argparse.Namespace) -> dict[str, Any]:
    import numba

    load_before = os.getloadavg()
    first_touch = first_touch_gb_per_s()
    rows: dict[str, dict[str, Any]] = {}

    def show(row: str, res: dict[str, Any]) -> None:
        if "error" in res:
            print(f"  {row}: FAILED: {res['error']}\n{res.get('traceback', '')}", flush=True)
        elif "skipped" in res:
            print(f"  {row}: skipped: {res['skipped']}", flush=True)
        else:
            print(
                f"  {row:<40s} N={res['n']:<9,d} {res['seconds']:8.2f} s  {res['n'] / res['seconds']:12,.0f} curves/s  "
                f"peak {res['memory_mb']['peak']:7.0f} MB  (child {res['child_wall_seconds']:.1f} s)",
                flush=True,
            )

    print(f"{ROW_PYREFLECT}: generate({args.n_pyreflect}), best of {args.repeats} ...", flush=True)
    rows[ROW_PYREFLECT] = in_child("pyreflect", n=args.n_pyreflect, repeats=args.repeats)
    show(ROW_PYREFLECT, rows[ROW_PYREFLECT])

    print(f"{ROW_MEMORY}: generate(N={args.n_memory:,}), best of {args.repeats} ...", flush=True)
    rows[ROW_MEMORY] = in_child("memory", n=args.n_memory, seed=args.seed, repeats=args.repeats)
    show(ROW_MEMORY, rows[ROW_MEMORY])

    print(f"{ROW_DISK}: generate_to_disk(N={args.n_disk:,}) into {args.tmp_dir} ...", flush=True)
    rows[ROW_DISK] = disk_run(args.n_disk, args.seed, args.tmp_dir, None)
    show(ROW_DISK, rows[ROW_DISK])

    dask: dict[str, Any] | None = None
    if args.dask:
        print(
            f"Dask: generate_to_disk(N={args.n_dask:,}) on a 2-worker LocalCluster and in one process ...", flush=True
        )
        rows[ROW_DASK] = disk_run(args.n_dask, args.seed, args.tmp_dir, "local")
        show(ROW_DASK, rows[ROW_DASK])
        rows[ROW_DASK_REF] = disk_run(args.n_dask, args.seed, args.tmp_dir, None)
        show(ROW_DASK_REF, rows[ROW_DASK_REF])
        h_dask, h_one = rows[ROW_DASK].get("content_hash"), rows[ROW_DASK_REF].get("content_hash")
        dask = {
            "n": args.n_dask,
            "hash_dask": h_dask,
            "hash_single": h_one,
            "equal": h_dask is not None and h_dask == h_one,
        }

    physics: dict[str, Any] = {"skipped": "--n-physics 0"}
    if args.n_physics > 0:
        print(f"physics: {args.n_physics} parameter sets vs pyreflect's calculate_reflectivity ...", flush=True)
        physics = physics_check(args.n_physics, args.seed)

    def rate(row: str) -> float | None:
        r = rows.get(row, {})
        return r["n"] / r["seconds"] if "seconds" in r else None

    py_rate, mem_rate, disk = rate(ROW_PYREFLECT), rate(ROW_MEMORY), rows[ROW_DISK]
    disk_ok = "seconds" in disk
    targets = {
        "speedup": {
            "target": f">= {TARGET_SPEEDUP:.0f}x pyreflect's curves/s (in memory, as pyreflect)",
            "measured": (mem_rate / py_rate) if (py_rate and mem_rate) else None,
            "to_disk": (rate(ROW_DISK) / py_rate) if (py_rate and disk_ok) else None,
        },
        "million_in_60s": {
            "target": f"{TARGET_CURVES:,} curves with SLD profiles in < {TARGET_SECONDS:.0f} s on 2 cores",
            "measured": disk["seconds"] if disk_ok else None,
        },
        "peak_memory": {
            "target": f"peak memory < {TARGET_PEAK_MB:.0f} MB (to-disk row)",
            "measured": disk["memory_mb"]["peak"] if disk_ok else None,
        },
    }
    targets["speedup"]["met"] = (
        targets["speedup"]["measured"] is not None and targets["speedup"]["measured"] >= TARGET_SPEEDUP
    )
    t = targets["million_in_60s"]
    t["met"] = t["measured"] is not None and disk["n"] >= TARGET_CURVES and t["measured"] < TARGET_SECONDS
    if disk_ok and disk["n"] < TARGET_CURVES:
        t["note"] = f"only {disk['n']:,} curves were run (--n-disk); not judged"
        t["met"] = None
    t = targets["peak_memory"]
    t["met"] = t["measured"] is not None and t["measured"] < TARGET_PEAK_MB

    return {
        "config": {
            "stack": "FilmStack.default(), Latin hypercube in its bounds (GeneratorConfig defaults)",
            "generator": GeneratorConfig().model_dump(mode="json", exclude={"num_curves", "realism"}),
            "n_pyreflect": args.n_pyreflect,
            "n_memory": args.n_memory,
            "n_disk": args.n_disk,
            "n_dask": args.n_dask if args.dask else None,
            "repeats": args.repeats,
            "seed": args.seed,
            "tmp_dir": str(args.tmp_dir),
        },
        "threads": {
            "parent_numba": numba.get_num_threads(),
            "cpu_count": os.cpu_count(),
            "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
            "first_touch_gb_per_s": first_touch,
        },
        "platform": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "numba": numba.__version__,
            "pyreflect-nr": pyreflect_version(),
            "machine": platform.machine(),
            "processor": platform.processor(),
        },
        "rows": rows,
        "dask": dask,
        "physics": physics,
        "targets": targets,
    }


# --------------------------------------------------------------------------- report
def print_report(res: dict[str, Any]) -> None:
    cfg, thr, rows = res["config"], res["threads"], res["rows"]
    gen = cfg["generator"]
    print()
    print(
        f"Generation of NR ({gen['num_q']} Q, dQ/Q = {gen['q_resolution']} FWHM) + SLD ({gen['sld_points']} points), "
        f"{gen['dtype']}, pyreflect's default stack, {gen['sampling']} sampling"
    )
    child_threads = sorted({r["threads"]["numba"] for r in rows.values() if "threads" in r})
    print(
        f"cpu_count {thr['cpu_count']}; numba threads in the child processes: {', '.join(map(str, child_threads))} "
        "(Dask: 2 workers x 1 thread)"
    )
    before, after = thr["load_average_1min_before_after"]
    print(
        f"1-min load average before/after: {before:.2f} / {after:.2f} (other processes on these cores slow every row)"
    )
    print(
        f"fresh memory first touch: {thr['first_touch_gb_per_s']:.2f} GB/s (bare metal: several GB/s; a VM that "
        "returns "
        "freed pages to its host: ~0.3 GB/s, paid by every new array and every page-cache page written)"
    )
    py = rows.get(ROW_PYREFLECT, {})
    py_rate = py["n"] / py["seconds"] if "seconds" in py else None
    if "loaded" in py:
        print(f"pyreflect-nr {py['version']}: {py['loaded']}")

    header = ("generator", "N", "curves/s", "vs pyreflect", "peak memory", "wall time")
    widths = (40, 10, 11, 12, 11, 10)
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))
    print(line)
    print("-" * len(line))
    for row, r in rows.items():
        label = f"{ROW_DISK[:-1]}, {r['n']:,})" if row == ROW_DISK and "n" in r else row
        if "seconds" not in r:
            why = r.get("skipped") or r.get("error", "no result")
            print(f"{label:<{widths[0]}s}  {'skipped' if 'skipped' in r else 'FAILED'}: {why}")
            continue
        speed = r["n"] / r["seconds"]
        cells = (
            f"{r['n']:,}",
            f"{speed:,.0f}",
            "1x" if row == ROW_PYREFLECT else (f"{speed / py_rate:,.0f}x" if py_rate else "—"),
            f"{r['memory_mb']['peak']:,.0f} MB",
            f"{r['seconds']:.2f} s",
        )
        print(label.ljust(widths[0]) + "  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths[1:])))
    print(
        "wall time: pyreflect / in memory = best call; to disk = the one generate_to_disk call (incl. fsync). "
        "peak memory = the child process's VmHWM (incl. ~0.3 GB of imports)"
    )
    for row in (ROW_DISK, ROW_DASK, ROW_DASK_REF):
        r = rows.get(row, {})
        if "bytes" in r:
            print(
                f"{row}: bundle {r['bytes']['apparent'] / 1e9:.2f} GB on disk ({r['bytes']['apparent'] / r['n']:,.0f} "
                "B/curve), "
                f"numba warm-up {r['warmup_seconds']:.1f} s, child process {r['child_wall_seconds']:.1f} s in all"
            )
    if res["dask"] is not None:
        d = res["dask"]
        verdict = "EQUAL" if d["equal"] else "DIFFERENT"
        print(
            f"Dask vs one process, N={d['n']:,}: content_hash {verdict} ({(d['hash_dask'] or '?')[:16]}… / "
            f"{(d['hash_single'] or '?')[:16]}…)"
        )

    ph = res["physics"]
    print()
    if "skipped" in ph:
        print(f"physics check: skipped: {ph['skipped']}")
    else:
        print(
            f"physics: generate() vs pyreflect's calculate_reflectivity on {ph['n_sets']} parameter sets (seed "
            f"{ph['seed']})"
        )
        head = (
            "set",
            "R ours/pyr",
            "at Q",
            "R ours/conv",
            "R pyr/conv",
            "SLD as gen.",
            "SLD same z",
            "SLD refl1d",
            "z grid Å",
        )
        w = (4, 11, 7, 11, 11, 11, 11, 11, 9)
        print("  ".join(h.rjust(x) for h, x in zip(head, w)))
        for k, r in enumerate(ph["per_set"]):
            cells = (
                str(k),
                f"{r['R_ours_vs_pyreflect']:.2e}",
                f"{r['R_ours_vs_pyreflect_at_q']:.4f}",
                f"{r['R_ours_vs_converged']:.2e}",
                f"{r['R_pyreflect_vs_converged']:.2e}",
                f"{r['SLD_as_generated']:.2e}",
                f"{r['SLD_same_z']:.2e}",
                f"{r['SLD_vs_refl1d_raw']:.2e}",
                f"{r['z_grid_max_diff_A']:.3f}",
            )
            print("  ".join(c.rjust(x) for c, x in zip(cells, w)))
        m = ph["max"]
        print(
            f"max: R ours vs pyreflect {m['R_ours_vs_pyreflect']:.2e}; vs the converged integral ours "
            f"{m['R_ours_vs_converged']:.2e}, pyreflect {m['R_pyreflect_vs_converged']:.2e}; "
            f"SLD max|Δρ|/max|ρ| as generated {m['SLD_as_generated']:.2e}, on pyreflect's z points "
            f"{m['SLD_same_z']:.2e}, "
            f"on refl1d's own dz = 0.1 Å points {m['SLD_vs_refl1d_raw']:.2e}"
        )
        print(
            "R: max |R/R_ref - 1| over Q (refl1d's smearing: piecewise-linear R, Gaussian cut at ±3σ and at the Q "
            "range ends). "
            "SLD 'as gen.': float32 outputs on each one's z grid; 'same z': ours at pyreflect's z points "
            "(its np.interp of refl1d's dz = 0.1 Å profile); 'refl1d': ours at refl1d's smooth_profile points, before "
            "resampling"
        )

    print()
    for t in res["targets"].values():
        m = t["measured"]
        if m is None:
            shown = "not measured"
        elif "x pyreflect" in t["target"]:
            shown = f"{m:,.0f}x"
        elif "MB" in t["target"]:
            shown = f"{m:,.0f} MB"
        else:
            shown = f"{m:.1f} s"
        verdict = {True: "MET", False: "NOT MET", None: "NOT JUDGED"}[t["met"]]
        note = f" ({t['note']})" if "note" in t else ""
        if t.get("to_disk") is not None:
            note += f" (to disk, incl. writing: {t['to_disk']:,.0f}x)"
        print(f"target {t['target']}: {shown} -> {verdict}{note}")
    if thr["cpu_count"] != 2:
        print(f"note: this machine has {thr['cpu_count']} cores; the targets are stated for 2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-pyreflect", type=int, default=500, help="curves per pyreflect generate() call (500)")
    parser.add_argument("--n-memory", type=int, default=100_000, help="curves of the in-memory run (100000)")
    parser.add_argument("--n-disk", type=int, default=1_000_000, help="curves of the to-disk run (1000000)")
    parser.add_argument("--dask", action="store_true", help="also run to disk on a 2-worker Dask LocalCluster")
    parser.add_argument("--n-dask", type=int, default=200_000, help="curves of the Dask comparison (200000)")
    parser.add_argument("--n-physics", type=int, default=5, help="parameter sets for the physics check (5; 0 skips)")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls of the pyreflect and in-memory rows (2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tmp-dir", type=Path, default=Path(tempfile.gettempdir()), help="where bundles are written (removed)"
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    return finish(run(args), print_report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())

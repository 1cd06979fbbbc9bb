"""Synthetic data generation: sample stacks in their bounds, compute NR and SLD, stream to disk.

Output follows pyreflect exactly by default — NR (N, 2, nQ) rows (Q, R), SLD (N, 2, nZ) rows
(z, ρ) with z starting at 0 on each profile's own refl1d range, float32, resolution smeared with
dQ/Q = 0.0294855 FWHM — and adds the parameter table pyreflect loses.  Options beyond pyreflect
(each off by default): physically consistent roughness, one z grid shared by every profile, and
measurement realism (:mod:`.realism`).  A :class:`~workbench.data.family.FamilyStack` is drawn with its
ties, and ``dataset.json`` keeps them and its family under ``stack``.

Work is cut into chunks of whole sampling blocks; every random draw is seeded per block, so the
same seed gives the same data whatever the chunk size or number of workers (threads here, or a
Dask cluster).  Long runs report progress and honour a stop signal (:mod:`workbench.events`).
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..events import Cancelled, Reporter, tqdm_listener
from ..physics.kernel_profile import profile_range_numpy, sld_profiles_fast
from ..physics.probe import DEFAULT_DQ_OVER_Q_FWHM, DEFAULT_NUM_Q, DEFAULT_Q_MAX, DEFAULT_Q_MIN, Probe
from ..physics.reflectivity import reflectivity
from ..physics.stack import FilmStack, StackArrays
from ..versions import package_versions
from . import dataset as B
from .family import stack_meta
from .realism import Realism
from .sampling import BLOCK, STREAM_NOISE, ParameterSampler, apply_parameters, block_rng

STAGE = "generate"
IN_MEMORY_LIMIT_BYTES = 4 * 2**30


class GeneratorConfig(BaseModel):
    """Everything that determines a generated data set (stored in its dataset.json)."""

    model_config = ConfigDict(extra="forbid")

    num_curves: int = Field(
        1000,
        ge=1,
        le=100_000_000,
        description="synthetic curves drawn from the film stack's bounds",
        json_schema_extra={"label": "number of curves", "pyreflect": "numCurves", "limit": "max_curves"},
    )
    seed: int = Field(
        0,
        ge=0,
        description="seed of the parameter draws and the noise: the same seed gives the same data set",
        json_schema_extra={"label": "random seed", "max": 2**31 - 1},
    )
    sampling: Literal["uniform", "lhs"] = Field(
        "lhs",
        description="how parameters are drawn inside their bounds: independently, or spread evenly (pyreflect's)",
        json_schema_extra={
            "label": "sampling",
            "choice_labels": {"uniform": "uniform random", "lhs": "Latin hypercube (pyreflect)"},
        },
    )
    q_min: float = Field(
        DEFAULT_Q_MIN,
        gt=0,
        description="lowest Q of the simulated grid",
        json_schema_extra={"label": "Q min", "unit": "Å⁻¹", "pyreflect": "qMin"},
    )
    q_max: float = Field(
        DEFAULT_Q_MAX,
        gt=0,
        description="highest Q of the simulated grid",
        json_schema_extra={"label": "Q max", "unit": "Å⁻¹", "pyreflect": "qMax"},
    )
    num_q: int = Field(
        DEFAULT_NUM_Q,
        ge=2,
        le=20000,
        description="points of the Q grid from Q min to Q max",
        json_schema_extra={"label": "Q points", "pyreflect": "numQPoints"},
    )
    q_resolution: float = Field(
        DEFAULT_DQ_OVER_Q_FWHM,
        ge=0,
        le=0.5,
        description="relative instrument resolution dQ/Q as a full width at half maximum (0: no smearing)",
        json_schema_extra={"label": "resolution dQ/Q (FWHM)", "pyreflect": "qResolution"},
    )
    sld_points: int = Field(
        900,
        ge=2,
        le=100_000,
        description="depth points of each SLD profile",
        json_schema_extra={"label": "SLD profile points", "pyreflect": "sldOutputPoints"},
    )
    dtype: Literal["float32", "float64"] = Field(
        "float32",
        description="float32 halves the files; float64 keeps every digit",
        json_schema_extra={"label": "number precision"},
    )
    consistent_roughness: float | None = Field(
        None,
        gt=0,
        le=10,
        description="if set, each roughness is at most this fraction of the thinner adjacent layer",
        json_schema_extra={"label": "roughness cap (fraction of the thinner neighbour)"},
    )
    fixed_z_grid: bool = Field(
        False,
        description="all profiles share one depth axis wide enough for the thickest stack (else each has its own)",
        json_schema_extra={"label": "one z grid for every profile"},
    )
    realism: Realism = Field(default_factory=Realism)
    chunk_size: int = Field(
        16 * BLOCK,
        ge=BLOCK,
        le=4_000_000,
        description="curves computed and written at a time (rounded to blocks); bounds the memory used",
        json_schema_extra={"label": "chunk size", "unit": "curves"},
    )

    def probe(self) -> Probe:
        return Probe.from_grid(self.q_min, self.q_max, self.num_q, self.q_resolution)

    @property
    def chunk(self) -> int:
        return int(math.ceil(self.chunk_size / BLOCK) * BLOCK)


@dataclass
class GeneratedData:
    """An in-memory data set (small N); the same arrays a bundle holds."""

    nr: np.ndarray
    sld: np.ndarray
    params: np.ndarray
    parameter_names: list[str]
    dr: np.ndarray | None = None


def shared_z_range(stack: FilmStack) -> tuple[float, float]:
    """A z range that holds every profile the bounds allow (for ``fixed_z_grid``)."""
    arrays = stack.to_arrays()
    lo_t, hi_t = arrays.thickness.copy(), arrays.thickness.copy()
    hi_r = arrays.roughness.copy()
    for b in stack.bounds:
        if b.par == "thickness":
            lo_t[0, b.i], hi_t[0, b.i] = b.lo, b.hi
        elif b.par == "roughness":
            hi_r[0, b.i] = b.hi
    offsets_lo = np.concatenate([[0.0], np.cumsum(lo_t[0, 1:-1])])
    offsets_hi = np.concatenate([[0.0], np.cumsum(hi_t[0, 1:-1])])
    left = min(-10.0, float(np.min(offsets_lo - 3 * hi_r[0])))
    right = max(float(offsets_hi[-1]) + 10.0, float(np.max(offsets_hi + 3 * hi_r[0])))
    return left, right


def output_shapes(stack: FilmStack, config: GeneratorConfig, n: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shapes and dtypes of the arrays of ``n`` curves."""
    dtype = np.dtype(config.dtype)
    n_q = config.probe().q.size
    shapes = {
        "nr": ((n, 2, n_q), dtype),
        "sld": ((n, 2, config.sld_points), dtype),
        "params": ((n, len(stack.bounds) + len(config.realism.extra_parameter_names())), np.dtype(np.float64)),
    }
    if config.realism.counting_noise:
        shapes["dr"] = ((n, n_q), dtype)
    return shapes


def allocate(shapes: dict[str, tuple[tuple[int, ...], np.dtype]], align: int = 4096) -> dict[str, np.ndarray]:
    """Page-aligned arrays (O_DIRECT writes need aligned memory); reused across chunks."""
    out = {}
    for key, (shape, dtype) in shapes.items():
        nbytes = int(np.prod(shape)) * dtype.itemsize
        raw = np.empty(nbytes + align, dtype=np.uint8)
        offset = (-raw.ctypes.data) % align
        out[key] = raw[offset : offset + nbytes].view(dtype).reshape(shape)
    return out


def compute_chunk(
    stack: FilmStack,
    config: GeneratorConfig,
    values: np.ndarray,
    arrays: StackArrays,
    start: int,
    out: dict[str, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """NR, SLD, parameters (and dR) of curves [start, start + len(values)); deterministic.

    With ``out`` (arrays of at least len(values) rows) the results are written into it: no new
    memory per chunk, which matters where fresh pages are expensive (VMs that return memory).
    """
    n = values.shape[0]
    if out is None:
        out = allocate(output_shapes(stack, config, n))
    out = {k: v[:n] for k, v in out.items()}
    probe = config.probe()
    q = probe.q
    realism = config.realism
    blocks = range(start // BLOCK, (start + n + BLOCK - 1) // BLOCK)
    rngs = [block_rng(config.seed, STREAM_NOISE, b) for b in blocks]

    extras: dict[str, np.ndarray] = {}
    if realism.active:
        draws = [realism.draw_instrument(rng, min(BLOCK, start + n - b * BLOCK)) for rng, b in zip(rngs, blocks)]
        extras = {k: np.concatenate([d[k] for d in draws]) for k in draws[0]}
    nr = out["nr"]
    nr[:, 0, :] = q
    kwargs = {
        "engine": "fast",
        "scale": extras.get("probe.scale"),
        "background": extras.get("probe.background"),
        "q_factor": extras.get("probe.q_factor") if realism.q_shift > 0 else None,
    }
    if realism.counting_noise:
        r = reflectivity(arrays, probe, **kwargs)
        dr = out["dr"]
        for rng, b in zip(rngs, blocks):
            a, z = b * BLOCK - start, min((b + 1) * BLOCK - start, n)
            noisy, err = realism.count(rng, q, r[a:z])
            nr[a:z, 1, :] = noisy
            dr[a:z] = err
    else:
        reflectivity(arrays, probe, out=nr[:, 1, :], **kwargs)

    n_z = config.sld_points
    if config.fixed_z_grid:
        left, right = shared_z_range(stack)
        z_left = np.full(n, left)
        span = np.full(n, right - left)
    else:
        z_left, z_right = profile_range_numpy(arrays.thickness, arrays.roughness)
        span = z_right - z_left
    step = span / (n_z - 1)
    sld = out["sld"]
    sld_profiles_fast(arrays.sld, arrays.thickness, arrays.roughness, z_left, step, n_z, out=sld[:, 1, :])
    np.multiply(step[:, None], np.arange(n_z)[None, :], out=sld[:, 0, :], casting="unsafe")  # z from 0 (pyreflect)

    table = out["params"]
    table[:, : values.shape[1]] = values
    for j, name in enumerate(realism.extra_parameter_names()):
        table[:, values.shape[1] + j] = extras[name]
    return out


def _chunks(n: int, chunk: int) -> list[tuple[int, int]]:
    return [(s, min(s + chunk, n)) for s in range(0, n, chunk)]


def _with_progress(reporter: Reporter | None, progress: bool) -> Reporter:
    reporter = reporter or Reporter()
    if progress:
        reporter.listeners.append(tqdm_listener(STAGE, "generating", "curves"))
    return reporter


def generate(
    stack: FilmStack, config: GeneratorConfig, *, reporter: Reporter | None = None, progress: bool = False
) -> GeneratedData:
    """Generate a data set in memory (for small N; use :func:`generate_to_disk` for large ones).

    ``progress`` shows a ``tqdm.auto`` bar (a widget in notebooks, text in terminals).
    """
    reporter = _with_progress(reporter, progress)
    probe = config.probe()
    itemsize = np.dtype(config.dtype).itemsize
    size = config.num_curves * 2 * (probe.q.size + config.sld_points) * itemsize
    if size > IN_MEMORY_LIMIT_BYTES:
        raise ValueError(
            f"{config.num_curves} curves need {size / 2**30:.1f} GiB in memory; write them to disk with "
            "generate_to_disk()"
        )
    sampler = ParameterSampler(stack, config.num_curves, config.seed, config.sampling, config.consistent_roughness)
    names = sampler.names + config.realism.extra_parameter_names()
    full = {k: np.empty(shape, dtype) for k, (shape, dtype) in output_shapes(stack, config, config.num_curves).items()}
    t0 = time.perf_counter()
    for a, b in _chunks(config.num_curves, config.chunk):
        reporter.check_stop()
        values, arrays = sampler.sample(a, b)
        compute_chunk(stack, config, values, arrays, a, out={k: v[a:b] for k, v in full.items()})
        reporter.progress(STAGE, b, config.num_curves, "curves")
    reporter.timing(STAGE, "generate", time.perf_counter() - t0, config.num_curves)
    return GeneratedData(full["nr"], full["sld"], full["params"], names, full.get("dr"))


def _write_chunk(
    paths: dict[str, tuple[str, int, int]], start: int, data: dict[str, np.ndarray]
) -> list[tuple[int, str]]:
    """Write a chunk's rows into the partial files (header offset and row size given) and hash it."""
    digests = B.block_digests([data[k] for k in ("nr", "sld", "params", "dr") if k in data], start)
    for key, (path, offset, row_bytes) in paths.items():
        B.pwrite_rows(path, offset + start * row_bytes, np.ascontiguousarray(data[key]))
    return digests


def _dask_task(stack_json: str, config_json: str, values: np.ndarray, start: int, paths) -> list[tuple[int, str]]:
    stack = FilmStack.model_validate_json(stack_json)
    config = GeneratorConfig.model_validate_json(config_json)
    data = compute_chunk(stack, config, values, apply_parameters(stack, values), start)
    return _write_chunk(paths, start, data)


def generate_to_disk(
    stack: FilmStack,
    config: GeneratorConfig,
    out_dir: str | os.PathLike,
    *,
    reporter: Reporter | None = None,
    overwrite: bool = False,
    dask: Any = None,
    progress: bool = True,
) -> Path:
    """Generate and stream a data-set bundle into ``out_dir``; returns the folder.

    ``dask``: None (this process, numba threads), ``"local"`` (a 2-worker ``LocalCluster``), a
    scheduler address (``"tcp://host:8786"``) or a ``distributed.Client``.  Workers write their
    rows straight into the files, so they need the same file system (as on a facility cluster).
    ``progress`` shows a ``tqdm.auto`` bar; ``reporter.stop`` cancels (nothing half-written stays).
    The bundle is written into a hidden partial folder beside ``out_dir`` and appears under its name
    in one rename when complete (:func:`~workbench.data.dataset.commit_folder`); leftovers of killed
    generations on this host are removed first.  ``out_dir`` must be new, empty, or (with
    ``overwrite``) hold a data set and nothing else.
    """
    reporter = _with_progress(reporter, progress)
    out = Path(out_dir)
    B.check_target(out, overwrite=overwrite)
    B.clean_stale_partials(out.parent)
    out.mkdir(parents=True, exist_ok=True)
    tmp = B.partial_folder(out)
    try:
        _generate_into(stack, config, tmp, out, reporter, dask)
        B.commit_folder(tmp, out, overwrite=overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _generate_into(
    stack: FilmStack, config: GeneratorConfig, tmp: Path, out: Path, reporter: Reporter, dask: Any
) -> None:
    """Write the complete bundle (arrays, then dataset.json) into the partial folder ``tmp``."""
    probe = config.probe()
    sampler = ParameterSampler(stack, config.num_curves, config.seed, config.sampling, config.consistent_roughness)
    names = sampler.names + config.realism.extra_parameter_names()
    n, dtype = config.num_curves, np.dtype(config.dtype)
    writers = {
        "nr": B.NpyStreamWriter(tmp / B.NR_FILE, (n, 2, probe.q.size), dtype),
        "sld": B.NpyStreamWriter(tmp / B.SLD_FILE, (n, 2, config.sld_points), dtype),
        "params": B.NpyStreamWriter(tmp / B.PARAMS_FILE, (n, len(names)), np.float64),
    }
    if config.realism.counting_noise:
        writers["dr"] = B.NpyStreamWriter(tmp / B.DR_FILE, (n, probe.q.size), dtype)
    paths = {k: (str(w.partial), w.offset, w.row_bytes) for k, w in writers.items()}
    digests: dict[int, str] = {}
    chunks = _chunks(n, config.chunk)
    t0 = time.perf_counter()
    reporter.log(STAGE, f"generating {n} curves in {len(chunks)} chunks into {out}")
    if dask is None:
        _run_local(stack, config, sampler, chunks, paths, digests, reporter)
    else:
        _run_dask(stack, config, sampler, chunks, paths, digests, reporter, dask)
    for w in writers.values():
        w.finish()
    seconds = time.perf_counter() - t0
    reporter.timing(STAGE, "generate", seconds, n)
    meta = {
        "format": B.FORMAT,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "generator": config.model_dump(mode="json"),
        "stack": stack_meta(stack),
        "probe": {
            "q_min": config.q_min,
            "q_max": config.q_max,
            "num_q": config.num_q,
            "dq_over_q": config.q_resolution,
            "dq_convention": "FWHM",
        },
        "seed": config.seed,
        "parameter_names": names,
        "counts": {"curves": n, "q_points": int(probe.q.size), "sld_points": config.sld_points},
        "layout": {
            "nr": "(N, 2, nQ): rows Q [1/Å], R",
            "sld": "(N, 2, nZ): rows z [Å, from the profile start], SLD [1e-6/Å²]",
        },
        "z_origin": "each profile's refl1d range starts at z = 0"
        if not config.fixed_z_grid
        else {"shared_grid_left": shared_z_range(stack)[0], "shared_grid_right": shared_z_range(stack)[1]},
        "versions": package_versions(("workbench", "refl1d", "numpy", "numba")),
        "generation_seconds": round(seconds, 3),
        "content_hash": B.combine_digests(digests),
    }
    B.write_json_atomic(tmp / B.META_FILE, meta)


def _run_local(stack, config, sampler, chunks, paths, digests, reporter) -> None:
    """Compute chunks here (numba uses every core) while one thread hashes and writes the previous.

    Three sets of page-aligned buffers rotate between computing and writing, so memory stays
    bounded and no fresh pages are touched after the first chunks.
    """
    shapes = output_shapes(stack, config, min(config.chunk, config.num_curves))
    free = [allocate(shapes) for _ in range(3)]
    with cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="workbench-writer") as pool:
        pending: list[tuple[cf.Future, dict]] = []
        for a, b in chunks:
            reporter.check_stop()
            values, arrays = sampler.sample(a, b)
            if not free:
                future, buffers = pending.pop(0)
                digests.update(future.result())
                free.append(buffers)
            buffers = free.pop()
            data = compute_chunk(stack, config, values, arrays, a, out=buffers)
            pending.append((pool.submit(_write_chunk, paths, a, data), buffers))
            reporter.progress(STAGE, b, config.num_curves, "curves")
        for future, _ in pending:
            digests.update(future.result())


def _client(dask: Any):
    from distributed import Client, LocalCluster  # heavy (distributed): imported on use

    if isinstance(dask, Client):
        return dask, False
    if dask == "local":
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"},
        )
        return Client(cluster), True
    return Client(dask), True


def _run_dask(stack, config, sampler, chunks, paths, digests, reporter, dask) -> None:
    from distributed import as_completed  # heavy (distributed): imported on use

    client, owned = _client(dask)
    try:
        plain = FilmStack(layers=stack.layers, bounds=stack.bounds)  # ties are in the sampled values already
        stack_json, config_json = plain.model_dump_json(), config.model_dump_json()
        futures = []
        for a, b in chunks:
            values, _ = sampler.sample(a, b)
            futures.append(client.submit(_dask_task, stack_json, config_json, values, a, paths, pure=False))
        for done, future in enumerate(as_completed(futures), start=1):
            if reporter.stop.stopped:
                client.cancel(futures)
                raise Cancelled(reporter.stop.reason or "stopped")
            digests.update(future.result())
            reporter.progress(STAGE, min(done * config.chunk, config.num_curves), config.num_curves, "curves")
    finally:
        if owned:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()

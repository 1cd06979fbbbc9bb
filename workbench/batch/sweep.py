"""Parameter sweeps: one notebook over a grid or a list of parameter sets, in parallel on Dask.

Each run executes the notebook headless (papermill) into its own folder under the sweep folder,
``runs/<key>/output.ipynb`` and ``summary.json``, where ``key`` is a stable hash of the run's
parameters.  ``sweep.json`` (the manifest) records every run's parameters, status, metrics and
error; a re-run of the same sweep skips the runs already completed and retries the failed ones.
A failing run never stops the others: its output notebook stays, with the traceback.

Runs go to a ``distributed.LocalCluster`` (``workers`` processes, one thread each) unless a
scheduler address is given, as for a facility cluster started with dask-jobqueue; workers then
need the same file system as this process.  Progress goes out as events: ``Record("sweep",
"run", {...})`` when a run is queued, starts, or ends, and ``Progress("sweep", done, total,
"runs")``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..events import Cancelled, Reporter
from ..fileio import write_text_atomic
from .runner import check_parameters, notebook_defaults, notebook_parameters, run_notebook

if TYPE_CHECKING:
    import pandas as pd

STAGE = "sweep"
MANIFEST = "sweep.json"
RESULTS = "results.csv"
CHART = "chart.html"
TOPIC = "workbench-sweep"


# ------------------------------------------------------------------ parameter sets
def parse_value_list(text: str) -> list[str]:
    """``"1e-3,3e-3"`` → ``["1e-3", "3e-3"]`` (values are typed later, by the notebook's declarations)."""
    values = [v.strip() for v in str(text).split(",")]
    if not values or any(v == "" for v in values):
        raise ValueError(f"empty value in {text!r}; give values separated by commas, e.g. 1e-3,3e-3")
    return values


def grid(axes: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of ``{name: [values]}``, in the order the names and values are given."""
    for name, values in axes.items():
        if not isinstance(values, (list, tuple)) or len(values) == 0:
            raise ValueError(f"grid parameter {name!r} needs a non-empty list of values, got {values!r}")
    names = list(axes)
    return [dict(zip(names, combo)) for combo in itertools.product(*(axes[n] for n in names))]


def parameter_sets_from_mapping(spec: Any, source: str = "sweep file") -> list[dict[str, Any]]:
    """Parameter sets from a sweep file's content.

    Accepted: ``{"grid": {name: [values]}}`` (cartesian product), ``{"runs": [{...}, ...]}`` (a
    list), both (the grid's runs then the list), and ``"fixed": {...}`` merged into every run; a
    bare list of mappings is the same as ``runs``.
    """
    if isinstance(spec, list):
        spec = {"runs": spec}
    if not isinstance(spec, dict):
        raise ValueError(f"{source}: expected a mapping with 'grid' and/or 'runs', got {type(spec).__name__}")
    unknown = set(spec) - {"grid", "runs", "fixed", "notebook"}
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}; expected grid, runs, fixed, notebook")
    fixed = spec.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise ValueError(f"{source}: 'fixed' must be a mapping of parameter values")
    sets: list[dict[str, Any]] = []
    if "grid" in spec:
        if not isinstance(spec["grid"], dict):
            raise ValueError(f"{source}: 'grid' must map parameter names to lists of values")
        sets += grid(spec["grid"])
    runs = spec.get("runs") or []
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise ValueError(f"{source}: 'runs' must be a list of mappings of parameter values")
    sets += [dict(r) for r in runs]
    if not sets:
        raise ValueError(f"{source}: no runs: give 'grid' or 'runs'")
    return [{**fixed, **s} for s in sets]


def run_key(params: dict[str, Any]) -> str:
    """A stable hash of a run's parameters (key order and int/float spelling do not matter)."""

    def norm(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, (int, float)):
            return float(v)
        if isinstance(v, dict):
            return {k: norm(x) for k, x in sorted(v.items())}
        if isinstance(v, (list, tuple)):
            return [norm(x) for x in v]
        return str(v)

    text = json.dumps(norm(params), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------ results
@dataclass
class SweepResult:
    folder: Path
    runs: list[dict[str, Any]]          # one per parameter set, in the order given
    executed: list[str] = field(default_factory=list)   # keys run this time
    skipped: list[str] = field(default_factory=list)    # keys already completed before

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] == "failed"]

    @property
    def completed(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["status"] == "completed"]

    @property
    def frame(self) -> pd.DataFrame:
        return results_frame(self.runs)

    @property
    def csv(self) -> Path:
        return self.folder / RESULTS

    @property
    def chart(self) -> Path:
        return self.folder / CHART


def _scalar_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    metrics = summary.get("metrics", summary) if isinstance(summary, dict) else {}
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


def results_frame(runs: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: key, status, the parameters, the summary's scalar metrics, ids, error, paths."""
    import pandas as pd

    rows = []
    for r in runs:
        row: dict[str, Any] = {"key": r["key"], "status": r["status"]}
        row.update({f"param.{k}": v for k, v in r["params"].items()})
        row.update(_scalar_metrics(r.get("summary") or {}))
        summary = r.get("summary") or {}
        row.update({"run_id": summary.get("run_id"), "model_id": summary.get("model_id"), "seconds": r.get("seconds"),
                    "error": r.get("error"), "output": r.get("output")})
        rows.append(row)
    return pd.DataFrame(rows)


def load_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.exists():
        return {"runs": {}}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a valid sweep manifest ({exc}); move it away to start the sweep afresh") from exc


def sweep_results(folder: str | os.PathLike) -> pd.DataFrame:
    """The results of every run recorded in a sweep folder's manifest."""
    return results_frame(load_manifest(folder)["runs"].values())


# ------------------------------------------------------------------ execution
def _execute(notebook: str, key: str, params: dict[str, Any], run_folder: str, kernel_name: str | None,
             cwd: str | None, timeout: float | None) -> dict[str, Any]:
    """One run (on a Dask worker or here); never raises for a failure inside the notebook."""
    try:
        from distributed import get_worker

        get_worker().log_event(TOPIC, {"key": key, "status": "running", "time": time.time()})
    except (ImportError, ValueError):
        pass  # not on a worker
    folder = Path(run_folder)
    run = run_notebook(notebook, folder / "output.ipynb", params, summary_path=folder / "summary.json",
                       kernel_name=kernel_name, cwd=cwd, timeout=timeout)
    return {"key": key, "status": run.status, "error": run.error, "summary": run.summary, "seconds": run.seconds,
            "output": str(run.output), "finished": time.time()}


def _client(scheduler: Any, workers: int, processes: bool):
    from distributed import Client, LocalCluster

    if isinstance(scheduler, Client):
        return scheduler, None
    if scheduler:
        return Client(scheduler, timeout="20s"), None
    threads = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    extra = {"env": threads} if processes else {}
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None, **extra)
    return Client(cluster), cluster


def run_sweep(
    notebook: str | os.PathLike,
    parameter_sets: Sequence[dict[str, Any]],
    folder: str | os.PathLike,
    *,
    workers: int = 2,
    scheduler: Any = None,
    processes: bool = True,
    reporter: Reporter | None = None,
    kernel_name: str | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = None,
) -> SweepResult:
    """Run ``notebook`` once per parameter set on Dask; see the module docstring.

    ``scheduler``: None (a ``LocalCluster`` with ``workers`` workers), an address
    ``tcp://host:8786`` or a ``distributed.Client``.  ``reporter.stop`` cancels the runs not yet
    started (runs already executing finish) and raises :class:`Cancelled` after saving the manifest.
    """
    reporter = reporter or Reporter()
    nb = Path(notebook).resolve()
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    if not parameter_sets:
        raise ValueError("no parameter sets to run")
    sets = [check_parameters(nb, dict(p)) for p in parameter_sets]
    declared = notebook_parameters(nb)
    names_runs = "name" in declared
    defaults = notebook_defaults(declared)
    for p in sets:
        if "summary_path" in p:
            raise ValueError("summary_path is set by the sweep (runs/<key>/summary.json); leave it out of the parameters")
    out = Path(folder).resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(out)
    if manifest.get("notebook") and Path(manifest["notebook"]).name != nb.name:
        reporter.warn(STAGE, f"{out} held a sweep of {manifest['notebook']}; adding runs of {nb}")
    manifest.update(notebook=str(nb), updated=_now())
    manifest.setdefault("created", _now())
    records: dict[str, dict[str, Any]] = manifest.setdefault("runs", {})

    order: list[str] = []
    todo: dict[str, dict[str, Any]] = {}
    skipped: list[str] = []
    for params in sets:
        # the key covers the notebook's defaults too: giving a default explicitly is the same run
        key = run_key({**defaults, **params})
        if key in order:
            continue  # the same parameters twice run once
        order.append(key)
        previous = records.get(key)
        if previous and previous["status"] == "completed" and Path(previous.get("summary_path", "")).is_file():
            skipped.append(key)
            continue
        folder_k = out / "runs" / key
        if names_runs and "name" not in params:  # registry runs named after the sweep and the run
            params = {**params, "name": f"{out.name}-{key[:8]}"}
        records[key] = {"key": key, "params": params, "status": "queued", "output": str(folder_k / "output.ipynb"),
                        "summary_path": str(folder_k / "summary.json"), "error": None, "summary": {}, "seconds": None}
        todo[key] = params
    total, done = len(order), len(skipped)
    for key in order:
        reporter.record(STAGE, "run", **_event(records[key], "skipped" if key in skipped else "queued"))
    reporter.log(STAGE, f"sweep of {nb.name}: {total} runs, {len(skipped)} already done, {len(todo)} to run in {out}")
    reporter.progress(STAGE, done, total, "runs")
    _save(out, manifest, order)

    if todo:
        from distributed import as_completed

        client, cluster = _client(scheduler, workers, processes)
        started = {}

        def on_worker_event(event):
            msg = event[1] if isinstance(event, tuple) else event
            key = msg.get("key") if isinstance(msg, dict) else None
            if key in todo and key not in started:
                started[key] = True
                records[key]["status"] = "running"
                reporter.record(STAGE, "run", **_event(records[key], "running"))

        try:
            client.subscribe_topic(TOPIC, on_worker_event)
            work_dir = str(Path(cwd).resolve()) if cwd else os.getcwd()
            futures = {
                client.submit(_execute, str(nb), key, params, str(out / "runs" / key), kernel_name, work_dir, timeout,
                              key=f"workbench-sweep-{key}-{time.time_ns()}", pure=False): key
                for key, params in todo.items()
            }
            pending = as_completed(list(futures), with_results=False)
            while True:
                if reporter.stop.stopped:
                    client.cancel([f for f in futures if not f.done()])
                    for key in todo:
                        if records[key]["status"] in ("queued", "running"):
                            records[key].update(status="stopped", error=reporter.stop.reason or "stopped")
                    _save(out, manifest, order, chart=True)
                    raise Cancelled(reporter.stop.reason or "stopped")
                batch = pending.next_batch(block=False) if pending.has_ready() else []
                if not batch:
                    if pending.is_empty():
                        break
                    time.sleep(0.2)
                    continue
                for future in batch:
                    key = futures[future]
                    try:
                        result = future.result()
                    except Exception as exc:  # noqa: BLE001 - a lost worker fails this run only
                        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "summary": {}, "seconds": None}
                    records[key].update({k: v for k, v in result.items() if k != "key"})
                    done += 1
                    _save(out, manifest, order)
                    reporter.record(STAGE, "run", **_event(records[key], records[key]["status"]))
                    if records[key]["status"] == "failed":
                        reporter.warn(STAGE, f"run {key} {_label(records[key]['params'])} failed: {records[key]['error']}")
                    reporter.progress(STAGE, done, total, "runs")
        finally:
            with contextlib.suppress(Exception):  # the scheduler may already be gone
                client.unsubscribe_topic(TOPIC)
            if cluster is not None:
                client.close()
                cluster.close()
            elif not isinstance(scheduler, __import__("distributed").Client):
                client.close()

    _save(out, manifest, order, chart=True)
    runs = [records[k] for k in order]
    result = SweepResult(out, runs, executed=list(todo), skipped=skipped)
    failed = len(result.failed)
    reporter.log(STAGE, f"sweep done: {len(result.completed)} completed, {failed} failed, {len(skipped)} skipped (already done)",
                 "warning" if failed else "info")
    return result


def _label(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _event(record: dict[str, Any], status: str) -> dict[str, Any]:
    return {"key": record["key"], "status": status, "params": record["params"], "label": _label(record["params"]),
            "error": record.get("error"), "metrics": _scalar_metrics(record.get("summary") or {}),
            "seconds": record.get("seconds"), "output": record.get("output")}


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _save(out: Path, manifest: dict[str, Any], order: list[str], chart: bool = False) -> None:
    """The manifest, the CSV of this sweep's runs and (``chart``) the comparison chart, each written atomically."""
    manifest["updated"] = _now()
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2, default=str))
    frame = results_frame([manifest["runs"][k] for k in order])
    write_text_atomic(out / RESULTS, frame.to_csv(index=False))
    if not chart:
        return
    from ..ui.sweep_figures import sweep_figure

    write_text_atomic(out / CHART, sweep_figure(frame).to_html(include_plotlyjs=True, full_html=True))

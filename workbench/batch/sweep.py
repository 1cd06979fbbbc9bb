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
from .notebooks import shipped_notebook
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
    runs: list[dict[str, Any]]  # one per parameter set, in the order given
    executed: list[str] = field(default_factory=list)  # keys run this time
    skipped: list[str] = field(default_factory=list)  # keys already completed before

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
    """The summary's metrics that fit in a table cell (numbers, strings, booleans, None)."""
    metrics = summary.get("metrics", summary) if isinstance(summary, dict) else {}
    return {k: v for k, v in metrics.items() if isinstance(v, (int, float, str, bool)) or v is None}


def results_frame(runs: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: key, status, the parameters, the summary's scalar metrics, ids, error, paths."""
    import pandas as pd  # heavy optional dependency (pandas): only the results table needs it

    rows = []
    for r in runs:
        row: dict[str, Any] = {"key": r["key"], "status": r["status"]}
        row.update({f"param.{k}": v for k, v in r["params"].items()})
        row.update(_scalar_metrics(r.get("summary") or {}))
        summary = r.get("summary") or {}
        row.update(
            {
                "run_id": summary.get("run_id"),
                "model_id": summary.get("model_id"),
                "seconds": r.get("seconds"),
                "error": r.get("error"),
                "output": r.get("output"),
            }
        )
        rows.append(row)
    return pd.DataFrame(rows)


def load_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """A sweep folder's manifest (``{"runs": {}}`` if it has none yet); a corrupt one is a ValueError."""
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
def _execute(
    notebook: str,
    key: str,
    params: dict[str, Any],
    run_folder: str,
    kernel_name: str | None,
    cwd: str | None,
    timeout: float | None,
) -> dict[str, Any]:
    """One run (on a Dask worker or here); never raises for a failure inside the notebook."""
    try:
        from distributed import get_worker  # heavy optional dependency (distributed): only runs on Dask need it

        get_worker().log_event(TOPIC, {"key": key, "status": "running", "time": time.time()})
    except (ImportError, ValueError):
        pass  # not on a worker
    folder = Path(run_folder)
    run = run_notebook(
        notebook,
        folder / "output.ipynb",
        params,
        summary_path=folder / "summary.json",
        kernel_name=kernel_name,
        cwd=cwd,
        timeout=timeout,
    )
    return {
        "key": key,
        "status": run.status,
        "error": run.error,
        "summary": run.summary,
        "seconds": run.seconds,
        "output": str(run.output),
        "finished": time.time(),
    }


def _client(scheduler: Any, workers: int, processes: bool) -> tuple[Any, Any]:
    """(client, the LocalCluster started for it or None): ``scheduler`` as given, an address, or a new cluster."""
    from distributed import Client, LocalCluster  # heavy optional dependency (distributed): only sweeps on Dask need it

    if isinstance(scheduler, Client):
        return scheduler, None
    if scheduler:
        return Client(scheduler, timeout="20s"), None
    threads = {"OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    extra = {"env": threads} if processes else {}
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None, **extra
    )
    return Client(cluster), cluster


@dataclass
class _SweepState:
    """One sweep's bookkeeping: its folder, manifest and reporter, and the runs in the order given.

    ``order`` holds every distinct run's key, ``todo`` the parameters of those to execute now,
    ``skipped`` the keys completed before; ``done`` counts finished runs (skipped ones included).
    """

    out: Path
    manifest: dict[str, Any]
    reporter: Reporter
    order: list[str] = field(default_factory=list)
    todo: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    done: int = 0

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        """The manifest's run records by key (updated in place, saved with the manifest)."""
        return self.manifest["runs"]

    def save(self, chart: bool = False) -> None:
        """Write the manifest and the results table (and, with ``chart``, the comparison chart)."""
        _save(self.out, self.manifest, self.order, chart=chart)

    def report(self, key: str, status: str) -> None:
        """Send a run's record out as a ``Record("sweep", "run", ...)`` event with ``status``."""
        self.reporter.record(STAGE, "run", **_event(self.records[key], status))


def _checked_parameter_sets(nb: Path, parameter_sets: Sequence[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    """The parameter sets coerced to the notebook's declared types; bad input raises ValueError before any run."""
    if workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {workers}")
    if not parameter_sets:
        raise ValueError("no parameter sets to run")
    sets = [check_parameters(nb, dict(p)) for p in parameter_sets]
    for p in sets:
        if "summary_path" in p:
            raise ValueError(
                "summary_path is set by the sweep (runs/<key>/summary.json); leave it out of the parameters"
            )
    return sets


def check_sweep(notebook: str | os.PathLike, parameter_sets: Sequence[dict[str, Any]], workers: int) -> list[dict]:
    """What :func:`run_sweep` checks before any run (parameter sets typed by the notebook, workers ≥ 1): a sweep
    job refuses bad input when it is submitted, not when its process starts."""
    return _checked_parameter_sets(Path(notebook).resolve(), parameter_sets, workers)


def notebook_path(name: str | os.PathLike) -> Path:
    """A notebook file, or the name of a shipped one (``pipeline``); ValueError naming what is missing."""
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve()
    if path.suffix != ".ipynb" or len(path.parts) == 1:
        try:
            return shipped_notebook(path.name)
        except (ValueError, FileNotFoundError) as exc:
            raise ValueError(f"{name}: no such notebook file, and {exc}") from None
    raise ValueError(f"{name}: no such notebook")


def _open_manifest(out: Path, nb: Path, reporter: Reporter) -> dict[str, Any]:
    """The folder's manifest (created with the folder if new), stamped with this notebook and the time."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(out)
    if manifest.get("notebook") and Path(manifest["notebook"]).name != nb.name:
        reporter.warn(STAGE, f"{out} held a sweep of {manifest['notebook']}; adding runs of {nb}")
    manifest.update(notebook=str(nb), updated=_now())
    manifest.setdefault("created", _now())
    manifest.setdefault("runs", {})
    return manifest


def _plan_runs(state: _SweepState, sets: list[dict[str, Any]], declared: dict[str, dict[str, Any]]) -> None:
    """Key every parameter set, skip the runs already completed and queue a fresh record for the others.

    ``declared`` are the notebook's parameters: their defaults go into the keys, and a notebook that
    declares ``name`` gets one per run.
    """
    names_runs = "name" in declared
    defaults = notebook_defaults(declared)
    for params in sets:
        # the key covers the notebook's defaults too: giving a default explicitly is the same run
        key = run_key({**defaults, **params})
        if key in state.order:
            continue  # the same parameters twice run once
        state.order.append(key)
        previous = state.records.get(key)
        if previous and previous["status"] == "completed" and Path(previous.get("summary_path", "")).is_file():
            state.skipped.append(key)
            continue
        folder_k = state.out / "runs" / key
        if names_runs and "name" not in params:  # registry runs named after the sweep and the run
            params = {**params, "name": f"{state.out.name}-{key[:8]}"}
        state.records[key] = {
            "key": key,
            "params": params,
            "status": "queued",
            "output": str(folder_k / "output.ipynb"),
            "summary_path": str(folder_k / "summary.json"),
            "error": None,
            "summary": {},
            "seconds": None,
        }
        state.todo[key] = params
    state.done = len(state.skipped)


def _announce(state: _SweepState, nb: Path) -> None:
    """Report every run as queued or skipped, log the plan and the starting progress; save the manifest."""
    for key in state.order:
        state.report(key, "skipped" if key in state.skipped else "queued")
    state.reporter.log(
        STAGE,
        f"sweep of {nb.name}: {len(state.order)} runs, {len(state.skipped)} already done, "
        f"{len(state.todo)} to run in {state.out}",
    )
    state.reporter.progress(STAGE, state.done, len(state.order), "runs")
    state.save()


def _follow_start_events(client: Any, state: _SweepState) -> None:
    """Mark a run "running" (and report it) when its worker says it started; workers log to ``TOPIC``."""
    started = {}

    def on_worker_event(event):
        msg = event[1] if isinstance(event, tuple) else event
        key = msg.get("key") if isinstance(msg, dict) else None
        if key in state.todo and key not in started:
            started[key] = True
            state.records[key]["status"] = "running"
            state.report(key, "running")

    client.subscribe_topic(TOPIC, on_worker_event)


def _submit_runs(
    client: Any,
    state: _SweepState,
    nb: Path,
    kernel_name: str | None,
    cwd: str | os.PathLike | None,
    timeout: float | None,
) -> dict[Any, str]:
    """Submit every run to do; future → run key (unique Dask keys: a re-run never reuses an old result)."""
    work_dir = str(Path(cwd).resolve()) if cwd else os.getcwd()
    return {
        client.submit(
            _execute,
            str(nb),
            key,
            params,
            str(state.out / "runs" / key),
            kernel_name,
            work_dir,
            timeout,
            key=f"workbench-sweep-{key}-{time.time_ns()}",
            pure=False,
        ): key
        for key, params in state.todo.items()
    }


def _stop_runs(client: Any, futures: dict[Any, str], state: _SweepState) -> None:
    """Cancel the runs not finished, mark them stopped, save everything and raise :class:`Cancelled`."""
    reason = state.reporter.stop.reason or "stopped"
    client.cancel([f for f in futures if not f.done()])
    for key in state.todo:
        if state.records[key]["status"] in ("queued", "running"):
            state.records[key].update(status="stopped", error=reason)
    state.save(chart=True)
    raise Cancelled(reason)


def _record_finished(future: Any, key: str, state: _SweepState) -> None:
    """Store a finished run's outcome, save the manifest and report the run and the progress."""
    try:
        result = future.result()
    except Exception as exc:  # noqa: BLE001 - a lost worker fails this run only
        result = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "summary": {}, "seconds": None}
    record = state.records[key]
    record.update({k: v for k, v in result.items() if k != "key"})
    state.done += 1
    state.save()
    state.report(key, record["status"])
    if record["status"] == "failed":
        state.reporter.warn(STAGE, f"run {key} {_label(record['params'])} failed: {record['error']}")
    state.reporter.progress(STAGE, state.done, len(state.order), "runs")


def _collect_runs(client: Any, futures: dict[Any, str], state: _SweepState) -> None:
    """Record runs as they finish until none is left; the reporter's Stop cancels the rest."""
    from distributed import as_completed  # heavy optional dependency (distributed): only sweeps on Dask need it

    pending = as_completed(list(futures), with_results=False)
    while True:
        if state.reporter.stop.stopped:
            _stop_runs(client, futures, state)
        batch = pending.next_batch(block=False) if pending.has_ready() else []
        if not batch:
            if pending.is_empty():
                break
            time.sleep(0.2)
            continue
        for future in batch:
            _record_finished(future, futures[future], state)


def _run_on_dask(
    state: _SweepState,
    nb: Path,
    *,
    scheduler: Any,
    workers: int,
    processes: bool,
    kernel_name: str | None,
    cwd: str | os.PathLike | None,
    timeout: float | None,
) -> None:
    """Execute the runs to do on Dask and record each as it ends; the client (and a cluster it started) closes."""
    client, cluster = _client(scheduler, workers, processes)
    try:
        _follow_start_events(client, state)
        futures = _submit_runs(client, state, nb, kernel_name, cwd, timeout)
        _collect_runs(client, futures, state)
    finally:
        with contextlib.suppress(Exception):  # the scheduler may already be gone
            client.unsubscribe_topic(TOPIC)
        if cluster is not None:
            client.close()
            cluster.close()
        elif client is not scheduler:  # a client of our own for a scheduler address; a given client stays open
            client.close()


def _finish(state: _SweepState) -> SweepResult:
    """Save the manifest, table and chart; the sweep's result, with a closing log line."""
    state.save(chart=True)
    result = SweepResult(
        state.out, [state.records[k] for k in state.order], executed=list(state.todo), skipped=state.skipped
    )
    failed = len(result.failed)
    state.reporter.log(
        STAGE,
        f"sweep done: {len(result.completed)} completed, {failed} failed, {len(state.skipped)} skipped (already done)",
        "warning" if failed else "info",
    )
    return result


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
    sets = _checked_parameter_sets(nb, parameter_sets, workers)
    declared = notebook_parameters(nb)
    out = Path(folder).resolve()
    state = _SweepState(out, _open_manifest(out, nb, reporter), reporter)
    _plan_runs(state, sets, declared)
    _announce(state, nb)
    if state.todo:
        _run_on_dask(
            state,
            nb,
            scheduler=scheduler,
            workers=workers,
            processes=processes,
            kernel_name=kernel_name,
            cwd=cwd,
            timeout=timeout,
        )
    return _finish(state)


def manifest_rows(folder: str | os.PathLike, runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the Sweep panel shows of the parameter sets ``runs`` as the folder's manifest records them now
    (the fields of a ``Record("sweep", "run", ...)``; a set not in the manifest yet is ``queued``): how a page
    follows a sweep that runs as a job in another process."""
    recorded = load_manifest(folder)["runs"]
    rows = []
    for params in runs:
        key = run_key(params)
        record = recorded.get(key) or {"key": key, "params": params}
        rows.append(_event({**record, "key": key}, str(record.get("status") or "queued")))
    return rows


def _label(params: dict[str, Any]) -> str:
    """``"a=1, b=2"``: a run's parameters for a log line."""
    return ", ".join(f"{k}={v}" for k, v in params.items())


def _event(record: dict[str, Any], status: str) -> dict[str, Any]:
    """The fields of a run's ``Record("sweep", "run", ...)`` event (what the Sweep panel shows)."""
    return {
        "key": record["key"],
        "status": status,
        "params": record["params"],
        "label": _label(record["params"]),
        "error": record.get("error"),
        "metrics": _scalar_metrics(record.get("summary") or {}),
        "seconds": record.get("seconds"),
        "output": record.get("output"),
    }


def _now() -> str:
    """The time now, UTC, ISO 8601 to the second (manifest timestamps)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _save(out: Path, manifest: dict[str, Any], order: list[str], chart: bool = False) -> None:
    """The manifest, the CSV of this sweep's runs and (``chart``) the comparison chart, each written atomically."""
    manifest["updated"] = _now()
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=2, default=str))
    frame = results_frame([manifest["runs"][k] for k in order])
    write_text_atomic(out / RESULTS, frame.to_csv(index=False))
    if not chart:
        return
    from ..plots.sweep import sweep_figure  # heavy optional dependency (plotly): only the chart needs it

    write_text_atomic(out / CHART, sweep_figure(frame).to_html(include_plotlyjs=True, full_html=True))

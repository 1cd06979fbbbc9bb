"""The run and model registry: one SQLite file that several processes write at once.

A scientist with three notebooks open, the CLI and papermill sweep workers all record into the
same ``registry.sqlite``.  What keeps that safe:

* WAL journal mode (readers never block the writer, the writer never blocks readers);
* every write is one short ``BEGIN IMMEDIATE`` transaction (the write lock is taken up front, so
  two writers never deadlock upgrading read locks), with SQLite's ``busy_timeout`` and, on top,
  retries with exponential backoff and jitter when the database is still locked or busy;
* one connection per process and thread (a forked or spawned worker opens its own).

Tables: ``runs`` (one row per generation / training / refinement / sweep job), ``epochs``
(per-epoch metrics), ``logs``, ``timings``, ``checkpoints``, ``datasets`` (content hash → path,
config) and ``models`` (name + version unique, metrics, data set, one active model per target).

A run records a heartbeat while it lives (every event, and a background beat in
:func:`workbench.store.recorded.recorded_run`).  A run still marked ``running`` whose heartbeat
is older than ``heartbeat_timeout`` — or whose process on this host is gone — is reported as
``failed``: a crashed job is not shown as running forever, and ``last_epoch`` says how far it got.

Jobs (:mod:`workbench.batch.jobs`: a generation, training or refinement in its own process) add three
things: a ``job`` column (what to run, with the limits it runs under), a ``telemetry`` column (CPU %
and memory of its process, written with its heartbeat every ~2 s) and a ``commands`` table through
which any surface asks a job to ``stop`` or ``pause``; the job polls it and acknowledges each command.
A job waits as ``queued`` until a slot is free (:meth:`Registry.claim_slot`).  A job row whose process
is gone is *recorded* as failed by the first reader that notices (any run is *shown* failed then); a
job's heartbeat times out after :data:`JOB_HEARTBEAT_TIMEOUT` (it beats every ~2 s), other runs' after
``heartbeat_timeout``.  A job on a Dask cluster (``job["scheduler"]``) has no process here until a
worker takes it (:meth:`Registry.take_job`: pid NULL meanwhile, waiting in the scheduler's queue); once
taken it is judged by its heartbeat alone, since its pid belongs to a worker that may live on another host.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import secrets
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..events import Event, Log, Record, Timing, Warning_, log
from ..versions import package_versions

STATUSES = ("running", "completed", "failed", "stopped", "paused", "queued")
LIVE = ("running", "queued")
COMMANDS = ("stop", "pause")
SCHEMA_VERSION = 2
JOB_HEARTBEAT_TIMEOUT = 30.0  # s; a job beats every ~2 s, so 30 s of silence means it hangs or is gone

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    heartbeat REAL NOT NULL,
    host TEXT,
    pid INTEGER,
    params TEXT NOT NULL DEFAULT '{}',
    metrics TEXT NOT NULL DEFAULT '{}',
    timings TEXT NOT NULL DEFAULT '{}',
    versions TEXT NOT NULL DEFAULT '{}',
    dataset_hash TEXT,
    model TEXT,
    run_dir TEXT,
    error TEXT,
    last_epoch INTEGER,
    job TEXT,
    telemetry TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    stage TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    time REAL NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, stage, epoch)
);
CREATE TABLE IF NOT EXISTS logs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    time REAL NOT NULL,
    stage TEXT NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS logs_run ON logs (run_id, id);
CREATE TABLE IF NOT EXISTS timings (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    time REAL NOT NULL,
    stage TEXT NOT NULL,
    what TEXT NOT NULL,
    seconds REAL NOT NULL,
    items INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS timings_run ON timings (run_id, id);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    time REAL NOT NULL,
    hub TEXT,
    PRIMARY KEY (run_id, path)
);
CREATE TABLE IF NOT EXISTS datasets (
    content_hash TEXT PRIMARY KEY,
    path TEXT NOT NULL,
    config TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    hub TEXT
);
CREATE TABLE IF NOT EXISTS models (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    target TEXT NOT NULL,
    path TEXT NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}',
    dataset_hash TEXT,
    run_id TEXT,
    active INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    hub TEXT,
    UNIQUE (name, version)
);
CREATE INDEX IF NOT EXISTS models_target ON models (target, active);
CREATE TABLE IF NOT EXISTS commands (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    command TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    time REAL NOT NULL,
    acked REAL
);
CREATE INDEX IF NOT EXISTS commands_run ON commands (run_id, id);
"""
# columns added after schema 1: ALTER TABLE for registries written by older versions
_ADDED_COLUMNS = {"job": "TEXT", "telemetry": "TEXT"}

_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
_EPOCH_TIMING = re.compile(r"^epoch \d+$")


def redact(text: str) -> str:
    """Remove Hugging Face tokens (the environment's, and anything shaped like ``hf_…``) from text."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        secret = os.environ.get(name)
        if secret and len(secret) >= 8:
            text = text.replace(secret, "[token]")
    return _TOKEN.sub("[token]", text)


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if hasattr(value, "model_dump"):  # pydantic settings
        return value.model_dump(mode="json")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _dumps(value: Any) -> str:
    return redact(json.dumps(value if value is not None else {}, default=_json_default))


def _loads(text: str | None, empty: Any = None) -> Any:
    if text is None:
        return {} if empty is None else empty
    return json.loads(text)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    msg = str(exc).lower()
    return "locked" in msg or "busy" in msg


def _zombie(pid: int) -> bool:
    """A process that ended but was not reaped yet (its parent still lives) answers ``kill(pid, 0)``: dead all the
    same.  Linux only (``/proc``); elsewhere a zombie counts as alive until the heartbeat times out."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "Z"


def _on_dask(r: sqlite3.Row) -> bool:
    """Whether a run row is a job sent to a Dask scheduler (its process is a worker's, judged by heartbeat)."""
    return bool(r["job"]) and bool(_loads(r["job"], {}).get("scheduler"))


def _waits(r: sqlite3.Row, status: str) -> bool:
    """A queued job waiting for a slot in a process (a Dask job no worker took yet is not in line)."""
    return status == "queued" and r["pid"] is not None


def new_run_id(kind: str) -> str:
    """Sortable and unique across processes: ``20250101-120000-train-3fa2c1``."""
    slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-") or "run"
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug[:20]}-{secrets.token_hex(3)}"


@dataclass
class RunRow:
    """One run as the history panel, the CLI and notebooks show it."""

    id: str
    name: str
    kind: str
    status: str
    created: float
    updated: float
    heartbeat: float
    params: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    dataset_hash: str | None = None
    model: str | None = None
    run_dir: str | None = None
    error: str | None = None
    last_epoch: int | None = None
    pid: int | None = None
    host: str | None = None
    job: dict | None = None  # a job's spec (kind, request, limits, log file); None for a run recorded in-process
    telemetry: dict = field(default_factory=dict)  # a job's last CPU % and memory

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class Registry:
    """Runs, their epochs, logs, timings and checkpoints; data sets and models — in one SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        workspace_root: str | os.PathLike | None = None,
        heartbeat_timeout: float = 120.0,
        busy_timeout: float = 30.0,
        retries: int = 12,
    ) -> None:
        self.path = Path(path).expanduser().resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.workspace_root = Path(workspace_root).expanduser().resolve() if workspace_root is not None else None
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.busy_timeout = float(busy_timeout)
        self.retries = int(retries)
        self._local = threading.local()
        self._beats: dict[str, float] = {}
        self._host = socket.gethostname()
        self._retry(self._init_schema)

    # ------------------------------------------------------------ connection and transactions
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = sqlite3.connect(
                str(self.path), timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable in WAL mode up to the last checkpointed commit
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _init_schema(self) -> None:
        conn = self._conn()
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(
                f"{self.path}: SQLite refused WAL mode (journal_mode={mode}); is the file on a network share?"
            )
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
            for column, kind in _ADDED_COLUMNS.items():
                if column not in have:
                    conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _retry(self, fn: Callable[[], Any]) -> Any:
        delay = 0.02
        for attempt in range(self.retries):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc) or attempt == self.retries - 1:
                    raise
                time.sleep(delay * (1.0 + random.random()))  # noqa: S311 - jitter of a retry, not a secret
                delay = min(delay * 2.0, 2.0)
        raise AssertionError("unreachable")

    def _write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run ``fn(conn)`` in one ``BEGIN IMMEDIATE`` transaction, retried while the database is busy."""

        def attempt() -> Any:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        return self._retry(attempt)

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self._retry(lambda: self._conn().execute(sql, tuple(params)).fetchall())

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` for an intact database."""
        return str(self._read("PRAGMA integrity_check")[0][0])

    def close(self) -> None:
        """Close this thread's connection (others close when their thread or process ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    # ------------------------------------------------------------ runs
    def start_run(
        self,
        kind: str,
        *,
        name: str | None = None,
        params: dict | None = None,
        dataset_hash: str | None = None,
        model: str | None = None,
        run_dir: str | os.PathLike | None = None,
        run_id: str | None = None,
        status: str = "running",
        job: dict | None = None,
    ) -> str:
        """Record a new run (``running``, or ``queued`` for a job waiting for a slot); returns its id."""
        if not kind or not isinstance(kind, str):
            raise ValueError("a run needs a kind such as 'generate', 'train', 'refine' or 'sweep'")
        if status not in LIVE:
            raise ValueError(f"a new run is running or queued, not {status!r}")
        run_id = run_id or new_run_id(kind)
        now = time.time()
        name = name or f"{kind} {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(now))}"
        row = (
            run_id,
            name,
            kind,
            status,
            now,
            now,
            now,
            self._host,
            os.getpid(),
            _dumps(params or {}),
            "{}",
            "{}",
            _dumps(package_versions()),
            dataset_hash,
            model,
            str(run_dir) if run_dir is not None else None,
            _dumps(job) if job is not None else None,
        )
        self._write(
            lambda c: c.execute(
                "INSERT INTO runs (id, name, kind, status, created, updated, heartbeat, host, pid, params, metrics, "
                "timings, versions, dataset_hash, model, run_dir, job)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
        )
        self._beats[run_id] = now
        return run_id

    def reopen_run(self, run_id: str) -> None:
        """Mark a paused (or stopped, failed) run as running again in this process, e.g. to resume it.

        A run that was a job stays one only when this process is its job process (which claimed its slot);
        resumed anywhere else it is an in-process run again, judged by the ordinary heartbeat timeout.
        """
        self.get_run(run_id)
        now = time.time()
        self._write(
            lambda c: c.execute(
                "UPDATE runs SET status = 'running', error = NULL, updated = ?, heartbeat = ?, host = ?, pid = ?, "
                "job = CASE WHEN pid = ? AND host = ? THEN job ELSE NULL END WHERE id = ?",
                (now, now, self._host, os.getpid(), os.getpid(), self._host, run_id),
            )
        )
        self._beats[run_id] = now

    def heartbeat(self, run_id: str) -> None:
        now = time.time()
        self._write(lambda c: c.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (now, run_id)))
        self._beats[run_id] = now

    def update_run(
        self,
        run_id: str,
        *,
        params: dict | None = None,
        dataset_hash: str | None = None,
        model: str | None = None,
        run_dir: str | os.PathLike | None = None,
    ) -> None:
        """Merge ``params`` into the run's parameters and set the other fields that are given."""

        def apply(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT params FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"no run with id {run_id!r} in {self.path}")
            merged = {**_loads(row["params"]), **(params or {})}
            c.execute("UPDATE runs SET params = ?, updated = ? WHERE id = ?", (_dumps(merged), time.time(), run_id))
            for column, value in (("dataset_hash", dataset_hash), ("model", model), ("run_dir", run_dir)):
                if value is not None:
                    c.execute(f"UPDATE runs SET {column} = ? WHERE id = ?", (str(value), run_id))  # noqa: S608 - fixed names

        self._write(apply)

    def finish_run(
        self,
        run_id: str,
        status: str,
        *,
        metrics: dict | None = None,
        error: str | None = None,
        model: str | None = None,
    ) -> None:
        """Set the final status (``completed``, ``failed``, ``stopped`` or ``paused``) and merge ``metrics``."""
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; expected one of {', '.join(STATUSES)}")

        def apply(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT metrics, timings, created FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"no run with id {run_id!r} in {self.path}")
            now = time.time()
            merged = {**_loads(row["metrics"]), **(metrics or {})}
            timings = _loads(row["timings"])
            timings["wall"] = now - row["created"]
            c.execute(
                "UPDATE runs SET status = ?, metrics = ?, timings = ?, error = ?, updated = ?, heartbeat = ?,"
                " model = COALESCE(?, model) WHERE id = ?",
                (status, _dumps(merged), _dumps(timings), redact(error) if error else None, now, now, model, run_id),
            )

        self._write(apply)
        self._beats.pop(run_id, None)

    def _process_gone(self, host: str | None, pid: int | None) -> bool:
        if host != self._host or not pid or pid == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, OSError):
            return False
        return _zombie(int(pid))

    def _liveness(self, r: sqlite3.Row, now: float) -> tuple[str, str | None, bool]:
        """The status to show, its error, and whether the process is known to be gone (not merely silent)."""
        status, error = r["status"], r["error"]
        if status == "running" or (status == "queued" and r["job"]):
            on_dask = _on_dask(r)
            if on_dask and r["pid"] is None:
                return status, error, False  # in the Dask scheduler's queue: no process to judge yet
            timeout = min(self.heartbeat_timeout, JOB_HEARTBEAT_TIMEOUT) if r["job"] else self.heartbeat_timeout
            age = now - r["heartbeat"]
            if not on_dask and self._process_gone(r["host"], r["pid"]):
                when = " while queued" if status == "queued" else ""
                error = error or (
                    f"its process (pid {r['pid']} on {r['host']}) is gone{when}: it crashed, ran out of memory "
                    "or was killed"
                )
                return "failed", error, True
            if age > timeout:
                error = error or f"no heartbeat for {age:.0f} s: the process running it died or was killed"
                return "failed", error, False
        return status, error, False

    def _run_row(self, r: sqlite3.Row, now: float) -> RunRow:
        status, error, gone = self._liveness(r, now)
        if gone and r["job"]:
            self._record_death(r, error)
        return RunRow(
            id=r["id"],
            name=r["name"],
            kind=r["kind"],
            status=status,
            created=r["created"],
            updated=r["updated"],
            heartbeat=r["heartbeat"],
            params=_loads(r["params"]),
            metrics=_loads(r["metrics"]),
            timings=_loads(r["timings"]),
            versions=_loads(r["versions"]),
            dataset_hash=r["dataset_hash"],
            model=r["model"],
            run_dir=r["run_dir"],
            error=error,
            last_epoch=r["last_epoch"],
            pid=r["pid"],
            host=r["host"],
            job=_loads(r["job"]) if r["job"] else None,
            telemetry=_loads(r["telemetry"]),
        )

    def _record_death(self, r: sqlite3.Row, error: str | None) -> None:
        """Record a dead job as failed (once: only while the row still says it lives in that process)."""
        now = time.time()
        try:
            self._write(
                lambda c: c.execute(
                    "UPDATE runs SET status = 'failed', error = ?, updated = ? "
                    "WHERE id = ? AND status IN ('running', 'queued') AND pid IS ?",
                    (error, now, r["id"], r["pid"]),
                )
            )
        except sqlite3.Error as exc:  # a reader must not fail because it could not write; the next one will
            log.debug("could not record run %s as failed: %s", r["id"], exc)

    def list_runs(self, *, kind: str | None = None, status: str | None = None) -> list[RunRow]:
        """Runs, newest first; ``status`` filters on the status as shown (a dead ``running`` run is ``failed``)."""
        sql, args = "SELECT * FROM runs", []
        if kind is not None:
            sql, args = sql + " WHERE kind = ?", [kind]
        now = time.time()
        rows = [self._run_row(r, now) for r in self._read(sql + " ORDER BY created DESC, id DESC", args)]
        return [r for r in rows if status is None or r.status == status]

    def kinds_done(self) -> set[str]:
        """The kinds of run that completed at least once (what the dashboard's loop strip ticks off)."""
        return {r["kind"] for r in self._read("SELECT DISTINCT kind FROM runs WHERE status = 'completed'")}

    def get_run(self, run_id: str) -> RunRow:
        rows = self._read("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            raise KeyError(f"no run with id {run_id!r} in {self.path}")
        return self._run_row(rows[0], time.time())

    def find_run(self, prefix: str) -> RunRow:
        """The run whose id is ``prefix`` or starts with it (unique), or whose name is ``prefix``."""
        rows = self._read("SELECT id FROM runs WHERE id = ? OR name = ?", (prefix, prefix))
        if len(rows) != 1:
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = rows or self._read("SELECT id FROM runs WHERE id LIKE ? ESCAPE '\\'", (escaped + "%",))
        if not rows:
            raise KeyError(f"no run with id or name {prefix!r} in {self.path}")
        if len(rows) > 1:
            raise KeyError(
                f"{prefix!r} matches {len(rows)} runs ({', '.join(r['id'] for r in rows[:5])}); give more of the id"
            )
        return self.get_run(rows[0]["id"])

    def epochs(self, run_id: str) -> list[dict]:
        rows = self._read(
            "SELECT stage, epoch, time, data FROM epochs WHERE run_id = ? ORDER BY stage, epoch", (run_id,)
        )
        return [{**_loads(r["data"]), "epoch": r["epoch"], "stage": r["stage"], "time": r["time"]} for r in rows]

    def logs(self, run_id: str) -> list[dict]:
        rows = self._read("SELECT time, stage, level, message FROM logs WHERE run_id = ? ORDER BY id", (run_id,))
        return [dict(r) for r in rows]

    def timings(self, run_id: str) -> list[dict]:
        rows = self._read(
            "SELECT time, stage, what, seconds, items FROM timings WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [dict(r) for r in rows]

    def rename_run(self, run_id: str, name: str) -> None:
        name = (name or "").strip()
        if not name:
            raise ValueError("a run name must not be empty")
        count = self._write(
            lambda c: (
                c.execute("UPDATE runs SET name = ?, updated = ? WHERE id = ?", (name, time.time(), run_id)).rowcount
            )
        )
        if count == 0:
            raise KeyError(f"no run with id {run_id!r} in {self.path}")

    def owned_dir(self, run: RunRow) -> Path | None:
        """The run's folder if it is this run's own folder inside the workspace (``runs/<id>``), else None."""
        if not run.run_dir or self.workspace_root is None:
            return None
        own = self.workspace_root / "runs" / run.id
        candidate = Path(run.run_dir)
        if candidate.is_symlink():
            return None
        try:
            resolved = candidate.resolve()
        except OSError:
            return None
        if resolved == own.resolve() or own.resolve() in resolved.parents:
            return resolved
        return None

    def delete_run(self, run_id: str) -> None:
        """Forget the run and delete the files it owns: its own folder ``runs/<id>`` inside the workspace.

        Nothing outside that folder is touched — not another run's folder, not a data set or model
        bundle the run used or produced, nothing outside the workspace.
        """
        run = self.get_run(run_id)
        own = self.owned_dir(run)
        self._write(lambda c: c.execute("DELETE FROM runs WHERE id = ?", (run_id,)))
        if own is not None and own.is_dir():
            shutil.rmtree(own)

    def compare_runs(self, run_ids: list[str]) -> list[dict]:
        """Side by side: status, parameters and final metrics of each run, plus its best and last epoch.

        Each dict has ``id``, ``name``, ``kind``, ``status``, ``dataset_hash``, ``model``, ``last_epoch``,
        ``params`` and ``metrics`` (flattened with dotted keys), ``final`` (the last epoch record),
        ``best_val_loss`` and ``differs`` (the parameter keys whose values are not the same in all runs).
        """
        out = []
        for run_id in run_ids:
            run = self.get_run(run_id)
            epochs = [e for e in self.epochs(run_id) if e.get("stage") == "train"] or self.epochs(run_id)
            vals = [
                e["val_loss"]
                for e in epochs
                if isinstance(e.get("val_loss"), (int, float)) and math.isfinite(e["val_loss"])
            ]
            out.append(
                {
                    "id": run.id,
                    "name": run.name,
                    "kind": run.kind,
                    "status": run.status,
                    "dataset_hash": run.dataset_hash,
                    "model": run.model,
                    "last_epoch": run.last_epoch,
                    "params": flatten(run.params),
                    "metrics": flatten(run.metrics),
                    "final": epochs[-1] if epochs else {},
                    "best_val_loss": min(vals) if vals else None,
                }
            )
        keys = sorted({k for row in out for k in row["params"]})
        differs = [
            k for k in keys if len({json.dumps(row["params"].get(k), sort_keys=True, default=str) for row in out}) > 1
        ]
        for row in out:
            row["differs"] = differs
        return out

    # ------------------------------------------------------------ events
    def listener(self, run_id: str) -> Callable[[Event], None]:
        """A :class:`~workbench.events.Reporter` listener that records the run's events as they happen.

        ``Record(stage, "epoch", data)`` → ``epochs`` (and the run's ``last_epoch``), ``Log`` and
        ``Warning_`` → ``logs``, ``Timing`` → ``timings``; every event touches the heartbeat
        (progress events at most once a second).
        """

        def listen(event: Event) -> None:
            if isinstance(event, Record) and event.name == "epoch" and "epoch" in event.data:
                self._record_epoch(run_id, event)
            elif isinstance(event, (Log, Warning_)):
                level = event.level if isinstance(event, Log) else "warning"
                self._add_log(run_id, event.time, event.stage, level, event.message)
            elif isinstance(event, Timing):
                self._add_timing(run_id, event)
            elif time.time() - self._beats.get(run_id, 0.0) >= 1.0:  # progress and other records
                self.heartbeat(run_id)

        listen.run_id = run_id  # type: ignore[attr-defined]
        return listen

    def _record_epoch(self, run_id: str, event: Record) -> None:
        data = dict(event.data)
        epoch = int(data.pop("epoch"))
        now = time.time()

        def apply(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT OR REPLACE INTO epochs (run_id, stage, epoch, time, data) VALUES (?, ?, ?, ?, ?)",
                (run_id, event.stage, epoch, event.time, _dumps(data)),
            )
            c.execute(
                "UPDATE runs SET last_epoch = ?, heartbeat = ?, updated = ? WHERE id = ?", (epoch, now, now, run_id)
            )

        self._write(apply)
        self._beats[run_id] = now

    def _add_log(self, run_id: str, at: float, stage: str, level: str, message: str) -> None:
        now = time.time()

        def apply(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO logs (run_id, time, stage, level, message) VALUES (?, ?, ?, ?, ?)",
                (run_id, at, stage, level, redact(str(message))),
            )
            c.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (now, run_id))

        self._write(apply)
        self._beats[run_id] = now

    def log(self, run_id: str, message: str, level: str = "info", stage: str = "run") -> None:
        """Add a log line to a run (what a listener does for ``Log`` events)."""
        self._add_log(run_id, time.time(), stage, level, message)

    def _add_timing(self, run_id: str, event: Timing) -> None:
        now = time.time()
        key = "epochs" if _EPOCH_TIMING.match(event.what) else event.what

        def apply(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO timings (run_id, time, stage, what, seconds, items) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, event.time, event.stage, event.what, float(event.seconds), int(event.items)),
            )
            row = c.execute("SELECT timings FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is not None:
                timings = _loads(row["timings"])
                timings[key] = (
                    float(timings.get(key, 0.0)) + float(event.seconds) if key == "epochs" else float(event.seconds)
                )
                c.execute("UPDATE runs SET timings = ?, heartbeat = ? WHERE id = ?", (_dumps(timings), now, run_id))

        self._write(apply)
        self._beats[run_id] = now

    # ------------------------------------------------------------ jobs: process, queue slot, telemetry, commands
    def set_process(self, run_id: str, pid: int | None) -> None:
        """Record the process that runs (or waits to run) a job, on this host; None: none yet (a Dask job)."""
        host = self._host if pid is not None else None
        pid = int(pid) if pid is not None else None
        self._write(lambda c: c.execute("UPDATE runs SET pid = ?, host = ? WHERE id = ?", (pid, host, run_id)))

    def take_job(self, run_id: str) -> bool:
        """A Dask worker takes a job no process has yet; False when it was stopped meanwhile or already taken
        (Dask runs a task again elsewhere when its worker dies: the job must not run twice)."""
        now = time.time()
        taken = self._write(
            lambda c: (
                c.execute(
                    "UPDATE runs SET pid = ?, host = ?, heartbeat = ? "
                    "WHERE id = ? AND status = 'queued' AND pid IS NULL",
                    (os.getpid(), self._host, now, run_id),
                ).rowcount
            )
        )
        if taken:
            self._beats[run_id] = now
        return bool(taken)

    def drop_untaken(self, run_id: str, reason: str) -> bool:
        """End as ``stopped`` a Dask job no worker has taken yet (nothing would read a command); False otherwise."""
        now = time.time()
        return bool(
            self._write(
                lambda c: (
                    c.execute(
                        "UPDATE runs SET status = 'stopped', error = ?, updated = ? "
                        "WHERE id = ? AND status = 'queued' AND pid IS NULL",
                        (f"{redact(reason)} (before a Dask worker took it)", now, run_id),
                    ).rowcount
                )
            )
        )

    def queue_run(self, run_id: str, job: dict) -> None:
        """Queue an ended run again as a job (a training resumed from its checkpoint in a new process)."""
        now = time.time()

        def apply(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(f"no run with id {run_id!r} in {self.path}")
            shown = self._liveness(row, now)[0]
            if shown in LIVE:
                raise ValueError(f"run {run_id} is {shown} already")
            c.execute(
                "UPDATE runs SET status = 'queued', job = ?, error = NULL, updated = ?, heartbeat = ?, host = ?,"
                " pid = ? WHERE id = ?",
                (_dumps(job), now, now, self._host, os.getpid(), run_id),
            )

        self._write(apply)
        self._beats[run_id] = now

    def _live_jobs(self, c: sqlite3.Connection, now: float) -> list[tuple[sqlite3.Row, str]]:
        rows = c.execute("SELECT * FROM runs WHERE job IS NOT NULL AND status IN ('running', 'queued')").fetchall()
        return [(r, self._liveness(r, now)[0]) for r in rows]

    @staticmethod
    def _queued_at(r: sqlite3.Row) -> tuple[float, str]:
        return float(_loads(r["job"]).get("queued", r["created"])), r["id"]

    def claim_slot(self, run_id: str, max_running: int) -> bool:
        """Start a queued job if fewer than ``max_running`` jobs run and no older queued job waits for the slot.

        One ``BEGIN IMMEDIATE`` transaction: two jobs asking at once never both take the last slot.
        Returns True when the job is now ``running`` in this process.
        """
        if max_running < 1:
            raise ValueError(f"at least one job must be allowed to run at once, got {max_running}")
        now = time.time()

        def apply(c: sqlite3.Connection) -> bool:
            jobs = self._live_jobs(c, now)
            mine = next((r for r, _ in jobs if r["id"] == run_id), None)
            if mine is None or mine["status"] != "queued":
                raise KeyError(f"run {run_id} is not a queued job in {self.path}")
            running = sum(1 for r, status in jobs if status == "running")
            ahead = sum(1 for r, status in jobs if _waits(r, status) and self._queued_at(r) < self._queued_at(mine))
            if running + ahead >= max_running:
                return False
            c.execute(
                "UPDATE runs SET status = 'running', pid = ?, host = ?, heartbeat = ?, updated = ? WHERE id = ?",
                (os.getpid(), self._host, now, now, run_id),
            )
            return True

        claimed = self._write(apply)
        if claimed:
            self._beats[run_id] = now
        return claimed

    def queue_position(self, run_id: str) -> int | None:
        """1 for the next queued job to start, 2 for the one after; None when the run is not queued."""
        now = time.time()
        rows = self._read("SELECT * FROM runs WHERE job IS NOT NULL AND status = 'queued'")
        queued = sorted((r for r in rows if _waits(r, self._liveness(r, now)[0])), key=self._queued_at)
        ids = [r["id"] for r in queued]
        return ids.index(run_id) + 1 if run_id in ids else None

    def record_telemetry(self, run_id: str, telemetry: dict) -> None:
        """A job's heartbeat with what its process uses (CPU %, memory)."""
        now = time.time()
        self._write(
            lambda c: c.execute(
                "UPDATE runs SET heartbeat = ?, telemetry = ? WHERE id = ?", (now, _dumps(telemetry), run_id)
            )
        )
        self._beats[run_id] = now

    def send_command(self, run_id: str, command: str, reason: str = "") -> int:
        """Ask a job to ``stop`` or ``pause``; it polls for commands and acknowledges them. Returns the command id."""
        if command not in COMMANDS:
            raise ValueError(f"unknown job command {command!r}; expected one of {', '.join(COMMANDS)}")
        self.get_run(run_id)
        return int(
            self._write(
                lambda c: (
                    c.execute(
                        "INSERT INTO commands (run_id, command, reason, time) VALUES (?, ?, ?, ?)",
                        (run_id, command, redact(reason), time.time()),
                    ).lastrowid
                )
            )
        )

    def pending_commands(self, run_id: str) -> list[dict]:
        """Commands to the run not acknowledged yet, oldest first."""
        rows = self._read(
            "SELECT id, command, reason, time FROM commands WHERE run_id = ? AND acked IS NULL ORDER BY id", (run_id,)
        )
        return [dict(r) for r in rows]

    def ack_command(self, command_id: int) -> None:
        self._write(lambda c: c.execute("UPDATE commands SET acked = ? WHERE id = ?", (time.time(), int(command_id))))

    def commands(self, run_id: str) -> list[dict]:
        """Every command sent to the run: id, command, reason, time sent, time acknowledged (None: not yet)."""
        rows = self._read(
            "SELECT id, command, reason, time, acked FROM commands WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [dict(r) for r in rows]

    # ------------------------------------------------------------ checkpoints
    def add_checkpoint(self, run_id: str, path: str | os.PathLike, epoch: int, *, hub: str | None = None) -> None:
        """Record a checkpoint of a run (``hub``: where a copy lives on the Hub, ``repo_type:repo_id:path``)."""
        now = time.time()
        self._write(
            lambda c: c.execute(
                "INSERT INTO checkpoints (run_id, path, epoch, time, hub) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, path)"
                " DO UPDATE SET epoch = excluded.epoch, time = excluded.time, hub = COALESCE(excluded.hub, "
                "checkpoints.hub)",
                (run_id, str(path), int(epoch), now, hub),
            )
        )

    def checkpoints(self, run_id: str) -> list[dict]:
        rows = self._read(
            "SELECT path, epoch, time, hub FROM checkpoints WHERE run_id = ? ORDER BY epoch, time", (run_id,)
        )
        return [dict(r) for r in rows]

    def latest_checkpoint(self, run_id: str) -> Path | None:
        """The newest checkpoint file of the run that still exists on disk, or None."""
        for row in reversed(self.checkpoints(run_id)):
            if Path(row["path"]).is_file():
                return Path(row["path"])
        return None

    # ------------------------------------------------------------ data sets
    def register_dataset(
        self, content_hash: str, path: str | os.PathLike, config: dict, *, hub: str | None = None
    ) -> None:
        if not content_hash:
            raise ValueError("a data set is registered by its content hash; got an empty hash")
        self._write(
            lambda c: c.execute(
                "INSERT INTO datasets (content_hash, path, config, created, hub) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (content_hash) DO UPDATE SET path = excluded.path, config = excluded.config,"
                " hub = COALESCE(excluded.hub, datasets.hub)",
                (content_hash, str(path), _dumps(config), time.time(), hub),
            )
        )

    def set_dataset_hub(self, content_hash: str, hub: str) -> None:
        self._write(lambda c: c.execute("UPDATE datasets SET hub = ? WHERE content_hash = ?", (hub, content_hash)))

    def get_dataset(self, content_hash: str) -> dict | None:
        rows = self._read("SELECT * FROM datasets WHERE content_hash = ?", (content_hash,))
        return self._dataset(rows[0]) if rows else None

    def list_datasets(self) -> list[dict]:
        return [self._dataset(r) for r in self._read("SELECT * FROM datasets ORDER BY created DESC")]

    @staticmethod
    def _dataset(r: sqlite3.Row) -> dict:
        return {
            "content_hash": r["content_hash"],
            "path": r["path"],
            "config": _loads(r["config"]),
            "created": r["created"],
            "hub": r["hub"],
        }

    # ------------------------------------------------------------ models
    def register_model(
        self,
        name: str,
        version: int | None,
        *,
        target: str,
        path: str | os.PathLike,
        metrics: dict,
        dataset_hash: str | None,
        run_id: str | None = None,
        active: bool = False,
    ) -> int:
        """Register a model bundle; returns its version (``None`` → one more than the latest of that name).

        ``metrics`` holds the train / val / test metrics.  ``active=True`` makes it the active model
        of its ``target`` and clears the flag on every other model of that target.
        """
        if not name:
            raise ValueError("a model needs a name")

        def apply(c: sqlite3.Connection) -> int:
            v = version
            if v is None:
                v = (
                    int(c.execute("SELECT COALESCE(MAX(version), 0) FROM models WHERE name = ?", (name,)).fetchone()[0])
                    + 1
                )
            elif c.execute("SELECT 1 FROM models WHERE name = ? AND version = ?", (name, v)).fetchone():
                raise ValueError(
                    f"model {name!r} version {v} is already registered; pass version=None for the next one"
                )
            if active:
                c.execute("UPDATE models SET active = 0 WHERE target = ?", (target,))
            c.execute(
                "INSERT INTO models (name, version, target, path, metrics, dataset_hash, run_id, active, created)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    int(v),
                    target,
                    str(path),
                    _dumps(metrics),
                    dataset_hash,
                    run_id,
                    int(bool(active)),
                    time.time(),
                ),
            )
            return int(v)

        return self._write(apply)

    def set_active_model(self, name: str, version: int) -> None:
        """Make ``name`` v``version`` the active model of its target (and no other model of that target)."""

        def apply(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT target FROM models WHERE name = ? AND version = ?", (name, version)).fetchone()
            if row is None:
                raise KeyError(f"no model {name!r} version {version} in {self.path}")
            c.execute("UPDATE models SET active = 0 WHERE target = ?", (row["target"],))
            c.execute("UPDATE models SET active = 1 WHERE name = ? AND version = ?", (name, version))

        self._write(apply)

    def set_model_hub(self, name: str, version: int, hub: str) -> None:
        self._write(
            lambda c: c.execute("UPDATE models SET hub = ? WHERE name = ? AND version = ?", (hub, name, version))
        )

    def list_models(self, target: str | None = None) -> list[dict]:
        sql, args = "SELECT * FROM models", []
        if target is not None:
            sql, args = sql + " WHERE target = ?", [target]
        return [self._model(r) for r in self._read(sql + " ORDER BY name, version", args)]

    def get_model(self, name: str, version: int | None = None) -> dict:
        """A registered model (the latest version when ``version`` is None); KeyError if absent."""
        if version is None:
            rows = self._read("SELECT * FROM models WHERE name = ? ORDER BY version DESC LIMIT 1", (name,))
        else:
            rows = self._read("SELECT * FROM models WHERE name = ? AND version = ?", (name, version))
        if not rows:
            raise KeyError(f"no model {name!r}{'' if version is None else f' version {version}'} in {self.path}")
        return self._model(rows[0])

    def active_model(self, target: str) -> dict | None:
        rows = self._read("SELECT * FROM models WHERE target = ? AND active = 1", (target,))
        return self._model(rows[0]) if rows else None

    @staticmethod
    def _model(r: sqlite3.Row) -> dict:
        return {
            "name": r["name"],
            "version": r["version"],
            "target": r["target"],
            "path": r["path"],
            "metrics": _loads(r["metrics"]),
            "dataset_hash": r["dataset_hash"],
            "run_id": r["run_id"],
            "active": bool(r["active"]),
            "created": r["created"],
            "hub": r["hub"],
        }


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys ({"test": {"r2": 1}} → {"test.r2": 1}), for tables."""
    out: dict[str, Any] = {}
    for key, value in (d or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out

"""Jobs on a Dask cluster, and sweeps as jobs.

A real ``dask scheduler`` and two ``dask worker`` processes (no nanny, one thread each) on 127.0.0.1 run
the jobs that :func:`workbench.batch.jobs.submit_job` sends them; the tests see the jobs only through the
workspace registry, as another page or shell would.  The sweep jobs are ordinary local job processes that
run a small notebook (one parameter squared, after an optional sleep) on a LocalCluster of threads.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from workbench.batch.jobs import stop_job, submit_job, wait_for_job
from workbench.cli.main import main
from workbench.data.dataset import load_dataset
from workbench.store.registry import Registry
from workbench.store.workspace import Workspace

DASK = str(Path(sys.executable).with_name("dask"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class Cluster:
    address: str
    workers: list[subprocess.Popen]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from distributed import Client

    folder = tmp_path_factory.mktemp("dask")
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs: list[subprocess.Popen] = []

    def start(args: list[str], log: str) -> subprocess.Popen:
        with open(folder / log, "wb") as out:
            proc = subprocess.Popen([DASK, *args], cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        start(["scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1], "--no-dashboard"], "s.log")
        common = ["--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1"]
        workers = [
            start(["worker", address, *common, "--local-directory", str(folder / f"w{i}")], f"w{i}.log") for i in (0, 1)
        ]

        def ready() -> bool:
            try:
                with Client(address, timeout="2s") as client:
                    return len(client.scheduler_info()["workers"]) == 2
            except OSError:
                return False

        _wait(ready, 90, "the scheduler and two workers")
        yield Cluster(address, workers)
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _generate_request(out: Path, curves: int, chunk: int = 1024) -> dict:
    return {"out": str(out), "config": {"num_curves": curves, "seed": 3, "sld_points": 60, "chunk_size": chunk}}


def test_a_generation_job_runs_in_a_dask_worker_and_writes_its_data_set(tmp_path, cluster):
    ws = Workspace(tmp_path / "ws")
    out = tmp_path / "ds"
    run_id = submit_job(ws, "generate", _generate_request(out, 300), scheduler=cluster.address)
    done = wait_for_job(ws.registry, run_id, timeout=90)
    assert done.status == "completed", done.error
    assert load_dataset(out).n == 300 and done.metrics["curves"] == 300
    assert ws.registry.get_dataset(done.dataset_hash)["path"] == str(out.resolve())
    # it ran inside one of the worker processes: neither this process nor a local job_worker
    assert done.pid in {w.pid for w in cluster.workers} and done.pid != os.getpid()
    assert done.host == socket.gethostname() and done.job["scheduler"] == cluster.address
    log = (ws.runs / run_id / "job.log").read_text()
    assert f"Dask worker pid {done.pid}" in log and "ended: completed" in log
    assert not list(ws.root.glob(".dask-probe-*"))  # the visibility probe is cleaned up


def test_a_long_generation_on_dask_stops_within_seconds(tmp_path, cluster):
    ws = Workspace(tmp_path / "ws")
    run_id = submit_job(ws, "generate", _generate_request(tmp_path / "big", 200_000), scheduler=cluster.address)
    reg = ws.registry
    _wait(lambda: reg.get_run(run_id).status == "running", 60, "the worker to start the generation")
    time.sleep(1.0)
    sent = time.monotonic()
    stop_job(reg, run_id)
    done = wait_for_job(reg, run_id, timeout=30)
    assert done.status == "stopped" and time.monotonic() - sent < 8
    assert not (tmp_path / "big" / "dataset.json").exists()
    assert all(c["acked"] is not None for c in reg.commands(run_id))


def test_an_unreachable_scheduler_is_a_value_error_at_once_and_records_nothing(tmp_path):
    ws = Workspace(tmp_path / "ws")
    address = f"tcp://127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    with pytest.raises(ValueError, match=f"cannot reach the Dask scheduler at '{address}'"):
        submit_job(ws, "generate", _generate_request(tmp_path / "ds", 100), scheduler=address)
    assert time.monotonic() - t0 < 15
    assert ws.registry.list_runs() == []
    with pytest.raises(ValueError, match="cannot reach the Dask scheduler"):
        submit_job(ws, "generate", _generate_request(tmp_path / "ds", 100), scheduler="not an address")


def test_a_dask_job_is_judged_by_its_heartbeat_and_one_waiting_for_a_worker_can_be_stopped(tmp_path):
    ws = Workspace(tmp_path / "ws")
    reg = Registry(ws.db_path, workspace_root=ws.root, heartbeat_timeout=3)
    job = {"kind": "generate", "request": {}, "scheduler": "tcp://10.0.0.1:8786", "queued": time.time()}
    waiting = reg.start_run("generate", status="queued", job=job)
    reg.set_process(waiting, None)  # in the scheduler's queue: no worker has it
    local = reg.start_run("generate", status="queued", job={"kind": "generate", "request": {}, "queued": time.time()})
    time.sleep(3.5)
    reg.heartbeat(local)
    assert reg.get_run(waiting).status == "queued"  # silent, but it has no process to be silent yet
    assert reg.queue_position(local) == 1  # it does not hold the local queue up
    stop_job(reg, waiting)
    assert reg.get_run(waiting).status == "stopped" and not reg.take_job(waiting)  # a late worker leaves it

    taken = reg.start_run("generate", status="queued", job=job)
    reg.set_process(taken, None)
    assert reg.take_job(taken) and not reg.take_job(taken)  # Dask re-running it elsewhere does not run it twice
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    reg.set_process(taken, int(dead.stdout))  # a pid on this host that has ended: a worker's, not a job process
    assert reg.get_run(taken).status == "queued"  # judged by its heartbeat, which is fresh
    time.sleep(3.5)
    shown = reg.get_run(taken)
    assert shown.status == "failed" and "no heartbeat" in shown.error


# ---------------------------------------------------------------------------- sweeps as jobs
def _notebook(path: Path) -> Path:
    params = new_code_cell('x: int = 1\nseconds: float = 0.0\nsummary_path: str = "s.json"', id="params")
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell(
        "import json, pathlib, time\ntime.sleep(seconds)\n"
        "pathlib.Path(summary_path).write_text(json.dumps({'metrics': {'square': x * x}}))",
        id="body",
    )
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(new_notebook(cells=[params, body], metadata=meta), path)
    return path


def test_a_sweep_job_from_the_cli_runs_every_parameter_set(tmp_path, capsys):
    ws = Workspace(tmp_path / "ws")
    nb = _notebook(tmp_path / "sq.ipynb")
    out = tmp_path / "sweep"
    args = ["sweep", str(nb), "-p", "x", "2,3", "--out", str(out), "--workers", "1", "--threads", "--detach"]
    assert main([*args, "--workspace", str(ws.root)]) == 0
    run_id = capsys.readouterr().out.strip()
    done = wait_for_job(ws.registry, run_id, timeout=120)
    assert done.status == "completed", done.error
    assert done.kind == "sweep" and done.metrics["completed"] == 2 and done.metrics["failed"] == 0
    results = pd.read_csv(out / "results.csv")
    assert sorted(results["square"]) == [4, 9]
    assert any("run x=3 completed" in line["message"] for line in ws.registry.logs(run_id))


def test_a_sweep_job_stops_from_the_registry_and_keeps_its_finished_runs(tmp_path):
    ws = Workspace(tmp_path / "ws")
    nb = _notebook(tmp_path / "sq.ipynb")
    out = tmp_path / "sweep"
    request = {"notebook": str(nb), "out": str(out), "grid": {"x": [1, 2, 3, 4, 5, 6]}, "fixed": {"seconds": 1.5}}
    run_id = submit_job(ws, "sweep", {**request, "workers": 1, "processes": False})
    reg = ws.registry

    def first_done() -> bool:
        manifest = out / "sweep.json"
        runs = json.loads(manifest.read_text())["runs"].values() if manifest.exists() else []
        return any(r["status"] == "completed" for r in runs)

    _wait(first_done, 90, "the sweep's first run")
    sent = time.monotonic()
    stop_job(reg, run_id)
    done = wait_for_job(reg, run_id, timeout=30)
    assert done.status == "stopped" and time.monotonic() - sent < 15
    statuses = [r["status"] for r in json.loads((out / "sweep.json").read_text())["runs"].values()]
    assert 1 <= statuses.count("completed") < 6 and statuses.count("stopped") == 6 - statuses.count("completed")


def test_a_bad_sweep_request_is_refused_when_submitted(tmp_path):
    ws = Workspace(tmp_path / "ws")
    nb = str(_notebook(tmp_path / "sq.ipynb"))
    out = str(tmp_path / "sweep")
    with pytest.raises(ValueError, match="'y'"):
        submit_job(ws, "sweep", {"notebook": nb, "out": out, "grid": {"y": [1, 2]}})
    with pytest.raises(ValueError, match="two"):
        submit_job(ws, "sweep", {"notebook": nb, "out": out, "grid": {"x": [1, "two"]}})
    with pytest.raises(ValueError, match="nothing to sweep"):
        submit_job(ws, "sweep", {"notebook": nb, "out": out})
    with pytest.raises(ValueError, match="workers must be ≥ 1"):
        submit_job(ws, "sweep", {"notebook": nb, "out": out, "runs": [{"x": 1}], "workers": 0})
    with pytest.raises(ValueError, match=r"nope\.ipynb: no such notebook"):
        submit_job(ws, "sweep", {"notebook": str(tmp_path / "nope.ipynb"), "out": out, "runs": [{"x": 1}]})
    with pytest.raises(ValueError, match=r"unknown sweep request field\(s\) \['gird'\]"):
        submit_job(ws, "sweep", {"notebook": nb, "out": out, "gird": {"x": [1]}})
    assert ws.registry.list_runs() == []


def test_a_job_whose_worker_dies_shows_failed_after_the_heartbeat_timeout_and_is_not_run_again(tmp_path, cluster):
    """Last in the file: it kills one of the two workers."""
    ws = Workspace(tmp_path / "ws")
    run_id = submit_job(ws, "generate", _generate_request(tmp_path / "big", 200_000), scheduler=cluster.address)
    reg = Registry(ws.db_path, workspace_root=ws.root, heartbeat_timeout=4)
    running = _wait(lambda: (r := reg.get_run(run_id)).status == "running" and r, 60, "the job to run")
    worker = next(w for w in cluster.workers if w.pid == running.pid)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    failed = _wait(lambda: (r := reg.get_run(run_id)).status == "failed" and r, 15, "the job to show failed")
    assert "no heartbeat" in failed.error
    time.sleep(3)  # Dask hands the task to the other worker, which must leave the job alone
    assert reg.get_run(run_id).pid == running.pid and reg.get_run(run_id).status == "failed"

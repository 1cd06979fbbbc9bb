"""Jobs in their own processes: they outlive their starter, obey commands from any surface, survive kills.

Every job here is a real ``python -m workbench.batch.job_worker`` process started by
:func:`workbench.batch.jobs.submit_job` (or ``workbench train --detach``); the tests talk to it only
through the workspace registry, as another page, notebook or shell would.  Each job start costs a
fresh interpreter (torch or numba imports, ≈ 3–15 s on a loaded 2-core machine), so each test starts
as few as its claim needs, on a 400-curve data set and a 4-channel model.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from workbench.batch.jobs import pause_job, stop_job, submit_job, wait_for_job
from workbench.cli.main import main
from workbench.data.dataset import load_dataset
from workbench.data.generate import GeneratorConfig, generate_to_disk
from workbench.limits import Limits
from workbench.physics import FilmStack
from workbench.store.model_bundle import load_model_bundle
from workbench.store.registry import JOB_HEARTBEAT_TIMEOUT
from workbench.store.workspace import Workspace

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
START = 120.0  # s: a job process's start (imports) on a loaded machine, well above what it takes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "ds"
    return generate_to_disk(
        FilmStack.default(), GeneratorConfig(num_curves=400, seed=2, sld_points=60), folder, progress=False
    )


def _request(dataset: Path, ws: Workspace, name: str, epochs: int) -> dict:
    return {
        "data": str(dataset),
        "out": str(ws.models / name),
        "train": {"epochs": epochs, "batch_size": 32, "checkpoint_every": 1, "device": "cpu", "seed": 1},
        "model": {"kind": "compact", "width": 4, "stages": 2, "latent": 8},
    }


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _generate_request(out: Path, curves: int, chunk: int = 1024) -> dict:
    return {"out": str(out), "config": {"num_curves": curves, "seed": 3, "sld_points": 60, "chunk_size": chunk}}


def test_a_detached_training_advances_while_its_starter_works_and_stops_from_the_cli_within_a_second(
    tmp_path, dataset, capsys
):
    ws = Workspace(tmp_path / "ws")
    args = ["train", "--data", str(dataset), "--out", str(ws.models / "m"), "--epochs", "500", "--batch-size", "32"]
    args += ["--width", "4", "--stages", "2", "--latent", "8", "--device", "cpu", "--detach"]
    args += ["--workspace", str(ws.root)]
    t0 = time.monotonic()
    assert main(args) == 0
    returned = time.monotonic() - t0
    run_id = capsys.readouterr().out.strip()
    reg = ws.registry
    assert reg.get_run(run_id).status in ("queued", "running") and reg.get_run(run_id).job["kind"] == "train"
    watcher = subprocess.Popen(  # another surface: a shell following the job
        [WORKBENCH, "runs", "watch", run_id, "--poll", "0.1", "--workspace", str(ws.root)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # the starter keeps working (a least-squares solve per look) while the job's epochs advance
    rng = np.random.default_rng(0)
    first = _wait(lambda: reg.get_run(run_id).last_epoch, START, "the first epoch")
    solved = 0
    while (reg.get_run(run_id).last_epoch or 0) < first + 3:
        np.linalg.lstsq(rng.normal(size=(200, 20)), rng.normal(size=200), rcond=None)
        solved += 1
        time.sleep(0.01)
    run = reg.get_run(run_id)
    assert run.status == "running" and run.pid != os.getpid() and run.telemetry["rss_mb"] > 50
    assert solved > 0

    sent = time.time()
    assert main(["runs", "stop", run_id, "--workspace", str(ws.root)]) == 0
    said = capsys.readouterr().out
    (command,) = reg.commands(run_id)
    latency = command["acked"] - command["time"]
    done = wait_for_job(reg, run_id, timeout=30)
    ended = done.updated - sent
    print(f"train --detach returned in {returned:.2f} s; stop acknowledged in {latency:.3f} s, stopped {ended:.2f} s")
    assert "acknowledged" in said and latency <= 1.0
    assert done.status == "stopped" and ended <= 5.0
    assert any("stop requested: stop from the command line" in line["message"] for line in reg.logs(run_id))
    out, _ = watcher.communicate(timeout=60)
    assert watcher.returncode == 130, out
    lines = out.splitlines()
    assert sum(line.startswith("epoch ") for line in lines) >= first + 3
    assert "status: running" in lines and lines[-1].startswith(f"run {run_id}: stopped at epoch")


def test_a_killed_job_is_failed_at_once_and_resumes_from_its_checkpoint(tmp_path, dataset):
    ws = Workspace(tmp_path / "ws")
    reg = ws.registry
    run_id = submit_job(ws, "train", _request(dataset, ws, "killed", epochs=500))
    _wait(lambda: len(reg.checkpoints(run_id)) and (reg.get_run(run_id).last_epoch or 0) >= 3, START, "epoch 3")
    pid = reg.get_run(run_id).pid
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    run = _wait(lambda: (r := reg.get_run(run_id)).status == "failed" and r, JOB_HEARTBEAT_TIMEOUT, "the failure")
    print(f"a SIGKILLed job was reported failed {time.monotonic() - killed:.2f} s after the kill")
    assert "is gone" in run.error and run.last_epoch >= 3
    assert reg.list_runs(status="failed")[0].id == run_id  # recorded, not only shown: every reader agrees
    checkpoint_epoch = reg.checkpoints(run_id)[-1]["epoch"]

    assert submit_job(ws, "resume", {"run_id": run_id, "epochs": checkpoint_epoch + 2}) == run_id
    done = wait_for_job(reg, run_id, timeout=START)
    assert done.status == "completed", done.error
    epochs = [e["epoch"] for e in reg.epochs(run_id)]
    assert epochs[-1] == checkpoint_epoch + 2 and epochs == sorted(set(epochs))
    assert any("resuming from checkpoint" in line["message"] for line in reg.logs(run_id))
    assert load_model_bundle(ws.models / "killed").task == "nr_sld"


def test_a_job_beyond_its_memory_limit_fails_alone(tmp_path):
    ws = Workspace(tmp_path / "ws")
    reg = ws.registry
    limits = Limits(job_memory_mb=1500, max_concurrent_jobs=2)
    # one chunk of 2 M curves is ≈ 19 GB of rows: far past 1.5 GB of address space
    greedy = submit_job(ws, "generate", _generate_request(tmp_path / "big", 2_000_000, 2_000_000), limits=limits)
    modest = submit_job(ws, "generate", _generate_request(tmp_path / "small", 300), limits=limits)
    failed = wait_for_job(reg, greedy, timeout=START)
    assert failed.status == "failed" and "MemoryError" in failed.error, failed.error
    assert wait_for_job(reg, modest, timeout=START).status == "completed"
    assert load_dataset(tmp_path / "small").nr.shape[0] == 300
    assert not (tmp_path / "big" / "dataset.json").exists()
    assert reg.integrity_check() == "ok"  # and this process, the starter, goes on


def test_the_queue_runs_at_most_n_jobs_and_starts_the_next_when_one_ends(tmp_path):
    """Two long generations fill both slots; a third waits, queued, until one of them ends (here: is stopped)."""
    ws = Workspace(tmp_path / "ws")
    reg = ws.registry
    limits = Limits(max_concurrent_jobs=2)
    long = [submit_job(ws, "generate", _generate_request(tmp_path / f"d{i}", 100_000), limits=limits) for i in (0, 1)]

    def statuses() -> dict[str, str]:
        return {r.id: r.status for r in reg.list_runs()}

    deadline = time.monotonic() + START
    while any(statuses()[i] != "running" for i in long) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [statuses()[i] for i in long] == ["running", "running"]
    third = submit_job(ws, "generate", _generate_request(tmp_path / "d2", 300), limits=limits)
    most = 0
    deadline = time.monotonic() + START
    while not any("queued (position 1)" in line["message"] for line in reg.logs(third)):
        assert time.monotonic() < deadline, "the third job never said it was queued"
        most = max(most, sum(s == "running" for s in statuses().values()))
        time.sleep(0.05)
    assert statuses()[third] == "queued" and most == 2
    stop_job(reg, long[0])
    ended = wait_for_job(reg, long[0], timeout=START)
    assert ended.status == "stopped"
    assert wait_for_job(reg, third, timeout=START).status == "completed"  # it took the freed slot
    stop_job(reg, long[1])
    assert wait_for_job(reg, long[1], timeout=START).status in ("stopped", "completed")


def test_commands_name_what_cannot_be_done(tmp_path):
    ws = Workspace(tmp_path / "ws")
    reg = ws.registry
    finished = reg.start_run("train", name="done")
    reg.finish_run(finished, "completed")
    in_process = reg.start_run("train", name="here")
    with pytest.raises(ValueError, match="is completed; only a queued or running job can be stopped"):
        stop_job(reg, finished)
    with pytest.raises(ValueError, match="inside the process that started it"):
        pause_job(reg, in_process)
    with pytest.raises(ValueError, match="unknown job kind 'bake'"):
        submit_job(ws, "bake", {})
    with pytest.raises(ValueError, match="only a paused, stopped or failed run resumes"):
        submit_job(ws, "resume", {"run_id": finished})
    with pytest.raises(ValueError, match="does not exist"):
        submit_job(ws, "train", {"data": str(tmp_path / "nowhere"), "out": str(tmp_path / "m")})
    assert [r.id for r in reg.list_runs()] == [in_process, finished]  # nothing was queued by a refused request


def test_a_detached_generation_of_a_family_keeps_its_ties(tmp_path):
    """`workbench generate --detach` returns a run id at once; the job writes the family's data set, ties held."""
    family = tmp_path / "family.yaml"
    family.write_text(
        "family:\n"
        "  layers:\n"
        "    - {name: Si, sld: 2.07, roughness: 3}\n"
        "    - repeat: 3\n"
        "      layers: [{name: A, sld: 1.0, thickness: 30}, {name: B, sld: 5.0, thickness: 40}]\n"
        "    - {name: air}\n"
        "  ranges: {thickness: 20%, sld: 0.5, roughness: 2}\n"
    )
    ws = tmp_path / "ws"
    out = tmp_path / "ds"
    command = [WORKBENCH, "generate", "--stack", str(family), "--num-curves", "64", "--out", str(out)]
    done = subprocess.run(
        [*command, "--workspace", str(ws), "--detach"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip().splitlines()[-1]
    registry = Workspace(ws).registry
    assert wait_for_job(registry, run_id, timeout=240).status == "completed"
    ds = load_dataset(out)
    names = ds.parameter_names
    params = ds.params
    a_sld = [names.index(f"A_{k}.sld") for k in (1, 2, 3)]
    assert np.ptp(params[:, a_sld], axis=1).max() == 0  # each repeat's A has one SLD in every curve
    assert np.ptp(params[:, a_sld[0]]) > 0  # ... which varies from curve to curve
    bad = subprocess.run(
        [WORKBENCH, "generate", "--out", str(tmp_path / "x"), "--dask", "local", "--detach", "--workspace", str(ws)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "leave out --hub-repo and --dask" in bad.stderr

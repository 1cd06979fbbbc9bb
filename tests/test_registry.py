"""The workspace and the SQLite run/model registry: live recording, crashes, deletion, concurrency."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from registry_writer import EPOCHS, RUNS, WRITERS, writer

from workbench.events import Cancelled, Record, Reporter
from workbench.store.recorded import recorded_run
from workbench.store.registry import Registry
from workbench.store.workspace import Workspace
from workbench.workflows.training import resume_training


def _tiny_trainer(reporter, epochs=3, checkpoint=None):
    from workbench.training import TrainConfig
    from workbench.training.trainer import Trainer

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 2))).astype(np.float32)
    split = {"train": np.arange(48), "val": np.arange(48, 56), "test": np.arange(56, 64)}
    model = torch.nn.Linear(4, 2)
    return Trainer(
        model,
        x,
        y,
        split,
        TrainConfig(epochs=epochs, batch_size=16, device="cpu"),
        reporter=reporter,
        checkpoint_path=checkpoint,
    )


def test_workspace_layout_and_default_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "home"))
    ws = Workspace.default()
    assert ws.root == (tmp_path / "home").resolve()
    assert ws.datasets.is_dir() and ws.models.is_dir() and ws.runs.is_dir()
    assert ws.db_path == ws.root / "registry.sqlite" and ws.settings_path == ws.root / "settings.json"
    assert ws.registry is ws.registry and ws.db_path.exists()
    assert ws.run_dir("abc-1") == ws.runs / "abc-1" and (ws.runs / "abc-1").is_dir()
    with pytest.raises(ValueError, match="no slashes"):
        ws.run_dir("../escape")
    mode = sqlite3.connect(ws.db_path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_workspace_from_the_user_config_file_when_no_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_HOME", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert Workspace.default().root == (tmp_path / "user" / ".workbench").resolve()
    (tmp_path / "cfg" / "workbench").mkdir(parents=True)
    (tmp_path / "cfg" / "workbench" / "config.yaml").write_text("workspace: ~/scratch/wb\n")
    assert Workspace.default().root == (tmp_path / "user" / "scratch" / "wb").resolve()
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "env"))  # the environment wins
    assert Workspace.default().root == (tmp_path / "env").resolve()
    monkeypatch.delenv("WORKBENCH_HOME")
    (tmp_path / "cfg" / "workbench" / "config.yaml").write_text("workspace: [1, 2]\n")
    with pytest.raises(ValueError, match="'workspace' must be a folder path"):
        Workspace.default()


def test_training_events_are_recorded_while_the_run_is_running(tmp_path):
    ws = Workspace(tmp_path / "ws")
    reg = ws.registry
    seen_live = []

    def watch(event):  # a second process would see the same: the row is committed when the event is emitted
        if isinstance(event, Record) and event.name == "epoch":
            other = Registry(ws.db_path)
            run = other.list_runs()[0]
            seen_live.append((run.status, run.last_epoch, len(other.epochs(run.id))))

    with recorded_run(reg, "train", name="tiny", params={"epochs": 3, "lr": 1e-3}, dataset_hash="abc") as run:
        run.reporter.listeners.append(watch)
        result = _tiny_trainer(run.reporter).fit()
        run.metrics.update(best_val_loss=result.best_val_loss)
    assert seen_live == [("running", 1, 1), ("running", 2, 2), ("running", 3, 3)]
    row = reg.get_run(run.id)
    assert row.status == "completed" and row.name == "tiny" and row.kind == "train" and row.dataset_hash == "abc"
    assert row.params == {"epochs": 3, "lr": 1e-3} and row.last_epoch == 3
    assert row.metrics["best_val_loss"] == pytest.approx(result.best_val_loss)
    assert set(row.versions) >= {"workbench", "torch", "refl1d"}
    assert row.versions["torch"] != "unknown" and row.versions["refl1d"] != "unknown"
    epochs = reg.epochs(run.id)
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    assert [e["val_loss"] for e in epochs] == pytest.approx([h["val_loss"] for h in result.history])
    assert {"train_loss", "train_loss_eval", "lr", "seconds"} <= set(epochs[0])
    assert row.timings["epochs"] == pytest.approx(sum(h["seconds"] for h in result.history))
    assert row.timings["wall"] > 0
    assert any("training Linear on 48 samples" in line["message"] for line in reg.logs(run.id))


def test_failures_and_stops_are_recorded_and_propagate(tmp_path):
    reg = Workspace(tmp_path).registry
    with pytest.raises(RuntimeError, match="out of memory"), recorded_run(reg, "train", name="bad") as run:
        run.reporter.log("train", "starting")
        raise RuntimeError("out of memory")
    failed = reg.get_run(run.id)
    assert failed.status == "failed" and "RuntimeError: out of memory" in failed.error
    assert [line["message"] for line in reg.logs(run.id)] == ["starting"]

    reporter = Reporter()
    with pytest.raises(Cancelled), recorded_run(reg, "train", reporter=reporter) as stopped:
        reporter.stop.stop("user pressed Stop")
        _tiny_trainer(reporter).reporter.check_stop()
    assert reg.get_run(stopped.id).status == "stopped" and "user pressed Stop" in reg.get_run(stopped.id).error
    assert reporter.listeners == []  # the registry's listener is detached afterwards

    with recorded_run(reg, "train") as paused:
        paused.status = "paused"
    assert reg.get_run(paused.id).status == "paused"
    assert [r.id for r in reg.list_runs(status="failed")] == [run.id]
    assert {r.id for r in reg.list_runs(kind="train")} == {run.id, stopped.id, paused.id}
    with pytest.raises(KeyError, match="no run with id 'nope'"):
        reg.get_run("nope")


_CRASH = """
import os, signal, sys
from workbench.events import Reporter
from workbench.store.registry import Registry
reg = Registry(sys.argv[1])
run = reg.start_run("train", name="doomed")
listen = reg.listener(run)
for epoch in (1, 2, 3):
    record = __import__("workbench.events", fromlist=["Record"]).Record
    listen(record("train", "epoch", {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 2.0 / epoch}))
print(run, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_job_shows_as_failed_with_its_last_epoch(tmp_path):
    db = tmp_path / "registry.sqlite"
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, str(db)], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -9, proc.stderr
    run_id = proc.stdout.strip()
    reg = Registry(db, heartbeat_timeout=3600)  # the process is gone: no need to wait for the timeout
    run = reg.get_run(run_id)
    assert run.status == "failed" and run.last_epoch == 3 and "is gone" in run.error
    assert [e["val_loss"] for e in reg.epochs(run_id)] == pytest.approx([2.0, 1.0, 2.0 / 3])


def test_a_silent_running_run_is_failed_after_the_heartbeat_timeout(tmp_path):
    reg = Registry(tmp_path / "r.sqlite", heartbeat_timeout=0.3)
    run_id = reg.start_run("refine")
    assert reg.get_run(run_id).status == "running"
    time.sleep(0.5)
    run = reg.get_run(run_id)
    assert run.status == "failed" and "no heartbeat" in run.error
    reg.heartbeat(run_id)  # it was only slow: the next beat shows it running again
    assert reg.get_run(run_id).status == "running"
    with recorded_run(reg, "refine") as alive:  # recorded runs beat in the background
        time.sleep(0.6)
        assert reg.get_run(alive.id).status == "running"


def test_delete_removes_only_the_runs_own_folder(tmp_path):
    ws = Workspace(tmp_path / "ws")
    reg = ws.registry
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("keep")
    with recorded_run(reg, "train") as a:
        (a.dir / "checkpoint.safetensors").write_bytes(b"x")
        (a.dir / "link-out").symlink_to(outside)
    with recorded_run(reg, "train") as b:
        (b.dir / "checkpoint.safetensors").write_bytes(b"y")
    hijack = reg.start_run("train", run_dir=b.dir)  # claims another run's folder
    escape = reg.start_run("train", run_dir=outside)  # claims a folder outside the workspace
    home = reg.start_run("train", run_dir=ws.root)  # claims the whole workspace
    for run_id in (hijack, escape, home):
        reg.finish_run(run_id, "completed")
        reg.delete_run(run_id)
    assert (b.dir / "checkpoint.safetensors").exists() and (outside / "precious.txt").exists() and ws.db_path.exists()
    reg.add_checkpoint(a.id, a.dir / "checkpoint.safetensors", 2)
    reg.delete_run(a.id)
    assert not (ws.runs / a.id).exists() and (outside / "precious.txt").read_text() == "keep"
    assert (b.dir / "checkpoint.safetensors").exists()
    assert [r.id for r in reg.list_runs()] == [b.id]
    assert reg.checkpoints(a.id) == [] and reg.epochs(a.id) == []
    with pytest.raises(KeyError):
        reg.delete_run(a.id)


def test_rename_compare_checkpoints_and_lookup(tmp_path):
    reg = Workspace(tmp_path).registry
    ids = []
    for lr in (1e-3, 1e-2):
        with recorded_run(reg, "train", params={"lr": lr, "model": {"kind": "compact"}}) as run:
            for epoch, val in enumerate((3.0, 1.0, 2.0) if lr < 5e-3 else (4.0, 3.5, 3.0), 1):
                run.reporter.emit(Record("train", "epoch", {"epoch": epoch, "train_loss": val, "val_loss": val}))
            run.metrics["test"] = {"sld_r2": 0.9 if lr < 5e-3 else 0.5}
        ids.append(run.id)
    reg.rename_run(ids[0], "small lr")
    assert reg.get_run(ids[0]).name == "small lr" and reg.find_run("small lr").id == ids[0]
    assert reg.find_run(ids[1][:-2]).id == ids[1]
    with pytest.raises(ValueError, match="must not be empty"):
        reg.rename_run(ids[0], "  ")
    rows = reg.compare_runs(ids)
    assert [r["best_val_loss"] for r in rows] == [1.0, 3.0]
    assert [r["metrics"]["test.sld_r2"] for r in rows] == [0.9, 0.5]
    assert rows[0]["differs"] == ["lr"] and rows[0]["final"]["val_loss"] == 2.0
    ckpt = tmp_path / "c2.safetensors"
    ckpt.write_bytes(b"2")
    reg.add_checkpoint(ids[0], tmp_path / "c1.safetensors", 1)  # never written: not offered
    reg.add_checkpoint(ids[0], ckpt, 2)
    assert reg.latest_checkpoint(ids[0]) == ckpt and reg.latest_checkpoint(ids[1]) is None


def test_models_are_versioned_by_name_with_one_active_per_target(tmp_path):
    reg = Workspace(tmp_path).registry
    reg.register_dataset("h1", tmp_path / "ds", {"num_curves": 10})
    assert reg.get_dataset("h1")["config"] == {"num_curves": 10} and reg.get_dataset("nope") is None
    metrics = {"train": {"loss": 0.1}, "val": {"loss": 0.2}, "test": {"sld_r2": 0.95}}
    assert (
        reg.register_model("sld-net", None, target="sld", path="m1", metrics=metrics, dataset_hash="h1", active=True)
        == 1
    )
    assert reg.register_model("sld-net", None, target="sld", path="m2", metrics=metrics, dataset_hash="h1") == 2
    assert reg.register_model("par-net", 7, target="params", path="p7", metrics={}, dataset_hash=None, active=True) == 7
    with pytest.raises(ValueError, match="already registered"):
        reg.register_model("sld-net", 2, target="sld", path="m2b", metrics={}, dataset_hash=None)
    assert reg.active_model("sld")["version"] == 1
    reg.register_model("sld-net", None, target="sld", path="m3", metrics=metrics, dataset_hash="h1", active=True)
    active = [(m["name"], m["version"]) for m in reg.list_models() if m["active"]]
    assert active == [("par-net", 7), ("sld-net", 3)]  # setting one active cleared the others of its target only
    reg.set_active_model("sld-net", 2)
    assert [m["version"] for m in reg.list_models("sld") if m["active"]] == [2]
    assert reg.get_model("sld-net")["version"] == 3 and reg.get_model("sld-net", 1)["metrics"] == metrics


# ---------------------------------------------------------------------------- concurrency


def test_several_writer_processes_lose_nothing(tmp_path):
    db = str(tmp_path / "registry.sqlite")
    Registry(db)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=writer, args=(db, w)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    reader = Registry(db)
    while any(p.is_alive() for p in procs):  # a reader sees consistent snapshots while they write
        for run in reader.list_runs():
            assert run.status in ("running", "completed")
        time.sleep(0.05)
    for p in procs:
        p.join()
        assert p.exitcode == 0
    reg = Registry(db)
    runs = reg.list_runs()
    assert len(runs) == WRITERS * RUNS and {r.status for r in runs} == {"completed"}
    assert sorted(r.name for r in runs) == sorted(f"w{w}-r{r}" for w in range(WRITERS) for r in range(RUNS))
    for run in runs:
        assert [e["epoch"] for e in reg.epochs(run.id)] == list(range(1, EPOCHS + 1))
        assert len(reg.logs(run.id)) == EPOCHS and run.last_epoch == EPOCHS
    models = reg.list_models("sld")
    assert len(models) == WRITERS * RUNS and sum(m["active"] for m in models) == 1
    assert sorted({m["version"] for m in models}) == list(range(1, RUNS + 1))
    assert reg.integrity_check() == "ok"
    assert sqlite3.connect(db).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# ---------------------------------------------------------------------------- the command line
WORKBENCH = str(Path(sys.executable).with_name("workbench"))


def _wb(*args, env, timeout=300):
    return subprocess.run(
        [WORKBENCH, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


@pytest.mark.slow
def test_cli_records_generate_and_train_and_manages_runs(tmp_path):
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    config = tmp_path / "gen.json"
    config.write_text(json.dumps({"num_curves": 96, "num_q": 60, "sld_points": 40, "seed": 3}))
    data = tmp_path / "ds"
    gen = _wb("generate", "--config", config, "--out", data, env=env)
    assert gen.returncode == 0, gen.stderr
    train_cfg = tmp_path / "train.json"
    train_cfg.write_text(
        json.dumps({"batch_size": 16, "device": "cpu", "model": {"width": 4, "stages": 2, "latent": 8}})
    )

    # a long training run paused with Ctrl-C after its first epoch, then resumed from the history
    model = tmp_path / "model"
    proc = subprocess.Popen(
        [WORKBENCH, "train", "--data", str(data), "--out", str(model), "--config", str(train_cfg), "--epochs", "400"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    for line in proc.stdout:
        if line.startswith("epoch 1:"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "paused" in out and "workbench runs resume" in out

    listed = json.loads(_wb("runs", "list", "--json", env=env).stdout)
    assert [r["kind"] for r in listed] == ["train", "generate"]
    train_run, gen_run = listed
    assert (
        gen_run["status"] == "completed"
        and gen_run["dataset_hash"] == json.loads((data / "dataset.json").read_text())["content_hash"]
    )
    assert train_run["status"] == "paused" and train_run["dataset_hash"] == gen_run["dataset_hash"]
    paused_at = train_run["last_epoch"]
    assert 1 <= paused_at < 400

    resumed = _wb("runs", "resume", train_run["id"][:-1], "--epochs", str(paused_at + 2), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert f"completed at epoch {paused_at + 2}" in resumed.stdout and (model / "model.safetensors").exists()
    shown = json.loads(_wb("runs", "show", train_run["id"], "--json", env=env).stdout)
    assert [e["epoch"] for e in shown["epochs"]] == list(range(1, paused_at + 3))
    assert shown["status"] == "completed" and "sld_r2" in shown["metrics"]["test"] and shown["model"] == str(model)

    assert _wb("runs", "rename", train_run["id"], "first try", env=env).returncode == 0
    text = _wb("runs", "show", "first try", env=env).stdout
    assert f"run {train_run['id']}: first try (train), completed" in text and "epoch  train_loss" in text
    compare = _wb("runs", "compare", train_run["id"], gen_run["id"], env=env)
    assert compare.returncode == 0 and "first try" in compare.stdout and "status" in compare.stdout

    missing = _wb("runs", "show", "no-such-run", env=env)
    assert missing.returncode == 2 and "no run with id or name 'no-such-run'" in missing.stderr
    with pytest.raises(ValueError, match="only training runs can be resumed"):
        resume_training(gen_run["id"], Workspace(tmp_path / "home").registry)

    deleted = _wb("runs", "delete", gen_run["id"], env=env)
    assert deleted.returncode == 0 and "no files of its own were removed" in deleted.stdout
    assert (data / "nr_train.npy").exists()  # the data set it wrote is not the run's own folder
    assert [r.id for r in Registry(tmp_path / "home" / "registry.sqlite").list_runs()] == [train_run["id"]]


def test_the_queue_claims_slots_oldest_first_and_never_more_than_the_limit(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    a, b, c = (reg.start_run("generate", status="queued", job={"kind": "generate", "queued": t}) for t in (1, 2, 3))
    assert reg.queue_position(c) == 3
    assert not reg.claim_slot(c, 2)  # two older jobs wait for the two slots
    assert reg.claim_slot(a, 2) and reg.claim_slot(b, 2)
    assert not reg.claim_slot(c, 2) and reg.queue_position(c) == 1
    assert [reg.get_run(r).status for r in (a, b, c)] == ["running", "running", "queued"]
    reg.finish_run(a, "completed")
    assert reg.claim_slot(c, 2) and reg.queue_position(c) is None
    with pytest.raises(KeyError, match="is not a queued job"):
        reg.claim_slot(a, 2)


def test_commands_to_a_job_are_kept_with_the_time_they_were_acknowledged(tmp_path):
    reg = Registry(tmp_path / "r.sqlite")
    run = reg.start_run("train", status="queued", job={"kind": "train"})
    first = reg.send_command(run, "pause", "from a test")
    second = reg.send_command(run, "stop")
    assert [c["command"] for c in reg.pending_commands(run)] == ["pause", "stop"]
    reg.ack_command(first)
    assert [c["id"] for c in reg.pending_commands(run)] == [second]
    acked = {c["id"]: c["acked"] for c in reg.commands(run)}
    assert acked[second] is None and acked[first] >= reg.commands(run)[0]["time"]
    with pytest.raises(ValueError, match="unknown job command 'restart'"):
        reg.send_command(run, "restart")


def test_a_job_whose_process_is_gone_is_recorded_failed_by_the_first_reader(tmp_path):
    db = tmp_path / "r.sqlite"
    reg = Registry(db, heartbeat_timeout=3600)
    waiting = reg.start_run("train", status="queued", job={"kind": "train"})
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    reg.set_process(waiting, int(ended.stdout))  # the process that waited in the queue is gone
    run = reg.get_run(waiting)
    assert run.status == "failed" and "gone while queued" in run.error
    with sqlite3.connect(db) as raw:  # recorded, not only shown
        assert raw.execute("SELECT status FROM runs WHERE id = ?", (waiting,)).fetchone()[0] == "failed"


def test_a_registry_from_before_jobs_gains_their_columns(tmp_path):
    db = tmp_path / "r.sqlite"
    old = Registry(db).start_run("train", name="old")
    with sqlite3.connect(db) as raw:
        raw.execute("ALTER TABLE runs DROP COLUMN job")
        raw.execute("ALTER TABLE runs DROP COLUMN telemetry")
        raw.execute("DROP TABLE commands")
    reg = Registry(db)
    assert reg.get_run(old).name == "old" and reg.get_run(old).job is None
    reg.send_command(old, "stop")
    assert len(reg.pending_commands(old)) == 1


def test_a_job_resumed_in_process_is_judged_as_an_in_process_run(tmp_path):
    reg = Registry(tmp_path / "r.sqlite", heartbeat_timeout=3600)
    run = reg.start_run("train", status="queued", job={"kind": "train"})
    assert reg.claim_slot(run, 1)
    reg.reopen_run(run)  # the job process itself continues its run (run_training with run_id)
    assert reg.get_run(run).job == {"kind": "train"}
    reg.finish_run(run, "paused")
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    reg.set_process(run, int(ended.stdout))  # the paused job's process has ended
    reg.reopen_run(run)  # `workbench runs resume` in a shell: no longer a job, no 30 s job heartbeat timeout
    assert reg.get_run(run).job is None
    with pytest.raises(ValueError, match="is running already"):
        reg.queue_run(run, {"kind": "resume"})

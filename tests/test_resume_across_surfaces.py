"""A training run started on one surface resumes on any other and ends with a registered model bundle.

The command line runs as a real subprocess (Ctrl-C is a real SIGINT, a crash a real SIGKILL); the
panels are driven in-process with ``button.click()``.  Every resume goes through the one pipeline
(:mod:`workbench.workflows.training`), so the bundle lands where the first surface asked for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from workbench.data.generate import GeneratorConfig, generate_to_disk
from workbench.physics import FilmStack
from workbench.store.model_bundle import load_model_bundle
from workbench.store.workspace import Workspace
from workbench.ui.context import AppContext
from workbench.ui.train_panel import TrainPanel

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
EPOCHS = 30
TINY = ["--width", "4", "--stages", "2", "--latent", "8"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("data") / "ds"
    return generate_to_disk(
        FilmStack.default(), GeneratorConfig(num_curves=400, seed=2, sld_points=60), folder, progress=False
    )


def _env(ws: Path) -> dict[str, str]:
    return {**os.environ, "WORKBENCH_HOME": str(ws), "OMP_NUM_THREADS": "1"}


def _start_cli_training(ws: Path, dataset: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            WORKBENCH,
            "train",
            "--data",
            str(dataset),
            "--out",
            str(ws / "models" / name),
            "--epochs",
            str(EPOCHS),
            "--batch-size",
            "32",
            "--checkpoint-every",
            "1",
            "--device",
            "cpu",
            *TINY,
        ],
        env=_env(ws),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(condition, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _only_train_run(ws: Workspace):
    runs = ws.registry.list_runs(kind="train")
    return runs[0] if len(runs) == 1 else None


def _epoch_reached(ws: Workspace, n: int = 1) -> bool:
    run = _only_train_run(ws)
    return run is not None and (run.last_epoch or 0) >= n


def _assert_finished_with_bundle(ws: Workspace, run_id: str, bundle: Path) -> None:
    run = ws.registry.get_run(run_id)
    assert run.status == "completed", (run.status, run.error)
    assert [e["epoch"] for e in ws.registry.epochs(run_id)] == list(range(1, EPOCHS + 1))
    assert Path(run.model) == bundle.resolve()
    loaded = load_model_bundle(bundle)
    assert loaded.task == "nr_sld" and loaded.history[-1]["epoch"] == EPOCHS and "sld_r2" in loaded.metrics
    [model] = ws.registry.list_models("sld")
    assert model["run_id"] == run_id and Path(model["path"]) == bundle.resolve() and model["active"]


def _panel_resume(ws: Path, run_id: str) -> TrainPanel:
    panel = TrainPanel(AppContext(ws, autosave_delay=0))
    panel.resume_run(run_id)
    assert panel.job is not None, panel.status.text
    assert panel.job.join(300)
    assert panel.status.level == "ok" and "completed" in panel.status.text, panel.status.text
    return panel


def test_a_paused_command_line_run_resumes_in_the_train_panel(dataset, tmp_path):
    ws = Workspace(tmp_path / "ws")
    proc = _start_cli_training(ws.root, dataset, "cli-model")
    _wait_for(lambda: _epoch_reached(ws), what="the first epoch")
    proc.send_signal(signal.SIGINT)  # the first Ctrl-C pauses with a checkpoint
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    run = _only_train_run(ws)
    assert run.status == "paused" and f"workbench runs resume {run.id}" in out
    assert run.params["out"] == str((ws.root / "models" / "cli-model").resolve())

    panel = _panel_resume(ws.root, run.id)
    assert panel.bundle == (ws.root / "models" / "cli-model").resolve()
    _assert_finished_with_bundle(ws, run.id, ws.root / "models" / "cli-model")


def test_a_paused_panel_run_resumes_from_the_command_line(dataset, tmp_path):
    ws = Workspace(tmp_path / "ws")
    ctx = AppContext(ws.root, autosave_delay=0)
    (ws.datasets / "ds").symlink_to(dataset, target_is_directory=True)
    panel = TrainPanel(ctx)
    panel.refresh_datasets()
    panel.epochs.value, panel.batch_size.value, panel.device.value = EPOCHS, 32, "cpu"
    panel.width.value, panel.stages.value, panel.latent.value = 4, 2, 8
    panel.name.value = "panel-model"
    panel.start.click()
    _wait_for(lambda: len(panel.history) >= 1, what="the first epoch in the panel")
    panel.pause.click()
    assert panel.job.join(300) and "paused" in panel.status.text, panel.status.text
    run_id = panel.paused["run_id"]
    assert ws.registry.get_run(run_id).status == "paused"

    done = subprocess.run(
        [WORKBENCH, "runs", "resume", run_id],
        env=_env(ws.root),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"completed at epoch {EPOCHS}" in done.stdout
    _assert_finished_with_bundle(ws, run_id, ws.root / "models" / "panel-model")


@pytest.mark.parametrize("surface", ["cli", "panel"])
def test_a_killed_run_resumes_from_its_last_checkpoint(dataset, tmp_path, surface):
    ws = Workspace(tmp_path / "ws")
    proc = _start_cli_training(ws.root, dataset, "killed-model")
    _wait_for(
        lambda: (run := _only_train_run(ws)) is not None and ws.registry.latest_checkpoint(run.id) is not None,
        what="the first registered checkpoint",
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    run = _only_train_run(ws)
    assert run.status == "failed" and "killed" in run.error
    assert not (ws.root / "models" / "killed-model").exists()

    if surface == "cli":
        done = subprocess.run(
            [WORKBENCH, "runs", "resume", run.id],
            env=_env(ws.root),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    else:
        _panel_resume(ws.root, run.id)
    _assert_finished_with_bundle(ws, run.id, ws.root / "models" / "killed-model")
    assert any("resuming from checkpoint" in line["message"] for line in ws.registry.logs(run.id))


def test_stop_while_paused_ends_the_run_and_keeps_its_checkpoint(dataset, tmp_path):
    ws = Workspace(tmp_path / "ws")
    ctx = AppContext(ws.root, autosave_delay=0)
    (ws.datasets / "ds").symlink_to(dataset, target_is_directory=True)
    panel = TrainPanel(ctx)
    panel.refresh_datasets()
    panel.epochs.value, panel.device.value, panel.width.value, panel.stages.value = EPOCHS, "cpu", 4, 2
    panel.start.click()
    _wait_for(lambda: len(panel.history) >= 1, what="the first epoch in the panel")
    panel.pause.click()
    assert panel.job.join(300) and "paused" in panel.status.text
    assert not panel.stop.disabled and not panel.resume.disabled  # paused: Resume or Stop
    run_id = panel.paused["run_id"]
    panel.stop.click()
    assert panel.status.level == "warn" and "stopped" in panel.status.text and "History" in panel.status.text
    assert panel.stop.disabled and panel.resume.disabled
    run = ws.registry.get_run(run_id)
    assert run.status == "stopped" and ws.registry.latest_checkpoint(run_id) is not None

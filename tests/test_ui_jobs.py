"""The dashboard side of jobs: a Train panel's training runs in its own process, and any page follows it.

The job is a real ``python -m workbench.batch.job_worker`` process; the panels see it only through the
workspace registry, as a reopened page would.  One training job (a fresh interpreter: ≈ 5–25 s to its
first epoch on a loaded machine) on a 400-curve data set and a 4-channel model serves the whole story.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from workbench.batch.jobs import submit_job, wait_for_job
from workbench.data.generate import GeneratorConfig, generate_to_disk
from workbench.limits import Limits
from workbench.physics import FilmStack
from workbench.store.workspace import Workspace
from workbench.ui import kernel_activity
from workbench.ui.context import AppContext
from workbench.ui.history_panel import HistoryPanel
from workbench.ui.train_panel import TrainPanel

START = 150.0  # s: a job process's start (imports, data) on a loaded machine, well above what it takes


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "ds"
    return generate_to_disk(
        FilmStack.default(), GeneratorConfig(num_curves=400, seed=2, sld_points=60), folder, progress=False
    )


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def _epochs(panel: TrainPanel) -> list[int]:
    return [int(x) for x in panel.loss.data[0].x]


def test_a_panel_training_is_a_job_that_a_reopened_page_follows_and_stops(tmp_path, dataset):
    ws = Workspace(tmp_path / "ws")
    (ws.datasets / "ds").symlink_to(dataset, target_is_directory=True)
    panel = TrainPanel(AppContext(ws.root, autosave_delay=0))
    assert panel.as_job.value  # the default: a process that outlives the page
    panel.epochs.value, panel.batch_size.value, panel.device.value = 500, 32, "cpu"
    panel.width.value, panel.stages.value, panel.latent.value = 4, 2, 8
    panel.checkpoint_every.value = 1
    panel.name.value = "job-model"
    panel.start.click()
    run_id = panel.last_run_id
    assert panel.status.level == "info" and run_id, panel.status.text
    reg = ws.registry
    assert reg.get_run(run_id).job["kind"] == "train" and reg.get_run(run_id).status in ("queued", "running")
    assert kernel_activity.running_jobs() == 0  # following a job keeps no kernel busy: the page may be culled

    _wait(lambda: len(panel.history) >= 2, START, "two epochs in the panel")
    run = reg.get_run(run_id)
    assert run.status == "running" and run.pid not in (None, os.getpid())  # trained by another process
    assert "epoch" in panel.status.text and f"job process {run.pid}" in panel.status.text
    panel.job.detach()  # the page is closed: the job goes on
    assert panel.job.join(5)
    shown = _epochs(panel)
    assert shown == [e["epoch"] for e in reg.epochs(run_id)][: len(shown)] == list(range(1, len(shown) + 1))

    # a reopened page: a new context on the workspace attaches, its chart caught up with the registry
    again = TrainPanel(AppContext(ws.root, autosave_delay=0))
    assert again.last_run_id == run_id and again.job.running and again.start.disabled and not again.stop.disabled
    recorded = len(reg.epochs(run_id))
    _wait(lambda: len(_epochs(again)) >= recorded, 10, "the reopened panel to catch up")
    _wait(lambda: len(_epochs(again)) > recorded, 60, "an epoch trained after the page was reopened")
    assert _epochs(again) == list(range(1, len(_epochs(again)) + 1))

    # History: the job live with its process's CPU and memory; a second job waits in a one-slot queue
    history = HistoryPanel(again.ctx)
    queued = submit_job(ws, "train", panel.request(), name="waits", limits=Limits(max_concurrent_jobs=1))
    history.refresh_list()
    _wait(lambda: run_id in history._job_rows and "CPU" in history._job_rows[run_id][1].value, 10, "telemetry")
    assert "memory" in history._job_rows[run_id][1].value and not history._job_rows[run_id][3].disabled
    assert "queued (position 1)" in history._job_rows[queued][1].value
    history._job_rows[queued][2].click()  # Stop from History: it ends while queued, never trained
    assert wait_for_job(reg, queued, timeout=30).status == "stopped"
    # Delete of a queued job: its waiting process ends and the run is gone
    doomed = submit_job(ws, "train", panel.request(), name="doomed", limits=Limits(max_concurrent_jobs=1))
    pid = reg.get_run(doomed).pid
    history.refresh_list()
    history.runs.value, history.confirm.value = doomed, True
    history.delete.click()
    assert history.status.level == "ok" and "deleted doomed" in history.status.text, history.status.text
    assert doomed not in {r.id for r in reg.list_runs()}
    _wait(
        lambda: not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split()[2],
        30,
        "the deleted job's process to end",
    )

    # Stop from the reopened page: acknowledged within a second, the run ends stopped
    clicked = time.time()
    again.stop.click()
    assert "stopping" in again.status.text, again.status.text
    acked = _wait(lambda: reg.commands(run_id)[-1]["acked"], 5, "the job to acknowledge Stop")
    assert acked - clicked < 1.0
    assert again.job.join(30)
    assert reg.get_run(run_id).status == "stopped"
    assert again.status.level == "warn" and "stopped after" in again.status.text, again.status.text
    assert _epochs(again) == [e["epoch"] for e in reg.epochs(run_id)]
    assert again.start.disabled is False and again.stop.disabled
    _wait(lambda: not history.jobs_box.children, 10, "History to drop the ended jobs")


def test_a_panel_generation_is_a_job_with_progress_that_a_reopened_page_follows_and_cancels(tmp_path):
    from workbench.data.dataset import load_dataset
    from workbench.ui.generate_panel import GeneratePanel

    ws = Workspace(tmp_path / "ws")
    panel = GeneratePanel(AppContext(ws.root, autosave_delay=0))
    assert panel.as_job.value  # the default: a process that outlives the page
    panel.num_curves.value, panel.seed.value, panel.name.value = 3000, 4, "small"
    panel.start.click()
    assert panel.job.join(START), panel.status.text
    run = ws.registry.list_runs(kind="generate")[0]
    assert run.status == "completed" and run.job is not None and run.pid != os.getpid()
    assert panel.status.level == "ok" and "generated 3000 curves" in panel.status.text
    assert panel.progress.value == panel.progress.max == 3000
    assert "curves/s" in panel.timings.value  # the job's timing, read back from the registry
    ds = load_dataset(ws.datasets / "small")
    assert ds.n == 3000 and len(panel.rq.data) == Limits().max_preview_curves
    steps = ws.registry.epochs(run.id)
    assert steps and steps[-1]["curves"] == steps[-1]["total"] == 3000  # progress steps a follower reads

    # a long generation started here, followed by a page opened later, cancelled from there
    panel.num_curves.value, panel.name.value = 2_000_000, "big"
    panel.start.click()
    _wait(lambda: ws.registry.get_run(panel.last_run_id).status == "running", START, "the job to run")
    panel.job.detach()  # this page closes; the job goes on
    later = GeneratePanel(AppContext(ws.root, autosave_delay=0))
    assert later.last_run_id == panel.last_run_id and later.job.running
    _wait(lambda: later.progress.value > 0, START, "progress caught up from the registry")
    later.cancel.click()
    assert later.job.join(60)
    assert ws.registry.get_run(later.last_run_id).status == "stopped"
    assert later.status.level == "warn" and "cancelled" in later.status.text
    assert not (ws.datasets / "big" / "dataset.json").exists()


def test_a_dashboard_sweep_is_a_job_that_a_reopened_page_follows(tmp_path):
    from test_sweep import toy_notebook

    from workbench.ui.sweep_panel import SweepPanel

    nb = toy_notebook(tmp_path / "toy.ipynb")
    ws = Workspace(tmp_path / "ws")
    panel = SweepPanel(AppContext(ws.root, autosave_delay=0), notebooks={"toy.ipynb": nb}, processes=False)
    assert panel.as_job.value  # in the dashboard a sweep outlives the page
    panel.spec.value = "x: [1, 2, 3]\nfail: false\n"
    panel.name.value = "squares"
    panel.run_button.click()
    assert panel.last_run_id is not None, panel.status.text
    panel.job.detach()  # the page closes at once; a later page picks the sweep up
    later = SweepPanel(AppContext(ws.root, autosave_delay=0), notebooks={"toy.ipynb": nb})
    assert later.last_run_id == panel.last_run_id
    assert later.job.join(240), later.status.text
    run = ws.registry.get_run(later.last_run_id)
    assert run.status == "completed" and run.job is not None and run.pid != os.getpid()
    assert later.status.level == "ok" and "3 completed" in later.status.text, later.status.text
    assert later.progress.value == later.progress.max == 3
    assert later.table.value.count(">completed<") == 3
    assert sorted(y for trace in later.figure.data for y in trace.y) == [1, 4, 9]  # each run's metric, charted
    assert ws.registry.epochs(run.id)[-1]["runs"] == 3  # the progress steps a follower reads

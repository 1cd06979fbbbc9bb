"""Generate and Train panels: real jobs in worker threads, driven by clicks, checked on disk and in the charts."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
import torch

from workbench.data.dataset import load_dataset
from workbench.limits import Limits
from workbench.store.model_bundle import load_model_bundle
from workbench.ui import kernel_activity
from workbench.ui.context import AppContext
from workbench.ui.generate_panel import GeneratePanel
from workbench.ui.train_panel import TrainPanel


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def wait(panel, timeout=300.0):
    assert panel.job is not None
    assert panel.job.join(timeout), "job did not finish in time"


def generated(ctx, n=160, name="ds"):
    panel = GeneratePanel(ctx)
    panel.num_curves.value = n
    panel.seed.value = 5
    panel.name.value = name
    panel.start.click()
    wait(panel)
    return panel


def test_generate_writes_a_dataset_previews_and_records_it(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = generated(ctx, 160)
    assert panel.status.level == "ok", panel.status.text
    ds = load_dataset(tmp_path / "ws" / "datasets" / "ds", verify_hash=True)
    assert ds.n == 160 and ds.nr.shape == (160, 2, 308)
    assert panel.progress.value == panel.progress.max == 160
    assert "curves/s" in panel.timings.value and str(ds.path) in panel.output.value
    assert len(panel.rq.data) == Limits().max_preview_curves
    np.testing.assert_allclose(np.array(panel.rq.data[0].y), ds.nr[0, 1], rtol=1e-6)
    assert ctx.dataset == ds.path
    runs = ctx.registry().list_runs(kind="generate")
    assert len(runs) == 1 and runs[0].status == "completed" and runs[0].dataset_hash == ds.content_hash
    panel.start.click()  # same name again: refused with a message, nothing overwritten
    assert panel.status.level == "error" and "already exists" in panel.status.text


def test_generate_clamps_and_cancels(tmp_path):
    ctx = AppContext(tmp_path / "ws", limits=Limits(max_curves=5000), autosave_delay=0)
    panel = GeneratePanel(ctx)
    assert panel.num_curves.max == 5000
    panel.num_curves.value = 10**9  # a browser cannot ask for more than the limit
    assert panel.config().num_curves == 5000
    ctx.stack.stack  # noqa: B018
    panel.name.value = "big"
    panel.job = None
    panel.start.click()
    panel.cancel.click()
    wait(panel)
    assert panel.status.level in ("warn", "ok")
    if panel.status.level == "warn":  # cancelled before the end: nothing left behind
        assert "cancelled" in panel.status.text
        assert not (tmp_path / "ws" / "datasets" / "big" / "dataset.json").exists()
        assert ctx.registry().list_runs(kind="generate")[0].status == "stopped"


def test_train_grows_the_loss_chart_pauses_resumes_and_saves_a_bundle(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    generated(ctx, 160)
    panel = TrainPanel(ctx)
    assert panel.dataset.value.endswith("ds")  # the new data set is selected
    epochs = 30  # enough that the pause lands before the last one (an epoch of 128 curves takes ~0.1 s)
    panel.epochs.value, panel.batch_size.value = epochs, 32
    panel.name.value = "m1"
    panel.start.click()
    deadline = time.time() + 120
    while len(panel.history) < 1 and time.time() < deadline:
        time.sleep(0.05)
    panel.pause.click()
    wait(panel)
    assert panel.status.level == "ok" and "paused" in panel.status.text, panel.status.text
    assert not panel.resume.disabled
    n = len(panel.loss.data[0].x)
    assert 1 <= n < epochs
    run = ctx.registry().get_run(panel.paused["run_id"])
    assert run.status == "paused" and ctx.registry().latest_checkpoint(run.id) is not None
    panel.resume.click()
    wait(panel)
    assert panel.status.level == "ok" and "completed" in panel.status.text, panel.status.text
    assert list(panel.loss.data[0].x) == list(range(1, epochs + 1))
    assert all(np.isfinite(panel.loss.data[2].y))
    bundle = load_model_bundle(tmp_path / "ws" / "models" / "m1")
    assert bundle.task == "nr_sld" and "sld_mse" in bundle.metrics
    assert "sld_mse" in panel.metrics.value
    assert "epoch" in panel.log_view.value
    run = ctx.registry().get_run(run.id)
    assert run.status == "completed" and run.model and run.model.endswith("m1")
    assert ctx.bundle == bundle.path


def test_train_stop_and_errors_are_shown(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = TrainPanel(ctx)
    panel.start.click()  # no data set yet
    assert panel.status.level == "error" and "no data set" in panel.status.text
    generated(ctx, 160)
    panel.epochs.value = 50
    panel.as_job.value = False  # the in-page choice: a thread of this kernel, which then reports itself busy
    panel.start.click()
    deadline = time.time() + 120
    while len(panel.history) < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert kernel_activity.running_jobs() == 1  # would die with the kernel: keeps it from being culled
    [run] = ctx.registry().list_runs(kind="train")
    assert run.status == "running" and run.job is None and run.pid == os.getpid()
    panel.stop.click()
    wait(panel)
    assert panel.status.level == "warn" and "stopped" in panel.status.text
    assert 1 <= len(panel.loss.data[0].x) < 50
    assert ctx.registry().get_run(panel.last_run_id).status == "stopped"
    panel.model_kind.value = "chi"
    panel.chi_folder.value = "/etc"
    panel.start.click()
    assert panel.status.level == "error" and "inside the workspace" in panel.status.text


def test_train_chi_model(tmp_path, shared_data):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    folder = tmp_path / "ws" / "chi"
    shutil.copytree(shared_data / "chi-scft", folder)
    panel = TrainPanel(ctx)
    panel.model_kind.value = "chi"
    panel.chi_folder.value = str(folder)
    panel.epochs.value, panel.batch_size.value = 2, 64
    panel.name.value = "chi1"
    panel.start.click()
    wait(panel)
    assert panel.status.level == "ok", panel.status.text
    assert list(panel.loss.data[0].x) == [1, 2]
    bundle = load_model_bundle(tmp_path / "ws" / "models" / "chi1")
    assert bundle.task == "chi" and "chi_AB" in bundle.metrics
    from workbench.ui.predict_panel import PredictPanel

    predict = PredictPanel(ctx)
    assert predict.model.value.endswith("chi1")
    assert predict.chi_box.layout.display == "" and predict.nr_box.layout.display == "none"
    predict.chi_folder.value = str(folder)
    predict.run.click()
    assert predict.status.level == "ok", predict.status.text
    assert [t.name for t in predict.chi.data][:3] == ["chi_AB", "chi_substrate", "chi_air"]
    assert len(predict.chi.data[0].x) == len(np.load(folder / "train_pars.npy"))
    assert "experiment.txt" in predict.metrics.value and "R²" in predict.metrics.value

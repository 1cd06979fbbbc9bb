"""Predict and Refine panels on a real (tiny) data set and models trained headless beforehand."""

from __future__ import annotations

import html
import shutil

import numpy as np
import pytest
import torch
from conftest import small_stack

from workbench.analysis.refine import verdict
from workbench.data.generate import GeneratorConfig, generate_to_disk
from workbench.physics import sld_profile
from workbench.plots.views import fresnel
from workbench.training.trainer import TrainConfig
from workbench.ui.context import AppContext
from workbench.ui.predict_panel import PredictPanel
from workbench.ui.refine_panel import RefinePanel
from workbench.workflows.ensemble import run_ensemble
from workbench.workflows.training import TrainRequest, run_training


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ws")
    ctx = AppContext(root, autosave_delay=0)
    ds = generate_to_disk(
        small_stack(), GeneratorConfig(num_curves=200, seed=1), ctx.workspace.datasets / "ds", progress=False
    )
    for target, name in (("sld", "sld1"), ("params", "par1")):
        run_training(
            TrainRequest(
                target=target,
                data=ds,
                out=ctx.workspace.models / name,
                name=name,
                train=TrainConfig(epochs=1, batch_size=32, device="cpu"),
            )
        )
    return root


def test_predict_a_test_sample_with_an_sld_model(workspace):
    ctx = AppContext(workspace, autosave_delay=0)
    panel = PredictPanel(ctx)
    panel.model.value = str(workspace / "models" / "sld1")
    panel.index.value = 7
    panel.run.click()
    assert panel.status.level == "ok", panel.status.text
    from workbench.data.dataset import load_dataset

    ds = load_dataset(workspace / "datasets" / "ds")
    np.testing.assert_allclose(np.array(panel.rq.data[0].y), ds.nr[7, 1][ds.nr[7, 1] > 0], rtol=1e-6)
    assert len(panel.rq.data[1].y) == 308 and np.all(np.array(panel.rq.data[1].y) > 0)
    np.testing.assert_allclose(np.array(panel.sld.data[0].y), ds.sld[7, 1], rtol=1e-6)
    assert len(panel.sld.data[1].y) == ds.sld.shape[2]
    for key in ("sld_mse", "sld_mae", "sld_r2", "log_r_rmse"):
        assert key in panel.metrics.value
    assert ctx.prediction.truth_profile is not None
    panel.index.value = 10**6
    panel.run.click()
    assert panel.status.level == "error" and "out of range" in panel.status.text
    # a failed prediction does not leave the previous one on show
    assert panel.metrics.value == "" and panel.result is None
    assert all(len(t.y) == 0 for t in (*panel.rq.data, *panel.sld.data))


def test_predict_a_measured_file_then_refine_with_dream_bands(workspace, shared_data):
    ctx = AppContext(workspace, autosave_delay=0)
    shutil.copy(shared_data / "real" / "ornl-ref-l-212592" / "REFL_212592_reduced.txt", ctx.measured_dir)
    predict = PredictPanel(ctx)
    refine = RefinePanel(ctx)
    predict.model.value = str(workspace / "models" / "par1")
    predict.source.value = "file"
    predict.measured.value = str(ctx.measured_dir / "REFL_212592_reduced.txt")
    predict.run.click()
    assert predict.status.level == "ok", predict.status.text
    p = ctx.prediction
    assert p.stack is not None and len(predict.rq.data[0].x) > 300
    assert "chi2_per_point" in predict.metrics.value and "Predicted parameters" in predict.metrics.value
    # the default family cannot describe the 742 Å multilayer: the verdict says so, in amber, above the metrics
    assert p.trust is not None and p.trust.level == "warn" and p.trust.chi2_per_point > 3
    assert "wb-trust" in predict.trust._dom_classes and p.trust.words in html.unescape(predict.trust.value)
    q, r = np.array(predict.rq.data[0].x), np.array(predict.rq.data[0].y)
    predict.curves.views.chooser.value = "R/RF"  # normalised to the predicted stack's substrate under its ambient
    sub, amb = p.stack.substrate, p.stack.ambient
    np.testing.assert_allclose(predict.rq.data[0].y, r / fresnel(q, sub.sld, sub.isld, amb.sld), rtol=1e-12)
    predict.curves.views.chooser.value = "R"
    assert np.array_equal(predict.rq.data[0].y, r)
    # the substrate surface is marked on the SLD chart, where the predicted stack's profile has its Si step
    (line,) = predict.sld.layout.shapes
    z0 = line.x0
    zs, rhos = np.array(predict.sld.data[1].x), np.array(predict.sld.data[1].y)
    assert line.line.dash == "dot" and zs[0] < z0 < zs[-1]
    assert "substrate surface" in [a.text for a in predict.sld.layout.annotations]
    step = np.abs(np.gradient(rhos, zs))[np.abs(zs - z0) < 30].max()  # the profile changes fastest near it
    assert step > 0.5 * np.abs(np.gradient(rhos, zs)).max()
    # the prediction was published: the Refine tab, once shown, loads the predicted stack and its free parameters
    assert refine.rows == []  # nothing computed for it while the Predict tab is in front
    refine.on_shown()
    names = [row.pname for row in refine.rows]
    assert "layer_2.thickness" in names and "probe.scale" in names
    assert refine.start_stack == p.stack
    for row in refine.rows:
        row.free.value = row.pname in ("layer_2.thickness", "layer_2.sld", "probe.scale")
    refine.max_nfev.value = 30
    refine.run.click()
    assert refine.job.join(300)
    res = refine.result
    # the verdict follows from the numbers: green only for a good fit, amber with the reasons otherwise
    level, words = verdict(res)
    assert refine.status.level == level and words in refine.status.text, refine.status.text
    assert level == "ok" or res.chi2_per_point > 3 or res.at_bound or res.undetermined
    assert res.chi2 <= res.start_chi2
    assert len(refine.convergence.data[0].x) >= 1
    assert "± 1σ" in refine.table.value and "layer_2.thickness (Å)" in refine.table.value
    np.testing.assert_allclose(np.array(refine.rq.data[2].y), res.r_fit)
    run = ctx.registry().list_runs(kind="refine")[0]
    assert run.status == "completed" and run.metrics["chi2_per_point"] == pytest.approx(res.chi2_per_point)
    assert run.metrics["data"] == "REFL_212592_reduced.txt" and "layer_2.thickness.sigma" in run.metrics
    refine.samples.value = 50  # below DREAM's minimum: raised, and said so
    refine.burn.value = 20
    refine.as_job.value = False  # DREAM in this kernel (tests/test_ui_refine_job.py runs it as a job process)
    refine.dream.click()
    assert refine.samples.value == 100 and "raised from 50 to 100" in refine.dream_status.text
    assert refine.job.join(600)
    assert refine.dream_status.level in ("ok", "warn"), refine.dream_status.text
    bands = refine.bands
    assert f"100 samples asked, {bands.n_posterior} posterior samples kept" in refine.dream_status.text
    assert f"{bands.n_draws} of them drawn for the bands" in refine.dream_status.text
    assert refine.progress.value == refine.progress.max
    assert len(refine.rq.data) == 7 and len(refine.sld.data) == 6  # two edges each of the 95 % and 68 % bands
    refine.curves.views.chooser.value = "RQ4"  # the bands follow the R(Q) view with the curves
    np.testing.assert_allclose(refine.rq.data[3].y, bands.r_95[0] * bands.q**4, rtol=1e-12)
    np.testing.assert_allclose(refine.rq.data[2].y, res.r_fit * res.q**4, rtol=1e-12)
    refine.curves.views.chooser.value = "R"
    lo95, hi95, lo68, hi68 = (np.array(t.y) for t in refine.sld.data[2:6])
    assert np.all(lo95 <= lo68 + 1e-12) and np.all(lo68 <= hi68 + 1e-12) and np.all(hi68 <= hi95 + 1e-12)
    assert "DREAM posterior" in refine.dream_table.value
    dream = ctx.registry().list_runs(kind="dream")[0]
    assert dream.status == "completed" and dream.params["data"].endswith("REFL_212592_reduced.txt")
    assert dream.metrics["samples"] == 100 and dream.metrics["band_draws"] == bands.n_draws
    # a new refinement clears the bands and the DREAM line
    refine.run.click()
    assert refine.progress.value == 0 and refine.dream_status.text == "" and refine.bands is None
    assert refine.job.join(300)
    assert len(refine.rq.data) == 3


def test_refine_starts_from_an_sld_models_profile(workspace):
    ctx = AppContext(workspace, autosave_delay=0)
    predict = PredictPanel(ctx)
    refine = RefinePanel(ctx)
    predict.model.value = str(workspace / "models" / "sld1")
    predict.index.value = 3
    predict.run.click()
    assert predict.status.level == "ok", predict.status.text
    assert ctx.prediction.stack is None  # an SLD model predicts a profile
    refine.on_shown()  # the Refine tab is shown
    assert "start: stack fitted to the predicted profile (profile RMS" in refine.status.text, refine.status.text
    assert refine.profile_fit is not None and refine.start_stack == refine.profile_fit.stack
    assert refine.start_stack != ctx.stack.stack
    # the fitted stack's profile is what the status says it is
    z, rho = ctx.prediction.profile
    mine = sld_profile(refine.start_stack, z=np.asarray(z) + refine.profile_fit.z_offset)[1][0]
    assert np.sqrt(np.mean((mine - rho) ** 2)) == pytest.approx(refine.profile_fit.rms, rel=1e-6)
    assert [r.pname for r in refine.rows if r.free.value] == ctx.stack.stack.parameter_names()


def test_refine_without_a_prediction_says_what_to_do(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = RefinePanel(ctx)
    panel.run.click()
    assert panel.status.level == "error" and "Predict panel" in panel.status.text


def test_predict_draws_an_ensembles_bands_and_a_single_models_none(workspace, shared_data):
    ctx = AppContext(workspace, autosave_delay=0)
    for target, name in (("sld", "ens-sld"), ("params", "ens-par")):
        request = TrainRequest(
            target=target,
            data=workspace / "datasets" / "ds",
            out=ctx.workspace.models / name,
            train=TrainConfig(epochs=1, batch_size=32, device="cpu"),
        )
        assert run_ensemble(request, 2).status == "completed"
    panel = PredictPanel(ctx)
    assert {"ens-sld", "ens-par", "sld1", "par1"} <= {label for label, _ in panel.model.options}
    panel.model.value = str(workspace / "models" / "ens-sld")
    panel.index.value = 7
    panel.run.click()
    assert panel.status.level == "ok", panel.status.text
    bands = [t for t in panel.sld.data if t.meta == "band"]
    assert [t.name for t in bands] == ["95 % band (low)", "95 % band", "68 % band (low)", "68 % band"]
    lo95, hi95, lo68, hi68 = (np.array(t.y) for t in bands)
    mean = np.array(panel.sld.data[1].y)  # the prediction: the members' mean, inside its bands
    assert np.all(lo95 <= lo68) and np.all(lo68 <= mean + 1e-9) and np.all(mean <= hi68 + 1e-9)
    assert np.all(hi68 <= hi95) and np.mean(hi95 - lo95) > 0
    np.testing.assert_allclose(np.array(bands[0].x), np.array(panel.sld.data[1].x))
    assert "Ensemble of 2 models" in panel.metrics.value and "68 % band: covers" in panel.metrics.value
    panel.model.value = str(workspace / "models" / "sld1")  # a single model: no bands
    panel.run.click()
    assert panel.status.level == "ok" and not [t for t in panel.sld.data if t.meta == "band"]
    assert "Ensemble" not in panel.metrics.value
    # a parameter ensemble on a measured file: each parameter with its 68 % and 95 % intervals
    shutil.copy(shared_data / "real" / "ornl-ref-l-212592" / "REFL_212592_reduced.txt", ctx.measured_dir)
    panel.refresh_lists()
    panel.model.value = str(workspace / "models" / "ens-par")
    panel.source.value = "file"
    panel.measured.value = str(ctx.measured_dir / "REFL_212592_reduced.txt")
    panel.run.click()
    assert panel.status.level == "ok", panel.status.text
    p = ctx.prediction
    assert p.bands is not None and p.bands.names == list(p.parameters)
    assert "68 % interval" in panel.metrics.value and "95 % interval" in panel.metrics.value
    for row in p.bands.table():
        assert row["lo95"] <= row["lo68"] <= row["value"] <= row["hi68"] <= row["hi95"]
        assert row["value"] == pytest.approx(p.parameters[row["name"]])

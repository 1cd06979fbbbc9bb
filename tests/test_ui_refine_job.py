"""The Refine panel's DREAM as a job process: followed through the registry, attached by a later page, stopped.

Each DREAM here is a real ``python -m workbench.batch.job_worker`` process (imports of torch, numba and
bumps: ≈ 5–20 s on a loaded 2-core machine) sampling around a least-squares fit of refnx's measured
polymer film ``e361r.txt`` (the curve of the co-refinement test in tests/test_ui_refine.py).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time

import numpy as np
import pytest
import refnx

from workbench.analysis.uncertainty import Bands, dream_bands
from workbench.data.measured import load_measurement
from workbench.physics import FilmStack, sld_profile
from workbench.ui.background import FollowedJob
from workbench.ui.context import AppContext
from workbench.ui.predict_panel import Prediction
from workbench.ui.refine_panel import RefinePanel

JOB = 120.0  # s: a job process's start and a small DREAM on a loaded machine, well above what it takes
STACK = FilmStack.from_pyreflect(
    [
        {"name": "solvent", "sld": 6.36, "roughness": 3.0},
        {"name": "polymer", "sld": 1.0, "thickness": 205.0, "roughness": 3.0},
        {"name": "SiO2", "sld": 3.47, "thickness": 10.0, "roughness": 4.0},
        {"name": "Si", "sld": 2.07},
    ],
    [
        {"i": 0, "par": "roughness", "bounds": [1, 10]},
        {"i": 1, "par": "sld", "bounds": [0, 2]},
        {"i": 1, "par": "thickness", "bounds": [200, 250]},
    ],
)


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return value


def _fitted_panel(root: pathlib.Path) -> RefinePanel:
    """A page whose Refine panel has fitted e361r.txt (least squares, three free parameters)."""
    ctx = AppContext(root, autosave_delay=0)
    shutil.copy(pathlib.Path(refnx.__file__).parent / "analysis" / "tests" / "e361r.txt", ctx.measured_dir)
    data = load_measurement(ctx.measured_dir / "e361r.txt")
    z, rho, _ = sld_profile(STACK)
    ctx.announce(prediction=Prediction(data, data.r, (z[0], rho[0]), stack=STACK, model="params"))
    panel = RefinePanel(ctx)
    panel.on_shown()
    panel.run.click()
    assert panel.job.join(60) and panel.result is not None, panel.status.text
    assert panel.result.names == ["solvent.roughness", "polymer.sld", "polymer.thickness"]
    return panel


def _band_traces(chart) -> list[np.ndarray]:
    return [np.array(t.y, dtype=float) for t in chart.data if t.meta == "band"]


def _assert_bands_drawn(panel: RefinePanel, bands: Bands) -> None:
    """Both charts carry the 95 % and 68 % edges of ``bands`` (R(Q) in the R view)."""
    rq, sld = _band_traces(panel.rq), _band_traces(panel.sld)
    assert len(rq) == len(sld) == 4
    for drawn, expected in zip(rq, (*bands.r_95, *bands.r_68)):
        np.testing.assert_allclose(drawn, expected, rtol=1e-12)
    for drawn, expected in zip(sld, (*bands.sld_95, *bands.sld_68)):
        np.testing.assert_allclose(drawn, expected, rtol=1e-12)


def test_dream_runs_as_a_job_its_bands_reach_both_charts_and_a_later_page_attaches(tmp_path):
    panel = _fitted_panel(tmp_path / "ws")
    ctx, res = panel.ctx, panel.result
    assert panel.as_job.value  # the default
    panel.samples.value, panel.burn.value = 100, 10
    panel.dream.click()
    assert isinstance(panel.job, FollowedJob), panel.dream_status.text
    assert "DREAM job" in panel.dream_status.text or "as a job process" in panel.dream_status.text
    assert panel.stop.disabled is False and panel.run.disabled is True
    later = RefinePanel(AppContext(ctx.workspace.root, autosave_delay=0))  # a page opened while DREAM runs
    assert isinstance(later.job, FollowedJob) and later.job.run_id == panel.job.run_id
    assert panel.job.join(JOB) and later.job.join(10)

    run = ctx.registry().get_run(panel.job.run_id)
    assert run.kind == "dream" and run.status == "completed", run.error
    assert run.pid is not None and run.pid != os.getpid()  # sampled in its own process
    out = pathlib.Path(run.params["out"])
    assert out.parent == ctx.workspace.root / "exports" and out.name.startswith("dream-e361r-")
    assert run.params["samples"] == 100 and run.params["burn"] == 10 and run.params["band_draws"] == 200
    # the generations came through the registry to the progress bar
    steps = [e for e in ctx.registry().epochs(run.id) if e["stage"] == "uncertainty"]
    assert steps and steps[-1]["generation"] == steps[-1]["total"] == panel.progress.max
    assert panel.progress.value == panel.progress.max and panel.progress.bar_style == "success"

    bands = panel.bands
    from_csv = Bands.from_csv(out / "bands")
    assert bands.n_draws == from_csv.n_draws == min(200, bands.n_posterior)  # 200 asked of 145 kept
    _assert_bands_drawn(panel, from_csv)
    assert bands.parameter_table and [r["name"] for r in bands.parameter_table] == res.names
    assert "DREAM posterior" in panel.dream_table.value and "polymer.thickness (Å)" in panel.dream_table.value
    said = panel.dream_status.text
    assert f"100 samples asked, {bands.n_posterior} posterior samples kept, {bands.n_draws} of them drawn" in said
    assert (panel.dream_status.level == "ok") == bands.converged and ("not converged" in said) != bands.converged
    assert run.metrics["posterior_samples"] == bands.n_posterior and run.metrics["band_draws"] == bands.n_draws
    assert panel.dream.disabled is False and panel.run.disabled is False and panel.stop.disabled is True

    # the same sampling in this kernel gives the same bands (seed 0, the fit as the start, 200 draws), to the
    # 1e-10 Å nudge the job's evaluation gives solvent.roughness, fitted at its bound (1 → 1.0000000001)
    free = {n: res.bounds[n] for n in res.names}
    here = dream_bands(
        res.stack,
        panel.data,
        free,
        scale=res.scale,
        background=res.background,
        samples=100,
        burn=10,
        seed=0,
        n_draws=200,
    )
    np.testing.assert_allclose(bands.sld_median, here.sld_median, rtol=1e-5)
    np.testing.assert_allclose(bands.r_95[1], here.r_95[1], rtol=1e-5)
    assert [r["median"] for r in bands.parameter_table] == pytest.approx(
        [r["median"] for r in here.parameter_table], rel=1e-5
    )

    # the later page had no fit: it drew the job's fit from its files, then the same bands, and says so
    _assert_bands_drawn(later, from_csv)
    np.testing.assert_allclose(np.array(later.rq.trace("fit").y), res.r_fit, rtol=1e-8)
    assert "the fit drawn is the job's" in later.dream_status.text, later.dream_status.text


def test_stop_from_a_later_page_ends_a_long_dream_job_stopped(tmp_path):
    panel = _fitted_panel(tmp_path / "ws")
    panel.samples.value = panel.ctx.limits.max_dream_samples  # minutes of sampling
    panel.dream.click()
    run_id = panel.job.run_id
    _wait(lambda: panel.progress.value > 0, JOB, "DREAM's first generations on the progress bar")
    assert f"run {run_id}): generation" in panel.dream_status.text, panel.dream_status.text
    later = RefinePanel(AppContext(panel.ctx.workspace.root, autosave_delay=0))
    assert later.job.run_id == run_id
    later.stop.click()
    assert later.job.join(30) and panel.job.join(10)
    run = panel.ctx.registry().get_run(run_id)
    assert run.status == "stopped"
    for page in (panel, later):
        assert page.dream_status.level == "warn" and "DREAM stopped" in page.dream_status.text
        assert page.progress.bar_style == "danger" and page.bands is None
    assert not (pathlib.Path(run.params["out"]) / "bands").exists()
    assert panel.dream.disabled is False  # the fit is still there: DREAM can start again


def test_unticked_dream_runs_in_this_kernel_and_the_choice_is_saved(tmp_path):
    panel = _fitted_panel(tmp_path / "ws")
    panel.as_job.value = False
    assert panel.ctx.panel_settings("refine")["as_job"] is False
    panel.samples.value, panel.burn.value = 100, 0
    panel.dream.click()
    assert not isinstance(panel.job, FollowedJob)
    assert panel.job.join(JOB)
    run = panel.ctx.registry().list_runs(kind="dream")[0]
    assert run.status == "completed" and run.job is None and run.pid == os.getpid()
    assert len(_band_traces(panel.rq)) == 4 and panel.bands.n_draws == min(200, panel.bands.n_posterior)
    assert "posterior samples kept" in panel.dream_status.text


def test_bands_of_a_curve_the_job_cannot_reload_are_sampled_here_and_said_so(tmp_path):
    """A curve with no file behind it (made in memory) cannot travel to a job: DREAM runs here, with a note."""
    panel = _fitted_panel(tmp_path / "ws")
    panel.data = load_measurement(panel.ctx.measured_dir / "e361r.txt")
    object.__setattr__(panel.data, "source", "in memory")
    panel.samples.value, panel.burn.value = 100, 0
    panel.dream.click()
    assert not isinstance(panel.job, FollowedJob)
    assert "in this kernel: in memory is not a file the job can read" in panel.dream_status.text
    assert panel.job.join(JOB) and panel.bands is not None


@pytest.fixture(autouse=True)
def _no_leftover_jobs(tmp_path):
    """A failed assertion must not leave a DREAM process sampling for minutes."""
    yield
    from workbench.batch.jobs import stop_job
    from workbench.store.registry import LIVE
    from workbench.store.workspace import Workspace

    root = tmp_path / "ws"
    if root.exists():
        reg = Workspace(root).registry
        for run in reg.list_runs():
            if run.status in LIVE and run.job is not None:
                stop_job(reg, run.id, "test teardown")

"""The Refine panel's fit and DREAM as job processes: followed through the registry, attached by a later page, stopped.

Each fit or DREAM here is a real ``python -m workbench.batch.job_worker`` process (imports of torch, numba and
bumps: ≈ 5–20 s on a loaded 2-core machine) sampling around a least-squares fit of refnx's measured
polymer film ``e361r.txt`` (the curve of the co-refinement test in tests/test_ui_refine.py).
"""

from __future__ import annotations

import os
import pathlib
import re
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


def _page(root: pathlib.Path) -> RefinePanel:
    """A page whose Refine panel starts from STACK against e361r.txt (three free parameters), nothing fitted."""
    ctx = AppContext(root, autosave_delay=0)
    shutil.copy(pathlib.Path(refnx.__file__).parent / "analysis" / "tests" / "e361r.txt", ctx.measured_dir)
    data = load_measurement(ctx.measured_dir / "e361r.txt")
    z, rho, _ = sld_profile(STACK)
    ctx.announce(prediction=Prediction(data, data.r, (z[0], rho[0]), stack=STACK, model="params"))
    panel = RefinePanel(ctx)
    panel.on_shown()
    return panel


def _fitted_panel(root: pathlib.Path) -> RefinePanel:
    """A page whose Refine panel has fitted e361r.txt in its kernel (least squares), the job tick on again."""
    panel = _page(root)
    panel.as_job.value = False
    panel.run.click()
    assert panel.job.join(60) and panel.result is not None, panel.status.text
    assert panel.result.names == ["solvent.roughness", "polymer.sld", "polymer.thickness"]
    panel.as_job.value = True
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


def _chi2_chart(panel: RefinePanel) -> tuple[np.ndarray, np.ndarray]:
    trace = panel.convergence.trace("chi2")
    return np.array(trace.x, dtype=float), np.array(trace.y, dtype=float)


def test_a_fit_runs_as_a_job_shows_what_a_fit_here_shows_and_a_later_page_attaches(tmp_path):
    panel = _page(tmp_path / "ws")
    ctx = panel.ctx
    assert panel.as_job.value  # the default, shared with DREAM
    panel.run.click()
    assert isinstance(panel.job, FollowedJob), panel.status.text
    assert "job" in panel.status.text and panel.stop.disabled is False and panel.run.disabled
    later = RefinePanel(AppContext(ctx.workspace.root, autosave_delay=0))  # a page opened while the fit runs
    assert isinstance(later.job, FollowedJob) and later.job.run_id == panel.job.run_id
    assert "fit job" in later.status.text and later.run.disabled
    assert panel.job.join(JOB) and later.job.join(10)

    run = ctx.registry().get_run(panel.job.run_id)
    assert run.kind == "refine" and run.status == "completed", run.error
    assert run.pid is not None and run.pid != os.getpid()  # fitted in its own process
    assert run.metrics["data"] == "e361r.txt" and "polymer.thickness.sigma" in run.metrics  # History as for a fit here
    out = pathlib.Path(run.params["out"])
    assert out.parent == ctx.workspace.root / "exports" and out.name.startswith("fit-e361r-")
    assert {"refinement.json", "fit.csv", "profile.csv"} <= {p.name for p in out.iterdir()}
    job, job_table = panel.result, panel.table.value
    assert job.names == ["solvent.roughness", "polymer.sld", "polymer.thickness"]
    assert f"(job {run.id}; files in {out})" in panel.status.text, panel.status.text
    assert panel.dream.disabled is False and panel.export.disabled is False and panel.stop.disabled
    np.testing.assert_allclose(np.array(panel.rq.trace("fit").y), job.r_fit, rtol=1e-12)
    # the live χ² chart: the fit's recorded iterations, ending at the fit's χ²
    steps = [e for e in ctx.registry().epochs(run.id) if e["stage"] == "refine"]
    x, chi2 = _chi2_chart(panel)
    assert len(x) == len(steps) >= 2 and chi2[-1] == pytest.approx(job.history[-1]["chi2"], rel=1e-12)

    # the same fit in this kernel (unticked): the same numbers and the same table
    panel.as_job.value = False
    panel.run.click()
    assert not isinstance(panel.job, FollowedJob) and panel.job.join(60)
    here = panel.result
    assert here.names == job.names and here is not job
    assert job.chi2_per_point == pytest.approx(here.chi2_per_point, rel=1e-6)
    np.testing.assert_allclose(job.values, here.values, rtol=1e-6)
    np.testing.assert_allclose(job.uncertainties, here.uncertainties, rtol=1e-6)
    np.testing.assert_allclose(job.r_fit, here.r_fit, rtol=1e-6)
    timeless = re.compile(r"\d+\.\d\d s<")  # the fit's seconds differ, nothing else
    assert timeless.sub("", job_table) == timeless.sub("", panel.table.value)
    assert "χ²/N = " in job_table and "polymer.thickness (Å)" in job_table and "± 1σ" in job_table

    # the later page (no prediction of its own) drew the job's data, fit and table, and can run DREAM on it
    assert later.result is not None and later.result.names == job.names
    np.testing.assert_array_equal(later.result.values, job.values)
    np.testing.assert_allclose(np.array(later.rq.trace("fit").y), job.r_fit, rtol=1e-12)
    assert len(later.rq.trace("data").x) > 0 and str(later.data.source) == str(ctx.measured_dir / "e361r.txt")
    assert timeless.sub("", later.table.value) == timeless.sub("", job_table)
    assert later.dream.disabled is False and later.export.disabled is False and later.status.level == panel.status.level


def test_stop_ends_a_long_de_fit_job_stopped_and_the_panel_says_so(tmp_path):
    panel = _page(tmp_path / "ws")
    panel.method.value = "de"
    panel.population.value, panel.generations.value = 3000, 100000  # minutes of generations
    panel.run.click()
    assert isinstance(panel.job, FollowedJob), panel.status.text
    run_id = panel.job.run_id
    _wait(lambda: f"run {run_id}): step" in panel.status.text, JOB, "the first generations in the status")
    assert len(_chi2_chart(panel)[0]) > 0  # and on the χ² chart
    panel.stop.click()
    assert panel.job.join(30)
    run = panel.ctx.registry().get_run(run_id)
    assert run.status == "stopped"
    assert panel.status.level == "warn" and "fit stopped" in panel.status.text, panel.status.text
    assert panel.result is None and panel.table.value == "" and panel.dream.disabled
    assert panel.run.disabled is False and panel.stop.disabled is True
    assert not (pathlib.Path(run.params["out"]) / "refinement.json").exists()
    x, chi2 = _chi2_chart(panel)
    assert len(x) >= 1 and np.all(np.diff(chi2) <= 0)  # DE's best χ² per generation never rises


def test_a_joint_fit_runs_in_this_kernel_and_says_why(tmp_path):
    """Several curves fitted together stay in the page's kernel (their result does not come back from a job)."""
    panel = _page(tmp_path / "ws")
    shutil.copy(panel.ctx.measured_dir / "e361r.txt", panel.ctx.measured_dir / "e361r_b.txt")
    panel.contrasts_box.add.click()
    panel.contrasts_box.rows[0].file.value = str(panel.ctx.measured_dir / "e361r_b.txt")
    panel.run.click()
    assert not isinstance(panel.job, FollowedJob)
    assert "in this kernel: curves fitted together run here" in panel.status.text, panel.status.text
    assert panel.job.join(60) and panel.joint is not None, panel.status.text
    assert "in this kernel" in panel.status.text


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

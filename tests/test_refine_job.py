"""Refinement and DREAM as jobs: the same fit in its own process, Stop during DREAM, checked requests, ``--detach``.

Every job is a real ``python -m workbench.batch.job_worker`` process (imports of torch, numba and
bumps: ≈ 5–20 s on a loaded 2-core machine), fitting refnx's measured Platypus polymer film, the
curve the command-line refine tests fit.
"""

from __future__ import annotations

import json
import os
import pathlib
import time

import numpy as np
import pytest
import refnx

from workbench.batch.jobs import stop_job, submit_job, wait_for_job
from workbench.cli.main import main
from workbench.data.family import stack_meta
from workbench.data.measured import load_measurement
from workbench.events import Reporter
from workbench.physics import FilmStack
from workbench.store.workspace import Workspace
from workbench.workflows.refinement import RefineRequest, load_result, run_refinement

START = 120.0  # s: a job process's start and its work on a loaded machine, well above what it takes
STACK = FilmStack.from_pyreflect(
    [
        {"name": "D2O", "sld": 6.36, "roughness": 3.0},
        {"name": "polymer", "sld": 2.0, "thickness": 250.0, "roughness": 3.0},
        {"name": "SiO2", "sld": 3.47, "thickness": 30.0, "roughness": 3.0},
        {"name": "Si", "sld": 2.07},
    ],
    [
        {"i": 0, "par": "roughness", "bounds": [1, 15]},
        {"i": 1, "par": "sld", "bounds": [0.1, 3]},
        {"i": 1, "par": "thickness", "bounds": [200, 300]},
        {"i": 1, "par": "roughness", "bounds": [1, 15]},
        {"i": 2, "par": "thickness", "bounds": [15, 50]},
        {"i": 2, "par": "roughness", "bounds": [1, 15]},
    ],
)
FREE = [
    "D2O.sld",
    "D2O.roughness",
    "polymer.sld",
    "polymer.thickness",
    "polymer.roughness",
    "SiO2.thickness",
    "SiO2.roughness",
    "probe.scale",
    "probe.background",
]
BOUNDS = {"D2O.sld": [5.9, 6.36], "probe.scale": [0.6, 1.2], "probe.background": [1e-9, 9e-6]}


def _platypus() -> pathlib.Path:
    return next(pathlib.Path(refnx.__file__).parent.rglob("c_PLP0011859_q.txt"))


def _request(out: pathlib.Path, **changes) -> dict:
    request = {
        "data": [str(_platypus())],
        "dq_convention": "fwhm",
        "stack": stack_meta(STACK),
        "free": FREE,
        "bounds": BOUNDS,
        "background": 3e-6,
        "out": str(out),
    }
    return {**request, **changes}


def _wait(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return value


def test_a_refine_job_fits_in_its_own_process_exactly_as_in_process(tmp_path):
    ws = Workspace(tmp_path / "ws")
    run_id = submit_job(ws, "refine", _request(tmp_path / "job"))
    here = run_refinement(RefineRequest(**_request(tmp_path / "here")), Reporter())  # while the job works
    run = wait_for_job(ws.registry, run_id, timeout=START)
    assert run.status == "completed", run.error
    assert run.kind == "refine" and run.pid != os.getpid()
    job = json.loads((tmp_path / "job" / "refinement.json").read_text())
    mine = json.loads((tmp_path / "here" / "refinement.json").read_text())
    assert job["chi2"] == pytest.approx(mine["chi2"], rel=1e-9) and mine["chi2"] == here.summary["chi2"]
    assert job["chi2_per_point"] < 2.4 < job["start_chi2_per_point"]  # the fit of refnx's film (χ²/N ≈ 2.25)
    thickness = {row["name"]: row["value"] for row in job["parameters"]}["polymer.thickness"]
    assert abs(thickness / 259.0 - 1) < 0.01
    assert (tmp_path / "job" / "fit.csv").read_text().startswith("q,r,dr,r_fit\n")
    assert run.metrics["chi2_per_point"] == pytest.approx(job["chi2_per_point"], rel=1e-12)
    assert run.params["data"] == str(_platypus().resolve()) and run.params["free"] == FREE


def test_a_written_fit_loads_back_as_the_result_it_was_and_its_steps_reach_the_registry(tmp_path):
    """load_result gives the RefineResult run_refinement returned (what a page following a refine job shows)."""
    ws = Workspace(tmp_path / "ws")
    out = tmp_path / "fit"
    done = run_refinement(RefineRequest(**_request(out, method="auto", generations=40)), Reporter(), ws.registry)
    fit = done.result
    data = load_measurement(_platypus(), dq_convention="fwhm")
    back = load_result(out, data)
    assert back.names == fit.names == FREE
    np.testing.assert_array_equal(back.values, fit.values)
    np.testing.assert_array_equal(back.uncertainties, fit.uncertainties)
    np.testing.assert_array_equal(back.covariance, fit.covariance)
    assert (back.chi2, back.chi2_per_point, back.n_points) == (fit.chi2, fit.chi2_per_point, fit.n_points)
    assert (back.start_chi2, back.scale, back.background) == (fit.start_chi2, fit.scale, fit.background)
    assert back.bounds == fit.bounds and back.at_bound == fit.at_bound and back.undetermined == fit.undetermined
    assert back.notes() == fit.notes() and back.history == fit.history and back.method == "auto"
    assert back.converged == fit.converged and back.message == fit.message and back.n_left_out == fit.n_left_out
    np.testing.assert_array_equal(back.q, fit.q)  # the data's own Q points
    np.testing.assert_allclose(back.r_fit, fit.r_fit, rtol=1e-9)  # the CSV's 10 digits
    np.testing.assert_allclose(back.profile[0], fit.profile[0], rtol=1e-9)
    np.testing.assert_allclose(back.profile[1], fit.profile[1], rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(back.probe.sigma, fit.probe.sigma)
    assert back.stack.to_layer_desc() == fit.stack.to_layer_desc()
    assert load_result(out).probe is None  # without the data: no resolution, the same numbers
    # the fit's generations, then its polish's iterations, as steps of stage refine: the live χ² chart's points
    steps = [e for e in ws.registry.epochs(done.run_id) if e["stage"] == "refine"]
    assert steps and [e["step"] for e in steps] == sorted(e["step"] for e in steps)
    assert {e["what"] for e in steps} <= {"generation", "iteration"} and steps[0]["what"] == "generation"
    last = fit.history[-1]
    assert steps[-1]["chi2"] == pytest.approx(last["chi2"], rel=1e-12) and steps[-1]["step"] == len(fit.history) - 1
    with pytest.raises(ValueError, match=r"refinement\.json: no such file"):
        load_result(tmp_path / "nothing")


def test_a_dream_job_samples_around_the_given_stack_and_stops_within_seconds(tmp_path):
    ws = Workspace(tmp_path / "ws")
    reg = ws.registry
    out = tmp_path / "dream"
    run_id = submit_job(ws, "dream", _request(out, dream_samples=500_000, seed=3))  # minutes of sampling
    assert reg.get_run(run_id).kind == "dream"
    _wait(lambda: any("DREAM:" in line["message"] for line in reg.logs(run_id)), START, "DREAM to start")
    given = json.loads((out / "refinement.json").read_text())  # the stack's own χ², written before DREAM
    assert given["method"] == "none" and given["history"] == []
    values = {row["name"]: row["value"] for row in given["parameters"]}
    assert values["polymer.thickness"] == 250.0 and values["probe.background"] == 3e-6  # not refitted
    time.sleep(2.0)  # into DREAM's generations
    sent = time.time()
    stop_job(reg, run_id)
    run = wait_for_job(reg, run_id, timeout=30)
    print(f"DREAM job stopped {run.updated - sent:.2f} s after the command")
    assert run.status == "stopped" and run.updated - sent < 5.0
    assert not (out / "bands").exists()


def test_bad_requests_are_refused_at_once_naming_the_field(tmp_path):
    ws = Workspace(tmp_path / "ws")
    out = tmp_path / "o"
    cases = [
        ("refine", _request(out, data=[str(tmp_path / "missing.txt")]), "missing.txt: no such file"),
        ("refine", _request(out, stack={"layers": []}), "stack: expected"),
        ("refine", _request(out, stack={"layer_desc": [{"name": "Si", "sdl": 2.07}]}), "stack: not a film stack"),
        ("refine", _request(out, method="newton"), "method:"),
        ("refine", _request(out, population=2), "population:"),
        ("refine", _request(out, free=["gold.thickness"]), "free: unknown layer 'gold'"),
        ("refine", _request(out, bounds={"polymer.thickness": [300, 200]}), "bounds of 'polymer.thickness'"),
        ("refine", _request(out, dq_convention=None), "set dq_convention"),
        ("refine", _request(out, optimize=False, dream_samples=1000), "optimize: a refine job fits"),
        ("refine", _request(out, epochs=3), "epochs: Extra inputs are not permitted"),
        ("dream", _request(out), "dream_samples: a dream job needs"),
        ("dream", _request(out, optimize=True, dream_samples=1000), "optimize: a dream job"),
    ]
    for kind, request, message in cases:
        with pytest.raises(ValueError) as caught:
            submit_job(ws, kind, request)
        assert message in str(caught.value), (kind, message, str(caught.value))
    assert ws.registry.list_runs() == [] and not out.exists()


def test_refine_detach_prints_a_run_id_that_completes(tmp_path, capsys):
    ws = Workspace(tmp_path / "ws")
    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps({"stack": stack_meta(STACK)}))
    bounds = tmp_path / "bounds.json"
    bounds.write_text(json.dumps(BOUNDS))
    out = tmp_path / "out"
    args = ["refine", str(_platypus()), "--stack", str(stack), "--free", *FREE, "--bounds", str(bounds)]
    args += [
        "--dq-convention",
        "fwhm",
        "--background",
        "3e-6",
        "--out",
        str(out),
        "--detach",
        "--workspace",
        str(ws.root),
    ]
    t0 = time.monotonic()
    assert main(args) == 0
    returned = time.monotonic() - t0
    said = capsys.readouterr()
    run_id = said.out.strip()
    assert f"workbench runs watch {run_id}" in said.err and returned < 30
    run = wait_for_job(ws.registry, run_id, timeout=START)
    assert run.status == "completed" and run.kind == "refine", run.error
    summary = json.loads((out / "refinement.json").read_text())
    assert summary["chi2_per_point"] < 2.4 and summary["start"] == f"stack file {stack}"

"""Refine panel: the start from an SLD model's profile, the free parameters of the Film stack, the fit's verdict."""

from __future__ import annotations

import pathlib
import shutil
from dataclasses import replace

import numpy as np
import pytest
import refnx

from workbench.analysis.refine import refine, verdict
from workbench.data.measured import Measurement, load_measurement
from workbench.physics import FilmStack, Probe, reflectivity, sld_profile
from workbench.plots.curves import profile_template, reflectivity_template
from workbench.plots.refine import fit_figure
from workbench.plots.style import ROLES, band_fill, role_of
from workbench.ui.background import Job
from workbench.ui.context import AppContext
from workbench.ui.predict_panel import Prediction
from workbench.ui.refine_panel import RefinePanel

Q = np.geomspace(0.01, 0.2, 120)


def _truth() -> FilmStack:
    """The default film with every free parameter 40 % into its bound range."""
    stack = FilmStack.default()
    for b in stack.free_parameters:
        stack = stack.with_value(b.i, b.par, b.lo + 0.4 * (b.hi - b.lo))
    return stack


def _measurement(stack: FilmStack, seed: int = 0) -> Measurement:
    """R(Q) of ``stack`` with 3 % Gaussian noise and its error bars (seeded)."""
    probe = Probe(Q, dq_over_q=0.05)
    r = np.asarray(reflectivity(stack, probe))[0]
    dr = 0.03 * r
    noisy = r + dr * np.random.default_rng(seed).standard_normal(r.size)
    return Measurement(q=Q, r=noisy, dr=dr, dq_sigma=probe.sigma, source="film.refl", dq_convention_of_file="sigma")


def _sld_prediction(profile_of: FilmStack, data: Measurement) -> Prediction:
    """What an SLD model's prediction holds: a profile (z from 0, as in a data set) and no stack."""
    z, rho, _ = sld_profile(profile_of)
    return Prediction(data, data.r, (z[0] - z[0, 0], rho[0]), model="compact")


@pytest.fixture
def ctx(tmp_path):
    return AppContext(tmp_path / "ws", autosave_delay=0)


def test_an_sld_models_prediction_starts_from_the_film_stack_fitted_to_its_profile(ctx):
    panel = RefinePanel(ctx)
    truth = _truth()
    ctx.announce(prediction=_sld_prediction(truth, _measurement(truth)))
    panel.on_shown()  # the Refine tab is shown
    assert panel.status.level == "info", panel.status.text
    assert "start: stack fitted to the predicted profile (profile RMS 0.00 ×10⁻⁶ Å⁻²)" in panel.status.text
    film = ctx.stack.stack
    for b in film.free_parameters:
        assert panel.start_stack.get(b.i, b.par) == pytest.approx(truth.get(b.i, b.par), rel=1e-4, abs=1e-4)
    rows = {row.pname: row for row in panel.rows}
    # free by default: exactly what "vary" ticks in the Film stack; siox.sld is fixed there (min = max)
    assert [n for n, r in rows.items() if r.free.value] == film.parameter_names()
    assert "siox.sld" not in rows and not rows["probe.scale"].free.value
    assert rows["siox.thickness"].free.description == "siox.thickness (Å)"
    assert rows["layer_1.sld"].free.description == "layer_1.sld (10⁻⁶ Å⁻²)"
    assert rows["probe.scale"].free.description == "probe.scale"
    for row in rows.values():  # bounds rounded for people, and still around the start value
        for value in (row.lo.value, row.hi.value):
            assert value == float(f"{value:.4g}"), (row.pname, value)
    # measured points carry their error bars; the fit trace waits for the fit
    data, m = panel.rq.trace("data"), ctx.prediction.measurement
    np.testing.assert_allclose(np.array(data.error_y.array), m.dr[m.r > 0])
    assert len(panel.rq.trace("fit").x) == 0


def test_a_good_fit_is_green_and_a_poor_one_is_a_warning_with_its_reasons(ctx):
    panel = RefinePanel(ctx)
    truth = _truth()
    ctx.announce(prediction=_sld_prediction(truth, _measurement(truth)))
    panel.on_shown()  # the Refine tab is shown
    for row in panel.rows:
        row.free.value = row.pname in ("layer_2.thickness", "layer_3.sld")
    panel.run.click()
    assert panel.job.join(120)
    res = panel.result
    assert res.chi2_per_point < 2 and verdict(res)[0] == "ok"
    assert panel.status.level == "ok" and "good fit" in panel.status.text, panel.status.text
    assert "film.refl" in panel.status.text
    assert "layer_2.thickness (Å)" in panel.table.value
    run = ctx.registry().list_runs(kind="refine")[0]
    assert run.params["data"] == "film.refl" and run.metrics["data"] == "film.refl"
    assert run.metrics["layer_2.thickness.sigma"] == pytest.approx(res.uncertainties[0])
    panel.export.click()
    script = pathlib.Path(panel.status.text.split("written: ")[1].split(" (")[0])
    assert (
        script.name == "model.py"
        and ".thickness.range(" in script.read_text()
        and "# layer_2.thickness" in script.read_text()
    )

    # the same data from a start far off, with only the background free: χ²/N in the hundreds
    far = FilmStack.default()
    for b in far.free_parameters:
        far = far.with_value(b.i, b.par, b.lo + 0.95 * (b.hi - b.lo))
    ctx.announce(prediction=_sld_prediction(far, _measurement(truth)))
    panel.on_shown()  # the Refine tab is shown
    for row in panel.rows:
        row.free.value = row.pname == "probe.background"
    panel.run.click()
    assert panel.job.join(120)
    res = panel.result
    assert res.chi2_per_point > 10
    assert panel.status.level == "warn", panel.status.text
    assert "poor fit" in panel.status.text and "χ²/N" in panel.status.text
    assert "wb-verdict wb-warn" in panel.table.value


def test_the_verdict_names_parameters_at_a_bound_and_an_error_bar_wider_than_the_bounds():
    truth = _truth()
    data = _measurement(truth)
    thick = truth.get(4, "thickness")
    # a bound that stops short of the truth: the fit ends on it
    start = truth.with_value(4, "thickness", thick - 15)
    res = refine(data, start, free=["layer_3.thickness"], bounds={"layer_3.thickness": (thick - 20, thick - 10)})
    level, words = verdict(res)
    assert level == "warn" and "at a bound (layer_3.thickness)" in words
    # a 1σ wider than the whole bound range: the data do not bound the parameter
    res = refine(data, truth, free=["layer_3.thickness", "layer_3.sld"])
    assert verdict(res)[0] == "ok", verdict(res)[1]
    value = res.values[1]
    narrow = replace(res, bounds={**res.bounds, "layer_3.sld": (value - 1e-4, value + 1e-4)})
    level, words = verdict(narrow)
    assert level == "warn" and "1 of 2 undetermined (layer_3.sld)" in words
    assert words.startswith(f"fit needs attention: χ²/N {narrow.chi2_per_point:.3g}; ")  # the number comes first
    # χ²/N between 2 and 3 without other faults: acceptable; above 3: poor
    assert verdict(replace(res, chi2_per_point=2.5)) == ("ok", verdict(replace(res, chi2_per_point=2.5))[1])
    assert verdict(replace(res, chi2_per_point=2.5))[1].startswith("acceptable fit")
    assert verdict(replace(res, chi2_per_point=662.1))[1].startswith("poor fit: χ²/N 662 > 3")


def test_every_chart_draws_each_role_in_one_colour_and_dash():
    rq = reflectivity_template(("data", "start", "fit"))
    sld = profile_template(("ground truth", "prediction", "start", "fit"))
    fig = fit_figure(Q, Q, Q * 0.1, {"initial": Q, "refined": Q, "truth": Q})
    by_role = {}
    for f in (rq, sld, fig):
        for t in f.data:
            role = role_of(t.meta) or role_of(t.name)
            style = (t.mode, t.line.color, t.line.dash, t.marker.color)
            assert by_role.setdefault(role, style) == style, (role, t.name)
    assert set(by_role) == {"data", "start", "fit", "truth", "prediction"}
    assert by_role["start"][1:3] == ("#7f7f7f", "dash") and by_role["data"][0] == "markers"
    assert len({s[1] for r, s in by_role.items() if r != "data"}) == 4  # four different line colours
    assert fig.data[0].error_y.array is not None  # measured points with error bars
    assert band_fill("95 %").startswith("rgba(0,114,178,") and ROLES["fit"]["line"]["color"] == "rgb(0,114,178)"
    # the legend sits below the plot area, and an empty chart says so instead of showing axes from −1 to 6
    assert rq.layout.legend.y < 0 and rq.layout.annotations[0].text == "no data yet"


def test_three_contrasts_are_co_refined_in_the_panel_with_a_chart_each(ctx):
    """refnx's three contrasts of one polymer film, as a user adds them: a shared film, one chart per curve."""
    folder = pathlib.Path(refnx.__file__).parent / "analysis" / "tests"
    for name in ("e361r.txt", "e365r.txt", "e366r.txt"):
        shutil.copy(folder / name, ctx.measured_dir / name)
    stack = FilmStack.from_pyreflect(
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
            {"i": 2, "par": "thickness", "bounds": [0, 20]},
        ],
    )
    data = load_measurement(ctx.measured_dir / "e361r.txt")
    z, rho, _ = sld_profile(stack)
    ctx.announce(prediction=Prediction(data, data.r, (z[0], rho[0]), stack=stack, model="params"))
    panel = RefinePanel(ctx)
    panel.on_shown()
    rows = {row.pname: row for row in panel.rows}
    assert all(row.shared.layout.display == "none" for row in panel.rows)  # one curve: nothing to share
    rows["probe.background"].free.value = True
    rows["probe.background"].lo.value, rows["probe.background"].hi.value = 1e-6, 5e-5
    for file, sld in (("e365r.txt", 3.47), ("e366r.txt", -0.56)):
        panel.contrasts_box.add.click()
        row = panel.contrasts_box.rows[-1]
        row.file.value = str(ctx.measured_dir / file)
        row.substrate_sld.value = sld
    assert all(row.shared.layout.display == "" for row in panel.rows)
    assert not rows["probe.background"].shared.value and rows["polymer.thickness"].shared.value
    panel.method.value = "auto"
    assert panel.de_settings.layout.display == ""
    panel.run.click()
    assert panel.job.join(300)
    joint = panel.joint
    assert joint is not None and joint.labels == ["e361r", "e365r", "e366r"], panel.status.text
    assert joint.shared == ["solvent.roughness", "polymer.sld", "polymer.thickness", "SiO2.thickness"]
    assert "e366r:probe.background" in joint.names
    assert "refined 3 curves" in panel.status.text and "polymer.thickness (Å) (shared)" in panel.table.value
    assert "e365r χ²/N" in panel.table.value
    # the live convergence chart: DE's best χ² per generation, then the polish, never rising
    chi2 = np.array(panel.convergence.trace("chi2").y)
    assert chi2.size > 3 and np.all(np.diff(chi2) <= 1e-9 * chi2[:-1])
    for row, fit in zip(panel.contrasts_box.rows, joint.contrasts[1:]):
        drawn = row.curves.rq.trace("fit")
        assert len(drawn.x) == len(drawn.y) == fit.q.size and "fit χ²/N" in drawn.name
    titles = [row.curves.rq.layout.title.text for row in panel.contrasts_box.rows]
    assert titles == ["Contrast e365r", "Contrast e366r"]
    run = ctx.registry().list_runs(kind="refine")[0]
    assert run.params["shared"] == joint.shared and len(run.params["data"]) == 3
    panel.export.click()  # the joint model as one refl1d script with every curve's data
    assert panel.status.level == "ok", panel.status.text
    script = pathlib.Path(panel.status.text.split("written: ")[1].split(" (")[0])
    assert sorted(p.name for p in script.parent.iterdir()) == ["data_1.txt", "data_2.txt", "data_3.txt", "model.py"]
    assert "FitProblem([experiment_1, experiment_2, experiment_3])" in script.read_text()

    panel.samples.value, panel.burn.value = 100, 0  # the smallest DREAM: the bands reach every chart
    panel.as_job.value = False  # in this kernel (tests/test_ui_refine_job.py runs DREAM as a job)
    panel.dream.click()
    assert isinstance(panel.job, Job) and panel.job.join(300)
    for curves in [panel.curves, *(row.curves for row in panel.contrasts_box.rows)]:
        assert sum(t.meta == "band" for t in curves.rq.data) == 4

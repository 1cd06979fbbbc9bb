"""R(Q) drawn as R, R·Q⁴ and R/R_F: the transforms by hand, the Fresnel curve against the kernel, the charts' chooser
and the exports."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.physics import FilmStack, Layer, Probe, reflectivity
from workbench.plots.curves import curves_figure, stack_figure
from workbench.plots.export import chart_export, chart_table_csv
from workbench.plots.views import VIEWS, FresnelReference, axis_title, fresnel, from_view, to_view
from workbench.ui.context import AppContext
from workbench.ui.curve_pair import CurvePair
from workbench.ui.stack_panel import StackPanel

SI_AIR = FresnelReference(2.07, 0.0, 0.0)


def test_rq4_of_hand_computed_values_with_error_bars():
    y, dy = to_view("RQ4", [0.05, 0.1], [1e-4, 2e-6], [1e-5, 4e-7])
    np.testing.assert_allclose(y, [6.25e-10, 2e-10], rtol=1e-14)  # 0.05⁴ = 6.25e-6; 0.1⁴ = 1e-4
    np.testing.assert_allclose(dy, [6.25e-11, 4e-11], rtol=1e-14)  # the error bar scales the same way
    assert axis_title("RQ4") == "R·Q⁴ (Å⁻⁴)" and axis_title("R") == "R(Q)" and axis_title("R/RF") == "R / R_F"


def test_fresnel_of_silicon_under_air_by_hand():
    # critical edge: Qc = sqrt(16π · 2.07e-6) = 0.0102005 Å⁻¹; below it every neutron is reflected
    np.testing.assert_allclose(fresnel([0.005, 0.0102], 2.07), [1.0, 1.0], atol=1e-12)
    # Q = 0.02: k0 = 0.01, k1 = sqrt(1e-4 − 4π·2.07e-6) = 0.00860160525, R_F = ((k0 − k1)/(k0 + k1))²
    k1 = 0.00860160525
    assert fresnel(0.02, 2.07) == pytest.approx(((0.01 - k1) / (0.01 + k1)) ** 2, rel=1e-8)
    assert fresnel(0.02, 2.07) == pytest.approx(0.0056514348, rel=1e-8)
    # far above the edge the Born limit: R_F → 16π²ρ²/Q⁴ = 4.229e-7 at Q = 0.2 (0.26 % below the exact value)
    assert fresnel(0.2, 2.07) == pytest.approx(16 * math.pi**2 * 2.07e-6**2 / 0.2**4, rel=5e-3)
    # R/R_F of the bare substrate's own curve is 1 everywhere
    q = np.geomspace(0.005, 0.3, 40)
    np.testing.assert_allclose(to_view("R/RF", q, fresnel(q, 2.07), reference=SI_AIR)[0], 1.0, rtol=1e-12)


@pytest.mark.parametrize("substrate,isld,ambient", [(2.07, 0.0, 0.0), (2.07, 0.5, 0.0), (2.07, 0.0, 6.36)])
def test_fresnel_matches_the_kernel_for_a_two_layer_stack(substrate, isld, ambient):
    """The closed form and the workbench kernel agree for a sharp interface without resolution (signs, absorption,
    a beam entering through a denser medium)."""
    stack = FilmStack(layers=[Layer(name="substrate", sld=substrate, isld=isld), Layer(name="ambient", sld=ambient)])
    q = np.geomspace(0.004, 0.3, 60)
    kernel = np.asarray(reflectivity(stack, Probe(q, dq_over_q=None), engine="fast"))[0]
    np.testing.assert_allclose(FresnelReference.of(stack).reflectivity(q), kernel, rtol=1e-10)


def test_r_over_rf_scales_error_bars_and_needs_a_reference():
    q, r, dr = np.array([0.02, 0.05]), np.array([1e-2, 2e-4]), np.array([1e-3, 2e-5])
    y, dy = to_view("R/RF", q, r, dr, reference=SI_AIR)
    np.testing.assert_allclose(y, r / fresnel(q, 2.07), rtol=1e-14)
    np.testing.assert_allclose(dy / y, dr / r, rtol=1e-14)  # the relative error is unchanged
    with pytest.raises(ValueError, match="needs the substrate and ambient SLD"):
        to_view("R/RF", q, r)
    with pytest.raises(ValueError, match="unknown R\\(Q\\) view 'RQ2'; choose one of R, RQ4, R/RF"):
        to_view("RQ2", q, r)
    with pytest.raises(ValueError, match="substrate_isld must be ≥ 0"):
        FresnelReference(2.07, -1.0)


@settings(max_examples=200, deadline=None)
@given(
    q=st.floats(1e-3, 1.0),
    r=st.floats(1e-12, 1.0),
    view=st.sampled_from(VIEWS),
    substrate=st.floats(-5.0, 10.0),
)
def test_back_transform_recovers_r(q, r, view, substrate):
    ref = FresnelReference(substrate, 0.1, 0.0)
    y, dy = to_view(view, [q], [r], [0.1 * r], reference=ref)
    back, dback = from_view(view, [q], y, dy, reference=ref)
    assert back[0] == pytest.approx(r, rel=1e-12) and dback[0] == pytest.approx(0.1 * r, rel=1e-12)
    assert y[0] > 0 and dy[0] > 0  # every view stays positive: drawable on the log axis


def _pair() -> tuple[CurvePair, np.ndarray, np.ndarray, np.ndarray]:
    pair = CurvePair(("data", "fit"), ("fit",), markers=("data",))
    q = np.array([0.01, 0.02, 0.05, 0.1])
    r, dr = np.array([0.9, 5e-3, 1e-4, 3e-6]), np.array([0.05, 2e-4, 1e-5, 1e-6])
    pair.set_fresnel_reference(2.07, 0.0, 0.0)
    pair.show(rq={"data": {"x": q, "y": r, "dy": dr}, "fit": (q, 1.1 * r)})
    return pair, q, r, dr


def test_the_view_chooser_redraws_the_chart_and_switching_back_restores_it_exactly():
    pair, q, r, dr = _pair()
    chooser = pair.views.chooser
    assert "wb-rq-view" in chooser._dom_classes and chooser.description == "R(Q) view"
    assert chooser in pair.box.children
    data = pair.rq.trace("data")
    chooser.value = "RQ4"
    np.testing.assert_allclose(data.y, r * q**4, rtol=1e-14)
    np.testing.assert_allclose(data.error_y.array, dr * q**4, rtol=1e-14)
    np.testing.assert_allclose(pair.rq.trace("fit").y, 1.1 * r * q**4, rtol=1e-14)
    assert pair.rq.layout.yaxis.title.text == "R·Q⁴ (Å⁻⁴)" and pair.rq.layout.yaxis.type == "log"
    chooser.value = "R/RF"
    np.testing.assert_allclose(data.y, r / fresnel(q, 2.07), rtol=1e-14)
    assert pair.rq.layout.yaxis.title.text.startswith("R / R_F")
    pair.show(rq={"fit": (q, 2 * r)})  # a new curve arrives in the view on show
    np.testing.assert_allclose(pair.rq.trace("fit").y, 2 * r / fresnel(q, 2.07), rtol=1e-14)
    chooser.value = "R"
    assert np.array_equal(data.y, r) and np.array_equal(data.error_y.array, dr)  # exactly what was given
    assert np.array_equal(pair.rq.trace("fit").y, 2 * r) and pair.rq.layout.yaxis.title.text == "R(Q)"


def test_added_traces_such_as_bands_follow_the_view():
    pair, q, r, _dr = _pair()
    pair.views.chooser.value = "RQ4"
    band = pair.add_rq(x=q, y=0.5 * r, name="68 % band", meta="band")
    np.testing.assert_allclose(band.y, 0.5 * r * q**4, rtol=1e-14)
    pair.views.chooser.value = "R"
    assert np.array_equal(band.y, 0.5 * r)


def test_r_over_rf_divides_by_the_film_stack_substrate(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = StackPanel(ctx)
    chooser = panel.curves.views.chooser
    assert chooser in panel.children
    r = np.array(panel.rq.data[0].y)
    q = ctx.stack.probe().q
    chooser.value = "R/RF"
    sub, amb = ctx.stack.stack.substrate, ctx.stack.stack.ambient
    np.testing.assert_allclose(panel.rq.data[0].y, r / fresnel(q, sub.sld, sub.isld, amb.sld), rtol=1e-12)
    panel.row(0, "sld").number.value = 4.0  # a new substrate: the normalisation follows it
    assert panel.wait_redrawn()
    r4 = np.asarray(reflectivity(ctx.stack.stack, ctx.stack.probe()))[0]
    np.testing.assert_allclose(panel.rq.data[0].y, r4 / fresnel(q, 4.0, sub.isld, amb.sld), rtol=1e-10)
    assert "substrate 4" in panel.rq.layout.yaxis.title.text
    chooser.value = "R"
    np.testing.assert_allclose(panel.rq.data[0].y, r4, rtol=1e-10)


def test_csv_of_a_chart_in_rq4_keeps_r_and_adds_the_view_columns():
    pair, _q, r, _dr = _pair()
    pair.views.chooser.value = "RQ4"
    rows = list(csv.reader(io.StringIO(chart_table_csv(pair.rq))))
    assert rows[0] == ["trace", "Q (Å⁻¹)", "R", "dR (1σ)", "R·Q⁴ (Å⁻⁴)", "R·Q⁴ error (1σ, Å⁻⁴)"]
    assert rows[3] == ["data", "0.05", "0.0001", "1e-05", "6.25e-10", "6.25e-11"]
    assert rows[5][:4] == ["fit", "0.01", "0.99", ""]  # a model curve has no error bar
    pair.views.chooser.value = "R/RF"
    rows = list(csv.reader(io.StringIO(chart_table_csv(pair.rq))))
    assert rows[0] == ["trace", "Q (Å⁻¹)", "R", "dR (1σ)", "R / R_F", "R / R_F error (1σ)", "R_F"]
    assert float(rows[2][6]) == pytest.approx(0.0056514348, rel=1e-8) and float(rows[2][2]) == 5e-3
    assert float(rows[2][4]) == pytest.approx(5e-3 / 0.0056514348, rel=1e-8)
    js = chart_export(pair.rq)
    assert js["view"] == "R / R_F" and js["fresnel_reference"]["substrate_sld"] == 2.07
    np.testing.assert_allclose(js["traces"][0]["r"], r, rtol=1e-12)
    pair.views.chooser.value = "R"
    assert chart_table_csv(pair.rq).splitlines()[0] == "trace,Q (Å⁻¹),R,dR (1σ)"  # the R column other programs read


def test_figures_for_files_draw_the_chosen_view():
    stack = FilmStack.default()
    probe = Probe(np.geomspace(0.01, 0.2, 30))
    r = np.asarray(reflectivity(stack, probe))[0]
    fig = stack_figure(stack, probe, view="RQ4")
    np.testing.assert_allclose(fig.data[0].y, r * probe.q**4, rtol=1e-12)
    assert fig.layout.yaxis.title.text == "R·Q⁴ (Å⁻⁴)"
    fig = curves_figure(probe.q, {"fit": r}, view="R/RF", reference=FresnelReference.of(stack))
    sub = stack.substrate
    np.testing.assert_allclose(fig.data[0].y, r / fresnel(probe.q, sub.sld, sub.isld, stack.ambient.sld))
    assert chart_table_csv(fig).splitlines()[0] == "trace,Q (Å⁻¹),R,R / R_F,R_F"


def test_cli_report_draws_the_view_asked_for(tmp_path, capsys):
    from workbench.cli.main import main  # the command line, in-process (no second interpreter on 2 cores)

    out = tmp_path / "report.html"
    assert main(["report", "--view", "R/RF", "--num-q", "50", "--out", str(out)]) == 0
    html = out.read_text().replace("\\u002f", "/")  # Plotly's JSON escapes "/"
    assert '"title":{"text":"R / R_F"}' in html and '"rq_view":"R/RF"' in html
    with pytest.raises(SystemExit):
        main(["report", "--view", "RQ2", "--out", str(out)])
    assert "invalid choice: 'RQ2'" in capsys.readouterr().err


def test_generated_curves_are_previewed_in_the_chosen_view(tmp_path):
    from workbench.ui.generate_panel import GeneratePanel  # only this test needs the Generate panel

    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = GeneratePanel(ctx)
    assert panel.views.chooser in panel.children
    panel.num_curves.value, panel.seed.value, panel.name.value = 20, 3, "views"
    panel.views.chooser.value = "RQ4"  # chosen before the curves exist: they arrive in it
    panel.start.click()
    assert panel.job.join(300) and panel.status.level == "ok", panel.status.text
    nr = np.asarray(panel.dataset.nr[:3], dtype=float)
    np.testing.assert_allclose(panel.rq.data[2].y, nr[2, 1] * nr[2, 0] ** 4, rtol=1e-12)
    panel.views.chooser.value = "R/RF"
    sub, amb = ctx.stack.stack.substrate, ctx.stack.stack.ambient
    np.testing.assert_allclose(panel.rq.data[0].y, nr[0, 1] / fresnel(nr[0, 0], sub.sld, sub.isld, amb.sld))
    panel.views.chooser.value = "R"
    assert np.array_equal(panel.rq.data[1].y, nr[1, 1])

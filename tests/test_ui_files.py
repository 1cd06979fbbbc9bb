"""Files panel: what an upload reports, lists that show a choice, and downloads that carry units and errors."""

from __future__ import annotations

import base64
import csv
import io
import re

import numpy as np
import pytest
import torch

from workbench.analysis.refine import refine
from workbench.data.measured import Measurement
from workbench.physics import FilmStack, Probe, reflectivity
from workbench.plots.refine import fit_figure
from workbench.ui.context import AppContext
from workbench.ui.files_panel import FilesPanel

REF_L = ("real", "ornl-ref-l-212592", "REFL_212592_reduced.txt")
FILM = FilmStack.from_pyreflect(
    [
        {"name": "Si", "sld": 2.07, "roughness": 3.0},
        {"name": "SiOx", "sld": 3.47, "thickness": 15.0, "roughness": 2.5},
        {"name": "dPS", "sld": 6.2, "thickness": 180.0, "roughness": 6.0},
        {"name": "air", "sld": 0.0},
    ]
)


def link_payload(html: str, filename: str) -> bytes:
    m = re.search(rf'download="{re.escape(filename)}" href="data:[^;]+;base64,([^"]+)"', html)
    assert m, html[:300]
    return base64.b64decode(m.group(1))


def test_upload_of_the_ref_l_file_reports_points_q_range_dq_and_merged_duplicates(tmp_path, shared_data):
    panel = FilesPanel(AppContext(tmp_path / "ws", autosave_delay=0))
    lines = panel.handle([(REF_L[-1], shared_data.joinpath(*REF_L).read_bytes())])
    assert panel.status.level == "ok", panel.status.text
    [line] = lines
    stored, note = line.split(".txt: ", 1)  # "measured curve → <path>.txt: <what was read>"
    assert stored.startswith("measured curve → ")
    # 416 rows, 66 of them at a Q already listed (stitched angles overlap), 2 with R ≤ 0 (background subtracted)
    assert note.startswith("REFL_212592_reduced.txt: 416 rows → 350 points (66 duplicate Q merged")
    assert "Q 0.008347–0.269 Å⁻¹" in note and "dQ column FWHM (the header says so)" in note and "1σ" in note
    assert "2 points with R ≤ 0 kept for fits, not drawn on the log axis" in note
    assert note in panel.status.text and "66 duplicate Q merged" in panel.uploaded.value


def test_lists_show_a_choice_and_empty_clicks_say_what_to_choose(tmp_path):
    from workbench.models.parity_cnn import ParityCNN
    from workbench.store.model_bundle import save_model_bundle

    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = FilesPanel(ctx)
    panel.export.click()
    assert panel.status.level == "error" and "open a tab with a chart" in panel.status.text
    panel.zip.click()
    assert panel.status.level == "error" and "no model bundle in the workspace yet" in panel.status.text
    panel.refined.click()
    assert panel.status.level == "error" and "refine a prediction in the Refine tab first" in panel.status.text
    torch.manual_seed(0)
    model = ParityCNN(layers=2, kernel_size=3, dropout=0.1, n_q=16, n_z=20)
    save_model_bundle(ctx.workspace.models / "b1", model, task="nr_sld", normalization={"x": {}}, name="b1")
    q = np.geomspace(0.01, 0.1, 5)
    ctx.charts.update(
        {"a chart": fit_figure(q, q**-4 * 1e-8, None, {}), "another": fit_figure(q, q**-4 * 1e-8, None, {})}
    )
    panel.on_shown()
    # options present and one of them shown: the lists never look empty (value None with options)
    assert panel.model.value == str(ctx.workspace.models / "b1") and panel.chart.value == "a chart"
    panel.chart.value = "another"
    panel.on_shown()
    assert panel.chart.value == "another"  # a refresh keeps the choice
    panel.chart.value = None
    panel.export.click()
    assert panel.status.level == "error" and "choose a chart in the 'chart' list first" in panel.status.text


def test_chart_csv_has_units_in_its_header_and_dr_where_the_trace_has_error_bars(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    q = np.array([0.01, 0.02, 0.05])
    r, dr = np.array([0.9, 0.02, 1e-4]), np.array([0.05, 0.001, 2e-5])
    ctx.charts["measured fit"] = fit_figure(q, r, dr, {"fit": np.array([0.95, 0.021, 1.1e-4])})
    panel = FilesPanel(ctx)
    panel.export.click()
    assert panel.status.level == "ok", panel.status.text
    rows = list(csv.reader(io.StringIO(link_payload(panel.links.value, "measured-fit.csv").decode())))
    assert rows[0] == ["trace", "Q (Å⁻¹)", "R", "dR (1σ)"]
    assert rows[1:4] == [
        ["data", "0.01", "0.9", "0.05"],
        ["data", "0.02", "0.02", "0.001"],
        ["data", "0.05", "0.0001", "2e-05"],
    ]
    assert rows[4] == ["fit", "0.01", "0.95", ""]  # a model curve has no error bar
    js = link_payload(panel.links.value, "measured-fit.json").decode()
    assert '"x_title": "Q (\\u00c5\\u207b\\u00b9)"' in js and '"dy"' in js


def test_refined_parameters_export_with_units_and_one_sigma(tmp_path):
    probe = Probe(np.geomspace(0.008, 0.2, 200), dq_over_q=0.03)
    r = reflectivity(FILM, probe, engine="torch").numpy()[0]
    rng = np.random.default_rng(3)
    dr = 0.03 * r + 1e-7
    data = Measurement(
        q=probe.q, r=r + rng.standard_normal(r.size) * dr, dr=dr, dq_sigma=probe.sigma, source="synthetic"
    )
    start = FILM.with_value(2, "thickness", 170.0).with_value(2, "sld", 6.0)
    free = ["dPS.thickness", "dPS.sld", "dPS.roughness"]
    bounds = {"dPS.thickness": (150.0, 210.0), "dPS.sld": (5.0, 7.0), "dPS.roughness": (1.0, 15.0)}
    result = refine(data, start, free=free, bounds=bounds)
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = FilesPanel(ctx)
    ctx.announce(refined=result)
    panel.refined.click()
    assert panel.status.level == "ok" and "3 parameters ± 1σ" in panel.status.text, panel.status.text
    rows = list(csv.DictReader(io.StringIO(link_payload(panel.links.value, "refined-parameters.csv").decode())))
    assert [(row["parameter"], row["unit"]) for row in rows] == [
        ("dPS.thickness", "Å"),
        ("dPS.sld", "10⁻⁶ Å⁻²"),
        ("dPS.roughness", "Å"),
    ]
    assert list(rows[0]) == ["parameter", "unit", "value", "uncertainty (1σ)", "lower bound", "upper bound", "note"]
    for row, name, value, sigma in zip(rows, result.names, result.values, result.uncertainties):
        assert float(row["value"]) == pytest.approx(value, rel=1e-7)
        assert float(row["uncertainty (1σ)"]) == pytest.approx(sigma, rel=1e-3) and sigma > 0
        assert (float(row["lower bound"]), float(row["upper bound"])) == bounds[name]
    assert abs(float(rows[0]["value"]) - 180.0) < 3 * float(rows[0]["uncertainty (1σ)"])  # the truth within 3σ

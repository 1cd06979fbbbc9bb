"""Shipped notebooks run headless through papermill with small parameters."""

from __future__ import annotations

import json
from pathlib import Path

import papermill

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def test_notebooks_are_committed_without_outputs():
    for path in NOTEBOOKS.glob("*.ipynb"):
        nb = json.loads(path.read_text())
        assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), path.name
        assert any("parameters" in c["metadata"].get("tags", []) for c in nb["cells"]), (
            f"{path.name} has no parameters cell"
        )


def test_quickstart_runs_with_papermill(tmp_path):
    summary = tmp_path / "summary.json"
    papermill.execute_notebook(
        str(NOTEBOOKS / "quickstart.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters={"num_curves": 64, "seed": 3, "out_dir": str(tmp_path / "run"), "summary_path": str(summary)},
        kernel_name="python3",
        progress_bar=False,
    )
    data = json.loads(summary.read_text())
    assert data["curves"] == 64 and data["nr_shape"] == [64, 2, 308] and data["sld_shape"] == [64, 2, 900]
    assert data["max_rel_error_vs_refl1d"] < 1e-10


def test_refinement_demo_meets_its_criteria_and_fails_when_it_cannot(tmp_path):
    summary = tmp_path / "summary.json"
    papermill.execute_notebook(
        str(NOTEBOOKS / "refinement_demo.ipynb"),
        str(tmp_path / "out.ipynb"),
        parameters={"seed": 3, "noise": 0.03, "n_draws": 200, "summary_path": str(summary)},
        kernel_name="python3",
        progress_bar=False,
    )
    data = json.loads(summary.read_text())
    assert all(data["criteria"].values()) and 0.8 <= data["chi2_per_point"] <= 1.2
    assert data["loss_drop"] > 10 and {row["parameter"] for row in data["table"]} >= {"dPS.thickness", "PMMA.sld"}
    out = json.loads((tmp_path / "out.ipynb").read_text())
    figures = [
        o for c in out["cells"] for o in c.get("outputs", []) if "application/vnd.plotly.v1+json" in o.get("data", {})
    ]
    # curves, convergence, traces, profile band; the thick film in R·Q⁴; each of the three contrasts in R/R_F
    assert len(figures) == 8
    views = [f["data"]["application/vnd.plotly.v1+json"]["layout"].get("meta", {}).get("rq_view") for f in figures]
    assert views.count("RQ4") == 1 and views.count("R/RF") == 3
    found, local = data["global_search"]["thickness"], data["global_search"]["local_thickness"]
    assert abs(found - 1400) < 1.4 and abs(local - 1400) > 1.4  # DE finds the film a local fit from the centre misses
    assert data["corefine"]["shared"] == ["oxide.thickness", "lipid.sld", "lipid.thickness", "lipid.roughness"]

    # an engine that does not exist: the notebook stops with the refinement's own error
    import pytest

    with pytest.raises(papermill.PapermillExecutionError, match="unknown engine 'magic'"):
        papermill.execute_notebook(
            str(NOTEBOOKS / "refinement_demo.ipynb"),
            str(tmp_path / "bad.ipynb"),
            parameters={"engine": "magic"},
            kernel_name="python3",
            progress_bar=False,
        )

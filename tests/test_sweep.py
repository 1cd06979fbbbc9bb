"""Sweeps: parameter sets, a 4-run sweep of the pipeline notebook on a 2-worker LocalCluster with one
failing run, re-runs that skip the done ones, and the Sweep panel driving a real sweep."""

from __future__ import annotations

import json
import time
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from workbench.batch.notebooks import shipped_notebook
from workbench.batch.sweep import grid, parameter_sets_from_mapping, run_key, run_sweep, sweep_results
from workbench.events import Progress, Record, Reporter, Warning_
from workbench.store.workspace import Workspace


def toy_notebook(path: Path) -> Path:
    """A notebook with typed parameters that squares x, or raises when fail is true."""
    params = new_code_cell(
        'x: int = 1  # a value\nfail: bool = False  # raise instead\nsummary_path: str = "s.json"', id="params"
    )
    params.metadata["tags"] = ["parameters"]
    body = new_code_cell(
        "import json, pathlib\nif fail:\n    raise ValueError(f'x={x} is not allowed')\n"
        "pathlib.Path(summary_path).write_text(json.dumps({'metrics': {'square': x * x}}))",
        id="body",
    )
    nbformat.write(
        new_notebook(
            cells=[params, body],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        ),
        path,
    )
    return path


def test_grid_and_sweep_files_expand_to_parameter_sets():
    assert grid({"a": [1, 2], "b": ["x", "y"]}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]
    sets = parameter_sets_from_mapping(
        {"grid": {"lr": [0.1, 0.2]}, "runs": [{"lr": 0.5, "layers": 3}], "fixed": {"epochs": 2}}
    )
    assert sets == [{"epochs": 2, "lr": 0.1}, {"epochs": 2, "lr": 0.2}, {"epochs": 2, "lr": 0.5, "layers": 3}]
    with pytest.raises(ValueError, match=r"unknown key.*gird"):
        parameter_sets_from_mapping({"gird": {"lr": [1]}})
    with pytest.raises(ValueError, match="non-empty list"):
        grid({"lr": []})
    # the key ignores order and int/float spelling, and tells different values apart
    assert run_key({"a": 1, "b": 2.0}) == run_key({"b": 2, "a": 1.0})
    assert run_key({"a": 1}) != run_key({"a": 2})


def test_unknown_or_mistyped_parameters_are_refused_before_anything_runs(tmp_path):
    nb = toy_notebook(tmp_path / "toy.ipynb")
    with pytest.raises(ValueError, match="has no parameter 'y'; its parameters: x, fail, summary_path"):
        run_sweep(nb, [{"y": 1}], tmp_path / "sweep")
    with pytest.raises(ValueError, match="parameter 'x' is an int; got 'two'"):
        run_sweep(nb, [{"x": "two"}], tmp_path / "sweep")
    assert not (tmp_path / "sweep" / "sweep.json").exists()


@pytest.mark.slow
def test_pipeline_sweep_with_a_failing_run_then_a_rerun_skips_the_done_ones(tmp_path):
    ws = tmp_path / "ws"
    fixed = {"num_curves": 128, "epochs": 1, "workspace": str(ws), "seed": 3}
    sets = [{**fixed, "learning_rate": lr, "layers": layers} for lr, layers in ((1e-3, 1), (3e-3, 1), (1e-3, 2))]
    sets.insert(2, {**fixed, "learning_rate": -1.0, "layers": 1})  # invalid: the notebook raises before any work
    events = []
    result = run_sweep(
        shipped_notebook("pipeline"), sets, tmp_path / "sweep", workers=2, reporter=Reporter([events.append])
    )

    assert [r["status"] for r in result.runs] == ["completed", "completed", "failed", "completed"]
    bad = result.runs[2]
    assert "learning_rate" in bad["error"] and "greater than 0" in bad["error"]
    kept = nbformat.read(bad["output"], as_version=4)  # the failing run's notebook is kept, with the traceback
    assert any(o.get("ename") == "ValueError" for c in kept.cells for o in c.get("outputs", []))
    assert any(isinstance(e, Warning_) and "learning_rate" in e.message for e in events)
    statuses = [e.data["status"] for e in events if isinstance(e, Record) and e.name == "run"]
    assert statuses.count("queued") == 4 and statuses.count("running") == 4 and statuses.count("completed") == 3
    assert [e.done for e in events if isinstance(e, Progress)][-1] == 4

    # results: table, CSV, chart; each completed run's summary names its registry run, which holds its epochs
    frame = pd.read_csv(result.csv)
    assert list(frame["status"]) == ["completed", "completed", "failed", "completed"]
    assert frame.loc[frame.status == "completed", "best_val_loss"].gt(0).all()
    assert "Plotly.newPlot" in result.chart.read_text()
    registry = Workspace(ws).registry
    for run in result.completed:
        summary = json.loads(Path(run["summary_path"]).read_text())
        row = registry.get_run(summary["run_id"])
        assert row.status == "completed" and row.kind == "train" and len(registry.epochs(row.id)) == 1
        assert row.params["train"]["learning_rate"] == run["params"]["learning_rate"]
        assert Path(summary["paths"]["model"], "config.json").is_file()
    assert len(registry.list_runs(kind="train")) == 3  # the failing run recorded no training

    # re-run: the three completed runs are skipped, only the failing one runs again
    events.clear()
    again = run_sweep(
        shipped_notebook("pipeline"), sets, tmp_path / "sweep", workers=2, reporter=Reporter([events.append])
    )
    assert sorted(again.skipped) == sorted(r["key"] for r in result.completed)
    assert again.executed == [bad["key"]] and again.runs[2]["status"] == "failed"
    assert len(registry.list_runs(kind="train")) == 3
    assert list(sweep_results(tmp_path / "sweep")["status"]).count("completed") == 3


def test_sweep_panel_runs_a_grid_and_shows_each_run(tmp_path):
    from workbench.ui.sweep_panel import SweepPanel

    nb = toy_notebook(tmp_path / "toy.ipynb")
    panel = SweepPanel(workspace=Workspace(tmp_path / "ws"), notebooks={"toy.ipynb": nb}, workers=2, processes=False)
    panel.spec.value = "x: [1, 2, 3]\nfail: false\n"
    panel.name.value = "squares"
    panel.run_button.click()
    assert panel.job.join(timeout=240), "the sweep did not finish"
    assert panel.status.level == "ok", panel.status.text
    assert panel.progress.value == 3 and panel.progress.max == 3
    assert panel.table.value.count("completed") == 3
    ys = sorted(y for trace in panel.figure.data for y in trace.y)
    assert ys == [1, 4, 9]  # the chart shows each run's metric
    assert (tmp_path / "ws" / "sweeps" / "squares" / "results.csv").is_file()

    # a failing run is shown in red with its error; the done ones are skipped
    panel.spec.value = "x: [1, 2, 3, 4]\nfail: false\n"
    panel.run_button.click()
    assert panel.job.join(timeout=240)
    assert panel.table.value.count("skipped") == 3 and panel.table.value.count(">completed<") == 1
    panel.spec.value = "x: [5]\nfail: true\n"
    panel.run_button.click()
    assert panel.job.join(timeout=240)
    assert panel.status.level == "warn" and "1 failed" in panel.status.text
    assert "x=5 is not allowed" in panel.table.value


def test_sweep_panel_refuses_bad_input_with_a_message(tmp_path):
    from workbench.ui.sweep_panel import SweepPanel

    nb = toy_notebook(tmp_path / "toy.ipynb")
    panel = SweepPanel(workspace=Workspace(tmp_path / "ws"), notebooks={"toy.ipynb": nb}, max_runs=4)
    panel.spec.value = "x: [1, 2, 3, 4, 5]"
    panel.run_button.click()
    assert panel.status.level == "error" and "more than this dashboard allows" in panel.status.text
    panel.spec.value = "x: [1, 2"
    panel.run_button.click()
    assert panel.status.level == "error" and "not valid YAML" in panel.status.text
    panel.spec.value = "y: [1]"
    panel.run_button.click()
    assert panel.status.level == "error" and "no parameter 'y'" in panel.status.text
    assert panel.job is None or not panel.job.running
    time.sleep(0)  # nothing was started

"""The pipeline notebook run headless by papermill: JSON summary, registry rows, files on disk."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import papermill
import pytest

from workbench.batch.notebooks import shipped_notebook
from workbench.batch.runner import notebook_parameters, run_notebook
from workbench.store.model_bundle import load_model_bundle
from workbench.store.workspace import Workspace


def test_pipeline_parameters_are_typed_annotated_and_cheap():
    params = notebook_parameters(shipped_notebook("pipeline"))
    assert {
        "num_curves",
        "epochs",
        "learning_rate",
        "layers",
        "dropout",
        "batch_size",
        "kernel_size",
        "workspace",
        "summary_path",
    } <= set(params)
    assert all(p["inferred_type_name"] in ("int", "float", "str") and p["help"] for p in params.values())
    assert int(params["num_curves"]["default"]) <= 256 and int(params["epochs"]["default"]) <= 2
    nb = nbformat.read(shipped_notebook("pipeline"), as_version=4)
    assert all(c.get("id") for c in nb.cells)
    assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.mark.slow
def test_pipeline_generates_trains_predicts_and_records_the_runs(tmp_path):
    summary_path = tmp_path / "summary.json"
    papermill.execute_notebook(
        str(shipped_notebook("pipeline")),
        str(tmp_path / "out.ipynb"),
        kernel_name="python3",
        progress_bar=False,
        parameters={
            "num_curves": 128,
            "epochs": 2,
            "layers": 1,
            "seed": 4,
            "workspace": str(tmp_path / "ws"),
            "summary_path": str(summary_path),
            "name": "nb-test",
        },
    )
    summary = json.loads(summary_path.read_text())
    assert summary["status"] == "completed"
    m = summary["metrics"]
    assert m["epochs_done"] == 2 and m["best_val_loss"] > 0 and m["predict_curves"] == m["test_curves"] > 0
    assert m["predict_sld_rmse"] > 0 and m["sld_mae"] > 0
    ws = Workspace(tmp_path / "ws")
    registry = ws.registry
    train = registry.get_run(summary["run_id"])
    assert train.kind == "train" and train.status == "completed" and train.name == "nb-test"
    assert train.metrics["best_val_loss"] == pytest.approx(m["best_val_loss"])
    assert [e["epoch"] for e in registry.epochs(train.id)] == [1, 2]
    assert train.dataset_hash == summary["dataset_hash"]
    generate = registry.get_run(summary["run_ids"]["generate"])
    assert generate.kind == "generate" and generate.status == "completed" and generate.metrics["curves"] == 128
    models = [x for x in registry.list_models() if x["name"] == "nb-test"]
    assert models and models[0]["version"] == summary["model"]["version"] and models[0]["run_id"] == train.id
    bundle = load_model_bundle(summary["paths"]["model"])
    assert Path(summary["paths"]["dataset"]).is_relative_to(ws.datasets) and bundle.task == "nr_sld"


@pytest.mark.slow
def test_pipeline_with_a_bad_setting_fails_before_any_work_and_records_nothing(tmp_path):
    run = run_notebook(
        shipped_notebook("pipeline"),
        tmp_path / "out.ipynb",
        {"epochs": 0, "workspace": str(tmp_path / "ws")},
        summary_path=tmp_path / "s.json",
    )
    assert run.status == "failed" and "epochs" in run.error and "greater than or equal to 1" in run.error
    assert (tmp_path / "out.ipynb").is_file() and not (tmp_path / "s.json").exists()
    assert not (tmp_path / "ws").exists()  # validated before the workspace was opened

"""A first visit says what comes before each step instead of showing empty choosers."""

from __future__ import annotations

import numpy as np

from workbench.ui.context import AppContext
from workbench.ui.predict_panel import PredictPanel
from workbench.ui.train_panel import TrainPanel


def test_empty_workspace_points_to_the_step_before(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    train, predict = TrainPanel(ctx), PredictPanel(ctx)
    assert "No data set yet" in train.status.text and "Generate tab" in train.status.text
    assert "No model yet" in predict.status.text and "Train tab" in predict.status.text
    train.model_kind.value = "chi"  # the χ model reads a folder, not a generated data set
    train.refresh_datasets()
    assert "No data set yet" not in train.status.text


def test_the_loop_strip_ticks_off_what_this_workspace_has_done(tmp_path):
    from workbench.store.recorded import recorded_run
    from workbench.ui.app import Workbench

    wb = Workbench(tmp_path / "ws")
    steps = wb.steps
    assert steps.buttons["stack"].icon == "check" and steps.buttons["generate"].icon == ""
    assert steps.buttons["generate"].button_style == "info" and "next: <b>Generate" in steps.note.value
    steps.buttons["train"].click()  # each step opens its tab
    assert wb.selected_index == 3 and "wb-train-panel" in wb.train._dom_classes
    folder = wb.ctx.workspace.datasets / "set-a"
    folder.mkdir(parents=True)
    np.save(folder / "nr_train.npy", np.zeros((1, 2, 3)))  # what makes a folder a data set for the context
    wb.ctx.announce(dataset=folder)
    assert steps.buttons["generate"].icon == "check" and "next: <b>Train" in steps.note.value
    with recorded_run(wb.ctx.registry(), "predict", params={}) as run:
        run.metrics["r2"] = 0.9
    wb.ctx.runs_changed()
    assert steps.done()["predict"] and not steps.done()["refine"]

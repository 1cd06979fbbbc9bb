"""A first visit says what comes before each step instead of showing empty choosers."""

from __future__ import annotations

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

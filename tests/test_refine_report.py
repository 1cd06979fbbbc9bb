"""The Refine panel's report of a finished fit: points left out, parameters at a bound, undetermined ones."""

from __future__ import annotations

from test_refine import OXIDE_BOUNDS, _oxide_data, _oxide_start

from workbench.analysis.refine import refine
from workbench.ui.context import AppContext
from workbench.ui.refine_panel import RefinePanel


def test_the_panel_says_what_the_numbers_cannot_tell(tmp_path):
    bounds = dict(OXIDE_BOUNDS, **{"oxide.thickness": (1100.0, 1200.0)})
    start = _oxide_start().with_value(1, "thickness", 1190.0)
    result = refine(_oxide_data(), start, free=list(bounds), bounds=bounds)
    panel = RefinePanel(AppContext(tmp_path / "ws", autosave_delay=0))
    panel._done(result)  # what the worker thread's on_done runs with a finished fit
    assert panel.status.level == "warn" and "poor fit" in panel.status.text  # not a success
    assert "1 point without an error bar left out" in panel.status.text
    assert "at a bound (oxide.thickness" in panel.status.text and "widen the bound" in panel.status.text
    table = panel.table.value
    assert "249 points, 1 left out (no error bar)" in table
    assert "at upper bound" in table  # the flag column of the parameter table
    assert "is at its upper bound 1200" in table and "widen the bound" in table

"""The panels' charts: a Plotly FigureWidget that ships a small module and shares Plotly's bundle per kernel."""

from __future__ import annotations

from pathlib import Path

import plotly
import plotly.graph_objects as go

from workbench.ui.chart_widget import ChartWidget, PlotlyBundle, shared_bundle
from workbench.ui.context import AppContext
from workbench.ui.stack_panel import StackPanel

PLOTLY_BUNDLE = Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"


def test_charts_ship_a_small_module_and_share_one_plotly_bundle():
    first = ChartWidget(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])))
    second = ChartWidget()
    plain = go.FigureWidget(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])))
    assert len(first._esm) < 10_000 and len(plain._esm) > 4_000_000
    assert first.data[0].y == (3, 4)  # otherwise a FigureWidget like any other
    bundle = shared_bundle()
    assert isinstance(bundle, PlotlyBundle) and bundle.source == PLOTLY_BUNDLE.read_text(encoding="utf-8") == plain._esm
    # the browser finds the bundle through a model reference in each chart's state
    assert first.get_state()["_plotly_bundle"] == second.get_state()["_plotly_bundle"] == f"IPY_MODEL_{bundle.model_id}"
    old = bundle.model_id
    bundle.close()  # e.g. Widget.close_all(): the next chart gets a live one
    third = ChartWidget()
    assert third.get_state()["_plotly_bundle"] == f"IPY_MODEL_{shared_bundle().model_id}" != f"IPY_MODEL_{old}"


def test_the_panels_draw_on_chart_widgets(tmp_path):
    panel = StackPanel(AppContext(tmp_path / "ws", autosave_delay=0))
    assert isinstance(panel.rq, ChartWidget) and isinstance(panel.sld, ChartWidget)

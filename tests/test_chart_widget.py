"""The panels' charts: a Plotly FigureWidget that ships a small module and hands Plotly's bundle over on request."""

from __future__ import annotations

from pathlib import Path

import plotly
import plotly.graph_objects as go

from workbench.ui.chart_widget import REPLY, REQUEST, ChartWidget
from workbench.ui.context import AppContext
from workbench.ui.stack_panel import StackPanel

PLOTLY_BUNDLE = Path(plotly.__file__).parent / "package_data" / "widgetbundle.js"


def _sent(widget: ChartWidget, monkeypatch) -> list:
    sent: list = []
    monkeypatch.setattr(widget, "send", lambda content, buffers=None: sent.append(content))
    return sent


def test_a_chart_ships_a_small_module_and_sends_plotlys_bundle_when_asked(monkeypatch):
    chart = ChartWidget(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])))
    plain = go.FigureWidget(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])))
    assert len(chart._esm) < 10_000 and len(plain._esm) > 4_000_000
    assert chart.data[0].y == (3, 4)  # otherwise a FigureWidget like any other
    sent = _sent(chart, monkeypatch)
    chart._handle_custom_msg({"type": "something else"}, [])
    assert sent == []
    chart._handle_custom_msg({"type": REQUEST}, [])
    assert len(sent) == 1 and sent[0]["type"] == REPLY
    assert sent[0]["source"] == PLOTLY_BUNDLE.read_text(encoding="utf-8") == plain._esm


def test_the_panels_draw_on_chart_widgets(tmp_path):
    panel = StackPanel(AppContext(tmp_path / "ws", autosave_delay=0))
    assert isinstance(panel.rq, ChartWidget) and isinstance(panel.sld, ChartWidget)

"""Plotly charts for the panels: a ``go.FigureWidget`` whose browser side loads once per page.

Plotly's own FigureWidget sends its ~5 MB JavaScript bundle with every chart, and anywidget gives
each chart 2 s to parse it; on a loaded machine the chart then ignores every later update. A
``ChartWidget`` sends a small module instead (``static/chart_widget.js``) that binds at once and asks
the kernel for Plotly's bundle once per page. Everything else is Plotly's FigureWidget unchanged.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.basewidget import BaseFigureWidget

REQUEST = "workbench:plotly-bundle?"
REPLY = "workbench:plotly-bundle"


@functools.cache
def plotly_bundle() -> str:
    """The JavaScript module Plotly's FigureWidget would send with every chart."""
    return str(BaseFigureWidget.__dict__["_esm"])


class ChartWidget(go.FigureWidget):
    """A Plotly FigureWidget whose browser code is fetched from the kernel once per page."""

    _esm = Path(__file__).with_name("static") / "chart_widget.js"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_msg(self._answer_bundle_request)

    def _answer_bundle_request(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("type") == REQUEST:
            self.send({"type": REPLY, "source": plotly_bundle()})

"""Plotly charts for the panels: a ``go.FigureWidget`` whose browser side loads once per page.

Plotly's own FigureWidget sends its ~5 MB JavaScript bundle with every chart, and anywidget gives
each chart 2 s to parse it; on a loaded machine the chart then ignores every later update. A
``ChartWidget`` sends a small module instead (``static/chart_widget.js``) that binds at once. The
bundle travels once per kernel as the state of one plain widget (:class:`PlotlyBundle`) that every
chart refers to, so the browser needs no round trip to a possibly busy kernel to draw. Everything
else is Plotly's FigureWidget unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as W
import plotly.graph_objects as go
import traitlets
from plotly.basewidget import BaseFigureWidget

from ..plots.style import error_bars, update_placeholder


@functools.cache
def plotly_bundle() -> str:
    """The JavaScript module Plotly's FigureWidget would send with every chart."""
    return str(BaseFigureWidget.__dict__["_esm"])


class PlotlyBundle(W.Widget):
    """Plotly's widget module as the state of one plain widget model (no view), shared by all charts."""

    source = traitlets.Unicode().tag(sync=True)


_shared: PlotlyBundle | None = None


def shared_bundle() -> PlotlyBundle:
    """This kernel's PlotlyBundle (a new one if it was closed, e.g. by ``Widget.close_all()``)."""
    global _shared
    if _shared is None or _shared.comm is None:
        _shared = PlotlyBundle(source=plotly_bundle())
    return _shared


class ChartWidget(go.FigureWidget):
    """A Plotly FigureWidget whose browser code comes once per page from a shared :class:`PlotlyBundle`."""

    _esm = Path(__file__).with_name("static") / "chart_widget.js"
    _plotly_bundle = traitlets.Instance(PlotlyBundle).tag(sync=True, **W.widget_serialization)

    @traitlets.default("_plotly_bundle")
    def _default_bundle(self) -> PlotlyBundle:
        return shared_bundle()

    def get_state(self, key: str | list[str] | None = None, drop_defaults: bool = False) -> dict[str, Any]:
        """The widget state; the full state (a page opening the chart) carries the figure as it is now.

        Plotly's FigureWidget syncs ``_widget_data`` / ``_widget_layout`` once, at creation, and sends
        every later change as a one-shot ``_py2js_*`` message.  A page that opens after those
        messages went out (every Voilà page: the Film stack draws while the notebook runs) got the
        empty first traces, so the chart showed no line until the next edit.  Here a full-state
        request answers with the current traces and layout, and no stale one-shot message.
        """
        state = super().get_state(key=key, drop_defaults=drop_defaults)
        if key is None and "_data" in self.__dict__:  # not while the figure is still being built
            for name, value in (("_widget_data", self._data), ("_widget_layout", self._layout)):
                to_json = self.trait_metadata(name, "to_json") or self._trait_to_json
                state[name] = to_json(value, self)
            for name in [n for n in state if n.startswith("_py2js_")]:
                state[name] = None
        return state

    def trace(self, key: str) -> Any:
        """The trace whose ``meta`` (a stable key) or, failing that, legend name is ``key``."""
        for trace in self.data:
            if trace.meta == key:
                return trace
        for trace in self.data:
            if trace.name == key:
                return trace
        raise KeyError(f"no trace {key!r}; the chart has {[t.meta or t.name for t in self.data]}")

    def set_traces(self, values: Mapping[str, Sequence[Any] | Mapping[str, Any]]) -> None:
        """Replace traces' data by key in one message: ``{"fit": (q, r)}`` or ``{"data": (q, r, "ground truth")}``.

        A third item renames the trace in the legend; its key stays.  An empty ``(x, y)`` hides a trace.
        A mapping ``{"x": q, "y": r, "dy": dr, "name": ...}`` also sets error bars (``dy``; None: none).
        """
        with self.batch_update():
            for key, value in values.items():
                trace = self.trace(key)
                if isinstance(value, Mapping):
                    trace.x, trace.y = value["x"], value["y"]
                    trace.error_y = error_bars(value.get("dy"))
                    if value.get("name"):
                        trace.name = value["name"]
                    continue
                trace.x, trace.y = value[0], value[1]
                if trace.error_y.visible:  # error bars of an earlier curve no longer match
                    trace.error_y = error_bars(None)
                if len(value) > 2:
                    trace.name = value[2]
        update_placeholder(self)  # after the batch: inside it, traces still read their old data

    def add_traces(self, *args: Any, **kwargs: Any) -> Any:
        """Plotly's ``add_traces``; an empty chart's "no data yet" mark goes once a trace has points."""
        out = super().add_traces(*args, **kwargs)
        update_placeholder(self)
        return out

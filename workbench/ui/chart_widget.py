"""Plotly charts for the panels: a ``go.FigureWidget`` whose browser side is small and loads Plotly once per page.

Plotly's own FigureWidget sends its ~5 MB JavaScript bundle (all of plotly.js and its widget) with every
chart; anywidget gives each chart 2 s to parse it, and on a 2-core machine the parse held the page's main
thread for 1.5–2.8 s.  A ``ChartWidget`` sends a small module instead (``static/chart_widget.js``: plotly.py's
widget messages applied with plotly.js calls) that binds at once and imports Plotly's *basic* bundle
(scatter, bar and pie traces — all the panels draw — ~1.2 MB, ``static/plotly-basic.min.js``, the plotly.js
version plotly.py is built for, MIT-licensed: ``static/plotly-basic.LICENSE``) once per page from a static file
the Jupyter server serves (Voilà's and JupyterLab's ``labextensions`` route): its name carries the bundle's
content hash, so the browser keeps it across pages and sessions and only revalidates it (HTTP 304).  The file
is written by the kernel, once per bundle, into the user's Jupyter data folder.  Where the server cannot serve
it, the page asks the kernel for the bundle over the widget's comm instead.  The Python side is Plotly's
FigureWidget.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as W
import traitlets
from jupyter_core.paths import jupyter_data_dir

from ..fileio import write_text_atomic
from ..lazy_import import defer_import

defer_import("nbformat")  # before plotly, which imports it for renderers the panels never use

import plotly.graph_objects as go  # noqa: E402 - after the deferral above

from ..plots.style import error_bars, update_placeholder  # noqa: E402

BUNDLE_PACKAGE = "workbench-plotly"  # a folder under labextensions/: not a JupyterLab extension, only files


BASIC_BUNDLE = Path(__file__).with_name("static") / "plotly-basic.min.js"
TRACE_TYPES = frozenset({"scatter", "bar", "pie"})  # what the basic bundle draws


@functools.cache
def plotly_bundle() -> str:
    """plotly.js's basic bundle (it sets ``window.Plotly``), as the page imports it."""
    return BASIC_BUNDLE.read_text(encoding="utf-8")


@functools.cache
def bundle_digest() -> str:
    return hashlib.sha256(plotly_bundle().encode()).hexdigest()[:16]


MANIFEST = "current.json"  # {"path": ...}: which bundle file is current, for the page's early import


def publish_bundle(data_dir: Path | None = None) -> str:
    """Write the basic bundle where the Jupyter server serves static files; returns its path under ``labextensions/``.

    ``data_dir`` defaults to the user's Jupyter data folder (``JUPYTER_DATA_DIR``, else ``~/.local/share/jupyter``),
    which Voilà and JupyterLab search for ``labextensions``.  The name holds the content hash: an existing file
    is never rewritten, and a new Plotly version gets a new name.  A small manifest beside it
    (:data:`MANIFEST`) names the current file, so the dashboard's template can start importing the bundle
    while the kernel still runs the notebook (``workbench start`` publishes before serving).  Returns "" when
    the folder is not writable (the page then asks the kernel for the bundle).
    """
    name = f"plotly-{bundle_digest()}.js"
    folder = Path(data_dir or jupyter_data_dir()) / "labextensions" / BUNDLE_PACKAGE / "static"
    target = folder / name
    path = f"{BUNDLE_PACKAGE}/static/{name}?v={bundle_digest()}"
    manifest = json.dumps({"path": path})
    try:
        if not target.is_file():
            write_text_atomic(target, plotly_bundle())
        current = folder / MANIFEST
        if not current.is_file() or current.read_text() != manifest:
            write_text_atomic(current, manifest)
    except OSError:
        return ""
    return path


class PlotlyBundle(W.Widget):
    """Where a page finds Plotly's basic bundle, shared by all charts of a kernel (a plain model, no view).

    ``path``: the bundle's static file under the server's ``labextensions`` URL.  ``source``: empty until a
    page that could not load the file asks for it (message ``{"request": "source"}``).
    """

    path = traitlets.Unicode().tag(sync=True)
    source = traitlets.Unicode().tag(sync=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._answer)

    def _answer(self, _widget: W.Widget, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("request") == "source" and not self.source:
            self.source = plotly_bundle()


_shared: PlotlyBundle | None = None


def shared_bundle() -> PlotlyBundle:
    """This kernel's PlotlyBundle (a new one if it was closed, e.g. by ``Widget.close_all()``)."""
    global _shared
    if _shared is None or _shared.comm is None:
        _shared = PlotlyBundle(path=publish_bundle())
    return _shared


def _check_trace_types(traces: Sequence[Any]) -> None:
    """Refuse a trace the page's basic bundle cannot draw, by name, instead of a blank chart in the browser."""
    other = sorted({t.type for t in traces} - TRACE_TYPES)
    if other:
        raise ValueError(
            f"ChartWidget draws {', '.join(sorted(TRACE_TYPES))} traces (Plotly's basic bundle), not "
            f"{', '.join(other)}; use go.FigureWidget for other trace types"
        )


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _check_trace_types(self.data)

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
        _check_trace_types(self.data)
        update_placeholder(self)
        return out

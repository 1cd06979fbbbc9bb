"""The panels' charts: a Plotly FigureWidget that ships a small module and shares Plotly's bundle per kernel."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go
import pytest
from jupyter_core.paths import jupyter_data_dir
from plotly.offline import get_plotlyjs_version

from workbench.ui.chart_widget import ChartWidget, PlotlyBundle, publish_bundle, shared_bundle
from workbench.ui.context import AppContext
from workbench.ui.stack_panel import StackPanel

BASIC = Path(__file__).parents[1] / "workbench" / "ui" / "static" / "plotly-basic.min.js"


def test_charts_ship_a_small_module_and_share_one_plotly_bundle():
    first = ChartWidget(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])))
    second = ChartWidget()
    plain = go.FigureWidget(go.Figure(go.Scatter(x=[1, 2], y=[3, 4])))
    assert len(first._esm) < 12_000 and len(plain._esm) > 4_000_000
    assert first.data[0].y == (3, 4)  # otherwise a FigureWidget like any other
    bundle = shared_bundle()
    assert isinstance(bundle, PlotlyBundle) and bundle.source == ""  # the page loads it as a file
    # published once where the Jupyter server serves labextensions files, named by its content hash
    path, _, version = bundle.path.partition("?v=")
    served = Path(jupyter_data_dir()) / "labextensions" / path
    assert served.read_text(encoding="utf-8") == BASIC.read_text(encoding="utf-8")
    assert served.stat().st_size < len(plain._esm) / 3  # the basic bundle, not plotly.py's full widget bundle
    assert version in path and len(version) == 16
    # a page that cannot load the file asks the kernel, which answers with the source once
    bundle._answer(bundle, {"request": "source"}, [])
    assert bundle.source == BASIC.read_text(encoding="utf-8")
    # the browser finds the bundle through a model reference in each chart's state
    assert first.get_state()["_plotly_bundle"] == second.get_state()["_plotly_bundle"] == f"IPY_MODEL_{bundle.model_id}"
    old = bundle.model_id
    bundle.close()  # e.g. Widget.close_all(): the next chart gets a live one
    third = ChartWidget()
    assert third.get_state()["_plotly_bundle"] == f"IPY_MODEL_{shared_bundle().model_id}" != f"IPY_MODEL_{old}"


def test_the_panels_draw_on_chart_widgets(tmp_path):
    panel = StackPanel(AppContext(tmp_path / "ws", autosave_delay=0))
    assert isinstance(panel.rq, ChartWidget) and isinstance(panel.sld, ChartWidget)


def test_the_bundle_file_is_written_once_and_not_where_it_cannot_be(tmp_path):
    path = publish_bundle(tmp_path)
    file = tmp_path / "labextensions" / path.partition("?v=")[0]
    before = file.stat().st_mtime_ns
    assert publish_bundle(tmp_path) == path and file.stat().st_mtime_ns == before  # never rewritten
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a folder should be")
    assert publish_bundle(blocked) == ""  # the page then asks the kernel


def test_the_bundle_manifest_names_the_current_file_for_the_early_import(tmp_path):
    """The dashboard template imports Plotly from the head, by the file ``current.json`` names (content-hashed)."""
    import json

    from workbench.ui.chart_widget import MANIFEST, publish_bundle

    path = publish_bundle(tmp_path)
    static = tmp_path / "labextensions" / "workbench-plotly" / "static"
    assert json.loads((static / MANIFEST).read_text()) == {"path": path}
    assert (static / path.split("/")[-1].split("?")[0]).stat().st_size > 1_000_000
    (static / MANIFEST).write_text('{"path": "workbench-plotly/static/plotly-old.js"}')  # an older Plotly's
    assert publish_bundle(tmp_path) == path and json.loads((static / MANIFEST).read_text()) == {"path": path}
    template = Path(__file__).parents[1] / "workbench/ui/jupyter/voila/templates/workbench/index.html.j2"
    assert "workbench-plotly/static/current.json" in template.read_text()


def test_the_basic_bundle_is_the_plotly_js_that_plotly_py_was_built_for():
    """Figures are validated by plotly.py against its plotly.js schema: the page must draw with that version."""
    head = BASIC.read_text(encoding="utf-8")[:200]
    assert f"plotly.js (basic - minified) v{get_plotlyjs_version()}" in head


def test_a_trace_the_basic_bundle_cannot_draw_is_refused_by_name():
    with pytest.raises(ValueError, match="not heatmap"):
        ChartWidget(go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])))
    chart = ChartWidget(go.Figure(go.Bar(x=[1], y=[2])))
    with pytest.raises(ValueError, match="scatter"):
        chart.add_traces([go.Contour(z=[[1, 2], [3, 4]])])

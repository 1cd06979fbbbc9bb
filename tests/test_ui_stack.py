"""Film stack and Probe panels driven like a user would: set widget values, click, read the charts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.limits import Limits
from workbench.physics import FilmStack, Probe, reflectivity, sld_profile
from workbench.ui.context import AppContext
from workbench.ui.probe_panel import ProbePanel
from workbench.ui.stack_panel import StackPanel


@pytest.fixture
def ctx(tmp_path):
    return AppContext(tmp_path / "ws", autosave_delay=0)


def test_slider_moves_the_reflectivity_and_profile(ctx):
    panel = StackPanel(ctx)
    before = np.array(panel.rq.data[0].y)
    np.testing.assert_allclose(before, reflectivity(FilmStack.default(), Probe())[0], rtol=1e-12)
    panel.row(3, "thickness").slider.value = 150.0
    assert panel.wait_redrawn()
    after = np.array(panel.rq.data[0].y)
    expected = reflectivity(FilmStack.default().with_value(3, "thickness", 150.0), Probe())[0]
    np.testing.assert_allclose(after, expected, rtol=1e-12)
    assert panel.row(3, "thickness").number.value == 150.0
    _z, rho, _ = sld_profile(FilmStack.default().with_value(3, "thickness", 150.0))
    np.testing.assert_allclose(np.array(panel.sld.data[0].y), rho[0])
    assert panel.last_redraw_ms > 0


def test_a_slider_drag_redraws_the_newest_value_not_a_queue_of_stale_ones(ctx):
    panel = StackPanel(ctx)
    slider = panel.row(3, "thickness").slider
    drawn = panel.redraws
    with panel.preview_job.held():  # as if a redraw were still being computed while the drag goes on
        for v in np.linspace(120.0, 200.0, 12):
            slider.value = float(v)
    assert panel.wait_redrawn()
    assert panel.redraws == drawn + 1 and panel.preview_job.skipped >= 11  # one redraw, of the last value
    expected = reflectivity(FilmStack.default().with_value(3, "thickness", 200.0), Probe())[0]
    np.testing.assert_allclose(np.array(panel.rq.data[0].y), expected, rtol=1e-12)
    slider.value = 130.0  # a single change on an idle panel is drawn at once, on its own
    assert panel.wait_redrawn() and panel.redraws == drawn + 2
    expected = reflectivity(FilmStack.default().with_value(3, "thickness", 130.0), Probe())[0]
    np.testing.assert_allclose(np.array(panel.rq.data[0].y), expected, rtol=1e-12)


def test_typing_beyond_the_slider_extends_it_but_not_past_the_hard_limit(ctx):
    panel = StackPanel(ctx)
    row = panel.row(2, "thickness")
    assert row.slider.max < 900
    row.number.value = 900.0
    assert row.slider.max >= 900 and row.slider.value == 900.0
    assert ctx.stack.value(2, "thickness") == 900.0
    row.number.value = 1e7  # beyond the physical limit: clamped, and the panel says so
    assert ctx.stack.value(2, "thickness") == Limits().thickness.hi
    assert row.number.value == Limits().thickness.hi
    assert panel.status.level == "warn" and "limit" in panel.status.text
    row2 = panel.row(2, "roughness")
    row2.number.value = -5.0
    assert ctx.stack.value(2, "roughness") == 0.0


def test_bounds_editors_add_reorder_remove_collapse_reset(ctx):
    panel = StackPanel(ctx)
    row = panel.row(1, "sld")
    row.vary.value = True
    row.lo.value, row.hi.value = 3.0, 4.0
    assert ctx.stack.stack.bound(1, "sld").lo == 3.0 and ctx.stack.stack.bound(1, "sld").hi == 4.0
    row.lo.value = 5.0  # min above max: an error in the panel, the bound stays
    assert panel.status.level == "error" and "above" in panel.status.text
    assert ctx.stack.stack.bound(1, "sld").hi == 4.0
    n = ctx.stack.n_layers
    panel.add.click()
    assert ctx.stack.n_layers == n + 1 and len(panel.layers) == n + 1
    new = ctx.stack.layer(n - 1).name  # the added layer, just above the ambient (the last card but one)
    assert panel.layers[n - 1].down.disabled and not panel.layers[n - 1].up.disabled
    panel.layers[n - 1].up.click()  # ↑ moves the card up the page, towards the substrate
    assert ctx.stack.layer(n - 2).name == new
    panel.layers[n - 2].remove.click()
    assert ctx.stack.n_layers == n and new not in [ly.name for ly in ctx.stack.stack.layers]
    assert panel.layers[0].remove.disabled and panel.layers[-1].remove.disabled
    assert panel.layers[0].row("thickness").slider.disabled  # substrate thickness has no effect
    panel.collapse.click()
    assert all(box.body.layout.display == "none" for box in panel.layers)
    panel.expand.click()
    assert all(box.body.layout.display == "" for box in panel.layers)
    panel.row(2, "sld").slider.value = 1.0
    panel.reset.click()
    panel.confirm_reset.click()
    assert ctx.stack.stack == FilmStack.default()
    assert panel.row(2, "sld").slider.value == FilmStack.default().layers[2].sld


def test_settings_autosave_and_restore(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = StackPanel(ctx)
    panel.row(4, "sld").number.value = 1.234
    panel.row(4, "sld").vary.value = True
    probe = ProbePanel(ctx)
    probe.fields["num_q"].value = 100
    saved = json.loads(ctx.workspace.settings_path.read_text())
    assert saved["stack"]["layer_desc"][4]["sld"] == 1.234 and saved["probe"]["num_q"] == 100
    again = AppContext(tmp_path / "ws")
    panel2 = StackPanel(again)
    assert again.stack.value(4, "sld") == 1.234
    assert panel2.row(4, "sld").slider.value == 1.234
    assert len(panel2.rq.data[0].x) == 100
    panel2.reset.click()
    panel2.confirm_reset.click()  # the film stack only: the probe has its own panel
    assert again.stack.stack == FilmStack.default() and again.stack.probe().q.size == 100
    saved = json.loads(again.workspace.settings_path.read_text())
    assert (
        saved["stack"]["layer_desc"][4]["sld"] == FilmStack.default().layers[4].sld and saved["probe"]["num_q"] == 100
    )


def test_damaged_settings_fall_back_to_defaults(tmp_path):
    ws = tmp_path / "ws"
    AppContext(ws, autosave_delay=0)
    (ws / "settings.json").write_text('{"stack": {"layer_desc": [{"name": "x"}]}}')
    ctx = AppContext(ws)
    panel = StackPanel(ctx)
    assert ctx.stack.stack == FilmStack.default()
    assert panel.status.level == "warn" and "settings.json" in panel.status.text


def test_probe_panel_clamps_and_reports_bad_combinations(ctx):
    stack_panel = StackPanel(ctx)
    panel = ProbePanel(ctx)
    panel.fields["num_q"].value = 50
    assert stack_panel.wait_redrawn() and len(stack_panel.rq.data[0].x) == 50
    panel.fields["q_max"].value = 0.005  # below qMin
    assert panel.status.level == "error" and "qMax must be greater than qMin" in panel.status.text
    assert ctx.stack.probe().q[-1] == pytest.approx(0.1975)
    panel.fields["q_max"].value = 0.25
    assert ctx.stack.probe().q[-1] == pytest.approx(0.25)
    assert stack_panel.wait_redrawn()
    assert np.array(stack_panel.rq.data[0].x)[-1] == pytest.approx(0.25)


def test_the_panel_says_where_nevot_croce_is_outside_its_range(tmp_path):
    """pyreflect's default stack is valid, yet one roughness (76.6 Å) exceeds its layer (72.6 Å): said, not refused."""
    import html

    from workbench.physics import FilmStack
    from workbench.ui.context import AppContext
    from workbench.ui.stack_panel import StackPanel

    panel = StackPanel(AppContext(tmp_path / "ws", autosave_delay=0))
    panel.redraw()
    cautions = FilmStack.default().physics_warnings()
    shown = panel.physics_note.value
    assert cautions and all(html.escape(c) in shown for c in cautions) and "Névot–Croce" in shown

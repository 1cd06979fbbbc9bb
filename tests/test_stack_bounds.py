"""The Film stack panel as a scientist meets it: values outside their bounds flagged at once, a Reset that asks,
notes that follow the latest action, and numbers shown rounded."""

from __future__ import annotations

import pytest

from workbench.physics import FilmStack
from workbench.ui.context import AppContext
from workbench.ui.generate_panel import GeneratePanel
from workbench.ui.probe_panel import ProbePanel
from workbench.ui.stack_panel import FLAG_BORDER, FLAG_CSS, StackPanel


@pytest.fixture
def ctx(tmp_path):
    return AppContext(tmp_path / "ws", autosave_delay=0)


def test_a_value_outside_its_bounds_is_flagged_refused_by_generate_and_widened_on_request(ctx):
    panel, generate = StackPanel(ctx), GeneratePanel(ctx)
    row = panel.row(1, "thickness")  # siox, varying in 9.7216–14.624 Å
    assert "wb-out-of-bounds" not in row._dom_classes and row.widen not in row.children
    row.number.value = 500.0
    assert ctx.stack.value(1, "thickness") == 500.0  # kept: the scientist may mean it
    assert "wb-out-of-bounds" in row._dom_classes and row.widen in row.children
    assert FLAG_BORDER in FLAG_CSS and any(getattr(w, "value", None) == FLAG_CSS for w in panel.children)
    assert panel.status.level == "warn"
    assert "siox thickness 500 Å is outside its bounds 9.722–14.62 Å" in panel.status.text
    generate.num_curves.value = 10
    generate.start.click()
    assert generate.status.level == "error" and "siox thickness 500 Å is outside" in generate.status.text
    assert generate.job is None and not list(ctx.workspace.datasets.glob("*/dataset.json"))
    row.widen.click()
    assert ctx.stack.bound(1, "thickness") == (9.7216, 500.0) and (row.lo.value, row.hi.value) == (9.7216, 500.0)
    assert "wb-out-of-bounds" not in row._dom_classes and row.widen not in row.children
    assert panel.status.text == "siox thickness bounds widened to 9.722–500 Å"
    assert ctx.stack.outside_bounds() == []
    row.number.value = 12.0  # back inside: the note says so, nothing flagged
    assert panel.status.level == "info" and panel.status.text == "siox thickness = 12 Å"


def test_a_fixed_parameter_follows_its_value(ctx):
    panel = StackPanel(ctx)
    row = panel.row(1, "sld")  # siox SLD: bound 3.47–3.47, fixed
    assert not row.vary.value
    row.number.value = 3.6
    assert ctx.stack.bound(1, "sld") == (3.6, 3.6) and (row.lo.value, row.hi.value) == (3.6, 3.6)
    assert "wb-out-of-bounds" not in row._dom_classes and panel.status.level == "info"


def test_reset_asks_first_and_leaves_the_probe(ctx):
    panel, probe = StackPanel(ctx), ProbePanel(ctx)
    probe.fields["num_q"].value = 120
    panel.row(2, "sld").number.value = 1.5
    panel.reset.click()
    assert ctx.stack.value(2, "sld") == 1.5 and panel.confirm_row.layout.display == ""
    assert "Confirm reset" in panel.status.text
    panel.cancel_reset.click()
    assert ctx.stack.value(2, "sld") == 1.5 and panel.confirm_row.layout.display == "none"
    panel.reset.click()
    panel.confirm_reset.click()
    assert ctx.stack.stack == FilmStack.default() and panel.confirm_row.layout.display == "none"
    assert ctx.stack.probe().q.size == 120 and probe.fields["num_q"].value == 120
    assert panel.status.level == "ok" and "probe is unchanged" in panel.status.text


def test_the_note_follows_the_latest_action(ctx):
    panel = StackPanel(ctx)
    panel.add.click()
    assert panel.status.text == "added layer_6 below the ambient"
    i = next(k for k in range(ctx.stack.n_layers) if ctx.stack.layer(k).name == "layer_6")
    panel.layers[i].up.click()
    assert panel.status.text == "moved layer_6 up, towards the substrate: now between layer_4 and layer_5"
    panel.layers[i - 1].down.click()
    assert panel.status.text.startswith("moved layer_6 down, towards the ambient")
    panel.row(2, "roughness").number.value = 20.0
    assert panel.status.text == "layer_1 roughness = 20 Å"


def _digits(x: float) -> int:
    return len(repr(float(x)).split("e")[0].replace("-", "").replace(".", "").strip("0"))


def test_numbers_in_the_rows_are_rounded(ctx):
    ctx.stack.set_value(1, "sld", 3.4700000000000006)
    ctx.stack.set_bound(2, "sld", 1 / 3, 4.197)
    ctx.stack.set_value(3, "thickness", 178.66000000000003)
    panel = StackPanel(ctx)
    assert panel.row(1, "sld").number.value == 3.47 and panel.row(2, "sld").lo.value == 0.333333
    ctx.stack.set_value(4, "roughness", 20 / 3)  # changed elsewhere (a refine, a restore): still rounded
    assert panel.row(4, "roughness").number.value == 6.66667
    shown = [w.value for box in panel.layers for row in box.rows for w in (row.number, row.lo, row.hi) if w.value != 0]
    assert shown and max(_digits(v) for v in shown) <= 6, max(shown, key=_digits)

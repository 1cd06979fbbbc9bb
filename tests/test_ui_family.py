"""The Film stack tab's sample family, driven as a person would: hand fit → ranges and ties → film stack → edits,
a repeated block and its count, save and restore, generation that keeps the ties, and bad input named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.data.dataset import load_dataset
from workbench.data.family import FamilyStack
from workbench.physics import FilmStack
from workbench.ui.context import AppContext
from workbench.ui.family_box import BlockBox
from workbench.ui.generate_panel import GeneratePanel
from workbench.ui.stack_model import compute_preview
from workbench.ui.stack_panel import StackPanel

# the hand fit's ten PEO SLDs (1e-6 Å⁻²), film layers from the substrate up: PEO_10 … PEO_1
PEO_SLDS = [1.2, 1.15, 2.43, 2.45, 2.21, 3.24, 2.06, 3.38, 2.38, 2.08]


@pytest.fixture
def handfit(shared_data, monkeypatch):
    monkeypatch.setenv("WORKBENCH_EXAMPLE_DATA", str(shared_data))  # the example data may be read from the page
    return shared_data / "real" / "ornl-ref-l-212592" / "manual_fit_spreadsheet.csv"


@pytest.fixture
def ctx(tmp_path):
    return AppContext(tmp_path / "ws", autosave_delay=0)


def use_family(panel: StackPanel, source, ties: str = "same: PEO_*.sld", fold: tuple | None = None) -> None:
    box = panel.family
    box.path.value = str(source)
    box.ranges["thickness"].value, box.ranges["sld"].value = "20%", "0.5"
    box.ties.value = ties
    if fold:
        box.fold_first.value, box.fold_size.value, box.fold_count.value = fold
    box.use.click()
    assert panel.status.level == "ok", panel.status.text


def peo(stack: FilmStack) -> list[int]:
    return [i for i, x in enumerate(stack.layers) if x.name.startswith("PEO")]


def test_a_hand_fit_family_becomes_the_film_stack_and_tied_edits_move_every_member(ctx, handfit):
    panel = StackPanel(ctx)
    use_family(panel, handfit)
    stack = ctx.stack.stack
    assert isinstance(stack, FamilyStack) and len(stack.layers) == 23 and len(panel.layers) == 23
    [tie] = stack.ties
    assert tie.mode == "same" and len(tie.members) == 10 and all(m.endswith(".sld") for m in tie.members)
    first = peo(stack)[0]
    # one PEO SLD: the hand fit's mean, its range the union of every PEO layer's ±0.5
    assert stack.layers[first].sld == pytest.approx(np.mean(PEO_SLDS))
    assert panel.row(first, "sld").lo.value == pytest.approx(min(PEO_SLDS) - 0.5)
    assert panel.row(first, "sld").hi.value == pytest.approx(max(PEO_SLDS) + 0.5)
    b = stack.bound(first, "thickness")  # ±20 % of the hand fit's 33.4 Å
    assert (b.lo, b.hi) == pytest.approx((0.8 * 33.4, 1.2 * 33.4))
    assert "23 layers" in panel.family.summary.value and "same PEO_*.sld" in panel.family.summary.value

    drawn = panel.redraws
    panel.row(peo(stack)[3], "sld").number.value = 2.9  # one tied SLD typed: all ten follow
    stack = ctx.stack.stack
    assert [stack.layers[i].sld for i in peo(stack)] == [2.9] * 10
    assert all(panel.row(i, "sld").number.value == 2.9 for i in peo(stack))
    assert "(and 9 tied)" in panel.status.text and len(stack.ties) == 1
    panel.row(peo(stack)[0], "sld").lo.value = 1.0  # a tied bound moves every member's bound
    stack = ctx.stack.stack
    [(lo, hi)] = {(stack.bound(i, "sld").lo, stack.bound(i, "sld").hi) for i in peo(stack)}
    assert (lo, hi) == pytest.approx((1.0, max(PEO_SLDS) + 0.5))
    assert all(panel.row(i, "sld").lo.value == 1.0 for i in peo(stack))
    assert panel.wait_redrawn() and panel.redraws > drawn
    panel.row(2, "thickness").number.value = 30.0  # an untied parameter moves alone
    assert [x.thickness for x in ctx.stack.stack.layers[2:4]] == [30.0, 39.8]


def test_a_repeated_block_is_one_card_and_its_count_sets_the_layer_count(ctx, handfit):
    panel = StackPanel(ctx)
    use_family(panel, handfit, fold=("PEO_10", 4, 5))  # 5 × [PEO | dPS | dPS | PEO]
    assert ctx.stack.n_layers == 23
    cards = panel.layers_box.children
    assert len(cards) == 4 and isinstance(cards[2], BlockBox)  # Si, SiOx, the block, air
    block = cards[2]
    assert block.count.value == 5 and [c.name.value for c in block.period] == ["PEO_a", "dPS_a", "dPS_b", "PEO_b"]
    assert all(c.remove.disabled and c.up.disabled for c in block.period)
    block.period[1].row("sld").number.value = 5.5  # the period's dPS edited once, every repeat follows
    dps = [x.sld for x in ctx.stack.stack.layers if x.name.startswith("dPS_a_")]
    assert dps == [5.5] * 5

    assert panel.wait_redrawn()
    drawn, depth = panel.redraws, np.ptp(panel.sld.data[0].x)
    block.count.value = 3
    assert ctx.stack.n_layers == 2 + 4 * 3 + 1 and panel.status.level == "ok" and "15 layers" in panel.status.text
    stack = ctx.stack.stack
    assert [x.name for x in stack.layers][-5:] == ["PEO_a_3", "dPS_a_3", "dPS_b_3", "PEO_b_3", "air"]
    assert [x.sld for x in stack.layers if x.name.startswith("dPS_a_")] == [5.5] * 3  # the edit kept
    assert [len(t.members) for t in stack.ties if t.members[0].startswith("PEO_a_1.sld")] == [6]  # PEO ties hold
    assert panel.wait_redrawn() and panel.redraws > drawn
    assert sum(x.thickness for x in stack.layers) == pytest.approx(10.0 + 3 * (2 * 33.4 + 2 * 39.8), rel=1e-9)
    # the charts show the 3-period stack: two periods (292.8 Å) less film in the SLD profile, its R(Q) exactly
    assert depth - np.ptp(panel.sld.data[0].x) == pytest.approx(2 * (2 * 33.4 + 2 * 39.8), rel=0.05)
    np.testing.assert_allclose(panel.rq.data[0].y, compute_preview(stack, ctx.stack.probe()).r, rtol=1e-12)
    block = panel.layers_box.children[2]
    block.count.value = 7  # 31 layers: over the limit, said, and the stack is unchanged
    assert panel.status.level == "error" and "more than the limit 30" in panel.status.text
    assert ctx.stack.n_layers == 15 and panel.layers_box.children[2].count.value == 3


def test_the_family_survives_save_and_restore_and_reset_drops_it(tmp_path, handfit):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = StackPanel(ctx)
    use_family(panel, handfit, fold=("PEO_10", 4, 5))
    panel.layers_box.children[2].count.value = 4
    panel.row(2, "sld").number.value = 2.2
    saved = json.loads(ctx.workspace.settings_path.read_text())
    assert saved["family"]["layers"][2]["repeat"] == 4 and saved["family"]["ties"] == [{"same": ["PEO_*.sld"]}]
    again = AppContext(tmp_path / "ws")
    restored = again.stack.stack
    assert isinstance(restored, FamilyStack) and restored.model_dump() == ctx.stack.stack.model_dump()
    panel2 = StackPanel(again)
    assert isinstance(panel2.layers_box.children[2], BlockBox) and panel2.layers_box.children[2].count.value == 4
    panel2.layers_box.children[2].count.value = 5  # the restored family still grows with its ties
    assert again.stack.n_layers == 23 and {again.stack.stack.layers[i].sld for i in peo(again.stack.stack)} == {2.2}
    panel2.reset.click()
    panel2.confirm_reset.click()
    assert again.stack.family is None and type(again.stack.stack) is FilmStack
    assert "family" not in json.loads(again.workspace.settings_path.read_text())
    assert panel2.family.summary.value == ""


def test_generating_from_the_panel_keeps_the_ties_in_every_curve(ctx, handfit):
    panel = StackPanel(ctx)
    use_family(panel, handfit, ties="same: PEO_*.sld\ntogether: PEO_*.thickness, dPS_*.thickness")
    ctx.stack.set_probe(num_q=80)
    generate = GeneratePanel(ctx)
    generate.num_curves.value, generate.seed.value, generate.name.value = 64, 3, "tied"
    generate.start.click()
    assert generate.job is not None and generate.job.join(300)
    assert generate.status.level == "ok", generate.status.text
    ds = load_dataset(ctx.workspace.datasets / "tied")
    names = ds.parameter_names
    sld = ds.params[:, [names.index(f"PEO_{k}.sld") for k in range(1, 11)]]
    assert ds.n == 64 and np.all(sld == sld[:, :1]) and np.ptp(sld[:, 0]) > 1.0
    stack = ctx.stack.stack
    cols = [names.index(f"{x.name}.thickness") for x in stack.layers if x.name[:3] in ("PEO", "dPS")]
    bounds = [stack.bound(i, "thickness") for i, x in enumerate(stack.layers) if x.name[:3] in ("PEO", "dPS")]
    fractions = np.stack([(ds.params[:, c] - b.lo) / (b.hi - b.lo) for c, b in zip(cols, bounds)], axis=1)
    np.testing.assert_allclose(fractions - fractions[:, :1], 0, atol=1e-9)  # one swelling factor per curve
    assert [t["mode"] for t in ds.meta["stack"]["ties"]] == ["same", "together"]
    assert ds.meta["stack"]["family"]["ranges"] == {"thickness": "20%", "sld": 0.5, "roughness": 5.0}


@pytest.mark.parametrize(
    ("widget", "text", "message"),
    [
        ("thickness", "20%%", "thickness range: cannot read the range '20%%'"),
        ("sld", "-1", "sld range: cannot read the range '-1'"),
        ("ties", "same: PS_*.sld", "unknown tie target, no layer is named like 'PS_*'"),
        ("ties", "along: PEO_*.sld", "ties line 1: 'along: PEO_*.sld' starts with 'along'"),
        ("ties", "same: PEO_*", "'PEO_*' names no parameter"),
        ("ties", "same: Si.sld, SiOx.sld", "Si.sld is fixed"),
    ],
)
def test_bad_ranges_and_ties_are_named_and_leave_the_stack(ctx, handfit, widget, text, message):
    panel = StackPanel(ctx)
    box = panel.family
    box.path.value = str(handfit)
    (box.ties if widget == "ties" else box.ranges[widget]).value = text
    box.use.click()
    assert panel.status.level == "error" and message in panel.status.text, panel.status.text
    assert ctx.stack.family is None and ctx.stack.stack == FilmStack.default()


def test_a_bad_source_file_is_named(ctx, tmp_path):
    panel = StackPanel(ctx)
    box = panel.family
    box.path.value = str(ctx.workspace.root / "missing.csv")
    assert panel.status.level == "error" and "missing.csv" in panel.status.text
    outside = tmp_path / "secret.yaml"  # a file of the server outside the workspace: never opened from the page
    outside.write_text("stack: {layer_desc: [], layer_bound: []}\n")
    box.path.value = str(outside)
    assert panel.status.level == "error" and "only files in the workspace" in panel.status.text
    assert "layer_desc" not in panel.status.text
    (ctx.workspace.root / "notes.yaml").write_text("just: text\n")
    box.list_files()
    assert "notes.yaml" in [label for label, _ in box.files.options]
    box.files.value = str(ctx.workspace.root / "notes.yaml")
    assert box.path.value.endswith("notes.yaml")
    assert panel.status.level == "error" and "no 'stack' with 'layer_desc'" in panel.status.text
    box.path.value = ""
    box.use.click()
    assert panel.status.level == "error" and "choose a source first" in panel.status.text
    assert ctx.stack.family is None

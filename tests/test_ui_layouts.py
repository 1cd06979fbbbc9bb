"""No two widgets share a Layout that can change: hiding one widget must never hide another (Predict's choosers once
vanished so).  The Film stack's rows share frozen layouts (fewer widget models for the browser): changing one raises."""

from __future__ import annotations

from collections import defaultdict

import ipywidgets as W
import pytest
from traitlets import TraitError

from workbench.ui.app import TABS, Workbench


def _widgets(root: W.Widget) -> list[W.Widget]:
    seen, todo = [], [root]
    while todo:
        w = todo.pop()
        if any(w is s for s in seen):
            continue
        seen.append(w)
        todo.extend(c for c in getattr(w, "children", ()) if isinstance(c, W.Widget))
    return seen


def test_every_widget_of_every_tab_has_its_own_layout(tmp_path):
    wb = Workbench(tmp_path / "ws")
    for tab in TABS:
        wb.select(tab)
    owners = defaultdict(list)
    for w in _widgets(wb):
        layout = getattr(w, "layout", None)
        if isinstance(layout, W.Layout) and not getattr(layout, "shared", False):
            owners[layout.model_id].append(f"{type(w).__name__}({getattr(w, 'description', '')!r})")
    shared = {k: v for k, v in owners.items() if len(v) > 1}
    assert not shared, "\n".join(", ".join(v) for v in shared.values())


def test_a_shared_layout_refuses_to_change(tmp_path):
    wb = Workbench(tmp_path / "ws")
    row = wb.stack.layers[1].row("thickness")
    assert row.slider.layout is wb.stack.layers[2].row("sld").slider.layout  # one model for every slider
    with pytest.raises(TraitError, match="shared Layout cannot change"):
        row.slider.layout.display = "none"
    assert wb.stack.layers[2].row("sld").slider.layout.display is None
    row.number.value = 500.0  # outside its bounds: only this row is flagged (by its CSS class)
    other = wb.stack.layers[2].row("sld")
    assert "wb-out-of-bounds" in row._dom_classes and "wb-out-of-bounds" not in other._dom_classes
    assert row.widen in row.children and other.widen not in other.children

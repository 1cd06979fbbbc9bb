"""No two widgets share a Layout: hiding one widget must never hide another (Predict's choosers once vanished so)."""

from __future__ import annotations

from collections import defaultdict

import ipywidgets as W

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
        if isinstance(layout, W.Layout):
            owners[layout.model_id].append(f"{type(w).__name__}({getattr(w, 'description', '')!r})")
    shared = {k: v for k, v in owners.items() if len(v) > 1}
    assert not shared, "\n".join(", ".join(v) for v in shared.values())

"""Deferred imports (workbench.lazy_import): the dashboard's charts load without nbformat's schema stack."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300, check=True
    )
    return out.stdout.strip()


def test_charts_load_without_nbformat_and_nbformat_still_works():
    out = run("""
        import sys
        import workbench.ui.chart_widget
        print("jsonschema" in sys.modules, "rfc3987_syntax" in sys.modules)
        import nbformat
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
        nbformat.validate(nb)  # loads jsonschema on demand
        from plotly.io import _renderers
        print(_renderers.nbformat.__version__ == nbformat.__version__, len(nb.cells))
    """)
    assert out.splitlines() == ["False False", "True 1"]


def test_a_deferred_module_runs_at_first_use_only():
    out = run("""
        import sys
        from workbench.lazy_import import defer_import
        assert "wave" not in sys.modules
        print(defer_import("wave"), defer_import("wave"), defer_import("sys"), defer_import("no_such_module_x"))
        import wave
        print(hasattr(type(wave), "__getattr__"), "Wave_read" in vars(wave))
        print(wave.Wave_read.__name__, "Wave_read" in vars(wave), type(wave).__name__)
    """)
    assert out.splitlines() == ["True False False False", "True False", "Wave_read True module"]


def test_importing_a_submodule_of_a_deferred_package_runs_the_package_first():
    """``from nbformat.v4 import ...`` (papermill, a user's notebook) after the charts deferred nbformat: the
    package's ``__init__`` must run before its submodule, or nbformat's circular imports fail."""
    out = run("""
        import sys
        import workbench.ui.chart_widget
        print(type(sys.modules["nbformat"]).__name__)
        from nbformat.v4 import new_code_cell, new_notebook
        import nbformat
        nb = new_notebook(cells=[new_code_cell("1 + 1")])
        nbformat.validate(nb)
        print(type(sys.modules["nbformat"]).__name__, len(nb.cells))
    """)
    assert out.splitlines() == ["_Deferred", "module 1"]


HEAVY = ("torch", "pandas", "refl1d", "optuna", "dask", "scipy.optimize")


def test_the_dashboard_opens_without_torch_and_its_train_tab_loads_torch_when_shown(tmp_path):
    """Built as notebooks/workbench.ipynb builds it, the Film stack tab draws with none of the heavy libraries."""
    out = run(f"""
        import sys
        from workbench.ui.app import Workbench, open_for_visitor

        wb = Workbench({str(tmp_path / "ws")!r})
        wb.page
        p = open_for_visitor(wb, {{"tab": "stack", "num_curves": 0, "epochs": 0, "model": ""}}, query="")
        print(*[name for name in {HEAVY!r} if name in sys.modules] or ["none"])
        rq, sld = wb.stack.rq.data[0], wb.stack.sld.data[0]
        print(len(rq.x), len(rq.y), len(sld.x), len(sld.y), round(float(rq.y[0]), 3))
        wb.select("train")  # what a click on the Train tab does
        print("torch" in sys.modules, wb.selected_index, wb.train.epochs.value, wb.train.model_kind.value)
        print(wb.children[3].children[0] is wb.train, "wb-train-panel" in wb.train._dom_classes)
    """)
    lines = out.splitlines()
    assert lines[0] == "none"
    assert lines[1] == "308 308 900 900 1.0"  # both charts hold x and y: R(Q) at the default probe's 308 Q points
    assert lines[2:] == ["True 3 10 compact", "True True"]


def test_a_returning_users_saved_train_settings_are_checked_without_torch(tmp_path):
    """Saved Train settings are checked against their typed fields when the app opens: with torch-free types."""
    out = run(f"""
        import json, pathlib, sys
        from workbench.ui.app import Workbench

        ws = pathlib.Path({str(tmp_path / "ws")!r})
        ws.mkdir()
        saved = {{"epochs": 5, "model": "x", "models": {{"compact": {{"width": 8}}}}}}
        (ws / "settings.json").write_text(json.dumps({{"panels": {{"train": saved}}}}))
        wb = Workbench(str(ws))
        print("torch" in sys.modules, sorted(wb.ctx.panel_settings("train")))
        print(wb.train.epochs.value, "torch" in sys.modules)
    """)
    first, second = out.splitlines()
    assert first == "False ['epochs', 'models']"  # the unknown model kind was left out (and said)
    assert second == "5 True"


def test_a_link_reaches_the_train_tab_built_on_demand(tmp_path):
    """``?tab=train&epochs=7``: the Train panel is built when the link shows it, with the link's settings."""
    out = run(f"""
        import sys
        from workbench.ui.app import Workbench, open_for_visitor

        wb = Workbench({str(tmp_path / "ws")!r})
        print("torch" in sys.modules, sorted(wb._panels))
        p = open_for_visitor(wb, {{"tab": "stack", "num_curves": 0, "epochs": 0, "model": ""}}, "tab=train&epochs=7")
        print(p["tab"], wb.selected_index, wb.train.epochs.value, sorted(wb._panels))
    """)
    assert out.splitlines() == ["False ['stack']", "train 3 7 ['stack', 'train']"]

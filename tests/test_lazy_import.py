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

"""The installed ``workbench`` console script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from workbench.physics import FilmStack, Probe, reflectivity

WORKBENCH = str(Path(sys.executable).with_name("workbench"))


def test_start_writes_an_interactive_html_of_the_default_stack(tmp_path):
    out = tmp_path / "report.html"
    result = subprocess.run([WORKBENCH, "start", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    html = out.read_text()
    assert "Plotly.newPlot" in html and "plotly.js" in html.lower()  # self-contained, works offline
    # the figure carries the real curve of the default stack
    spec = json.loads(re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', html, re.S).group(1))
    curve = next(trace for trace in spec if trace["name"] == "R(Q)")
    expected = reflectivity(FilmStack.default(), Probe())[0]
    y = curve["y"]
    y = np.frombuffer(__import__("base64").b64decode(y["bdata"]), dtype=y["dtype"]) if isinstance(y, dict) else np.asarray(y)
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert any(trace["name"] == "ρ (SLD)" for trace in spec)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_bad_input_exits_with_a_clear_message(tmp_path):
    out = tmp_path / "report.html"
    out.write_text("previous report")
    result = subprocess.run([WORKBENCH, "start", "--q-min", "0.3", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "qMax must be greater than qMin" in result.stderr
    assert out.read_text() == "previous report"  # nothing already saved is lost

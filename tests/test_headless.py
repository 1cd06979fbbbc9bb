"""Notebooks show their panels to a person, never in a papermill run."""

from __future__ import annotations

import json

import nbformat
import papermill
from jupyter_client.manager import start_new_kernel

CODE = "from workbench.batch.runner import running_headless\nprint(running_headless())"


def test_a_papermill_kernel_is_headless_and_an_interactive_one_is_not(tmp_path, monkeypatch):
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CODE)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    papermill.execute_notebook(
        str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3", progress_bar=False
    )
    out = json.loads((tmp_path / "out.ipynb").read_text())
    assert "".join(out["cells"][0]["outputs"][0]["text"]).strip() == "True"

    km, kc = start_new_kernel(kernel_name="python3")  # as JupyterLab starts it: with a history file
    printed: list[str] = []
    try:
        kc.execute_interactive(
            CODE, timeout=120, output_hook=lambda msg: printed.append(msg["content"].get("text", ""))
        )
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert "".join(printed).strip() == "False"

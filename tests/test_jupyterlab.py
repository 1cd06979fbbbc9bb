"""Smoke test: notebooks/workbench.ipynb opened in JupyterLab and run there (Run → Run All Cells).

JupyterLab on 127.0.0.1 with a token and every Jupyter/IPython folder in a temporary HOME, driven
through Debian Chromium (playwright) with every non-local request blocked: the Film stack panel's
chart renders with the 308-point R(Q) curve and the page logs no JavaScript errors.  A last cell,
added to the copy under test, keeps the kernel busy while it feeds a live chart point by point (the
way a training loop in a cell does): the charts must draw and follow while the kernel is busy, so
they cannot depend on the kernel answering requests.  Screenshot in ``tests/artifacts/``.  Under
CI=true a missing chromium is a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from browser_support import ARTIFACTS, chromium, free_port, stop_server, wait_for_http, watched_page

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "workbench.ipynb"
LIVE_STEPS = 240
LIVE_CELL = f"""import time
from IPython.display import display
from workbench.ui.chart_widget import ChartWidget

live = ChartWidget()
live.add_scatter(x=[], y=[])
live.add_class("wb-live-chart")
display(live)
for i in range({LIVE_STEPS}):  # busy for about a minute, like a training loop
    live.data[0].x, live.data[0].y = list(range(i + 1)), [k * k for k in range(i + 1)]
    time.sleep(0.25)"""

pytestmark = pytest.mark.slow


@pytest.fixture
def jupyterlab(tmp_path):
    port, token = free_port(), secrets.token_hex(16)
    home, root = tmp_path / "home", tmp_path / "root"
    root.mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)  # a copy: checkpoints and autosaves stay out of the repository
    notebook.cells.append(nbformat.v4.new_code_cell(LIVE_CELL))
    nbformat.write(notebook, root / NOTEBOOK.name)
    config = home / "cfg"
    notify = (
        config / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    )
    notify.parent.mkdir(parents=True)
    notify.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))  # no news pop-up, no network
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_RUNTIME_DIR": str(home / "rt"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "IPYTHONDIR": str(home / "ipy"),
        "WORKBENCH_HOME": str(tmp_path / "ws"),
    }
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyter",
            "lab",
            "--allow-root",
            "--ip=127.0.0.1",
            f"--port={port}",
            "--ServerApp.port_retries=0",
            "--ServerApp.open_browser=False",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.news_url=None",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    wait_for_http(f"{base}/api/status?token={token}", proc, within=180)
    yield f"{base}/lab/tree/{NOTEBOOK.name}?token={token}"
    stop_server(proc)  # the server shuts its kernels down on SIGTERM
    log.close()


def test_dashboard_notebook_runs_in_jupyterlab(jupyterlab):
    problems: list[str] = []
    with chromium() as browser:
        page = watched_page(browser, problems)
        try:
            page.goto(jupyterlab, timeout=300_000)
            page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=300_000)
            # Run All before the kernel is connected runs nothing: wait until the status bar says Idle
            page.wait_for_function("() => document.body.innerText.includes('(ipykernel) | Idle')", timeout=300_000)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            page.wait_for_selector(".wb-stack-panel", timeout=300_000)
            page.wait_for_function(
                "() => { const el = document.querySelector('.wb-stack-panel .js-plotly-plot');"
                " return el && el.data && el.data[0] && el.data[0].y && el.data[0].y.length === 308; }",
                timeout=300_000,
            )
            # the live chart draws and follows while its cell still runs
            live = "document.querySelector('.wb-live-chart.js-plotly-plot, .wb-live-chart .js-plotly-plot')"
            page.wait_for_function(
                f"() => {{ const el = {live};"
                " return el && el.data && el.data[0] && el.data[0].x && el.data[0].x.length >= 3; }",
                timeout=120_000,
            )
            shown = page.evaluate(f"() => {live}.data[0].x.length")
            assert shown < LIVE_STEPS, "the live chart only drew once its cell had finished"
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "jupyterlab-failed.png"))
            print("\n".join(problems[:20]))
            raise
        page.screenshot(path=str(ARTIFACTS / "jupyterlab.png"))
    assert not problems, "\n".join(problems[:20])

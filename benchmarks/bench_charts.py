"""Charts in a real browser: Plotly's FigureWidget against the workbench's ChartWidget.

A Voilà page with ``n`` charts (308 points each) and a slider that restyles every chart; Debian's
Chromium (playwright) opens it with the CPU slowed ``rate`` times (Chrome DevTools throttling; 1 =
this machine as it is). For each widget kind, charts and rate:

- drawn: seconds from navigation until every chart shows its data;
- follow: how many charts follow a slider step within 30 s (a chart whose anywidget model timed out
  while loading drops every update from Python);
- errors: page errors and console errors (anywidget's "Failed to initialize model." among them).

    python benchmarks/bench_charts.py [--charts 2 6] [--rates 1 4] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from playwright.sync_api import TimeoutError as PlaywrightTimeout

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _report import finish
from browser_support import ARGS, CHROMIUM, free_port, stop_server, wait_for_http, watched_page

KINDS = {"plotly": "go.FigureWidget", "workbench": "ChartWidget"}
CELL = """import numpy as np
import ipywidgets as W
import plotly.graph_objects as go
from workbench.ui.chart_widget import ChartWidget

q = np.logspace(-2, -0.7, 308)
charts = [{cls}(go.Figure(go.Scatter(x=q, y=np.exp(-q * (k + 1) * 10)))) for k in range({n})]
for c in charts:
    c.add_class("bench-chart")
step = W.IntSlider(value=0, min=0, max=100, description="step")
step.add_class("bench-step")

def restyle(change):
    for c in charts:
        c.data[0].y = np.exp(-q * 10) * (1 + change["new"])

step.observe(restyle, "value")
W.VBox([step, *charts])"""


def _notebooks(folder: Path, counts: list[int]) -> list[tuple[str, int, str]]:
    made = []
    for kind, cls in KINDS.items():
        for n in counts:
            name = f"{kind}-{n}.ipynb"
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL.format(cls=cls, n=n))])
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            nbformat.write(nb, folder / name)
            made.append((kind, n, name))
    return made


def _measure(browser, url: str, n: int, rate: float) -> dict:
    problems: list[str] = []
    page = watched_page(browser, problems)
    page.context.new_cdp_session(page).send("Emulation.setCPUThrottlingRate", {"rate": rate})
    drawn_js = (
        "() => Array.from(document.querySelectorAll('.bench-chart')).filter(el => { const p ="
        " el.classList.contains('js-plotly-plot') ? el : el.querySelector('.js-plotly-plot');"
        " return p && p.data && p.data[0] && p.data[0].y && p.data[0].y.length === 308; }).length"
    )
    t0 = time.perf_counter()
    page.goto(url, timeout=600_000)
    drawn = None
    with contextlib.suppress(PlaywrightTimeout):  # a chart that never draws is the measurement
        page.wait_for_function(f"() => ({drawn_js})() === {n}", timeout=180_000)
        drawn = time.perf_counter() - t0
    first_y = (
        "() => Array.from(document.querySelectorAll('.bench-chart')).map(el => { const p ="
        " el.classList.contains('js-plotly-plot') ? el : el.querySelector('.js-plotly-plot');"
        " return p && p.data && p.data[0] ? p.data[0].y[0] : null; })"
    )
    before = page.evaluate(first_y)
    page.locator(".bench-step .ui-slider-handle, .bench-step .noUi-handle").first.focus()
    page.keyboard.press("ArrowRight")
    deadline = time.time() + 30
    follow = 0
    while time.time() < deadline:
        now = page.evaluate(first_y)
        follow = sum(1 for a, b in zip(before, now, strict=True) if b is not None and a != b)
        if follow == n:
            break
        time.sleep(0.25)
    page.close()
    return {"drawn_s": drawn, "follow": follow, "errors": len(problems), "first_error": problems[0] if problems else ""}


def run(counts: list[int], rates: list[float]) -> dict:
    from playwright.sync_api import sync_playwright

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        made = _notebooks(root, counts)
        port = free_port()
        home = root / "home"
        env = {
            **os.environ,
            "HOME": str(home),
            "JUPYTER_CONFIG_DIR": str(home / "cfg"),
            "JUPYTER_RUNTIME_DIR": str(home / "rt"),
            "JUPYTER_DATA_DIR": str(home / "data"),
            "IPYTHONDIR": str(home / "ipy"),
        }
        voila = Path(sys.executable).with_name("voila")
        with open(root / "voila.log", "w") as log:
            proc = subprocess.Popen(
                [str(voila), str(root), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            try:
                base = f"http://127.0.0.1:{port}"
                wait_for_http(base, proc, within=120)
                with sync_playwright() as p:
                    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                    for rate in rates:
                        for kind, n, name in made:
                            r = _measure(browser, f"{base}/voila/render/{name}", n, rate)
                            rows.append({"kind": kind, "charts": n, "rate": rate, **r})
                            print(f"  {kind:9s} {n} charts, CPU ÷{rate:g}: {r}", flush=True)
                    browser.close()
            finally:
                stop_server(proc)
    return {"rows": rows}


def report(results: dict) -> None:
    print("\n| widget | charts | CPU slowed | all drawn after | follow a slider step | page errors |")
    print("|---|---|---|---|---|---|")
    for r in results["rows"]:
        drawn = f"{r['drawn_s']:.1f} s" if r["drawn_s"] is not None else "never (180 s)"
        print(
            f"| {KINDS[r['kind']]} | {r['charts']} | {r['rate']:g}× | {drawn} | {r['follow']} of {r['charts']} | "
            f"{r['errors']} |"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--charts", type=int, nargs="+", default=[2, 6])
    ap.add_argument("--rates", type=float, nargs="+", default=[1.0, 4.0])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    return finish(run(args.charts, args.rates), report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())

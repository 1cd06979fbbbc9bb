"""A dashboard link as a visitor meets it: consecutive page loads of `workbench start`, side by side.

For each configuration a fresh `workbench start` serves a fresh workspace; once its first page has drawn
(the server is warm), Debian's Chromium opens ``--loads`` pages one after another, each in a new browser
context (a visitor's tab), and closes each the way a person closes a tab (``beforeunload`` runs).  Per load:
seconds from navigation until the Film stack's R(Q) chart shows a drawn line (an SVG path of the trace,
not a field in the data), or "never" after ``--timeout`` seconds, and every request that leaves 127.0.0.1.
After the loads (and ``--settle`` seconds): the kernel processes the server still runs and their resident
memory.

Configurations (all in one run, so they share the machine's load; ``/proc/loadavg`` is printed):

* ``preheated``  – `workbench start` as shipped (``--preheat 1``): one preheated kernel, the offline template,
  Plotly's bundle as a cached file, Plotly's JupyterLab renderer left out;
* ``cold``       – the same with ``--preheat 0``: every page starts a kernel and runs the notebook.

Targets (issue 18, this 2-core machine): median ≤ 3 s, p95 ≤ 5 s, no load without a drawn chart, no
external request, ≤ 2 kernels and ≤ 1.5 GB resident after the closed pages.

    python benchmarks/bench_dashboard.py [--loads 20] [--pause 0] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from _report import finish
from browser_support import chromium, free_port, kernel_processes, leave, stop_server, wait_for_http, watched_page

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
DRAWN = """() => {
    const el = document.querySelector('.wb-stack-panel .js-plotly-plot');
    const t = el && el.data && el.data[0];
    const line = el && el.querySelector('.scatterlayer .trace path.js-line');
    return !!(t && t.x && t.x.length > 100 && line && (line.getAttribute('d') || '').length > 100);
}"""
CONFIGS = {"preheated": ["--preheat", "1"], "cold": ["--preheat", "0"]}


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def kernel_memory_mb(server_pid: int) -> float:
    """Resident memory (MB) of the ipykernel processes the server ``server_pid`` started."""
    total = 0
    for pid in kernel_processes(server_pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total / 1024


def one_load(browser, url: str, timeout: float) -> tuple[float | None, list[str]]:
    problems: list[str] = []
    context = browser.new_context()
    page = watched_page(context, problems)
    t0 = time.perf_counter()
    try:
        page.goto(url, timeout=timeout * 1000)
        page.wait_for_function(DRAWN, timeout=timeout * 1000)
        seconds: float | None = time.perf_counter() - t0
    except Exception:  # noqa: BLE001 - a load that never draws is what is counted
        seconds = None
    leave(page)
    context.close()
    return seconds, [p for p in problems if "request leaving the machine" in p]


def measure(name: str, extra: list[str], loads: int, pause: float, timeout: float, settle: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-dashboard-{name}-"))
    home = folder / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "cfg"),
        "JUPYTER_RUNTIME_DIR": str(home / "rt"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "IPYTHONDIR": str(home / "ipy"),
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = open(folder / "voila.log", "w")
    cmd = [WORKBENCH, "start", "--no-browser", "--port", str(port), "--workspace", str(folder / "ws"), *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        if not wait_for_http(url, proc, within=180, request_timeout=600):
            raise RuntimeError(f"{name}: the server did not answer; see {folder / 'voila.log'}")
        seconds: list[float | None] = []
        external: list[str] = []
        with chromium() as browser:
            warm, _ = one_load(browser, url, timeout)  # the first page of the server's life, not counted
            time.sleep(pause)
            before = len(kernel_processes(proc.pid))
            for _ in range(loads):
                s, requests = one_load(browser, url, timeout)
                seconds.append(s)
                external += requests
                time.sleep(pause)
        time.sleep(settle)
        drawn = sorted(s for s in seconds if s is not None)
        return {
            "warm_up_s": warm,
            "seconds": seconds,
            "median_s": statistics.median(drawn) if drawn else None,
            "p95_s": drawn[min(len(drawn) - 1, round(0.95 * (len(drawn) - 1)))] if drawn else None,
            "never_drawn": sum(s is None for s in seconds),
            "external_requests": external,
            "kernels_before": before,
            "kernels_after": len(kernel_processes(proc.pid)),
            "kernel_memory_mb": kernel_memory_mb(proc.pid),
        }
    finally:
        stop_server(proc)
        log.close()


def report(results: dict) -> None:
    print(
        f"{results['loads']} consecutive loads per configuration, {results['pause']} s apart; load average "
        f"{results['load_before']} before, {results['load_after']} after"
    )
    print(f"{'':10s} {'median s':>9s} {'p95 s':>7s} {'never':>6s} {'external':>9s} {'kernels':>8s} {'kernel MB':>10s}")
    for name, r in results["configs"].items():
        median = f"{r['median_s']:.1f}" if r["median_s"] is not None else "—"
        p95 = f"{r['p95_s']:.1f}" if r["p95_s"] is not None else "—"
        print(
            f"{name:10s} {median:>9s} {p95:>7s} {r['never_drawn']:6d} {len(r['external_requests']):9d} "
            f"{r['kernels_after']:8d} {r['kernel_memory_mb']:10.0f}"
        )
        print(f"{'':10s} each load: {', '.join('never' if s is None else f'{s:.1f}' for s in r['seconds'])}")
    p = results["configs"].get("preheated")
    if p and p["median_s"] is not None:
        met = (
            p["median_s"] <= 3
            and p["p95_s"] <= 5
            and not p["never_drawn"]
            and not p["external_requests"]
            and p["kernels_after"] <= 2
            and p["kernel_memory_mb"] <= 1536
        )
        print(
            f"targets (median ≤ 3 s, p95 ≤ 5 s, all drawn, offline, ≤ 2 kernels, ≤ 1.5 GB): "
            f"{'met' if met else 'MISSED'}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", type=int, default=20)
    ap.add_argument("--pause", type=float, default=0.0, help="seconds between loads (a visitor reading the page)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds after which a load counts as never drawn")
    ap.add_argument("--settle", type=float, default=10.0, help="seconds after the last load before kernels are counted")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = {"loads": args.loads, "pause": args.pause, "load_before": loadavg(), "configs": {}}
    for name in args.configs:
        results["configs"][name] = measure(name, CONFIGS[name], args.loads, args.pause, args.timeout, args.settle)
    results["load_after"] = loadavg()
    return finish(results, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())

"""Film stack panel: time from a slider change to both figures updated (Python side, 308 Q points).

Measures what the kernel does per slider step — StackModel.set_value, R(Q) with the fast engine
and the probe's resolution, the 900-point SLD profile, and the two FigureWidget batch updates —
without a browser (the browser test prints the end-to-end slider → redraw time).  Three numbers:

- single change: one slider step on an idle panel until both charts are sent (the target: 100 ms);
- drag: steps arriving every ``--interval`` ms (a pointer drag); the latency of each redraw from
  the change it shows, how many steps were drawn, and the time from the last step to its redraw;
- burst: ``--burst`` steps at once; redraws coalesce, so the last value is drawn after about two
  redraws instead of after ``--burst`` of them (what a queue of stale redraws would cost).

    python benchmarks/bench_ui.py [--steps 100] [--interval 10] [--burst 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import finish


def run(steps: int, interval_ms: float = 10.0, burst: int = 20) -> dict:
    from workbench.ui.context import AppContext
    from workbench.ui.stack_panel import StackPanel

    with tempfile.TemporaryDirectory() as tmp:
        ctx = AppContext(tmp, autosave_delay=10.0)
        panel = StackPanel(ctx)
        slider = panel.row(3, "thickness").slider
        values = np.linspace(120.0, 240.0, steps)
        slider.value = float(values[-1])  # warm-up: numba, resolution plans, the worker thread
        panel.wait_redrawn()
        single, compute = [], []
        for v in values:
            t0 = time.perf_counter()
            slider.value = float(v)
            panel.wait_redrawn()
            single.append((time.perf_counter() - t0) * 1e3)
            compute.append(panel.last_redraw_ms)
        # a drag: one step every interval, without waiting for the redraws
        start, drawn, latencies = panel.redraws, panel.redraws, []
        for v in values[::-1]:
            slider.value = float(v)
            if panel.redraws != drawn:
                drawn = panel.redraws
                latencies.append(panel.last_latency_ms)
            time.sleep(interval_ms / 1e3)
        t_last = time.perf_counter()
        panel.wait_redrawn()
        drag_final = (time.perf_counter() - t_last) * 1e3
        latencies.append(panel.last_latency_ms)
        drag_drawn = panel.redraws - start
        # a burst of steps at once
        bursts, burst_redraws = [], []
        for k in range(5):
            before = panel.redraws
            t0 = time.perf_counter()
            for v in np.linspace(130.0 + k, 230.0 - k, burst):
                slider.value = float(v)
            panel.wait_redrawn()
            bursts.append((time.perf_counter() - t0) * 1e3)
            burst_redraws.append(panel.redraws - before)
        ctx.save_settings()
    single, compute, latencies = np.array(single), np.array(compute), np.array(latencies)
    return {
        "steps": steps,
        "q_points": 308,
        "median_ms": float(np.median(single)),
        "p95_ms": float(np.percentile(single, 95)),
        "max_ms": float(single.max()),
        "median_preview_ms": float(np.median(compute)),
        "drag_interval_ms": interval_ms,
        "drag_steps": steps,
        "drag_redraws": drag_drawn,
        "drag_median_latency_ms": float(np.median(latencies)),
        "drag_p95_latency_ms": float(np.percentile(latencies, 95)),
        "drag_last_step_to_redraw_ms": drag_final,
        "burst": burst,
        "burst_median_ms": float(np.median(bursts)),
        "burst_redraws": float(np.median(burst_redraws)),
        "burst_if_queued_ms": float(burst * np.median(single)),
    }


def report(r: dict) -> None:
    print(f"slider change → R(Q) + SLD figures updated ({r['q_points']} Q points):")
    print(
        f"  single change ({r['steps']} steps): median {r['median_ms']:.1f} ms, 95th percentile {r['p95_ms']:.1f} ms, "
        f"max {r['max_ms']:.1f} ms (of which compute + figure push: median {r['median_preview_ms']:.1f} ms)"
    )
    print(
        f"  drag (a step every {r['drag_interval_ms']:g} ms, {r['drag_steps']} steps): {r['drag_redraws']} redraws, "
        f"each {r['drag_median_latency_ms']:.1f} ms after its change "
        f"(95th percentile {r['drag_p95_latency_ms']:.1f} ms); "
        f"last step drawn {r['drag_last_step_to_redraw_ms']:.1f} ms after it"
    )
    print(
        f"  burst of {r['burst']} steps at once: last value drawn after {r['burst_median_ms']:.1f} ms "
        f"({r['burst_redraws']:.0f} redraws; one redraw per step would take ≈ {r['burst_if_queued_ms']:.0f} ms)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--interval", type=float, default=10.0, help="ms between drag steps")
    parser.add_argument("--burst", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    return finish(run(args.steps, args.interval, args.burst), report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())

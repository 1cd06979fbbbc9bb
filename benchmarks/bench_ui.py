"""Film stack panel: time from a slider change to both figures updated (Python side, 308 Q points).

Measures what the kernel does per slider step — StackModel.set_value, R(Q) with the fast engine
and the probe's resolution, the 900-point SLD profile, and the two FigureWidget batch updates —
without a browser (the browser test prints the end-to-end slider → redraw time).

    python benchmarks/bench_ui.py [--steps 200] [--json out.json]
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


def run(steps: int) -> dict:
    from workbench.ui.context import AppContext
    from workbench.ui.stack_panel import StackPanel

    with tempfile.TemporaryDirectory() as tmp:
        ctx = AppContext(tmp, autosave_delay=10.0)
        panel = StackPanel(ctx)
        slider = panel.row(3, "thickness").slider
        values = np.linspace(120.0, 240.0, steps)
        slider.value = float(values[-1])  # warm-up: numba, resolution plans
        total, compute = [], []
        for v in values:
            t0 = time.perf_counter()
            slider.value = float(v)
            total.append((time.perf_counter() - t0) * 1e3)
            compute.append(panel.last_redraw_ms)
        ctx.save_settings()
    total, compute = np.array(total), np.array(compute)
    return {"steps": steps, "q_points": 308, "median_ms": float(np.median(total)), "p95_ms": float(np.percentile(total, 95)),
            "max_ms": float(total.max()), "median_preview_ms": float(np.median(compute))}


def report(r: dict) -> None:
    print(f"slider change → R(Q) + SLD figures updated ({r['q_points']} Q points, {r['steps']} steps):")
    print(f"  median {r['median_ms']:.1f} ms, 95th percentile {r['p95_ms']:.1f} ms, max {r['max_ms']:.1f} ms "
          f"(of which compute + figure push: median {r['median_preview_ms']:.1f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    return finish(run(args.steps), report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())

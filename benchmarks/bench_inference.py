"""Single-curve CPU latency of the inference path, side by side with what it replaced.

What is compared, for the default compact NR → SLD model and the default parameter model, on one
curve with ONE torch thread under ``torch.no_grad()`` (as ``workbench.analysis.predict`` calls it):

* ``eager``        – the model itself in eval mode;
* ``workbench``    – :func:`workbench.models.inference.inference_module`: an eval copy, BatchNorm folded
  into the convolutions, Sequentials calling their modules directly, under ``torch.inference_mode``;
* ``TorchScript``  – the traced, frozen copy the workbench used before (``torch.jit.trace`` + ``freeze``,
  deprecated in the torch we pin: it warns; measured only as the reference).

The three are called in rotation (``--rounds`` rounds of ``--calls`` calls each) so that they share the
machine's load; the report gives each one's median over all calls, its best round's median, the ratio to
TorchScript and ``/proc/loadavg`` before and after.  Target: the compact model ≤ 2 ms for one curve.

    python benchmarks/bench_inference.py [--rounds 7] [--calls 300] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import finish

from workbench.models import build_model
from workbench.models.inference import inference_module

TARGET_MS = 2.0


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
    except OSError:
        return "n/a"


def torchscript(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit is deprecated: this copy is only the reference
        return torch.jit.freeze(torch.jit.trace(model, x))


def timed(module: torch.nn.Module, x: torch.Tensor, calls: int) -> list[float]:
    out = []
    with torch.no_grad():
        for _ in range(calls):
            t0 = time.perf_counter()
            module(x)
            out.append((time.perf_counter() - t0) * 1e3)
    return out


def measure(kind: str, rounds: int, calls: int) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_model({"kind": kind}).eval()
    x = torch.randn(1, 308)
    t0 = time.perf_counter()
    ours = inference_module(model, x)
    built_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    script = torchscript(model, x)
    built_script = time.perf_counter() - t0
    paths = {"eager": model, "workbench": ours, "TorchScript": script}
    with torch.no_grad():
        expected = model(x)
        for module in paths.values():
            torch.testing.assert_close(module(x), expected, rtol=1e-4, atol=1e-5)
            timed(module, x, 30)  # warm-up
    samples: dict[str, list[float]] = {k: [] for k in paths}
    best: dict[str, float] = {k: float("inf") for k in paths}
    for _ in range(rounds):
        for name, module in paths.items():
            t = timed(module, x, calls)
            samples[name] += t
            best[name] = min(best[name], statistics.median(t))
    median = {k: statistics.median(v) for k, v in samples.items()}
    return {
        "median_ms": median,
        "best_round_ms": best,
        "ratio_to_torchscript": {k: median[k] / median["TorchScript"] for k in paths},
        "build_s": {"workbench": built_ours, "TorchScript": built_script},
    }


def report(results: dict[str, Any]) -> None:
    print(f"single-curve CPU latency, 1 torch thread, {results['rounds']} rounds × {results['calls']} calls")
    print(f"load average before {results['load_before']}, after {results['load_after']}; {results['cpu']}")
    print(f"{'model':10s} {'path':12s} {'median ms':>10s} {'best round':>11s} {'/ TorchScript':>14s}")
    for kind, r in results["models"].items():
        for path in ("eager", "workbench", "TorchScript"):
            print(
                f"{kind:10s} {path:12s} {r['median_ms'][path]:10.3f} {r['best_round_ms'][path]:11.3f} "
                f"{r['ratio_to_torchscript'][path]:14.2f}"
            )
        built = r["build_s"]
        print(f"{'':10s} built in: workbench {built['workbench']:.3f} s, TorchScript {built['TorchScript']:.2f} s")
    compact = results["models"]["compact"]["median_ms"]["workbench"]
    print(f"target: compact ≤ {TARGET_MS:g} ms → {compact:.2f} ms: {'met' if compact <= TARGET_MS else 'MISSED'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if "model name" in line), "?")
    results: dict[str, Any] = {
        "rounds": args.rounds,
        "calls": args.calls,
        "cpu": f"{cpu}, {os.cpu_count()} CPUs, torch {torch.__version__}",
        "load_before": loadavg(),
    }
    results["models"] = {kind: measure(kind, args.rounds, args.calls) for kind in ("compact", "param")}
    results["load_after"] = loadavg()
    return finish(results, report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())

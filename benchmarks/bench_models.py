"""NR → SLD models side by side: the pyreflect-parity CNN vs the compact model, same data, same time.

What is compared
----------------
Two NR → SLD models, trained and tested on exactly the same data:

* ``parity CNN`` – pyreflect's CNN at its best published setting,
  ``{"kind": "parity_cnn", "layers": 6, "dropout": 0.1, "kernel_size": 51}`` (~148 M weights, 91 %
  of them in the final dense layer), batch size 64 (pyreflect's);
* ``compact``    – the workbench default, ``{"kind": "compact"}`` with its default width, stages and
  latent size (~1.4 M weights), batch size 64 as well (``--compact-batch-size``), so both see the same
  number of optimiser steps per sample and the only difference is the model.

Data: ONE data set of N curves (default 20,000) from pyreflect's default stack,
``generate_to_disk(FilmStack.default(), GeneratorConfig(num_curves=N, seed=0), folder)``, cached in
``--data-dir`` (default: a folder under the system temp dir named after N and the seed) and reused
when it is already there.  ``nr_workflow.prepare(dataset, "sld", PreprocessConfig())`` splits it
80/10/10 (seeded) and fits the min-max normalisers on the training split; both models get the same
``Prepared`` object, so the same inputs, targets and test curves.

Training: ``workbench.training.Trainer`` with Adam, learning rate 1e-3, seed 0, on the CPU with
``torch.set_num_threads(2)`` (``--threads``), each model for the SAME wall-clock budget
(``--seconds``, default 600 s per model).  The trainer runs whole epochs (each one followed by a
validation pass), so the budget is a listener on the run's ``Reporter`` (:class:`TimeBudget`) that
calls ``reporter.stop.stop(...)`` once the budget is spent; the trainer then ends after the batch
in progress.  The budget counts the whole ``fit()`` (training batches and the per-epoch validation
passes, as a user waits for them).  A stopped run keeps the weights it has (no best-weights
restore), and that is the model that is tested.

Reported per model: parameter count; training samples/s = samples trained / seconds spent inside
training batches (batch assembly, forward, backward, optimiser step; validation passes excluded);
epochs completed (and the fraction of an epoch reached); test SLD R² and MAE in physical units
(1e-6 Å⁻²) and the log-R RMSE of the NR computed from 100 predicted profiles
(``nr_workflow.evaluate`` on the test split); and the single-curve CPU latency: the median of 200
``model(x[None])`` calls in eval mode under ``torch.no_grad()`` with ONE torch thread, after 10
warm-up calls.

Targets (from the issue): the compact model ≥ 10× smaller than the parity CNN, at least as accurate
(test SLD R² ≥ the parity CNN's and MAE ≤ its MAE) and ≤ 2 ms for one curve on the CPU.

Run from the repository root (on an otherwise idle machine: two busy torch threads sharing a core
with another process slow down many times over)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_models.py [--n 20000] [--seconds 600] [--json out.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch
from _report import finish

from workbench.data.dataset import META_FILE, Dataset, load_dataset
from workbench.data.generate import GeneratorConfig, generate_to_disk
from workbench.data.preprocess import PreprocessConfig
from workbench.events import Event, Progress, Reporter
from workbench.models import build_model, count_parameters
from workbench.models.inference import inference_module
from workbench.physics import FilmStack
from workbench.training import nr_workflow
from workbench.training.nr_workflow import Prepared
from workbench.training.trainer import STAGE, TrainConfig, Trainer

PARITY = "parity CNN"
COMPACT = "compact"
MODELS: dict[str, dict[str, Any]] = {
    PARITY: {"kind": "parity_cnn", "layers": 6, "dropout": 0.1, "kernel_size": 51, "n_q": 308, "n_z": 900},
    COMPACT: {"kind": "compact", "n_q": 308, "n_z": 900},
}
PARITY_BATCH_SIZE = 64  # pyreflect's

TARGET_SIZE_RATIO = 10.0  # compact at least this many times smaller than the parity CNN
TARGET_LATENCY_MS = 2.0  # one curve, CPU
ISSUE_N, ISSUE_SECONDS = 20_000, 600.0  # the setting the targets are stated for


# --------------------------------------------------------------------------- data
def default_data_dir(n: int, seed: int) -> Path:
    return Path(tempfile.gettempdir()) / f"workbench-bench-models-n{n}-seed{seed}"


def load_or_generate(n: int, seed: int, folder: Path) -> tuple[Dataset, dict[str, Any]]:
    """The cached data set in ``folder`` if it is there (checked: N, seed, stack), else generate it."""
    stack = FilmStack.default()
    info: dict[str, Any] = {"path": str(folder)}
    if (folder / META_FILE).exists():
        ds = load_dataset(folder)
        gen = ds.meta.get("generator", {})
        want_stack = json.loads(json.dumps(stack.to_layer_desc()))
        if (
            gen.get("num_curves") != n
            or gen.get("seed") != seed
            or ds.meta.get("stack", {}).get("layer_desc") != want_stack
        ):
            raise SystemExit(
                f"{folder} holds another data set (num_curves={gen.get('num_curves')}, seed={gen.get('seed')}); "
                "remove it or pass another --data-dir"
            )
        info.update(source="reused", generation_seconds=ds.meta.get("generation_seconds"))
    else:
        print(f"generating {n:,} curves (seed {seed}) into {folder} ...", flush=True)
        t0 = time.perf_counter()
        generate_to_disk(stack, GeneratorConfig(num_curves=n, seed=seed), folder)
        info.update(source="generated", generation_seconds=time.perf_counter() - t0)
        ds = load_dataset(folder)
    info["content_hash"] = ds.content_hash
    return ds, info


# --------------------------------------------------------------------------- training
class ClockedReporter(Reporter):
    """A Reporter that notes when each training batch starts.

    The trainer calls :meth:`check_stop` first thing in every batch (before it assembles the batch)
    and emits a ``Progress`` event right after the optimiser step (``progress_every=1``), so the
    time between the two is the batch's training time, with the validation passes left out.
    """

    def __init__(self) -> None:
        super().__init__()
        self.batch_started: float | None = None

    def check_stop(self) -> None:
        self.batch_started = time.perf_counter()
        super().check_stop()


class TimeBudget:
    """Listener: stops the run once ``seconds`` of wall-clock time have passed since :meth:`start`.

    It also counts the batches and samples trained and the seconds spent inside training batches,
    and prints each epoch and a heartbeat line every ``heartbeat`` seconds.
    """

    def __init__(self, reporter: ClockedReporter, seconds: float, n_train: int, batch_size: int, label: str) -> None:
        self.reporter, self.seconds, self.label = reporter, seconds, label
        self.n_train, self.batch_size = n_train, batch_size
        self.n_batches = max(1, -(-n_train // batch_size))
        self.heartbeat = max(10.0, seconds / 10)
        self.t0 = self.last_beat = 0.0
        self.batches = self.samples = 0
        self.train_seconds = 0.0
        self.stopped_at: float | None = None

    def start(self) -> None:
        self.t0 = self.last_beat = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __call__(self, event: Event) -> None:
        now = time.perf_counter()
        if event.stage != STAGE:
            return
        if isinstance(event, Progress):
            b = (event.done - 1) % self.n_batches  # batch index within its epoch; the last one may be short
            self.samples += min(self.batch_size, self.n_train - b * self.batch_size)
            self.batches += 1
            started = self.reporter.batch_started if self.reporter.batch_started is not None else now
            self.train_seconds += now - started
        elif getattr(event, "name", None) == "epoch":
            d = event.data
            print(
                f"  {self.label}: epoch {d['epoch']} train loss {d['train_loss']:.4g} val loss {d['val_loss']:.4g} "
                f"({d['seconds']:.1f} s incl. validation)",
                flush=True,
            )
        if now - self.last_beat >= self.heartbeat:
            self.last_beat = now
            print(
                f"  {self.label}: {now - self.t0:6.0f} s, {self.batches:,} batches, {self.samples:,} samples",
                flush=True,
            )
        if self.stopped_at is None and now - self.t0 >= self.seconds:
            self.stopped_at = now - self.t0
            self.reporter.stop.stop(f"time budget of {self.seconds:g} s spent")


def train_for_budget(
    label: str, config: dict[str, Any], batch_size: int, prepared: Prepared, seconds: float, seed: int
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build ``config`` and train it on ``prepared`` for ``seconds`` of wall-clock time."""
    torch.manual_seed(seed)
    model = build_model(config)
    train_config = TrainConfig(
        optimizer="adam",
        learning_rate=1e-3,
        epochs=100_000,
        batch_size=batch_size,
        seed=seed,
        device="cpu",
        progress_every=1,
    )
    reporter = ClockedReporter()
    budget = TimeBudget(reporter, seconds, len(prepared.split["train"]), batch_size, label)
    reporter.listeners.append(budget)
    trainer = Trainer(model, prepared.x, prepared.y, prepared.split, train_config, reporter=reporter)
    print(f"{label}: {count_parameters(model):,} parameters, batch size {batch_size}, {seconds:g} s budget", flush=True)
    budget.start()
    result = trainer.fit()
    fit_seconds = budget.elapsed()
    stats = {
        "model_config": dict(model.config),
        "batch_size": batch_size,
        "parameters": count_parameters(model),
        "status": result.status,
        "epochs_done": result.epochs_done,
        "batches": budget.batches,
        "batches_per_epoch": budget.n_batches,
        "epochs_fraction": budget.batches / budget.n_batches,
        "samples": budget.samples,
        "fit_seconds": fit_seconds,
        "train_seconds": budget.train_seconds,
        "samples_per_s": budget.samples / budget.train_seconds if budget.train_seconds > 0 else float("nan"),
        "history": result.history,
    }
    return model, stats


# --------------------------------------------------------------------------- latency
def latency_ms(model: torch.nn.Module, x: torch.Tensor, calls: int = 200, warmup: int = 10) -> dict[str, Any]:
    """Single-curve latency in eval mode, no grad, one torch thread, through the module that
    ``workbench.analysis.predict`` uses (an eval copy with BatchNorm folded, see workbench/models/inference.py)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = inference_module(model.eval(), x[None])
    times: list[float] = []
    try:
        with torch.no_grad():
            for _ in range(warmup):
                model(x[None])
            for _ in range(calls):
                t0 = time.perf_counter()
                model(x[None])
                times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    ms = np.asarray(times) * 1e3
    return {
        "median_ms": float(statistics.median(ms)),
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
        "calls": calls,
        "warmup": warmup,
        "threads": 1,
    }


# --------------------------------------------------------------------------- benchmark
def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    folder = args.data_dir or default_data_dir(args.n, args.seed)
    ds, data_info = load_or_generate(args.n, args.seed, folder)
    pre = PreprocessConfig(seed=args.seed)
    prepared = nr_workflow.prepare(ds, "sld", pre)
    sizes = {k: len(v) for k, v in prepared.split.items()}
    print(f"data: {ds.n:,} curves ({data_info['source']}), split {sizes}", flush=True)
    test = prepared.split["test"]
    x_one = torch.as_tensor(np.asarray(prepared.x[test[:1]], dtype=np.float32))[0]

    batch_sizes = {PARITY: PARITY_BATCH_SIZE, COMPACT: args.compact_batch_size}
    models: dict[str, dict[str, Any]] = {}
    for label, config in MODELS.items():
        model, stats = train_for_budget(label, config, batch_sizes[label], prepared, args.seconds, args.seed)
        print(f"  {label}: {stats['status']} after {stats['fit_seconds']:.1f} s; testing ...", flush=True)
        t0 = time.perf_counter()
        stats["test"] = nr_workflow.evaluate(model, ds, prepared, test)
        stats["eval_seconds"] = time.perf_counter() - t0
        stats["latency"] = latency_ms(model, x_one, args.latency_calls, args.latency_warmup)
        models[label] = stats
        del model
        gc.collect()

    p, c = models[PARITY], models[COMPACT]
    ratio = p["parameters"] / c["parameters"]
    r2_ok = c["test"]["sld_r2"] >= p["test"]["sld_r2"]
    mae_ok = c["test"]["sld_mae"] <= p["test"]["sld_mae"]
    targets = {
        "size": {
            "target": f"compact >= {TARGET_SIZE_RATIO:g}x smaller",
            "measured": ratio,
            "met": ratio >= TARGET_SIZE_RATIO,
        },
        "accuracy": {
            "target": "compact test SLD R2 >= parity CNN's and MAE <= parity CNN's",
            "measured": {
                "r2": [c["test"]["sld_r2"], p["test"]["sld_r2"]],
                "mae": [c["test"]["sld_mae"], p["test"]["sld_mae"]],
            },
            "r2_met": r2_ok,
            "mae_met": mae_ok,
            "met": r2_ok and mae_ok,
        },
        "latency": {
            "target": f"compact <= {TARGET_LATENCY_MS:g} ms for one curve on the CPU",
            "measured": c["latency"]["median_ms"],
            "met": c["latency"]["median_ms"] <= TARGET_LATENCY_MS,
        },
    }
    return {
        "config": {
            "n": ds.n,
            "seed": args.seed,
            "seconds_per_model": args.seconds,
            "data": data_info,
            "split": sizes,
            "preprocess": pre.model_dump(mode="json"),
            "optimizer": "adam",
            "learning_rate": 1e-3,
            "device": "cpu",
            "issue_setting": ds.n == ISSUE_N and args.seconds == ISSUE_SECONDS,
        },
        "threads": {
            "torch_training": args.threads,
            "torch_latency": 1,
            "cpu_count": os.cpu_count(),
            "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
        },
        "platform": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "torch": torch.__version__,
            "machine": platform.machine(),
            "processor": platform.processor(),
        },
        "models": models,
        "targets": targets,
    }


# --------------------------------------------------------------------------- report
def print_report(res: dict[str, Any]) -> None:
    cfg, thr, models = res["config"], res["threads"], res["models"]
    p, c = models[PARITY], models[COMPACT]
    print()
    print(
        f"NR -> SLD on {cfg['n']:,} curves of pyreflect's default stack ({cfg['data']['source']} data set "
        f"{cfg['data']['path']}); split train/val/test {cfg['split']['train']:,}/{cfg['split']['val']:,}/"
        f"{cfg['split']['test']:,}; Adam lr 1e-3, {cfg['seconds_per_model']:g} s wall clock per model"
    )
    print(
        f"torch threads: {thr['torch_training']} for training, 1 for latency (cpu_count {thr['cpu_count']}); "
        f"torch {res['platform']['torch']}"
    )
    before, after = thr["load_average_1min_before_after"]
    print(
        f"1-min load average before/after: {before:.2f} / {after:.2f} (other processes on these cores slow every row)"
    )

    def epochs(m: dict[str, Any]) -> str:
        return f"{m['epochs_done']} ({m['epochs_fraction']:.2f})"

    rows: list[tuple[str, str, str]] = [
        ("parameters", f"{p['parameters']:,}", f"{c['parameters']:,}"),
        ("batch size", f"{p['batch_size']}", f"{c['batch_size']}"),
        ("training samples/s", f"{p['samples_per_s']:,.1f}", f"{c['samples_per_s']:,.1f}"),
        ("samples trained", f"{p['samples']:,}", f"{c['samples']:,}"),
        ("epochs completed (reached)", epochs(p), epochs(c)),
        (
            "fit / in batches, s",
            f"{p['fit_seconds']:.1f} / {p['train_seconds']:.1f}",
            f"{c['fit_seconds']:.1f} / {c['train_seconds']:.1f}",
        ),
        ("run status", p["status"], c["status"]),
        ("test SLD R²", f"{p['test']['sld_r2']:.4f}", f"{c['test']['sld_r2']:.4f}"),
        ("test SLD MAE (1e-6 Å⁻²)", f"{p['test']['sld_mae']:.4f}", f"{c['test']['sld_mae']:.4f}"),
        (
            "computed NR log R RMSE",
            f"{p['test'].get('computed_nr_log_r_rmse', float('nan')):.4f}",
            f"{c['test'].get('computed_nr_log_r_rmse', float('nan')):.4f}",
        ),
        ("1-curve CPU latency, median", f"{p['latency']['median_ms']:.2f} ms", f"{c['latency']['median_ms']:.2f} ms"),
        (
            "  p10 / p90",
            f"{p['latency']['p10_ms']:.2f} / {p['latency']['p90_ms']:.2f} ms",
            f"{c['latency']['p10_ms']:.2f} / {c['latency']['p90_ms']:.2f} ms",
        ),
    ]
    widths = (30, 24, 24)
    header = ("", f"{PARITY} (6 layers)", COMPACT)
    line = header[0].ljust(widths[0]) + "  " + "  ".join(h.rjust(w) for h, w in zip(header[1:], widths[1:]))
    print(line)
    print("-" * len(line))
    for name, a, b in rows:
        print(name.ljust(widths[0]) + "  " + a.rjust(widths[1]) + "  " + b.rjust(widths[2]))
    print(
        "samples/s: samples / seconds inside training batches (validation passes excluded); epochs: completed "
        "(fraction of an epoch reached); test metrics on the "
        f"{p['test']['test_curves']:,} test curves, computed NR on the first {min(100, p['test']['test_curves'])}; "
        f"latency: median of "
        f"{c['latency']['calls']} calls after {c['latency']['warmup']} warm-up, eval mode, no grad, 1 thread"
    )

    print()
    t = res["targets"]
    verdict = {True: "MET", False: "NOT MET"}
    print(f"target {t['size']['target']}: {t['size']['measured']:,.1f}x -> {verdict[t['size']['met']]}")
    acc = t["accuracy"]
    print(
        f"target {acc['target']}: R2 {acc['measured']['r2'][0]:.4f} vs {acc['measured']['r2'][1]:.4f} "
        f"({verdict[acc['r2_met']]}), MAE {acc['measured']['mae'][0]:.4f} vs {acc['measured']['mae'][1]:.4f} "
        f"({verdict[acc['mae_met']]}) -> {verdict[acc['met']]}"
    )
    print(f"target {t['latency']['target']}: {t['latency']['measured']:.2f} ms -> {verdict[t['latency']['met']]}")
    if not cfg["issue_setting"]:
        print(
            f"note: N={cfg['n']:,}, {cfg['seconds_per_model']:g} s per model is not the issue's setting "
            f"(N={ISSUE_N:,}, {ISSUE_SECONDS:g} s): the accuracy verdict is a smoke test only"
        )
    if thr["cpu_count"] != 2:
        print(f"note: this machine has {thr['cpu_count']} cores; the comparison is stated for 2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=ISSUE_N, help="curves in the data set (20000)")
    parser.add_argument(
        "--seconds", type=float, default=ISSUE_SECONDS, help="wall-clock training budget per model (600)"
    )
    parser.add_argument("--compact-batch-size", type=int, default=64, help="batch size of the compact model (64)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training and testing (2)")
    parser.add_argument("--latency-calls", type=int, default=200, help="timed single-curve calls (200)")
    parser.add_argument("--latency-warmup", type=int, default=10, help="untimed warm-up calls (10)")
    parser.add_argument("--seed", type=int, default=0, help="data, split and training seed (0)")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="data-set cache folder (default: <tmp>/workbench-bench-models-n<N>-seed<seed>; reused if present)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)

    return finish(run(args), print_report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())

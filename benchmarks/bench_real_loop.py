"""The whole loop on a real curve: does a model trained for this sample earn its place?

The REF_L run 212592 (``../shared/data/real/ornl-ref-l-212592``: a ~740 Å film of 20 alternating
PEO / dPS layers on SiOx / Si, 416 points, Q 0.0084–0.269 Å⁻¹) is fitted from nothing by three arms,
side by side in one run, each given the same wall-clock budget (``--minutes``, default 10) on this
machine:

(a) **hand-fit family**: the facility's hand fit (``manual_fit_spreadsheet.csv``) as a sample family,
    every layer free within ±20 % in thickness, ±0.5 in SLD and ±5 Å in roughness
    (``SampleFamily.from_dict({"from": spreadsheet, "ranges": ...})``).  A parameter model trains on
    the fly for ``--train-share`` of the budget (fresh curves every batch on the data's Q range), predicts
    the stack from the measured curve, and the least-squares refinement polishes it (every layer, plus
    the probe's scale and background).  Time left after the polish goes to least-squares fits from
    starts scattered around the prediction (±10 % of each range), until χ²/N ≤ the target or the budget.
(b) **guessed family**: the same film (the hand fit's sequence of 20 PEO and dPS layers, its structure)
    with none of its values: every PEO layer starts at SLD 1.9, every dPS layer at 4.75, all at 40 Å and
    11.5 Å roughness, within the wide ranges a scientist would guess for a PEO / dPS multilayer
    (thickness 20–60 Å, PEO SLD 0.3–3.5, dPS SLD 3–6.5, roughness 3–20 Å; SiOx 5–25 Å), the PEO layers
    tied to one another and the dPS layers likewise (the sampler draws 10 numbers).  Same steps as (a);
    the refinement then frees every layer (the ties released) within the family's ranges.
(c) **random multi-start, no model**: least-squares fits from uniform random starts inside the same
    bounds (one run on (a)'s, one on (b)'s), until χ²/N ≤ the target or the budget.

Reported per arm: the time to each stage, the model start's χ²/N against the data (all merged points
with an error bar, N stated), the median χ²/N of 200 random starts in the same bounds (the ratio is
the model's worth as a start), the best χ²/N reached and when it first went below the target.

(d) **default stack, 10 minutes** (``--only default``; not in the default arm list because it answers
    another question): an NR → SLD compact model trained on the fly on the default stack for the same
    budget; its test SLD R² on the fixed on-the-fly test split (2,048 fresh curves of the default stack,
    never trained on).  ``bench_models.py``'s 600 s run on a 20,000-curve data set reached 0.931.

Targets (issue 20): (a) and (b) reach χ²/N ≤ 3 within 10 minutes from nothing; the model's start at
least 10× lower χ²/N than the median random start; (d) SLD R² ≥ 0.98 after 10 minutes.

Run from the repository root, on a quiet machine (the load average is printed at start and end)::

    PYTHONPATH=. .venv/bin/python benchmarks/bench_real_loop.py [--minutes 10] [--only a b c d] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import finish

from workbench.analysis.predict import predict_measurement
from workbench.analysis.refine import build_problem, model_curves_fast, parameter_name, refine
from workbench.data.family import SampleFamily
from workbench.data.generate import GeneratorConfig
from workbench.data.handfit import load_handfit_spreadsheet
from workbench.data.measured import load_measurement
from workbench.data.parameters import stacks_from_parameters
from workbench.events import Cancelled, Record, Reporter
from workbench.physics import FilmStack
from workbench.store.model_bundle import load_model
from workbench.training.config import TrainConfig
from workbench.training.on_the_fly import OnTheFly
from workbench.workflows.training import TrainRequest, run_training

DATA = Path(os.environ.get("WORKBENCH_EXAMPLE_DATA", ROOT.parent / "shared" / "data")) / "real" / "ornl-ref-l-212592"
TARGET = 3.0
PROBE_BOUNDS = {"probe.scale": (0.8, 1.2), "probe.background": (0.0, 1e-5)}
GRID = {"q_min": 0.0084, "q_max": 0.269, "num_q": 350}  # the measurement's Q range, as log-spaced model points
RANDOM_STARTS = 200


def hand_fit_family() -> FilmStack:
    return SampleFamily.from_dict(
        {
            "name": "REF_L 212592 hand fit ±20 %",
            "from": str(DATA / "manual_fit_spreadsheet.csv"),
            "ranges": {"thickness": "20%", "sld": 0.5, "roughness": 5},
        }
    ).expand()


def guessed_family() -> FilmStack:
    """The hand fit's layer sequence (its names and order: the structure of the film), none of its values."""
    hand = [layer.name for layer in load_handfit_spreadsheet(DATA / "manual_fit_spreadsheet.csv").layers[2:-1]]
    guess = {
        "PEO": {"sld": 1.9, "thickness": 40, "roughness": 11.5},
        "dPS": {"sld": 4.75, "thickness": 40, "roughness": 11.5},
    }
    polymer = [{"name": name, **guess[name.split("_")[0]]} for name in hand]
    return SampleFamily.from_dict(
        {
            "name": "PEO/dPS multilayer, guessed ranges",
            "layers": [
                {"name": "Si", "sld": 2.07, "isld": 0.0, "thickness": 0, "roughness": 3},
                {"name": "SiOx", "sld": 3.47, "thickness": 12, "roughness": 3},
                *polymer,
                {"name": "air", "sld": 0.0, "thickness": 0, "roughness": 0},
            ],
            "overrides": {
                "Si": {"roughness": [1, 8]},
                "SiOx": {"sld": [3.0, 4.2], "thickness": [5, 25], "roughness": [1, 8]},
                "dPS_*": {"sld": [3.0, 6.5], "thickness": [20, 60], "roughness": [3, 20]},
                "PEO_*": {"sld": [0.3, 3.5], "thickness": [20, 60], "roughness": [3, 20]},
            },
            "ties": [f"{kind}_*.{par}" for kind in ("PEO", "dPS") for par in ("sld", "thickness", "roughness")],
        }
    ).expand()


def fit_bounds(stack: FilmStack) -> dict[str, tuple[float, float]]:
    """Every varying parameter of the family by its own range (ties released), plus the probe."""
    bounds = {parameter_name(stack, b.i, b.par): (b.lo, b.hi) for b in stack.free_parameters}
    return {**bounds, **PROBE_BOUNDS}


def chi2_per_point(data, stack: FilmStack, bounds: dict[str, tuple[float, float]]) -> tuple[float, int]:
    problem = build_problem(data, stack, free=list(bounds), bounds=bounds)
    r = model_curves_fast(problem, problem.x0[None])[0]
    return float(np.mean(((r - problem.r) / problem.dr) ** 2)), int(problem.q.size)


def random_stacks(stack: FilmStack, n: int, seed: int) -> Iterator[FilmStack]:
    """Up to ``n`` stacks with every family parameter uniform in its range (seeded), drawn as needed."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        s = stack
        for b in stack.free_parameters:
            s = s.with_value(b.i, b.par, float(rng.uniform(b.lo, b.hi)))
        yield s


def scattered(stack: FilmStack, family: FilmStack, spread: float, rng: np.random.Generator) -> FilmStack:
    """``stack`` with each family parameter moved by up to ±``spread`` of its range (kept inside it)."""
    s = stack
    for b in family.free_parameters:
        v = s.get(b.i, b.par) + rng.uniform(-spread, spread) * (b.hi - b.lo)
        s = s.with_value(b.i, b.par, float(np.clip(v, b.lo, b.hi)))
    return s


class Clock:
    """One arm's wall time against its budget, and its χ²/N timeline.

    It listens to the refinement's iterations (so the time to the target is when an iteration first
    reached it, not when the fit returned) and stops a fit once the budget is spent; the arm then keeps
    the best iterate it reached.
    """

    def __init__(self, budget: float, n_points: int) -> None:
        self.t0 = time.perf_counter()
        self.budget = budget
        self.n_points = n_points
        self.best = np.inf
        self.reached: float | None = None
        self.timeline: list[tuple[float, float]] = []

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    @property
    def left(self) -> float:
        return self.budget - self.elapsed

    def score(self, chi2: float) -> None:
        if chi2 < self.best:
            self.best = chi2
            self.timeline.append((round(self.elapsed, 1), round(chi2, 3)))
        if self.reached is None and chi2 <= TARGET:
            self.reached = self.elapsed

    def fit(self, data, start: FilmStack, bounds, max_nfev: int) -> bool:
        """One least-squares fit from ``start``, scored as it goes; False when the budget stopped it."""
        reporter = Reporter()

        def listen(event) -> None:
            if isinstance(event, Record) and event.name == "iteration":
                self.score(event.data["chi2"] / self.n_points)
                if self.left <= 0:
                    reporter.stop.stop("budget spent")

        reporter.listeners.append(listen)
        try:
            result = refine(data, start, free=list(bounds), bounds=bounds, max_nfev=max_nfev, reporter=reporter)
        except Cancelled:
            return False
        self.score(result.chi2_per_point)
        return True


def polish(data, start: FilmStack, bounds, clock: Clock, family: FilmStack, seed: int, max_nfev: int) -> int:
    """Least squares from ``start``, then from starts scattered around it while time is left; the fits run."""
    fits = 0
    rng = np.random.default_rng(seed)
    candidate = start
    while True:
        finished = clock.fit(data, candidate, bounds, max_nfev)
        fits += 1
        if not finished or clock.reached is not None or clock.left < 5:
            return fits
        candidate = scattered(start, family, 0.1, rng)


def train_config(args, seconds: float) -> TrainConfig:
    """The arms' training settings: until the clock (``seconds``), batches of 64, the chosen schedule."""
    return TrainConfig(
        epochs=100_000,
        minutes=seconds / 60,
        threads=args.threads,
        seed=args.seed,
        batch_size=64,
        schedule=args.schedule,
        scaling=args.scaling,
    )


def model_arm(name: str, family: FilmStack, data, budget: float, args, work: Path) -> dict[str, Any]:
    bounds = fit_bounds(family)
    clock = Clock(budget, chi2_per_point(data, family, bounds)[1])
    train_seconds = args.train_share * budget
    request = TrainRequest(
        target="params",
        on_the_fly=OnTheFly.of(family, generator=GeneratorConfig(**GRID), batches_per_epoch=args.batches_per_epoch),
        out=work / f"model-{name}",
        train=train_config(args, train_seconds),
        model=dict(args.model),
        name=f"bench-real-loop-{name}",
    )
    outcome = run_training(request)
    trained = clock.elapsed
    bundle = load_model(outcome.bundle)
    prediction = predict_measurement(bundle, data)
    start = stacks_from_parameters(bundle.config, prediction.parameters[None, :])[0]
    predicted = clock.elapsed
    start_chi2, n_points = chi2_per_point(data, start, bounds)
    clock.score(start_chi2)
    randoms = [chi2_per_point(data, s, bounds)[0] for s in random_stacks(family, RANDOM_STARTS, args.seed)]
    scoring = clock.elapsed - predicted
    fits = polish(data, start, bounds, clock, family, args.seed, args.max_nfev)
    trust = prediction.trust.to_dict() if prediction.trust is not None else {}
    return {
        "arm": name,
        "family": family.family.get("name") if getattr(family, "family", None) else name,
        "free_parameters": len(bounds),
        "drawn_parameters": getattr(family, "drawn_parameters", len(family.free_parameters)),
        "train_seconds": round(trained, 1),
        "epochs": outcome.epochs_done,
        "train_status": outcome.status,
        "val_loss": outcome.best_val_loss,
        "predict_seconds": round(predicted - trained, 2),
        "points": n_points,
        "model_start_chi2_per_point": start_chi2,
        "median_random_start_chi2_per_point": float(np.median(randoms)),
        "start_ratio": float(np.median(randoms)) / start_chi2,
        "random_scoring_seconds": round(scoring, 1),
        "polish_fits": fits,
        "best_chi2_per_point": clock.best,
        "seconds_to_target": None if clock.reached is None else round(clock.reached, 1),
        "seconds": round(clock.elapsed, 1),
        "timeline": clock.timeline,
        "trust": {k: trust.get(k) for k in ("verdict", "chi2_per_point", "distance_percentile", "at_bound")},
    }


def random_arm(name: str, family: FilmStack, data, budget: float, args) -> dict[str, Any]:
    bounds = fit_bounds(family)
    clock = Clock(budget, chi2_per_point(data, family, bounds)[1])
    fits, starts = 0, []
    for s in random_stacks(family, 100_000, args.seed + 1):
        starts.append(chi2_per_point(data, s, bounds)[0])
        finished = clock.fit(data, s, bounds, args.max_nfev)
        fits += 1
        if not finished or clock.reached is not None or clock.left < 5:
            break
    return {
        "arm": name,
        "free_parameters": len(bounds),
        "fits": fits,
        "median_random_start_chi2_per_point": float(np.median(starts)),
        "best_chi2_per_point": clock.best,
        "seconds_to_target": None if clock.reached is None else round(clock.reached, 1),
        "seconds": round(clock.elapsed, 1),
        "timeline": clock.timeline,
    }


def default_arm(budget: float, args, work: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    request = TrainRequest(
        target="sld",
        on_the_fly=OnTheFly.of(FilmStack.default(), batches_per_epoch=args.batches_per_epoch),
        out=work / "model-default",
        train=train_config(args, budget),
        model=dict(args.model),
        name="bench-real-loop-default",
    )
    outcome = run_training(request)
    metrics = outcome.metrics
    return {
        "arm": "d",
        "seconds": round(time.perf_counter() - t0, 1),
        "epochs": outcome.epochs_done,
        "status": outcome.status,
        "test_r2": metrics.get("sld_r2"),
        "test_mae": metrics.get("sld_mae"),
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
    }


def print_report(res: dict[str, Any]) -> None:
    print(
        f"\nREF_L 212592, budget {res['budget_s']:.0f} s per arm, torch threads {res['threads']}, "
        f"learning-rate schedule {res['schedule']}, model settings {res.get('model') or 'the defaults'}, "
        f"scaling {res.get('scaling', 'minmax')}"
    )
    print(f"load average at start {res['load_start']}, at end {res['load_end']}")
    for arm in res["arms"]:
        if arm["arm"] in ("a", "b"):
            hit = "—" if arm["seconds_to_target"] is None else f"{arm['seconds_to_target']:.0f} s"
            print(
                f"({arm['arm']}) {arm['family']}: {arm['free_parameters']} free ({arm['drawn_parameters']} drawn); "
                f"trained {arm['train_seconds']:.0f} s ({arm['epochs']} epochs), "
                f"model start χ²/N {arm['model_start_chi2_per_point']:.4g} vs median random start "
                f"{arm['median_random_start_chi2_per_point']:.4g} ({arm['start_ratio']:.1f}× better), "
                f"best χ²/N {arm['best_chi2_per_point']:.3g} after {arm['polish_fits']} fit(s), "
                f"≤ {TARGET:g} at {hit}, total {arm['seconds']:.0f} s; trust: {arm['trust'].get('verdict')}"
            )
        elif arm["arm"].startswith("c"):
            hit = "—" if arm["seconds_to_target"] is None else f"{arm['seconds_to_target']:.0f} s"
            print(
                f"({arm['arm']}) random multi-start in {arm['bounds_of']}'s bounds: {arm['fits']} fits, median start "
                f"χ²/N {arm['median_random_start_chi2_per_point']:.4g}, best {arm['best_chi2_per_point']:.3g}, "
                f"≤ {TARGET:g} at {hit}, total {arm['seconds']:.0f} s"
            )
        else:
            print(
                f"(d) default stack, NR → SLD on the fly: {arm['epochs']} epochs in {arm['seconds']:.0f} s, "
                f"test SLD R² {arm['test_r2']}, MAE {arm['test_mae']}"
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock budget of each arm")
    parser.add_argument("--only", nargs="+", default=["a", "b", "ca", "cb"], choices=["a", "b", "ca", "cb", "d"])
    parser.add_argument("--train-share", type=float, default=0.6, help="share of (a)/(b)'s budget spent training")
    parser.add_argument("--batches-per-epoch", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the curve producer takes another core)")
    parser.add_argument("--max-nfev", type=int, default=2000)
    parser.add_argument(
        "--schedule",
        default="cosine",
        choices=["none", "cosine"],
        help="learning-rate schedule of the trainings (cosine: annealed to the time budget)",
    )
    parser.add_argument(
        "--scaling",
        default="auto",
        choices=["auto", "minmax", "standard"],
        help="how the trainings scale log R and SLD",
    )
    parser.add_argument(
        "--model",
        type=json.loads,
        default={},
        help='architecture settings of the trained models, as JSON (e.g. \'{"width": 32, "stem_stride": 2}\'); '
        "default: the model kinds' defaults",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"the REF_L data are not at {DATA} (set WORKBENCH_EXAMPLE_DATA)", file=sys.stderr)
        return 2
    data = load_measurement(DATA / "REFL_212592_reduced.txt", dq_convention="fwhm")
    budget = args.minutes * 60
    res: dict[str, Any] = {
        "budget_s": budget,
        "threads": args.threads,
        "schedule": args.schedule,
        "model": args.model,
        "scaling": args.scaling,
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "arms": [],
    }
    families = {"a": hand_fit_family, "b": guessed_family}
    with tempfile.TemporaryDirectory(prefix="bench-real-loop-") as tmp:
        work = Path(tmp)
        for arm in args.only:
            print(f"arm {arm} … (load {os.getloadavg()[0]:.2f})", flush=True)
            if arm in families:
                out = model_arm(arm, families[arm](), data, budget, args, work)
            elif arm in ("ca", "cb"):
                out = random_arm(arm, families[arm[1]](), data, budget, args)
                out["bounds_of"] = arm[1]
            else:
                out = default_arm(budget, args, work)
            res["arms"].append(out)
            print(f"  {out}", flush=True)
    res["load_end"] = [round(x, 2) for x in os.getloadavg()]
    return finish(res, print_report, args.json)


if __name__ == "__main__":
    raise SystemExit(main())

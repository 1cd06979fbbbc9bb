"""Train an ensemble: K model bundles on one data set and split, seeds seed … seed+K−1, calibrated, saved atomically.

    outcome = run_ensemble(TrainRequest(data="ws/datasets/d1", out="ws/models/e1"), k=5)
    outcome.calibration["coverage"]["calibrated"]["68 %"]["all"]   # ≈ 0.68 on the test split

Each member is trained by the one training entry point (:func:`~workbench.workflows.training.run_training`)
with seed ``seed + i``, which changes its initial weights and batch order.  The split is drawn from
the request's seed for every member (:class:`MemberRequest`): a single model's split follows its
seed, but members with different splits would each have trained on the others' test curves, and the
calibration on the validation split and the coverage on the test split would be meaningless.

On the fly (``request.on_the_fly``), member ``i`` trains on the endless stream of seed ``seed + i``, so no
two members see the same curve.  The bands are then calibrated and measured on fresh curves of the same
family from seed ``seed + K``, which no member's stream used (:func:`calibrate_on_stream`): held out from
every member, as a data set's validation and test splits are.  Each member gets the request's settings,
its time budget included (K members of 10 minutes take 50 minutes).

Events: each member's epoch records are relayed with the ensemble's running epoch count and the member's
number (``epoch``, ``member``, ``member_epoch``), so the ensemble's run shows one loss curve, member after
member, and no member's epochs overwrite another's in the registry.

On disk (a folder): ``ensemble.json`` (format, member names, seeds, calibration and test coverage)
and the member bundles ``member-0`` … ``member-{K−1}``.  Everything is written into a temporary folder
beside the target and renamed into place when all members are trained and calibrated, so a
half-trained ensemble never appears under the real name.  With a registry the ensemble is recorded
as one ``ensemble`` run (its log, the coverage in its metrics); members are not registered one by one.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from ..analysis.ensemble import calibrate_on_dataset, calibrate_on_split, coverage_lines
from ..data.preprocess import PreprocessConfig
from ..events import Event, Record, Reporter
from ..fileio import replace_folder
from ..store.model_bundle import (
    MAX_MEMBERS,
    Ensemble,
    is_ensemble,
    load_model_bundle,
    write_ensemble_info,
)
from ..store.recorded import recorded_run
from ..store.registry import Registry
from ..training.on_the_fly import OnTheFly, fixed_sets
from .training import TrainingOutcome, TrainRequest, run_training


class MemberRequest(TrainRequest):
    """A member's request: its own seed for weights and batch order, the ensemble's seed for the split."""

    split_seed: int = Field(0, ge=0, description="seed of the train/validation/test split, shared by all members")

    def preprocess(self) -> PreprocessConfig:
        return super().preprocess().model_copy(update={"seed": self.split_seed})


@dataclass
class EnsembleOutcome:
    """How an ensemble run ended: ``completed`` with its folder and calibration, or the status of the member that
    did not finish (paused, stopped: nothing is written)."""

    status: str
    path: Path | None
    members: list[TrainingOutcome] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    run_id: str | None = None


MEMBERS = "ensemble_members"  # the member count beside a training request's fields (a run's params, a job's request)


def ensemble_params(request: TrainRequest, k: int) -> dict[str, Any]:
    """An ensemble's run parameters and job request: the training request's fields and the member count."""
    return {**request.model_dump(mode="json"), MEMBERS: k}


def from_params(params: dict[str, Any]) -> tuple[TrainRequest, Any]:
    """(the training request, the member count as given) of :func:`ensemble_params`' dict; checked by the caller."""
    values = dict(params)
    members = values.pop(MEMBERS, None)
    return TrainRequest(**values), members


def check_request(request: TrainRequest, k: int) -> None:
    """Refuse what cannot make an ensemble, before anything is trained."""
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= MAX_MEMBERS:
        raise ValueError(f"an ensemble needs 2 to {MAX_MEMBERS} members, got {k!r}")
    if request.target == "chi":
        raise ValueError("ensembles are for NR → SLD and NR → parameter models (--target sld or params), not χ")
    out = request.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} is a file; an ensemble is written as a folder")
    if out.is_dir() and any(out.iterdir()) and not (is_ensemble(out) or (out / "config.json").is_file()):
        raise ValueError(f"{out} is a folder that holds neither a model nor an ensemble; choose another --out")


def run_ensemble(
    request: TrainRequest,
    k: int,
    reporter: Reporter | None = None,
    registry: Registry | None = None,
    *,
    run_id: str | None = None,
) -> EnsembleOutcome:
    """Train ``k`` members as ``request`` says, calibrate their bands, write the ensemble to ``request.out``.

    ``run_id``: the queued run of an ``ensemble`` job (:func:`~workbench.batch.jobs.submit_job`) to record into.
    """
    check_request(request, k)
    reporter = reporter if reporter is not None else Reporter()
    if registry is None:
        return _train(request, k, reporter, None)
    params = ensemble_params(request, k)
    with recorded_run(
        registry,
        "ensemble",
        name=request.run_name,
        params=params,
        reporter=reporter,
        run_id=run_id,
        resume=run_id is not None,
    ) as run:
        outcome = _train(request, k, run.reporter, run.id)
        if outcome.status != "completed":
            run.status = outcome.status
            return outcome
        run.model = str(outcome.path)
        cov = outcome.calibration.get("coverage", {})
        run.metrics.update({"members": k, "coverage": cov, "factors": outcome.calibration.get("factors")})
        for line in coverage_lines(outcome.calibration):
            run.log(line)
        return outcome


def _train(request: TrainRequest, k: int, reporter: Reporter, run_id: str | None) -> EnsembleOutcome:
    t0 = time.perf_counter()
    out = request.out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    outcomes: list[TrainingOutcome] = []
    try:
        names = [f"member-{i}" for i in range(k)]
        seeds = [request.train.seed + i for i in range(k)]
        for i, (name, seed) in enumerate(zip(names, seeds)):
            reporter.log("ensemble", f"member {i + 1} of {k} (seed {seed})")
            member = MemberRequest(
                **{**request.model_dump(), "checkpoint": tmp / f"{name}.checkpoint.safetensors", "hub_repo": None},
                split_seed=request.train.seed,
            ).model_copy(
                update={
                    "out": tmp / name,
                    "name": f"{request.run_name} {name}",
                    "train": request.train.model_copy(update={"seed": seed}),
                }
            )
            outcome = run_training(member, _relay(reporter, i, sum(o.epochs_done for o in outcomes)))
            outcomes.append(outcome)
            if not outcome.finished:
                shutil.rmtree(tmp, ignore_errors=True)
                return EnsembleOutcome(outcome.status, None, outcomes, seconds=time.perf_counter() - t0, run_id=run_id)
            Path(member.checkpoint).unlink(missing_ok=True)  # the bundle holds the kept weights
        info: dict[str, Any] = {"name": request.run_name, "members": names, "seeds": seeds}
        info["target"], info["split_seed"] = request.target, request.train.seed
        ensemble = Ensemble([load_model_bundle(tmp / n) for n in names], info, tmp)
        if request.on_the_fly is not None:
            info["calibration_seed"] = request.train.seed + k
            reporter.log(
                "ensemble",
                f"calibrating the bands on fresh curves of the family (seed {request.train.seed + k}, which no member "
                "trained on), measuring them on as many others",
            )
            info["calibration"] = calibrate_on_stream(ensemble, request.on_the_fly, request.train.seed + k)
        else:
            reporter.log("ensemble", "calibrating the bands on the validation split, measuring them on the test split")
            info["calibration"] = calibrate_on_dataset(ensemble, request.data)
        write_ensemble_info(tmp, info)
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for line in coverage_lines(info["calibration"]):
        reporter.log("ensemble", line)
    return EnsembleOutcome(
        "completed", out, outcomes, info["calibration"], seconds=time.perf_counter() - t0, run_id=run_id
    )


def calibrate_on_stream(ensemble: Ensemble, settings: OnTheFly, seed: int) -> dict[str, Any]:
    """Calibrate an on-the-fly ensemble on fresh curves of its family from stream ``seed``, measure on others.

    The curves are the fixed validation and test sets of that stream (``settings.val_curves`` and
    ``test_curves``), drawn over the family's whole ranges: a prior-bounds ensemble is calibrated for
    predictions inside its family's ranges, its default.
    """
    few = settings.model_copy(update={"fit_curves": 16})  # the normalisation set is not needed here
    ds, split = fixed_sets(few, seed)
    return calibrate_on_split(ensemble, ds, {"val": split["val"], "test": split["test"]})


def _relay(reporter: Reporter, member: int, epochs_before: int) -> Reporter:
    """A member's reporter: its events go to ``reporter`` (epochs counted on from the members before), and it
    honours the ensemble's stop and pause."""

    def forward(event: Event) -> None:
        if isinstance(event, Record) and event.name == "epoch" and "epoch" in event.data:
            n = int(event.data["epoch"])
            data = {**event.data, "epoch": epochs_before + n, "member": member + 1, "member_epoch": n}
            event = Record(event.stage, event.name, data, time=event.time)
        reporter.emit(event)

    relay = Reporter([forward], stop=reporter.stop)
    relay.pause = reporter.pause
    return relay

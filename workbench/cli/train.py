"""``workbench train``: a :class:`~workbench.workflows.training.TrainRequest` from the options, run by the one pipeline.

Training settings and architecture options are generated from :class:`~workbench.training.TrainConfig`
and the model settings (:mod:`workbench.models.settings`).  The first Ctrl-C pauses (a checkpoint is
written; ``workbench runs resume ID`` or the History tab continue it), a second one stops.
``--threads`` and ``--minutes`` (a wall-clock budget) come from TrainConfig like every other setting.
``--detach`` runs the training as a job in its own process (:mod:`workbench.batch.jobs`), prints its run id
and returns at once: ``workbench runs watch|pause|stop ID`` attach to it.
``--on-the-fly`` trains on fresh curves generated for every batch from ``--stack`` (a sample family, a
hand-fit spreadsheet, a stack file, or ``default``) instead of ``--data``; with ``--minutes`` and no
``--epochs`` it trains until the budget.
Exit codes: 0 completed (also early-stopped or at the time budget) or paused, 2 bad input, 130 stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..batch.jobs import submit_job
from ..events import Reporter, tqdm_listener
from ..models.settings import SETTINGS
from ..physics import FilmStack
from ..training import TrainConfig
from ..training.on_the_fly import OnTheFly
from ..workflows.training import TrainingOutcome, TrainRequest, run_training
from .common import (
    add_workspace_option,
    interrupts,
    load_config_file,
    print_epochs,
    registry_of,
    validation_message,
    workspace_of,
)
from .options import add_model_options, given
from .stacks import RANGE_OPTIONS, add_family_options, apply_family_options, family_or_stack

TRAIN_HIDDEN = ("device", "progress_every")  # device has its own option text below; progress is the CLI's business
EPOCHS_UNTIL_BUDGET = 100_000  # TrainConfig's largest
MODEL_FIELDS = {kind: [n for n in cls.model_fields if n != "kind"] for kind, cls in SETTINGS.items()}


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    tr = sub.add_parser("train", help="train an NR → SLD, NR → parameter or SLD → χ model on a data set; Ctrl-C pauses")
    tr.add_argument("--data", help="data-set folder (workbench generate, or a pyreflect pair); or --on-the-fly")
    tr.add_argument("--out", required=True, help="model bundle folder to write")
    tr.add_argument("--config", help="YAML or JSON with training settings (and 'model': {...})")
    tr.add_argument(
        "--target",
        choices=["sld", "params", "chi"],
        default="sld",
        help="sld: NR → SLD profile; params: NR → layer parameters; chi: SLD → χ (data: train_data.npy/train_pars.npy)",
    )
    tr.add_argument("--model", choices=list(SETTINGS), help="architecture (default: compact / param / chi by target)")
    names = set()
    for kind, cls in SETTINGS.items():
        group = tr.add_argument_group(f"{kind} model")
        names.update(add_model_options(group, cls, exclude=("kind", "hidden", "mlp_hidden", *names)))
    group = tr.add_argument_group("training")
    add_model_options(group, TrainConfig, exclude=TRAIN_HIDDEN)
    group.add_argument("--device", help="auto, cpu, cuda, cuda:1")
    tr.add_argument(
        "--validation-split",
        type=float,
        help="validationSplit: fraction held out for validation (0.1); as much again for test",
    )
    tr.add_argument("--checkpoint", help="checkpoint file (default: in the run's folder, else next to --out)")
    tr.add_argument("--resume", help="continue a paused run from this checkpoint (as a new run)")
    tr.add_argument(
        "--detach",
        action="store_true",
        help="run as a job in its own process (outlives this shell); print its run id and return at once",
    )
    tr.add_argument(
        "--scheduler",
        help="with --detach: run the job on a worker of this Dask scheduler, tcp://host:8786 (default "
        "$WORKBENCH_SCHEDULER; 'local': here); the workspace must be on a file system the workers share",
    )
    tr.add_argument("--hub-repo", help="Hub model repo to upload checkpoints to (private; see --hub-every)")
    tr.add_argument(
        "--hub-every", type=int, default=1, help="upload a checkpoint at most every N epochs (default: %(default)s)"
    )
    add_on_the_fly_options(tr)
    add_workspace_option(tr)
    tr.set_defaults(func=cmd_train)
    return tr


def add_on_the_fly_options(tr: argparse.ArgumentParser) -> None:
    group = tr.add_argument_group("on-the-fly data (instead of --data)")
    group.add_argument(
        "--on-the-fly",
        action="store_true",
        help="generate fresh curves for every batch (never the same curve twice), seeded by --seed",
    )
    group.add_argument(
        "--stack",
        help="the film to draw from: a sample family YAML/JSON, a hand-fit spreadsheet .csv, a stack file, a "
        "refinement.json, or 'default' (the default stack)",
    )
    add_family_options(group)
    group.add_argument("--batches-per-epoch", type=int, help="fresh batches between two validations (default: 200)")


def _on_the_fly(args: argparse.Namespace, settings: dict[str, Any]) -> OnTheFly | None:
    """The on-the-fly settings of ``--on-the-fly`` (with ``--config``'s ``on_the_fly`` entry), else None."""
    extra = settings.pop("on_the_fly", None)
    family_given = args.stack or args.tie or any(getattr(args, d) for d in RANGE_OPTIONS.values())
    if not args.on_the_fly:
        if family_given or args.batches_per_epoch or extra is not None:
            raise ValueError("--stack, the range options and --batches-per-epoch go with --on-the-fly")
        return None
    if args.data:
        raise ValueError("give --data or --on-the-fly, not both")
    if args.target == "chi":
        raise ValueError("--on-the-fly makes NR curves; --target chi trains on a χ data folder (--data)")
    base, where = (
        (FilmStack.default(), "the default stack")
        if args.stack in (None, "default")
        else (family_or_stack(args.stack), args.stack)
    )
    stack = apply_family_options(base, args, where)
    values = dict(extra or {})
    if args.batches_per_epoch is not None:
        values["batches_per_epoch"] = args.batches_per_epoch
    return OnTheFly.of(stack, **values)


def _model_settings(args: argparse.Namespace, settings: dict[str, Any]) -> dict[str, Any]:
    model = dict(settings.pop("model", {}) or {})
    if args.model:
        model["kind"] = args.model
    kind = model.get("kind") or {"sld": "compact", "params": "param", "chi": "chi"}[args.target]
    typed = given(args, sorted({n for fields in MODEL_FIELDS.values() for n in fields}))
    foreign = [n for n in typed if n not in MODEL_FIELDS[kind]]
    if foreign:
        raise ValueError(
            f"{', '.join('--' + n.replace('_', '-') for n in foreign)} do(es) not apply to a {kind} model "
            f"(its options: {', '.join(MODEL_FIELDS[kind])})"
        )
    return {**model, **typed}


def request_from_args(args: argparse.Namespace) -> TrainRequest:
    """The training request the options and ``--config`` describe; errors name the bad setting."""
    settings = load_config_file(args.config) if args.config else {}
    model = _model_settings(args, settings)
    split = settings.pop("validation_split", None)
    if args.validation_split is not None:
        split = args.validation_split
    on_the_fly = _on_the_fly(args, settings)
    if on_the_fly is None and not args.data:
        raise ValueError("give the data to train on: --data FOLDER, or --on-the-fly [--stack FAMILY]")
    train = {**settings, **given(args, [n for n in TrainConfig.model_fields if n != "progress_every"])}
    if on_the_fly is not None and train.get("minutes") and "epochs" not in train:
        train["epochs"] = EPOCHS_UNTIL_BUDGET  # fresh data never runs out: the budget ends the run
    try:
        return TrainRequest(
            target=args.target,
            data=args.data,
            on_the_fly=on_the_fly,
            out=args.out,
            checkpoint=args.checkpoint,
            train=TrainConfig(**train),
            model=model,
            name=Path(args.out).name,
            hub_repo=args.hub_repo,
            hub_every=args.hub_every,
            **({"validation_split": split} if split is not None else {}),
        )
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None


def cmd_train(args: argparse.Namespace) -> int:
    request = request_from_args(args)
    if args.detach:
        return _detach(args, request)
    if args.scheduler:
        raise ValueError("--scheduler places a --detach job on a Dask worker: add --detach")
    reporter = Reporter([tqdm_listener("train", "training", "batches"), print_epochs])
    with interrupts(reporter, pause_first=True):
        outcome = run_training(
            request, reporter, registry_of(args), resume_from=args.resume, epochs=args.epochs if args.resume else None
        )
    return report_outcome(outcome, request)


def _detach(args: argparse.Namespace, request: TrainRequest) -> int:
    if args.resume:
        raise ValueError("--detach does not combine with --resume; resume a recorded run with: runs resume ID --detach")
    run_id = submit_job(workspace_of(args), "train", request, scheduler=args.scheduler)
    print(run_id)
    print(
        f"training as a job; follow it with: workbench runs watch {run_id} (pause / stop: workbench runs pause|stop)",
        file=sys.stderr,
    )
    return 0


def report_outcome(outcome: TrainingOutcome, request: TrainRequest) -> int:
    """Print how a training ended; the exit code (0 completed or paused, 130 stopped)."""
    if outcome.status == "paused":
        how = (
            f"workbench runs resume {outcome.run_id}"
            if outcome.run_id
            else (f"workbench train --data {request.data} --out {request.out} --resume {outcome.checkpoint}")
        )
        print(f"paused after {outcome.epochs_done} epochs; checkpoint {outcome.checkpoint}; continue with: {how}")
        return 0
    if outcome.status == "stopped":
        print(
            f"stopped after {outcome.epochs_done} epochs; no model was written"
            + (
                f" (the last checkpoint {outcome.checkpoint} can be resumed)"
                if outcome.checkpoint and outcome.checkpoint.is_file()
                else ""
            ),
            file=sys.stderr,
        )
        return 130
    print(f"{outcome.status} after {outcome.epochs_done} epochs ({outcome.stop_reason}); {_kept(outcome)}")
    print("test metrics:")
    for key, value in outcome.metrics.items():
        print(f"  {key}: {value}")
    print(f"wrote model bundle {outcome.bundle}" + (f" (run {outcome.run_id})" if outcome.run_id else ""))
    return 0


def _kept(outcome: TrainingOutcome) -> str:
    """Which epoch's weights the model holds, and on how many CPU threads it trained."""
    run = outcome.summary
    loss = run.get("best_val_loss")
    return (
        f"kept the weights of epoch {run.get('kept_epoch')}"
        + (f" (validation loss {loss:.4g})" if isinstance(loss, float) else "")
        + f"; {run.get('threads')} CPU threads"
    )

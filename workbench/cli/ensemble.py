"""``workbench ensemble``: train K models as ``workbench train`` would, with seeds seed … seed+K−1, as one ensemble.

It takes every option of ``workbench train`` (the same parser) plus ``--members K``; the members share
the data set's split, and the ensemble's 68 %/95 % bands are calibrated on its validation split and
measured on its test split (:mod:`workbench.workflows.ensemble`).  With ``--on-the-fly`` each member trains
on its own stream of fresh curves of ``--stack`` (``--minutes`` is each member's budget), and the bands are
calibrated and measured on fresh curves none of them saw.  ``--detach`` trains the ensemble as one job
(``workbench runs watch|stop ID``).  Ctrl-C stops (nothing is written).
Exit codes: 0 completed, 2 bad input, 130 stopped.
"""

from __future__ import annotations

import argparse
import sys

from ..analysis.ensemble import coverage_lines
from ..batch.jobs import submit_job
from ..events import Reporter, tqdm_listener
from ..workflows.ensemble import ensemble_params, run_ensemble
from .common import interrupts, print_epochs, registry_of, workspace_of
from .train import add_parser as add_train_parser
from .train import request_from_args


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    scratch = argparse.ArgumentParser(add_help=False).add_subparsers()
    train = add_train_parser(scratch)  # the same options as `workbench train`, kept in one place
    ens = sub.add_parser(
        "ensemble",
        parents=[train],
        conflict_handler="resolve",
        help="train K models on one data set and split, or on the fly (seeds seed … seed+K−1), as an ensemble with "
        "calibrated bands",
    )
    ens.add_argument("--members", type=int, required=True, help="how many models (2 to 32; 5 is a good start)")
    ens.set_defaults(func=cmd_ensemble)
    return ens


def cmd_ensemble(args: argparse.Namespace) -> int:
    for option in ("resume", "hub_repo"):
        if getattr(args, option, None):
            raise ValueError(f"--{option.replace('_', '-')} does not apply to an ensemble (train its members again)")
    if args.scheduler and not args.detach:
        raise ValueError("--scheduler places a --detach job on a Dask worker: add --detach")
    request = request_from_args(args)
    if args.detach:
        job = ensemble_params(request, args.members)
        run_id = submit_job(workspace_of(args), "ensemble", job, scheduler=args.scheduler)
        print(run_id)
        print(f"training the ensemble as a job; follow it with: workbench runs watch {run_id}", file=sys.stderr)
        return 0
    reporter = Reporter([tqdm_listener("train", "training", "batches"), print_epochs])
    with interrupts(reporter):
        outcome = run_ensemble(request, args.members, reporter, registry_of(args))
    if outcome.status != "completed":
        print(f"ensemble {outcome.status}: nothing written", file=sys.stderr)
        return 130
    print(f"ensemble of {args.members} models written to {outcome.path} in {outcome.seconds:.0f} s")
    for line in coverage_lines(outcome.calibration):
        print(line)
    return 0

"""``workbench generate``: a synthetic NR/SLD data set (pyreflect's layout) from a film stack and its bounds.

Generator settings come from ``--config`` (YAML/JSON, with an optional ``stack`` or ``family``) and the
options; ``--stack`` names the film: a sample family file, a hand-fit spreadsheet (.csv), a pyreflect
stack or a ``refinement.json``, with ``--thickness-range 20%`` / ``--sld-range 0.5`` / ``--roughness-range 5``
(± ranges for every layer) and ``--tie 'PEO_*.sld'`` (:mod:`workbench.data.family`);
the run is recorded in the workspace registry and the data set registered by its content hash.
``--hub-repo`` reuses the Hub's copy of the same data set, or uploads it right after generating.
Exit codes: 0 written, 2 bad input, 130 stopped (Ctrl-C; nothing is left half-written).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pydantic import ValidationError

from ..batch.jobs import submit_job
from ..data.family import SampleFamily, stack_meta
from ..data.generate import GeneratorConfig, generate_to_disk
from ..events import Cancelled, Reporter, Timing, tqdm_listener
from ..physics import FilmStack
from ..store.hub import generate_or_fetch
from ..store.recorded import RecordedRun
from .common import (
    add_workspace_option,
    interrupts,
    load_config_file,
    recording,
    validation_message,
    workspace_of,
)
from .stacks import add_family_options, apply_family_options, describe, family_or_stack, parse_stack

OPTIONS = ("num_curves", "seed", "sampling", "sld_points", "chunk_size")


def add_parser(sub: argparse._SubParsersAction) -> None:
    gen = sub.add_parser("generate", help="generate a synthetic NR/SLD data set (pyreflect's layout) into a folder")
    gen.add_argument("--out", required=True, help="folder to write (must not hold a data set unless --overwrite)")
    gen.add_argument("--config", help="YAML or JSON file with generator settings and optionally 'stack' or 'family'")
    gen.add_argument(
        "--stack",
        metavar="FILE",
        help="the film: a sample family YAML/JSON (layers or 'from', repeated blocks, ranges, overrides, ties), a "
        "hand-fit spreadsheet .csv, a pyreflect stack YAML/JSON or a refinement.json (default: the default stack)",
    )
    add_family_options(gen)
    gen.add_argument("--num-curves", type=int, help="numCurves")
    gen.add_argument("--seed", type=int)
    gen.add_argument("--sampling", choices=["lhs", "uniform"])
    gen.add_argument("--sld-points", type=int, help="sldOutputPoints")
    gen.add_argument("--chunk-size", type=int, help="curves per chunk (memory vs. overhead)")
    gen.add_argument("--noise", action="store_true", help="add Poisson counting noise (REF_L-like dR/R)")
    gen.add_argument("--dask", help="'local' for a 2-worker LocalCluster, or a scheduler address tcp://host:port")
    gen.add_argument("--overwrite", action="store_true", help="replace an existing data set in --out")
    gen.add_argument(
        "--hub-repo", help="Hub dataset repo: reuse the data set stored there, or upload it right after generating"
    )
    gen.add_argument(
        "--detach", action="store_true", help="generate as a job in its own process; print its run id and return"
    )
    gen.add_argument(
        "--scheduler",
        help="with --detach: run the job on a worker of this Dask scheduler, tcp://host:8786 (default "
        "$WORKBENCH_SCHEDULER; 'local': here); the workspace must be on a file system the workers share",
    )
    add_workspace_option(gen)
    gen.set_defaults(func=cmd_generate)


def _print_timing(event) -> None:
    if isinstance(event, Timing):
        print(f"{event.items} curves in {event.seconds:.1f} s ({event.rate:,.0f} curves/s)")


def cmd_generate(args: argparse.Namespace) -> int:
    settings = load_config_file(args.config) if args.config else {}
    stack = generation_stack(args, settings)
    print(f"film: {describe(stack)}")
    for key in OPTIONS:
        value = getattr(args, key)
        if value is not None:
            settings[key] = value
    if args.noise:
        settings.setdefault("realism", {})["counting_noise"] = True
    try:
        config = GeneratorConfig(**settings)
    except ValidationError as exc:
        raise ValueError(validation_message(exc)) from None
    refuse_existing_dataset(args.out, args.overwrite)
    if args.detach:
        return _detach(args, stack, config)
    if args.scheduler:
        raise ValueError(
            "--scheduler places a --detach job on a Dask worker: add --detach (--dask spreads one generation over a "
            "cluster)"
        )
    reporter = Reporter([tqdm_listener("generate", "generating", "curves"), _print_timing])
    params = {
        "out": str(Path(args.out).resolve()),
        "generator": config.model_dump(mode="json"),
        "hub_repo": args.hub_repo,
    }
    try:
        with (
            interrupts(reporter),
            recording(args, "generate", name=Path(args.out).name, params=params, reporter=reporter) as run,
        ):
            out = generate_dataset(args, stack, config, reporter)
            record_generated(run, out, config)
    except Cancelled as exc:
        print(f"workbench generate: cancelled: {exc}; nothing was written to {args.out}", file=sys.stderr)
        return 130
    except FileExistsError as exc:
        raise ValueError(str(exc).replace("pass overwrite=True", "pass --overwrite")) from None
    print(f"wrote data set {out}")
    return 0


def _detach(args: argparse.Namespace, stack: FilmStack, config: GeneratorConfig) -> int:
    """Queue the generation as a job in its own process (the ties of a family with it); print its run id."""
    if args.hub_repo or args.dask:
        raise ValueError("--detach runs the generation in one job process: leave out --hub-repo and --dask")
    request = {
        "stack": stack_meta(stack),
        "config": config.model_dump(mode="json"),
        "out": str(Path(args.out).resolve()),
        "overwrite": args.overwrite,
    }
    run_id = submit_job(workspace_of(args), "generate", request, name=Path(args.out).name, scheduler=args.scheduler)
    print(run_id)
    print(f"generating in the background: follow it with `workbench runs watch {run_id}`", file=sys.stderr)
    return 0


def generation_stack(args: argparse.Namespace, settings: dict) -> FilmStack:
    """The stack to draw from: ``--stack``, the config's ``stack`` or ``family``, or the default; options applied."""
    given = [name for name, present in (("--stack", args.stack), ("'stack'", "stack" in settings)) if present]
    given += ["'family'"] if "family" in settings else []
    if len(given) > 1:
        raise ValueError(f"the film is given twice ({' and '.join(given)}); give one")
    stack_value, family_value = settings.pop("stack", None), settings.pop("family", None)
    if args.stack:
        base, where = family_or_stack(args.stack), args.stack
    elif family_value is not None:
        where = f"{args.config}: 'family'"
        base = SampleFamily.from_dict(family_value, where, base=Path(args.config).parent)
    elif stack_value is not None:
        base, where = parse_stack(stack_value, f"{args.config}: 'stack'"), f"{args.config}"
    else:
        base, where = FilmStack.default(), "the default stack"
    return apply_family_options(base, args, where)


def refuse_existing_dataset(out: str, overwrite: bool) -> None:
    if (Path(out) / "dataset.json").exists() and not overwrite:
        raise ValueError(f"{out} already holds a data set; choose another folder or pass --overwrite")


def generate_dataset(args: argparse.Namespace, stack: FilmStack, config: GeneratorConfig, reporter: Reporter) -> Path:
    """Generate into ``args.out``; with ``--hub-repo`` reuse the Hub's copy or upload right after generating."""
    if getattr(args, "hub_repo", None):
        out, reused = generate_or_fetch(
            stack,
            config,
            args.out,
            repo_id=args.hub_repo,
            reporter=reporter,
            overwrite=args.overwrite,
            dask=args.dask,
            progress=False,
        )
        if reused:
            print(f"reused the data set stored on the Hub ({args.hub_repo}); nothing was regenerated")
        return out
    return generate_to_disk(
        stack, config, args.out, reporter=reporter, overwrite=args.overwrite, dask=args.dask, progress=False
    )


def record_generated(run: RecordedRun | None, out: Path, config: GeneratorConfig) -> None:
    """Register the generated data set and attach its content hash to the run."""
    if run is None:
        return
    meta = json.loads((Path(out) / "dataset.json").read_text())
    run.registry.register_dataset(meta["content_hash"], Path(out).resolve(), config.model_dump(mode="json"))
    run.registry.update_run(run.id, dataset_hash=meta["content_hash"])
    run.metrics.update(curves=meta.get("counts", {}).get("curves"))

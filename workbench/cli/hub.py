"""``workbench hub push|pull`` (model bundles to and from a Hugging Face Hub repo) and ``workbench import-pyreflect``.

Exit codes: 0 success, 1 the Hub failed (the local copy is kept) or the files are not usable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..events import Reporter, Warning_
from ..store import hub as H
from ..store.adopt import adopt_bundle, import_pyreflect
from ..store.model_bundle import load_model_bundle
from .common import add_workspace_option, workspace_of


def add_parser(sub: argparse._SubParsersAction) -> None:
    imp = sub.add_parser(
        "import-pyreflect", help="make a model bundle from pyreflect's trained .pth and normalisation .npy"
    )
    imp.add_argument("weights", help="pyreflect CNN state_dict (.pth), e.g. trained_nr_sld_model.pth")
    imp.add_argument("stats", help="pyreflect's normalisation statistics (.npy dict with 'nr' and 'sld')")
    imp.add_argument(
        "--q",
        help="the training Q grid: a .npy of Q values or pyreflect's NR array (default: log-spaced "
        "between the statistics' Q min and max, as pyreflect generates)",
    )
    imp.add_argument("--dq-over-q", type=float, default=0.0294855, help="resolution dQ/Q (FWHM) of the training data")
    imp.add_argument("--name", help="model name (default: the weights file's name)")
    add_workspace_option(imp)
    imp.set_defaults(func=cmd_import_pyreflect)

    hub = sub.add_parser("hub", help="push / pull model bundles to / from a Hugging Face Hub repository")
    hsub = hub.add_subparsers(dest="hub_command", required=True)
    push = hsub.add_parser(
        "push", help="upload a model bundle to models/<model id>/ of a repository (private by default)"
    )
    push.add_argument("bundle", help="model bundle folder")
    push.add_argument("--repo", required=True, help="repository id, user/name")
    push.add_argument("--model-id", help="folder name under models/ (default: the bundle folder's name)")
    push.add_argument("--dataset", help="data-set folder whose nr_train.npy / sld_train.npy go along")
    push.add_argument("--public", action="store_true", help="create the repository public (default: private)")
    pull = hsub.add_parser("pull", help="download models/<model id>/ at a revision into the workspace and register it")
    pull.add_argument("--repo", required=True, help="repository id, user/name")
    pull.add_argument("--model-id", required=True)
    pull.add_argument(
        "--out", help="copy the bundle into this folder instead of the workspace (then it is not registered)"
    )
    for p in (push, pull):
        p.add_argument("--repo-type", choices=["model", "dataset"], default="model")
        p.add_argument("--revision", help="branch, tag or commit (default: main)")
        add_workspace_option(p)
    hub.set_defaults(func=cmd_hub)


def cmd_hub(args: argparse.Namespace) -> int:
    reporter = Reporter(
        [lambda e: print(f"warning: {e.message}", file=sys.stderr) if isinstance(e, Warning_) else None]
    )
    try:
        if args.hub_command == "push":
            ref = H.push_model_bundle(
                args.bundle,
                args.repo,
                model_id=args.model_id,
                dataset=args.dataset,
                repo_type=args.repo_type,
                private=not args.public,
                revision=args.revision,
                reporter=reporter,
            )
            print(f"pushed {args.bundle} to {ref}")
            _note_hub(args, ref)
            return 0
        ref = f"{args.repo}:models/{args.model_id}@{args.revision or 'main'}"
        folder = H.pull_model_bundle(
            args.repo, args.model_id, revision=args.revision, repo_type=args.repo_type, dest=args.out
        )
        if args.out:
            print(f"pulled {ref} → {folder} ({load_model_bundle(folder).task}; not registered: outside the workspace)")
            return 0
        folder, version = adopt_bundle(workspace_of(args), folder, name=args.model_id, hub=ref)
        print(f"pulled {ref} → {folder}, registered as {folder.name} v{version}")
        return 0
    except H.HubUploadError as exc:
        print(f"workbench hub {args.hub_command}: error: {exc}", file=sys.stderr)
        return 1
    except (H.HubError, ValueError) as exc:  # ValueError: a downloaded folder that is not a usable bundle
        print(f"workbench hub {args.hub_command}: error: {exc}", file=sys.stderr)
        return 1


def _note_hub(args: argparse.Namespace, ref) -> None:
    """Remember where a registered model was pushed (when the bundle is in the registry)."""
    try:
        reg = workspace_of(args).registry
        path = str(Path(args.bundle).resolve())
        for m in reg.list_models():
            if Path(m["path"]).resolve() == Path(path):
                reg.set_model_hub(m["name"], m["version"], str(ref))
    except Exception as exc:  # noqa: BLE001 - the push succeeded; the note is a convenience
        print(f"warning: pushed, but the registry was not updated ({exc})", file=sys.stderr)


# ---------------------------------------------------------------------------- workbench import-pyreflect
def cmd_import_pyreflect(args: argparse.Namespace) -> int:
    """pyreflect's trained CNN + its normalisation statistics → a registered bundle in the workspace."""
    try:
        q = None
        if args.q:
            q = np.load(args.q, allow_pickle=False)
            q = q[0, 0] if q.ndim == 3 else (q[0] if q.ndim == 2 else q)  # an NR array (N, 2, nQ) or a Q row
        folder, version = import_pyreflect(
            workspace_of(args), args.weights, args.stats, q=q, dq_over_q=args.dq_over_q, name=args.name
        )
    except (OSError, ValueError) as exc:
        print(f"workbench import-pyreflect: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"pyreflect model → {folder}, registered as {folder.name} v{version}; predict with: workbench predict --model "
        f"{folder} --input FILE --out result.json"
    )
    return 0

"""``workbench start`` / ``workbench dashboard`` (the Voilà dashboard) and ``workbench report`` (a static HTML chart).

``workbench start`` is what the README's first quick-start command runs: it serves the dashboard
notebook (``notebooks/workbench.ipynb``) with Voilà on localhost.  ``workbench report`` is the
headless run: the default film stack (pyreflect's example) as an interactive Plotly HTML file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..batch.dashboard import DEFAULT_CULL_AFTER, DEFAULT_PREHEAT, MAX_PREHEAT, launch_dashboard
from ..fileio import write_text_atomic
from ..physics import FilmStack, Probe
from ..physics.probe import DEFAULT_DQ_OVER_Q_FWHM, DEFAULT_NUM_Q, DEFAULT_Q_MAX, DEFAULT_Q_MIN
from ..plots.curves import stack_figure
from ..plots.views import VIEWS


def add_parser(sub: argparse._SubParsersAction) -> None:
    start = sub.add_parser("start", help="start the Voilà dashboard (notebooks/workbench.ipynb) on this machine")
    start.add_argument("--port", type=int, default=8866, help="port to serve on (default: %(default)s)")
    start.add_argument(
        "--ip", default="127.0.0.1", help="address to listen on (default: %(default)s, this machine only)"
    )
    start.add_argument("--workspace", help="workspace folder (default: $WORKBENCH_HOME, else ~/.workbench)")
    start.add_argument("--no-browser", action="store_true", help="do not open a browser")
    start.add_argument(
        "--cull-after",
        type=float,
        default=DEFAULT_CULL_AFTER,
        help="seconds before a kernel whose page is closed and that runs no job is shut down (0: never; "
        "default: %(default)s)",
    )
    start.add_argument(
        "--preheat",
        type=int,
        default=DEFAULT_PREHEAT,
        help="kernels that build the dashboard before anyone opens it, so pages open ~2x faster when visitors come "
        "a while apart (0: none, every page starts its own kernel; default: %(default)s)",
    )
    start.set_defaults(func=cmd_start)

    report = sub.add_parser("report", help="compute the default film stack and write an interactive HTML report")
    report.add_argument("--out", default="workbench-default.html", help="HTML file to write (default: %(default)s)")
    report.add_argument("--q-min", type=float, default=DEFAULT_Q_MIN, help="Å⁻¹ (default: %(default)s)")
    report.add_argument("--q-max", type=float, default=DEFAULT_Q_MAX, help="Å⁻¹ (default: %(default)s)")
    report.add_argument("--num-q", type=int, default=DEFAULT_NUM_Q, help="number of Q points (default: %(default)s)")
    report.add_argument(
        "--q-resolution", type=float, default=DEFAULT_DQ_OVER_Q_FWHM, help="dQ/Q, FWHM (default: %(default)s)"
    )
    report.add_argument(
        "--view",
        choices=VIEWS,
        default="R",
        help="R(Q) chart drawn as R, R·Q⁴ (RQ4) or R/R_F (R/RF: over the substrate's unsmeared Fresnel curve) "
        "(default: %(default)s)",
    )
    report.set_defaults(func=cmd_report)

    da = sub.add_parser("dashboard", help="serve the dashboard notebook with Voilà")
    da.add_argument("--port", type=int, default=8866, help="(default: %(default)s)")
    da.add_argument(
        "--ip",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s; anyone who reaches it can run jobs)",
    )
    da.add_argument("--notebook", help="another notebook to serve (default: the shipped workbench.ipynb)")
    da.add_argument("--workspace", help="workspace folder (default: $WORKBENCH_HOME, else ~/.workbench)")
    da.add_argument("--no-browser", action="store_true", help="do not open a browser")
    da.add_argument(
        "--cull-after",
        type=float,
        default=DEFAULT_CULL_AFTER,
        help="seconds before a kernel whose page is closed and that runs no job is shut down (0: never; "
        "default: %(default)s)",
    )
    da.add_argument(
        "--preheat",
        type=int,
        default=DEFAULT_PREHEAT,
        help="kernels that build the dashboard before anyone opens it, so pages open ~2x faster when visitors come "
        "a while apart (0: none, every page starts its own kernel; default: %(default)s)",
    )
    da.set_defaults(func=cmd_dashboard)


def cmd_start(args: argparse.Namespace) -> int:
    """Serve the dashboard notebook with Voilà (in this environment's kernel) until Ctrl-C.

    One launcher for ``start`` and ``dashboard`` (:func:`workbench.batch.dashboard.launch_dashboard`):
    the process becomes Voilà, so a signal that stops ``workbench start`` stops the server and its
    kernels too.  The notebook is found like every shipped notebook (checkout, prefix or --user install).
    """
    if args.cull_after < 0:
        raise ValueError(f"--cull-after must be ≥ 0 seconds (0: never), got {args.cull_after:g}")
    if not 0 <= args.preheat <= MAX_PREHEAT:
        raise ValueError(f"--preheat must be between 0 and {MAX_PREHEAT} kernels, got {args.preheat}")
    # Plotly's bundle and its manifest in place before the first page: its template imports the bundle early
    from ..ui.chart_widget import publish_bundle  # imports plotly: only for the commands that serve pages

    publish_bundle()
    return int(
        launch_dashboard(
            args.port,
            getattr(args, "notebook", None),
            not args.no_browser,
            ip=args.ip,
            workspace=args.workspace,
            cull_after=args.cull_after,
            preheat=args.preheat,
        )
    )


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        return cmd_start(args)  # one launcher and one notebook lookup for `start` and `dashboard`
    except FileNotFoundError as exc:
        raise ValueError(str(exc)) from None


def cmd_report(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    stack = FilmStack.default()
    probe = Probe.from_grid(args.q_min, args.q_max, args.num_q, args.q_resolution)
    fig = stack_figure(stack, probe, view=args.view)
    out = Path(args.out).resolve()
    write_text_atomic(out, fig.to_html(include_plotlyjs=True, full_html=True))
    print(
        f"default film stack ({len(stack.layers)} layers, {probe.q.size} Q points) computed in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    print(f"wrote {out}  (open it in a browser: interactive R(Q) and SLD profile)")
    return 0

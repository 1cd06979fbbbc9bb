"""The ``workbench`` command line.

``workbench start`` is what the README's first quick-start command runs.  Until the Voilà
dashboard exists it is a headless run: it computes the default film stack (pyreflect's example)
and writes an interactive Plotly HTML of R(Q) and the SLD profile.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_start(args: argparse.Namespace) -> int:
    from ..physics import FilmStack, Probe
    from ..ui.figures import stack_figure

    t0 = time.perf_counter()
    stack = FilmStack.default()
    probe = Probe.from_grid(args.q_min, args.q_max, args.num_q, args.q_resolution)
    fig = stack_figure(stack, probe)
    out = Path(args.out).resolve()
    _write_atomic(out, fig.to_html(include_plotlyjs=True, full_html=True))
    print(f"default film stack ({len(stack.layers)} layers, {probe.q.size} Q points) computed in {time.perf_counter() - t0:.1f} s")
    print(f"wrote {out}  (open it in a browser: interactive R(Q) and SLD profile)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from ..physics.probe import DEFAULT_DQ_OVER_Q_FWHM, DEFAULT_NUM_Q, DEFAULT_Q_MAX, DEFAULT_Q_MIN

    parser = argparse.ArgumentParser(prog="workbench", description="Neutron reflectometry ML workbench")
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    start = sub.add_parser("start", help="compute the default film stack and write an interactive HTML report")
    start.add_argument("--out", default="workbench-default.html", help="HTML file to write (default: %(default)s)")
    start.add_argument("--q-min", type=float, default=DEFAULT_Q_MIN, help="Å⁻¹ (default: %(default)s)")
    start.add_argument("--q-max", type=float, default=DEFAULT_Q_MAX, help="Å⁻¹ (default: %(default)s)")
    start.add_argument("--num-q", type=int, default=DEFAULT_NUM_Q, help="number of Q points (default: %(default)s)")
    start.add_argument("--q-resolution", type=float, default=DEFAULT_DQ_OVER_Q_FWHM, help="dQ/Q, FWHM (default: %(default)s)")
    start.set_defaults(func=cmd_start)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ValueError as exc:  # our validation errors say what is wrong; no traceback for them
        print(f"workbench {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

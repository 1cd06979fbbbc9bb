"""Start Voilà on the dashboard notebook: what ``workbench dashboard`` (and ``start``) run.

Voilà executes the notebook in a fresh kernel for every visitor and shows only its outputs
(the panels), so anyone who can reach the port can press every button: by default it listens
on 127.0.0.1 only.  Inside JupyterLab/JupyterHub the same notebook is served at
``/voila/render/<path>`` by the server extension instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .notebooks import shipped_notebook

DEFAULT_PORT = 8866
DASHBOARD = "workbench"  # notebooks/workbench.ipynb
DEFAULT_CULL_AFTER = 300.0  # seconds a kernel without a page and without a job is kept
DEFAULT_PREHEAT = 1  # kernels that run the notebook before anyone asks for it
IOPUB_TIMEOUT = 120  # seconds Voilà waits for a cell's output after the cell finished (nbclient's default: 4)
MAX_PREHEAT = 8  # each holds a built app (~300 MB)
UNUSED_LABEXTENSION = "jupyterlab-plotly"
TEMPLATE = "workbench"  # ui/jupyter/voila/templates/workbench: the lab template without requests to a CDN
TEMPLATE_ROOT = Path(__file__).resolve().parents[1] / "ui" / "jupyter"  # a Jupyter data dir (voila/templates/...)


def dashboard_notebook(notebook: str | os.PathLike | None = None) -> Path:
    """``notebook`` if given (must exist), else the shipped dashboard notebook."""
    if notebook is None:
        return shipped_notebook(DASHBOARD)
    path = Path(notebook).expanduser()
    if not path.is_file():
        raise ValueError(f"{path}: no such notebook")
    return path.resolve()


def voila_command(
    notebook: Path,
    port: int = DEFAULT_PORT,
    *,
    open_browser: bool = True,
    ip: str = "127.0.0.1",
    extra: list[str] | None = None,
    cull_after: float = DEFAULT_CULL_AFTER,
    preheat: int = DEFAULT_PREHEAT,
) -> list[str]:
    """The Voilà command line serving ``notebook`` (tracebacks hidden from visitors, no port hopping).

    ``cull_after`` seconds: a kernel whose page is gone (no connection) and that runs no job is shut
    down after that long idle (0: never); a page left open keeps its kernel.  ``preheat`` kernels (0: none)
    run the notebook up to its wait for a visitor (:func:`workbench.ui.app.open_for_visitor`) before anyone
    asks, so a page arrives with its app built; Voilà refills the pool after each visitor and never culls it.

    ``--VoilaExecutor.iopub_timeout``: the app's cell publishes ~600 widget ``comm_open`` messages (~0.5 MB)
    and then its display; the server reads them after the cell's reply and, by nbclient's default, drops
    whatever has not arrived 4 s later.  Under load (a visitor claiming the pool kernel while it still builds
    the app, so the refill kernel starts beside it on 2 cores) the display was dropped and the page showed
    no widgets, ever.  The wait ends at the cell's idle status, so a longer limit costs nothing otherwise.
    """
    if not 0 < port < 65536:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    if cull_after < 0:
        raise ValueError(f"cull_after must be ≥ 0 seconds (0: never), got {cull_after}")
    if not 0 <= preheat <= MAX_PREHEAT:
        raise ValueError(f"preheat must be between 0 and {MAX_PREHEAT} kernels, got {preheat}")
    cmd = [
        sys.executable,
        "-m",
        "voila",
        str(notebook),
        f"--port={port}",
        f"--Voila.ip={ip}",
        "--Voila.port_retries=0",
        f"--Voila.root_dir={notebook.parent}",
        "--show_tracebacks=False",
        f"--template={TEMPLATE}",
        # Plotly's JupyterLab renderer (4.8 MB of JavaScript every page would parse) draws figure outputs,
        # which the dashboard has none of: its charts are widgets that load Plotly themselves
        f"--VoilaConfiguration.extension_denylist={UNUSED_LABEXTENSION}",
        f"--VoilaExecutor.iopub_timeout={IOPUB_TIMEOUT}",
    ]
    if cull_after:
        cmd += [
            f"--MappingKernelManager.cull_idle_timeout={int(cull_after)}",
            f"--MappingKernelManager.cull_interval={max(1, min(60, int(cull_after) // 2))}",
            "--MappingKernelManager.cull_connected=False",  # an open page keeps its kernel
            "--MappingKernelManager.cull_busy=False",  # a running job reports busy (ui/kernel_activity.py)
        ]
    if preheat:
        cmd += ["--preheat_kernel=True", f"--pool_size={preheat}"]
    if not open_browser:
        cmd.append("--no-browser")
    return cmd + list(extra or [])


def voila_environment(workspace: str | os.PathLike | None = None) -> dict[str, str]:
    """This process's environment, with ``WORKBENCH_HOME`` set to ``workspace`` when given.

    ``JUPYTER_PATH`` gains the package's Jupyter data folder, where Voilà finds the ``workbench`` template.

    The workspace reaches the dashboard's kernels only this way: the notebook never takes it from
    the URL (see :data:`workbench.ui.app.URL_PARAMETERS`).
    """
    env = dict(os.environ)
    env["JUPYTER_PATH"] = os.pathsep.join(p for p in (str(TEMPLATE_ROOT), env.get("JUPYTER_PATH", "")) if p)
    if workspace:
        env["WORKBENCH_HOME"] = str(Path(workspace).expanduser().resolve())
    return env


def launch_dashboard(
    port: int = DEFAULT_PORT,
    notebook: str | os.PathLike | None = None,
    open_browser: bool = True,
    *,
    ip: str = "127.0.0.1",
    workspace: str | os.PathLike | None = None,
    wait: bool = True,
    extra: list[str] | None = None,
    cull_after: float = DEFAULT_CULL_AFTER,
    preheat: int = DEFAULT_PREHEAT,
) -> int | subprocess.Popen:
    """Serve the dashboard with Voilà at ``http://<ip>:<port>/``: what ``workbench start`` and ``dashboard`` run.

    ``wait=True`` (the CLI): this process becomes Voilà (exec), so a signal that stops the command
    stops the server and its kernels too, with nothing left behind as an orphan; does not return.
    ``wait=False``: start Voilà as a child and return the process (the caller terminates it).
    """
    path = dashboard_notebook(notebook)
    cmd = voila_command(
        path, port, open_browser=open_browser, ip=ip, extra=extra, cull_after=cull_after, preheat=preheat
    )
    env = voila_environment(workspace)
    if not wait:
        return subprocess.Popen(cmd, cwd=path.parent, env=env)  # noqa: S603 - our own interpreter running Voilà
    # the launcher speaks once before it becomes Voilà
    print(f"starting the workbench dashboard: {path} on http://{ip}:{port} (Ctrl-C stops it)")  # noqa: T201
    sys.stdout.flush()
    os.chdir(path.parent)
    os.execve(sys.executable, cmd, env)  # noqa: S606 - this process becomes Voilà, so Ctrl-C stops its kernels too
    return 0  # not reached

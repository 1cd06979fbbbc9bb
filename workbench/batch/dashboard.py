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


def dashboard_notebook(notebook: str | os.PathLike | None = None) -> Path:
    """``notebook`` if given (must exist), else the shipped dashboard notebook."""
    if notebook is None:
        return shipped_notebook(DASHBOARD)
    path = Path(notebook).expanduser()
    if not path.is_file():
        raise ValueError(f"{path}: no such notebook")
    return path.resolve()


def voila_command(notebook: Path, port: int = DEFAULT_PORT, *, open_browser: bool = True, ip: str = "127.0.0.1",
                  extra: list[str] | None = None) -> list[str]:
    if not 0 < port < 65536:
        raise ValueError(f"port must be between 1 and 65535, got {port}")
    cmd = [sys.executable, "-m", "voila", str(notebook), f"--port={port}", f"--Voila.ip={ip}", "--Voila.port_retries=0",
           "--show_tracebacks=False"]
    if not open_browser:
        cmd.append("--no-browser")
    return cmd + list(extra or [])


def launch_dashboard(port: int = DEFAULT_PORT, notebook: str | os.PathLike | None = None, open_browser: bool = True, *,
                     ip: str = "127.0.0.1", wait: bool = True, extra: list[str] | None = None) -> int | subprocess.Popen:
    """Serve the dashboard with Voilà at ``http://<ip>:<port>/``.

    ``wait=True`` (the CLI): block until Voilà exits (Ctrl-C stops it) and return its exit code.
    ``wait=False``: return the running process (the caller terminates it).
    """
    path = dashboard_notebook(notebook)
    cmd = voila_command(path, port, open_browser=open_browser, ip=ip, extra=extra)
    process = subprocess.Popen(cmd, cwd=path.parent)
    if not wait:
        return process
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            return process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

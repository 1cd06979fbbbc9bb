"""One headless notebook run through papermill: parameters checked against the notebook's
``parameters`` cell, the output notebook kept (with the error when a cell raised), and the
JSON summary the notebook wrote read back.
"""

from __future__ import annotations

import ast
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

_TYPES = {"int": int, "float": float, "str": str}


def notebook_parameters(notebook: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """The notebook's papermill parameters: name → {inferred_type_name, default, help}."""
    import papermill  # heavy (papermill): imported on use

    path = Path(notebook)
    if not path.is_file():
        raise ValueError(f"{path}: no such notebook")
    params = papermill.inspect_notebook(str(path))
    if not params:
        raise ValueError(f"{path}: no cell tagged 'parameters' (papermill needs one to inject values)")
    return params


def notebook_defaults(declared: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The declared defaults that are Python literals (``summary_path`` and non-literals left out)."""

    out = {}
    for name, info in declared.items():
        if name == "summary_path":
            continue
        try:
            out[name] = ast.literal_eval(str(info.get("default")))
        except (ValueError, SyntaxError):
            continue
    return out


def coerce(
    notebook_params: dict[str, dict[str, Any]], name: str, value: Any, notebook: str | os.PathLike = "notebook"
) -> Any:
    """``value`` (a string from the command line, or already typed) as the parameter's declared type."""
    if name not in notebook_params:
        raise ValueError(f"{notebook} has no parameter {name!r}; its parameters: {', '.join(notebook_params)}")
    kind = notebook_params[name].get("inferred_type_name", "None")
    if not isinstance(value, str):
        if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    if kind == "str":
        return value
    if kind == "bool":
        lowered = value.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"parameter {name!r} is a bool; got {value!r} (use true or false)")
    if kind in _TYPES:
        try:
            return _TYPES[kind](value)
        except ValueError:
            raise ValueError(f"parameter {name!r} is {'an' if kind == 'int' else 'a'} {kind}; got {value!r}") from None
    return yaml.safe_load(value)


def check_parameters(notebook: str | os.PathLike, parameters: dict[str, Any]) -> dict[str, Any]:
    """Parameters coerced to the notebook's declared types; an unknown name is an error naming the known ones."""
    declared = notebook_parameters(notebook)
    return {k: coerce(declared, k, v, Path(notebook).name) for k, v in parameters.items()}


@dataclass
class NotebookRun:
    status: str  # "completed" | "failed"
    output: Path  # the executed notebook (kept on failure, with the traceback)
    summary_path: Path | None
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def run_notebook(
    notebook: str | os.PathLike,
    output: str | os.PathLike,
    parameters: dict[str, Any] | None = None,
    *,
    summary_path: str | os.PathLike | None = None,
    kernel_name: str | None = None,
    cwd: str | os.PathLike | None = None,
    timeout: float | None = None,
) -> NotebookRun:
    """Execute ``notebook`` headless into ``output``; never raises for an error inside the notebook.

    ``summary_path`` is passed as the notebook's ``summary_path`` parameter and read back after
    the run.  Widgets are not stored in the output (``store_widget_state=False``).
    """
    import papermill  # heavy (papermill): imported on use
    from papermill.exceptions import PapermillExecutionError  # heavy (papermill): imported on use

    params = dict(parameters or {})
    if summary_path is not None:
        params["summary_path"] = str(summary_path)
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    error = None
    try:
        papermill.execute_notebook(
            str(notebook),
            str(out),
            parameters=params,
            kernel_name=kernel_name,
            progress_bar=False,
            cwd=str(cwd) if cwd else None,
            execution_timeout=timeout,
            store_widget_state=False,
        )
    except PapermillExecutionError as exc:
        error = f"In [{exc.exec_count}]: {exc.ename}: {exc.evalue}"
    except Exception as exc:  # noqa: BLE001 - a kernel that died or timed out fails this run only
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - t0
    summary: dict[str, Any] = {}
    spath = Path(summary_path) if summary_path is not None else None
    if error is None and spath is not None:
        try:
            summary = json.loads(spath.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            error = f"the notebook ran but its summary {spath} could not be read: {exc}"
    return NotebookRun("failed" if error else "completed", out, spath, summary, error, seconds)


def running_headless() -> bool:
    """True inside a kernel that papermill / nbclient started (no person is looking at it).

    nbclient starts its kernels with ``--HistoryManager.hist_file=:memory:``; JupyterLab and the
    console keep a history file.  Notebooks use this to show their interactive panels only to a
    person, so headless outputs stay small (no widget state).
    """
    try:
        from IPython import get_ipython  # heavy (IPython): imported on use

        shell = get_ipython()
        return shell is None or str(shell.history_manager.hist_file) == ":memory:"
    except Exception:  # noqa: BLE001 - outside IPython there is nobody to show panels to
        return True

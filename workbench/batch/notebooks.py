"""The notebooks shipped with the package, and copying them into a user's folder.

In a source checkout (or an editable install) they are the repository's ``notebooks/``; an
installed wheel carries them as data files under ``<prefix>/share/workbench/notebooks``
(``[tool.setuptools.data-files]`` in pyproject.toml).  A JupyterHub user runs
``workbench notebooks --dest ~/notebooks`` to get editable copies; a copy the user changed is
never overwritten unless they ask (``force``).
"""

from __future__ import annotations

import os
import shutil
import site
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

SHARE = Path("share") / "workbench" / "notebooks"


def _candidate_folders() -> list[Path]:
    package = Path(__file__).resolve().parents[1]
    checkout = package.parent
    folders = []
    if (checkout / "pyproject.toml").is_file() and (checkout / "notebooks").is_dir():
        folders.append(checkout / "notebooks")
    # the prefix this copy of the package was installed into: <prefix>/lib/pythonX.Y/site-packages/workbench
    # (POSIX) or <prefix>/Lib/site-packages/workbench (Windows), whatever sys.prefix is (pip --prefix, --user)
    installed = [package.parents[3], package.parents[2]] if len(package.parents) > 3 else []
    prefixes = [*installed, sysconfig.get_path("data"), sys.prefix, sys.base_prefix, getattr(site, "USER_BASE", None)]
    for prefix in prefixes:
        if prefix:
            folders.append(Path(prefix) / SHARE)
    return folders


def notebooks_folder() -> Path:
    """The folder the shipped notebooks are read from; an error names the places looked in."""
    folders = _candidate_folders()
    for folder in folders:
        if folder.is_dir() and any(folder.glob("*.ipynb")):
            return folder
    raise FileNotFoundError(
        "the shipped notebooks were not found; looked in "
        + ", ".join(str(f) for f in dict.fromkeys(folders))
        + " (reinstall workbench: pip install workbench)"
    )


def shipped_notebooks() -> dict[str, Path]:
    """Every shipped notebook by file name (``pipeline.ipynb`` → its path), sorted by name."""
    folder = notebooks_folder()
    return {p.name: p for p in sorted(folder.glob("*.ipynb"))}


def shipped_notebook(name: str) -> Path:
    """One shipped notebook by name (``"pipeline"`` or ``"pipeline.ipynb"``)."""
    notebooks = shipped_notebooks()
    key = name if name.endswith(".ipynb") else f"{name}.ipynb"
    if key not in notebooks:
        raise ValueError(f"no shipped notebook {name!r}; shipped: {', '.join(notebooks)}")
    return notebooks[key]


@dataclass
class CopyReport:
    copied: list[Path] = field(default_factory=list)  # new files, or replaced with --force
    unchanged: list[Path] = field(default_factory=list)  # an identical copy was already there
    kept: list[Path] = field(default_factory=list)  # the user's edited copy, left alone


def copy_notebooks(dest: str | os.PathLike, *, force: bool = False) -> CopyReport:
    """Copy the shipped notebooks into ``dest`` (created); an edited copy is kept unless ``force``."""
    target = Path(dest).expanduser()
    if target.exists() and not target.is_dir():
        raise ValueError(f"{target} is a file; --dest must be a folder")
    target.mkdir(parents=True, exist_ok=True)
    report = CopyReport()
    for name, source in shipped_notebooks().items():
        out = target / name
        if out.exists():
            if out.read_bytes() == source.read_bytes():
                report.unchanged.append(out)
                continue
            if not force:
                report.kept.append(out)
                continue
        tmp = out.with_name(f".{name}.tmp")
        shutil.copyfile(source, tmp)
        os.replace(tmp, out)
        report.copied.append(out)
    return report

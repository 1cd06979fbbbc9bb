"""``workbench doctor``: are the Jupyter pieces that must match installed in matching versions?

Widgets break silently when the kernel-side and the front-end-side packages disagree: a panel
shows "Error displaying widget" or a plot never updates.  The rules checked here are the ones
that bite (see DESIGN.md, "Jupyter facts that bite"):
* ipywidgets 8 needs jupyterlab_widgets 3.x in JupyterLab (ipywidgets 7 needs 1.x);
* ipykernel ≥ 7.1 (7.0.x broke widget updates sent from threads, which training uses);
* plotly ≥ 6 draws FigureWidgets with anywidget, which must be installed;
* every checked package's own requirements among the others are satisfied (as ``pip check``);
* the ``python3`` kernel papermill and Voilà start runs this Python (else runs miss workbench).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path
from typing import Literal

PACKAGES = (
    "workbench",
    "ipywidgets",
    "jupyterlab_widgets",
    "anywidget",
    "plotly",
    "voila",
    "ipykernel",
    "jupyterlab",
    "jupyter_server",
    "papermill",
    "torch",
    "refl1d",
    "dask",
    "distributed",
    "optuna",
)


@dataclass
class Check:
    name: str
    status: Literal["ok", "warn", "fail"]
    message: str


def installed_versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in packages:
        try:
            out[pkg] = distribution(pkg).version
        except PackageNotFoundError:
            out[pkg] = None
    return out


def _v(text: str | None):
    from packaging.version import InvalidVersion, Version  # heavy (packaging): imported on use

    if text is None:
        return None
    try:
        return Version(text)
    except InvalidVersion:
        return None


def check_versions(versions: dict[str, str | None]) -> list[Check]:
    """The matching rules applied to a name → version mapping (None: not installed)."""
    checks: list[Check] = []
    ipw, jlw = _v(versions.get("ipywidgets")), _v(versions.get("jupyterlab_widgets"))
    if ipw is None:
        checks.append(Check("ipywidgets", "fail", "ipywidgets is not installed: the panels cannot be shown"))
    elif jlw is None:
        checks.append(
            Check(
                "jupyterlab_widgets",
                "fail",
                f"ipywidgets {ipw} is installed without jupyterlab_widgets: "
                "JupyterLab cannot render widgets (pip install jupyterlab_widgets)",
            )
        )
    else:
        wanted = {8: 3, 7: 1}.get(ipw.major)
        if wanted is not None and jlw.major != wanted:
            checks.append(
                Check(
                    "jupyterlab_widgets",
                    "fail",
                    f"ipywidgets {ipw} needs jupyterlab_widgets {wanted}.x, found {jlw} "
                    f"(pip install 'jupyterlab_widgets>={wanted},<{wanted + 1}')",
                )
            )
        else:
            checks.append(Check("jupyterlab_widgets", "ok", f"ipywidgets {ipw} with jupyterlab_widgets {jlw}"))
    ipk = _v(versions.get("ipykernel"))
    if ipk is None:
        checks.append(Check("ipykernel", "fail", "ipykernel is not installed: no Python kernel for notebooks"))
    elif ipk < _v("7.1"):
        checks.append(
            Check(
                "ipykernel",
                "fail",
                f"ipykernel {ipk} is older than 7.1 (7.0.x drops widget updates sent from "
                "threads); pip install 'ipykernel>=7.1'",
            )
        )
    else:
        checks.append(Check("ipykernel", "ok", f"ipykernel {ipk} ≥ 7.1"))
    plotly, anyw = _v(versions.get("plotly")), _v(versions.get("anywidget"))
    if plotly is None:
        checks.append(Check("plotly", "fail", "plotly is not installed: no charts"))
    elif plotly.major >= 6 and anyw is None:
        checks.append(
            Check(
                "anywidget",
                "fail",
                f"plotly {plotly} draws FigureWidgets with anywidget, which is not installed (pip install anywidget)",
            )
        )
    else:
        checks.append(Check("plotly", "ok", f"plotly {plotly}" + (f" with anywidget {anyw}" if anyw else "")))
    if versions.get("voila") is None:
        checks.append(Check("voila", "warn", "voila is not installed: `workbench dashboard` cannot start"))
    return checks


def check_requirements(packages: tuple[str, ...] = PACKAGES) -> list[Check]:
    """Each installed package's requirements on the others, as declared in its metadata."""
    from packaging.requirements import InvalidRequirement, Requirement  # heavy (packaging): imported on use
    from packaging.utils import canonicalize_name  # heavy (packaging): imported on use

    versions = {canonicalize_name(p): v for p, v in installed_versions(packages).items()}
    checks = []
    for pkg in packages:
        try:
            requires = distribution(pkg).requires or []
        except PackageNotFoundError:
            continue
        for text in requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            name = canonicalize_name(req.name)
            found = versions.get(name)
            if found is not None and req.specifier and not req.specifier.contains(found, prereleases=True):
                checks.append(Check(pkg, "fail", f"{pkg} requires {req}, found {req.name} {found}"))
    return checks


def check_kernel() -> Check:
    """Does the ``python3`` kernelspec (what papermill and Voilà start) run this interpreter?"""
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # heavy (jupyter_client): imported on use

        spec = KernelSpecManager().get_kernel_spec("python3")
    except (ImportError, NoSuchKernel) as exc:
        return Check("kernel", "fail", f"no python3 kernel: {exc}")
    exe = spec.argv[0] if spec.argv else ""
    same = bool(exe) and Path(exe).is_absolute() and Path(exe).parent == Path(sys.executable).parent  # same environment
    if exe in ("python", "python3", "{python}") or same:
        return Check("kernel", "ok", f"python3 kernel runs {sys.executable}")
    return Check(
        "kernel",
        "warn",
        f"the python3 kernel runs {exe}, not {sys.executable}: notebooks may not find workbench "
        f"({spec.resource_dir}); fix with: {sys.executable} -m ipykernel install --sys-prefix",
    )


def check_gpu() -> Check:
    try:
        import torch  # heavy (torch): imported on use
    except ImportError:
        return Check("gpu", "fail", "torch is not installed")
    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("gpu", "ok", f"CUDA {torch.version.cuda}: {names}")
    built = f"torch built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only torch build"
    return Check("gpu", "ok", f"no CUDA GPU visible ({built}); training runs on the CPU")


def run_doctor() -> tuple[dict[str, str | None], list[Check]]:
    versions = installed_versions()
    checks = check_versions(versions) + check_requirements() + [check_kernel(), check_gpu()]
    return versions, checks


def report(versions: dict[str, str | None], checks: list[Check]) -> str:
    width = max(len(k) for k in versions)
    lines = ["versions:"]
    lines += [f"  {k:<{width}}  {v or 'not installed'}" for k, v in versions.items()]
    lines.append("checks:")
    mark = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    lines += [f"  {mark[c.status]} {c.name}: {c.message}" for c in checks]
    failed = sum(c.status == "fail" for c in checks)
    lines.append(f"{failed} problem(s) found" if failed else "everything matches")
    return "\n".join(lines)

"""Versions of the packages that determine results, recorded in data sets, bundles and runs."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

RECORDED = ("workbench", "torch", "refl1d", "numpy", "numba")


def package_versions(packages: tuple[str, ...] = RECORDED) -> dict[str, str]:
    out = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "unknown"
    return out

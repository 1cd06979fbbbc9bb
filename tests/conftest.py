"""Shared test fixtures: seeded random stacks and the location of the reference data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from workbench.physics import FilmStack, StackArrays

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """``../shared/data`` beside the repository, or ``$WORKBENCH_EXAMPLE_DATA``."""
    return Path(os.environ.get("WORKBENCH_EXAMPLE_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(autouse=True, scope="session")
def _temporary_workspace_home(tmp_path_factory):
    """Runs that tests record (CLI subprocesses included) go to a temporary workspace, never ~/.workbench."""
    previous = os.environ.get("WORKBENCH_HOME")
    os.environ["WORKBENCH_HOME"] = str(tmp_path_factory.mktemp("workbench-home"))
    yield
    if previous is None:
        os.environ.pop("WORKBENCH_HOME", None)
    else:
        os.environ["WORKBENCH_HOME"] = previous


@pytest.fixture
def shared_data() -> Path:
    """The reference data folder: a failure under CI=true when missing, else a skip."""
    path = shared_data_dir()
    if not path.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"reference data folder {path} is missing (required under CI=true)")
        pytest.skip(f"reference data folder {path} is missing")
    return path


def random_stacks(
    rng: np.random.Generator,
    batch: int,
    layers: int,
    *,
    absorbing: bool = False,
    sharp: bool = False,
    thick: float | None = None,
) -> StackArrays:
    """Seeded random stacks (substrate first, ambient last) spanning realistic neutron SLDs."""
    sld = rng.uniform(-0.56, 6.4, (batch, layers))
    isld = rng.uniform(0.0, 0.5, (batch, layers)) if absorbing else np.zeros((batch, layers))
    thickness = rng.uniform(5.0, 300.0, (batch, layers))
    thickness[:, 0] = thickness[:, -1] = 0.0
    roughness = rng.uniform(0.0, 25.0, (batch, layers - 1))
    if sharp:
        roughness[:, ::2] = 0.0
    if thick is not None:
        thickness[:, 1] = thick
    return StackArrays(sld, isld, thickness, roughness)


def small_stack() -> FilmStack:
    """The default stack with only three free parameters: a parameter model learns it in one epoch."""
    s = FilmStack.default()
    keep = {(3, "thickness"), (3, "sld"), (2, "roughness")}
    bounds = [b for b in s.to_layer_bound() if (b["i"], b["par"]) in keep]
    return FilmStack.from_pyreflect(s.to_layer_desc(), bounds)

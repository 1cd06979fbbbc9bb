"""SLD profiles: parity with refl1d's smooth_profile, batching, pyreflect's 900 points, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_stacks

from workbench.physics import FilmStack, Layer, sld_profile, sld_profile_torch
from workbench.physics.refl1d_engine import sld_profile_refl1d


@pytest.mark.parametrize("seed", range(6))
def test_matches_refl1d_smooth_profile(seed):
    rng = np.random.default_rng(seed)
    a = random_stacks(rng, 1, 7, absorbing=True, sharp=seed % 2 == 0)
    stack = FilmStack(
        layers=[
            Layer(
                name=f"L{j}",
                sld=a.sld[0, j],
                isld=a.isld[0, j],
                thickness=a.thickness[0, j],
                roughness=a.roughness[0, j] if j < 6 else 0.0,
            )
            for j in range(7)
        ]
    )
    z_ref, rho_ref, irho_ref = sld_profile_refl1d(stack)
    _, rho, irho = sld_profile(stack, z=z_ref)
    np.testing.assert_allclose(rho[0], rho_ref, atol=1e-12)
    np.testing.assert_allclose(irho[0], irho_ref, atol=1e-12)


def test_default_grid_is_900_points_over_refl1ds_range():
    stack = FilmStack.default()
    z_ref, _, _ = sld_profile_refl1d(stack)
    z, rho, _ = sld_profile(stack)
    assert z.shape == rho.shape == (1, 900)
    assert z[0, 0] == pytest.approx(z_ref[0]) and z[0, -1] == pytest.approx(z_ref[-1], abs=0.1)
    assert rho[0, 0] == pytest.approx(2.07, abs=1e-3)  # substrate side first
    assert rho[0, -1] == pytest.approx(0.0, abs=1e-2)  # ambient last


def test_batch_each_stack_gets_its_own_range():
    stacks = [FilmStack.default(), FilmStack.default().with_value(3, "thickness", 230.0)]
    z, _, _ = sld_profile(stacks, n_points=200)
    assert z.shape == (2, 200) and z[1, -1] > z[0, -1]


def test_profile_is_differentiable():
    a = FilmStack.default().to_arrays().map(lambda x: torch.tensor(x, requires_grad=True))
    z = torch.linspace(-20, 600, 50, dtype=torch.float64)
    _, rho, _ = sld_profile_torch(a.sld, a.isld, a.thickness, a.roughness, z=z)
    rho.sum().backward()
    assert torch.all(torch.isfinite(a.thickness.grad)) and a.thickness.grad.abs().sum() > 0
    assert torch.all(torch.isfinite(a.roughness.grad))

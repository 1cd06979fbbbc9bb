"""The torch kernel is differentiable in every parameter: gradcheck and gradgradcheck."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

from workbench.physics import FilmStack, Probe, StackArrays, reflectivity_torch

# Q points chosen not to sit exactly on any critical edge of the stacks below
Q = np.array([0.0071, 0.0093, 0.0118, 0.015, 0.023, 0.041, 0.077, 0.13])


def _stack(thickness: float, roughness: float, isld: float) -> StackArrays:
    sld = torch.tensor([[2.07, 3.47, 4.2, 1.1, 0.0]], dtype=torch.float64)
    # isld > 0 everywhere it counts: at 0 the derivative is one-sided (isld < 0 is unphysical)
    isld_t = torch.tensor([[0.004, 0.001, isld, 0.02, 0.0]], dtype=torch.float64)
    thick = torch.tensor([[0.0, 12.0, thickness, 60.0, 0.0]], dtype=torch.float64)
    rough = torch.tensor([[3.0, roughness, 5.0, roughness]], dtype=torch.float64)
    return StackArrays(sld, isld_t, thick, rough)


CASES = [
    pytest.param(5.0, 0.0, 0.01, id="thin layer, sharp interfaces"),
    pytest.param(5.0, 4.0, 0.3, id="thin layer, rough"),
    pytest.param(800.0, 0.0, 0.05, id="thick layer, sharp"),
    pytest.param(800.0, 12.0, 0.3, id="thick layer, rough"),
]


@pytest.mark.parametrize("field", ["sld", "isld", "thickness", "roughness"])
@pytest.mark.parametrize("thickness, roughness, isld", CASES)
@pytest.mark.parametrize("smeared", [False, True], ids=["unsmeared", "smeared"])
def test_gradcheck_each_parameter_kind(field, thickness, roughness, isld, smeared):
    base = _stack(thickness, roughness, isld)
    probe = Probe(Q, dq_over_q=0.03 if smeared else None)
    x0 = getattr(base, field).clone().requires_grad_(True)

    def f(x):
        parts = {name: getattr(base, name) for name in ("sld", "isld", "thickness", "roughness")}
        parts[field] = x
        return reflectivity_torch(StackArrays(**parts), probe)

    assert gradcheck(f, (x0,), eps=1e-6, atol=1e-8, rtol=1e-4)


def test_gradgradcheck_joint_parameter_vector():
    base = _stack(80.0, 6.0, 0.1)
    probe = Probe(Q[::2], dq_over_q=None)
    sizes = [5, 5, 5, 4]
    vector = torch.cat([base.sld[0], base.isld[0], base.thickness[0], base.roughness[0]]).clone().requires_grad_(True)

    def f(v):
        sld, isld, thick, rough = torch.split(v, sizes)
        return reflectivity_torch(StackArrays(sld[None], isld[None], thick[None], rough[None]), probe)

    assert gradgradcheck(f, (vector,), eps=1e-6, atol=1e-7, rtol=1e-4)


def test_gradients_are_finite_exactly_at_a_critical_edge():
    stack = FilmStack.default().to_arrays().map(lambda a: torch.tensor(a, requires_grad=True))
    qc = np.sqrt(16e-6 * np.pi * 2.07)
    r = reflectivity_torch(stack, Probe(np.array([0.5 * qc, qc, 1.5 * qc]), dq_over_q=None))
    r.sum().backward()
    for name in ("sld", "isld", "thickness", "roughness"):
        assert torch.all(torch.isfinite(getattr(stack, name).grad)), name


def test_batched_gradients_are_per_stack():
    a = FilmStack.default().to_arrays()
    batch = StackArrays(
        *(torch.tensor(np.repeat(x, 3, 0), requires_grad=True) for x in (a.sld, a.isld, a.thickness, a.roughness))
    )
    r = reflectivity_torch(batch, Probe())
    r[1].sum().backward()
    g = batch.thickness.grad
    assert torch.all(g[0] == 0) and torch.all(g[2] == 0) and torch.any(g[1] != 0)

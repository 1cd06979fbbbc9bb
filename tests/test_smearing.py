"""Resolution smearing against a converged reference (see converged_smearing.py).

Tolerances, and why they are enough: the smeared curve is a quadrature of R against the
Gaussian resolution.  Away from the substrate's critical edge our spectral grid is accurate to
~1e-5; at the edge R has a √ kink, and the graded sub-grid there brings the error to ~1e-4
(thick films with fringes finer than the resolution: a few 1e-3 right at the edge).  Measured
points near the critical edge carry ≥ 1 % counting errors, and refl1d's own default smearing
(piecewise-linear R on the data points, Gaussian cut at ±3σ) is off by several per cent at the
ends of the Q range, so these tolerances are 10–100× below anything a fit or a network can see.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from converged_smearing import converged_smear

from workbench.physics import FilmStack, Probe, critical_edge, reflectivity
from workbench.physics.refl1d_engine import reflectivity_refl1d

QC = critical_edge(2.07, 0.0)


def _errors(stack: FilmStack, probe: Probe, engine: str) -> tuple[float, float]:
    ref = converged_smear(probe.q, probe.sigma, stack.to_arrays(), QC, nodes=120)
    ours = reflectivity(stack, probe, engine=engine)
    ours = ours.numpy() if isinstance(ours, torch.Tensor) else ours
    err = np.abs(ours / ref - 1.0)[0]
    near = np.abs(probe.q - QC) < 12 * probe.sigma
    return float(err[near].max()), float(err[~near].max())


@pytest.mark.parametrize("engine", ["fast", "torch"])
def test_default_probe_constant_dq_over_q(engine):
    near, far = _errors(FilmStack.default(), Probe(), engine)
    assert near < 1e-4 and far < 1e-4, (near, far)


def test_pointwise_fwhm_resolution_like_a_measured_file():
    q = np.geomspace(0.006, 0.25, 200)
    probe = Probe(q, dq=0.0005 + 0.03 * q, dq_is_fwhm=True)
    near, far = _errors(FilmStack.default(), probe, "fast")
    assert near < 5e-4 and far < 5e-4, (near, far)


def test_thick_film_fringes_are_not_aliased():
    thick = FilmStack.default().with_value(3, "thickness", 1500.0)
    near, far = _errors(thick, Probe(), "fast")
    assert near < 5e-3 and far < 2e-4, (near, far)


def test_refl1d_default_smearing_is_the_less_accurate_one():
    """What pyreflect gets from refl1d (R on the data points only) vs the converged integral."""
    stack, probe = FilmStack.default(), Probe()
    ref = converged_smear(probe.q, probe.sigma, stack.to_arrays(), QC, nodes=120)
    theirs = np.abs(reflectivity_refl1d(stack, probe) / ref - 1).max()
    ours = np.abs(reflectivity(stack, probe) / ref - 1).max()
    assert ours < 1e-4, ours
    assert theirs > 1e-2, theirs  # refl1d's own smearing is visibly off


def test_smearing_conserves_a_constant_and_a_straight_line():
    """Exact for R = 1 (weights are normalised); and it must not shift a linear trend."""
    from workbench.physics import build_plan

    probe = Probe()
    plan = build_plan(probe, 800.0, [QC])
    np.testing.assert_allclose(plan.apply(np.ones((1, plan.calc_q.size))), 1.0, rtol=1e-14)
    line = plan.apply(plan.calc_q[None, :])[0]
    np.testing.assert_allclose(line, probe.q, rtol=3e-5)


def test_zero_resolution_points_are_taken_as_they_are():
    q = np.array([0.01, 0.02, 0.05, 0.1])
    probe = Probe(q, dq=np.array([0.0, 0.001, 0.0, 0.003]), dq_is_fwhm=False)
    exact = reflectivity(FilmStack.default(), Probe(q, dq_over_q=None))
    smeared = reflectivity(FilmStack.default(), probe)
    np.testing.assert_allclose(smeared[0, [0, 2]], exact[0, [0, 2]], rtol=1e-13)
    assert not np.allclose(smeared[0, 3], exact[0, 3], rtol=1e-3)

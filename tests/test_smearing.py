"""Resolution smearing against a converged reference (see converged_smearing.py).

Tolerances, and why they are enough: the smeared curve is a quadrature of R against the
Gaussian resolution.  The shared plan is a trapezoid rule in a smooth variable (spectral spacing
away from the substrate's critical edge, cubic grading into it), measured at 1e-8–1e-7 on these
stacks; a 1,500 Å film gets its own adaptive rule (1e-11).  The tolerances (1e-6) leave room for
other stacks of the family.  Measured points near the critical edge carry ≥ 1 % counting errors,
and refl1d's own default smearing (piecewise-linear R on the data points, Gaussian cut at ±3σ)
is off by several per cent at the ends of the Q range.  Films outside the default family:
tests/test_hard_smearing.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from converged_smearing import converged_smear

from workbench.physics import FilmStack, Probe, StackArrays, critical_edge, reflectivity
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
    assert near < 1e-6 and far < 1e-6, (near, far)


def test_pointwise_fwhm_resolution_like_a_measured_file():
    q = np.geomspace(0.006, 0.25, 200)
    probe = Probe(q, dq=0.0005 + 0.03 * q, dq_is_fwhm=True)
    near, far = _errors(FilmStack.default(), probe, "fast")
    assert near < 1e-6 and far < 1e-6, (near, far)


def test_thick_film_fringes_are_not_aliased():
    thick = FilmStack.default().with_value(3, "thickness", 1500.0)
    near, far = _errors(thick, Probe(), "fast")
    assert near < 1e-6 and far < 1e-6, (near, far)


def test_refl1d_default_smearing_is_the_less_accurate_one():
    """What pyreflect gets from refl1d (R on the data points only) vs the converged integral."""
    stack, probe = FilmStack.default(), Probe()
    ref = converged_smear(probe.q, probe.sigma, stack.to_arrays(), QC, nodes=120)
    theirs = np.abs(reflectivity_refl1d(stack, probe) / ref - 1).max()
    ours = np.abs(reflectivity(stack, probe) / ref - 1).max()
    assert ours < 1e-6, ours
    assert theirs > 1e-2, theirs  # refl1d's own smearing is visibly off


def test_smearing_conserves_a_constant_and_a_straight_line():
    """Exact for R = 1 (weights are normalised); and it must not shift a linear trend."""
    from workbench.physics import build_plan

    probe = Probe()
    plan = build_plan(probe, 800.0, [QC])
    np.testing.assert_allclose(plan.apply(np.ones((1, plan.calc_q.size))), 1.0, rtol=1e-14)
    line = plan.apply(plan.calc_q[None, :])[0]
    np.testing.assert_allclose(line, probe.q, rtol=1e-8)


def test_zero_resolution_points_are_taken_as_they_are():
    q = np.array([0.01, 0.02, 0.05, 0.1])
    probe = Probe(q, dq=np.array([0.0, 0.001, 0.0, 0.003]), dq_is_fwhm=False)
    exact = reflectivity(FilmStack.default(), Probe(q, dq_over_q=None))
    smeared = reflectivity(FilmStack.default(), probe)
    np.testing.assert_allclose(smeared[0, [0, 2]], exact[0, [0, 2]], rtol=1e-13)
    assert not np.allclose(smeared[0, 3], exact[0, 3], rtol=1e-3)


def test_weights_are_positive_so_a_lossless_stack_never_smears_above_one():
    """Every row of every plan is a convex combination: R_smeared ≤ max R ≤ 1 below a lossless edge.

    (tests/test_uncertainty.py's R band of 1.0104 is the 97.5th percentile of the posterior's
    probe.scale, 0.9862–1.0104 for DREAM seed 0, multiplying R = 1: not R > 1.)
    """
    from workbench.physics.reflectivity import cached_stack_plan, own_rule, plan_for

    rng = np.random.default_rng(3)
    base = FilmStack.from_pyreflect(
        [
            {"name": "Si", "sld": 2.07, "roughness": 3.0},
            {"name": "SiOx", "sld": 3.47, "thickness": 15.0, "roughness": 3.0},
            {"name": "film", "sld": 1.5, "thickness": 220.0, "roughness": 5.0},
            {"name": "air", "sld": 0.0},
        ]
    ).to_arrays()
    n = 200
    parts = [np.repeat(x, n, axis=0) for x in (base.sld, base.isld, base.thickness, base.roughness)]
    parts[0][:, 2] = rng.uniform(0.5, 3.0, n)
    parts[2][:, 2] = rng.uniform(150.0, 300.0, n)
    parts[3][:, 2] = rng.uniform(0.0, 15.0, n)
    probe = Probe(np.geomspace(0.008, 0.2, 100), dq_over_q=0.03)
    arrays = StackArrays(*parts)
    thick = FilmStack.default().with_value(3, "thickness", 2500.0).with_value(3, "sld", 5.0).to_arrays()
    for plan in [p for _, p in plan_for(probe, arrays)] + [
        cached_stack_plan(probe, *(x[0] for x in (thick.sld, thick.isld, thick.thickness, thick.roughness)))
    ]:
        assert np.all(plan.weights >= 0)
        np.testing.assert_allclose(plan.weights.sum(axis=1), 1.0, rtol=1e-14)
    assert own_rule(probe, thick).all()
    for engine in ("fast", "torch"):
        for a in (arrays, thick):
            r = reflectivity(a, probe, engine=engine)
            r = r.numpy() if isinstance(r, torch.Tensor) else r
            assert r.max() <= 1.0 + 1e-12, (engine, r.max())

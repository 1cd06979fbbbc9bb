"""Physics checks that need no reference code."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.physics import FilmStack, Layer, Probe, reflectivity, sld_profile


@pytest.mark.parametrize("engine", ["fast", "torch"])
def test_total_reflection_below_the_critical_edge(engine):
    stack = FilmStack.default()
    qc = np.sqrt(16e-6 * np.pi * (2.07 - 0.0))
    q = np.geomspace(0.001, 0.999 * qc, 60)
    r = np.asarray(reflectivity(stack, Probe(q, dq_over_q=None), engine=engine))
    np.testing.assert_allclose(r, 1.0, atol=1e-12)
    # and absorption makes it fall below 1
    lossy = stack.with_value(0, "isld", 0.5)
    assert np.all(np.asarray(reflectivity(lossy, Probe(q, dq_over_q=None), engine=engine)) < 1.0)


@pytest.mark.parametrize("engine", ["fast", "torch"])
def test_kiessig_fringe_period_is_two_pi_over_thickness(engine):
    d = 400.0
    stack = FilmStack(layers=[Layer(name="Si", sld=2.07), Layer(name="film", sld=4.5, thickness=d), Layer(name="air")])
    q = np.linspace(0.03, 0.2, 40001)
    r = np.asarray(reflectivity(stack, Probe(q, dq_over_q=None), engine=engine))[0]
    minima = q[1:-1][(r[1:-1] < r[:-2]) & (r[1:-1] < r[2:])]
    # the phase is 2 k_film d, so fringes are evenly spaced by 2π/d in the film's own Q
    q_film = np.sqrt(minima**2 - 16e-6 * np.pi * 4.5)
    np.testing.assert_allclose(np.diff(q_film), 2 * np.pi / d, rtol=2e-3)
    # and in Q itself the spacing tends to 2π/d far above the edge
    assert np.diff(minima)[-1] == pytest.approx(2 * np.pi / d, rel=5e-3)


@pytest.mark.parametrize("engine", ["fast", "torch"])
def test_splitting_a_layer_into_two_identical_halves_changes_nothing(engine):
    base = FilmStack.default()
    layers = [layer.model_copy() for layer in base.layers]
    half = layers[3].model_copy(update={"thickness": layers[3].thickness / 2})
    split = [*layers[:3], half.model_copy(update={"roughness": 0.0}), half, *layers[4:]]
    split_stack = FilmStack(layers=split)
    probe = Probe(np.geomspace(0.005, 0.3, 500), dq_over_q=None)
    a = np.asarray(reflectivity(base, probe, engine=engine))
    b = np.asarray(reflectivity(split_stack, probe, engine=engine))
    np.testing.assert_allclose(b, a, rtol=1e-11)
    _, ra, _ = sld_profile(base, z=np.linspace(-50, 600, 300))
    _, rb, _ = sld_profile(split_stack, z=np.linspace(-50, 600, 300))
    np.testing.assert_allclose(rb, ra, atol=1e-12)


def test_bare_substrate_is_the_fresnel_curve():
    q = np.geomspace(0.012, 0.3, 100)
    stack = FilmStack(layers=[Layer(name="Si", sld=2.07), Layer(name="air")])
    kz = q / 2
    ks = np.sqrt(kz**2 - 4e-6 * np.pi * 2.07 + 0j)
    fresnel = np.abs((kz - ks) / (kz + ks)) ** 2
    np.testing.assert_allclose(reflectivity(stack, Probe(q, dq_over_q=None)), fresnel[None, :], rtol=1e-12)

"""A film stack fitted to an SLD profile: recovery of known stacks, the z offset of a data set's profile, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.analysis.profile_fit import sorted_profile, stack_from_profile
from workbench.physics import FilmStack, sld_profile

TWO_LAYERS = FilmStack.from_pyreflect(
    [
        {"name": "Si", "sld": 2.07, "roughness": 3.0},
        {"name": "Ni", "sld": 9.4, "thickness": 120.0, "roughness": 5.0},
        {"name": "Ti", "sld": -1.9, "thickness": 60.0, "roughness": 4.0},
        {"name": "D2O", "sld": 6.36},
    ],
    [
        {"i": 0, "par": "roughness", "bounds": [1.0, 8.0]},
        {"i": 1, "par": "sld", "bounds": [8.0, 10.0]},
        {"i": 1, "par": "thickness", "bounds": [80.0, 160.0]},
        {"i": 1, "par": "roughness", "bounds": [1.0, 12.0]},
        {"i": 2, "par": "sld", "bounds": [-3.0, 0.0]},
        {"i": 2, "par": "thickness", "bounds": [30.0, 90.0]},
        {"i": 2, "par": "roughness", "bounds": [1.0, 12.0]},
    ],
)


def _inside(stack: FilmStack, seed: int) -> FilmStack:
    """``stack`` with every free parameter drawn inside its bounds (seeded), away from the bounds themselves."""
    rng = np.random.default_rng(seed)
    for b in stack.free_parameters:
        stack = stack.with_value(b.i, b.par, b.lo + (0.15 + 0.7 * rng.random()) * (b.hi - b.lo))
    return stack


def _values(stack: FilmStack) -> np.ndarray:
    return np.array([stack.get(b.i, b.par) for b in stack.free_parameters])


def test_a_default_family_profile_from_a_data_set_is_recovered_with_its_z_offset():
    template = FilmStack.default()
    truth = _inside(template, seed=3)
    z, rho, _ = sld_profile(truth)
    # a data set's profile starts at z = 0 (pyreflect), 10 Å or 3σ below the substrate's top
    fit = stack_from_profile(template, z[0] - z[0, 0], rho[0])
    assert fit.rms < 1e-6
    assert fit.z_offset == pytest.approx(z[0, 0], abs=1e-4)
    np.testing.assert_allclose(_values(fit.stack), _values(truth), rtol=1e-4, atol=1e-4)
    assert fit.names == template.parameter_names() and "siox.sld" not in fit.names  # fixed in the Film stack
    assert fit.at_bound == []


def test_a_two_layer_film_outside_the_default_family_is_recovered():
    truth = TWO_LAYERS.with_value(1, "thickness", 140.0).with_value(2, "sld", -0.8).with_value(1, "roughness", 9.0)
    z = np.linspace(-40.0, 260.0, 600)  # already in the stack's frame
    rho = sld_profile(truth, z=z)[1][0]
    fit = stack_from_profile(TWO_LAYERS, z, rho)
    assert fit.rms < 1e-6 and abs(fit.z_offset) < 1e-4
    np.testing.assert_allclose(_values(fit.stack), _values(truth), rtol=1e-4, atol=1e-4)
    fixed = stack_from_profile(TWO_LAYERS, z, rho, fit_offset=False)
    assert fixed.z_offset == 0.0 and fixed.rms < 1e-6


def test_a_profile_no_stack_of_the_family_can_make_reports_its_misfit_and_the_bounds_it_hit():
    z = np.linspace(-40.0, 260.0, 600)
    rho = np.where(z < 0, 2.07, np.where(z < 100, 12.0, 6.36))  # 12: above the Ni layer's SLD bound of 10
    fit = stack_from_profile(TWO_LAYERS, z, rho)
    assert fit.rms > 0.1
    assert "Ni.sld" in fit.at_bound and fit.stack.get(1, "sld") == pytest.approx(10.0)


def test_narrower_bounds_given_for_the_fit_override_the_templates():
    truth = _inside(TWO_LAYERS, seed=1)
    z, rho, _ = sld_profile(truth)
    fit = stack_from_profile(TWO_LAYERS, z[0], rho[0], bounds={"Ti.thickness": (30.0, 35.0)})
    assert 30.0 <= fit.stack.get(2, "thickness") <= 35.0
    with pytest.raises(ValueError, match=r"bounds of Ti\.thickness"):
        stack_from_profile(TWO_LAYERS, z[0], rho[0], bounds={"Ti.thickness": (40.0, 35.0)})


def test_bad_profiles_are_refused_with_what_is_wrong():
    z = np.linspace(0.0, 300.0, 100)
    rho = np.full(100, 2.0)
    with pytest.raises(ValueError, match="z has 100 points but rho has 99"):
        stack_from_profile(TWO_LAYERS, z, rho[:99])
    bad = rho.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="rho has 1 non-finite"):
        stack_from_profile(TWO_LAYERS, z, bad)
    with pytest.raises(ValueError, match="z must increase"):
        stack_from_profile(TWO_LAYERS, z[::-1], rho)
    with pytest.raises(ValueError, match="no free parameter"):
        stack_from_profile(FilmStack.from_pyreflect(TWO_LAYERS.to_layer_desc()), z, rho)


def test_a_predicted_z_row_out_of_order_is_sorted_and_nan_is_left_for_the_fit_to_refuse():
    z, rho = sorted_profile([0.0, 2.0, 1.0, 2.0, 3.0], [1.0, 3.0, 2.0, 9.0, 4.0])
    assert z.tolist() == [0.0, 1.0, 2.0, 3.0] and rho.tolist() == [1.0, 2.0, 3.0, 4.0]
    z, _ = sorted_profile([0.0, np.nan, 1.0], [1.0, 2.0, 3.0])
    assert np.isnan(z[1])

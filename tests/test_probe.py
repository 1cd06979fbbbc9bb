"""The probe: pyreflect's default Q grid, explicit FWHM/σ conventions, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.physics import FWHM_PER_SIGMA, Probe, ProbeError, q_grid


def test_default_probe_is_pyreflects_grid_and_resolution():
    p = Probe()
    assert p.q.size == 308
    assert p.q[0] == pytest.approx(0.0081) and p.q[-1] == pytest.approx(0.1975)
    assert np.allclose(np.diff(np.log(p.q)), np.log(0.1975 / 0.0081) / 307)
    np.testing.assert_allclose(p.sigma, 0.0294855 * p.q / 2.3548, rtol=1e-4)
    assert p.scale == 1.0 and p.background == 0.0


def test_fwhm_and_sigma_conventions_are_explicit():
    q = np.array([0.01, 0.02, 0.05])
    dq = np.array([0.001, 0.002, 0.004])
    assert np.allclose(Probe(q, dq=dq, dq_is_fwhm=True).sigma, dq / FWHM_PER_SIGMA)
    assert np.allclose(Probe(q, dq=dq, dq_is_fwhm=False).sigma, dq)
    assert FWHM_PER_SIGMA == pytest.approx(2.35482, abs=1e-5)
    assert not Probe(q, dq_over_q=None).smeared


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"q": [0.01, -0.02]}, r"Q must be > 0 Å⁻¹; Q\[1\] = -0.02"),
        ({"q": [0.01, 0.0]}, r"Q must be > 0"),
        ({"q": [0.02, 0.01]}, r"strictly increasing; Q\[1\] = 0.01"),
        ({"q": [0.01, float("nan")]}, r"Q\[1\] is not finite"),
        ({"q": []}, "empty"),
        ({"q": [0.01, 0.02], "dq": [0.001]}, "dQ has 1 points but Q has 2"),
        ({"q": [0.01, 0.02], "dq": [0.001, -1]}, r"dQ\[1\] = -1"),
        ({"q": [0.01, 0.02], "scale": 0}, "scale must be > 0"),
        ({"q": [0.01, 0.02], "background": float("inf")}, "background must be finite"),
        ({"q": [0.01, 0.02], "dq_over_q": -0.1}, "dQ/Q must be finite and ≥ 0"),
    ],
)
def test_bad_probe_settings_are_named(kwargs, message):
    q = kwargs.pop("q")
    with pytest.raises(ProbeError, match=message):
        Probe(q, **kwargs)


def test_q_grid_validation():
    with pytest.raises(ProbeError, match="qMin must be > 0"):
        q_grid(0.0, 0.2, 10)
    with pytest.raises(ProbeError, match="qMax must be greater than qMin"):
        q_grid(0.2, 0.1, 10)
    with pytest.raises(ProbeError, match="numQPoints must be an integer ≥ 2"):
        q_grid(0.01, 0.1, 1)
    assert Probe.from_grid(0.01, 0.3, 100).q.size == 100

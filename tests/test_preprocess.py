"""Preprocessing: log transform with a clip, normalisation fitted on the training split only, seeded splits."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.data.family import SampleFamily
from workbench.data.generate import GeneratorConfig, generate
from workbench.data.measured import load_measurement
from workbench.data.preprocess import (
    STD_FLOOR,
    Normalizer,
    PreprocessConfig,
    log_reflectivity,
    nr_features,
    split_indices,
)


def test_log_transform_is_finite_for_zero_and_negative_r():
    r = np.array([1.0, 1e-3, 0.0, -2e-9, 1e-12])
    np.testing.assert_allclose(log_reflectivity(r), [0.0, -3.0, -8.0, -8.0, -8.0])
    assert np.all(np.isfinite(log_reflectivity(r, clip_min=1e-10)))


def test_split_is_seeded_disjoint_and_80_10_10():
    s = split_indices(1000, seed=3)
    assert [len(s[k]) for k in ("train", "val", "test")] == [800, 100, 100]
    assert len(np.unique(np.concatenate(list(s.values())))) == 1000
    again = split_indices(1000, seed=3)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["train"], split_indices(1000, seed=4)["train"])


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_normaliser_uses_training_statistics_only_and_inverts(method):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 2, 40))
    x[400:] += 10.0  # the held-out part is shifted: it must not influence the statistics
    train = x[:400]
    norm = Normalizer(method).fit(train)
    y = norm.transform(x)
    if method == "minmax":
        assert y[:400].min() == pytest.approx(0.0, abs=1e-6) and y[:400].max() == pytest.approx(1.0, abs=1e-6)
        assert y[400:].max() > 1.5
    else:
        assert abs(y[:400].mean()) < 1e-5 and y[:400].std() == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(norm.inverse(y), x, atol=1e-4)
    restored = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(restored.transform(x), y)


def test_per_point_and_feature_tables():
    x = np.arange(60, dtype=float).reshape(20, 3)
    per_feature = Normalizer("minmax", per_point=True).fit(x)
    assert per_feature.stats["min"] == [0.0, 1.0, 2.0]
    overall = Normalizer("minmax").fit(x)
    assert overall.stats["min"] == 0.0 and overall.stats["max"] == 59.0


def test_nr_features_take_log_of_r_only():
    nr = np.stack([np.tile(np.geomspace(0.01, 0.2, 5), (3, 1)), np.full((3, 5), 1e-4)], axis=1)
    f = nr_features(nr, PreprocessConfig())
    assert f.shape == (3, 5) and np.allclose(f, -4.0)
    assert np.allclose(nr_features(nr, PreprocessConfig(apply_log_transform=False)), 1e-4)
    with pytest.raises(ValueError, match="split fractions"):
        PreprocessConfig(split=(0.5, 0.6, 0.1))


def test_per_point_scaling_keeps_a_measured_curve_near_the_training_curves(shared_data):
    """Below the critical edge every synthetic R is 1, so a point's spread is ~0; the measured REF_L curve
    (R = 0.94 there) must still land within a few spreads of the training curves, not 10⁸ away."""
    folder = shared_data / "real" / "ornl-ref-l-212592"
    family = SampleFamily.from_dict(
        {"from": str(folder / "manual_fit_spreadsheet.csv"), "ranges": {"thickness": "20%", "sld": 0.5}}
    ).expand()
    grid = {"q_min": 0.0084, "q_max": 0.269, "num_q": 350}
    synthetic = generate(family, GeneratorConfig(num_curves=256, seed=1, sld_points=50, **grid))
    log_r = nr_features(synthetic.nr, PreprocessConfig())
    measured = load_measurement(folder / "REFL_212592_reduced.txt", dq_convention="fwhm")
    x = log_reflectivity(np.interp(synthetic.nr[0, 0], measured.q, measured.r))[None]

    floored = Normalizer("zscore", per_point=True, std_floor=STD_FLOOR).fit(log_r)
    bare = Normalizer("zscore", per_point=True).fit(log_r)
    flat = np.asarray(bare.stats["std"]) < 1e-6
    assert flat.any()  # the premise: points where the training curves do not vary
    assert np.abs(bare.transform(x)).max() > 1e4
    z = floored.transform(x)[0]
    assert np.abs(z[flat]).max() < 5
    assert np.abs(z).max() < 30  # the noisy high-Q tail lies off the training curves, but not absurdly
    # where the training curves do vary, the floor changes nothing
    varied = np.asarray(bare.stats["std"]) > STD_FLOOR * 3 * np.std(log_r)
    np.testing.assert_allclose(np.asarray(floored.stats["std"])[varied], np.asarray(bare.stats["std"])[varied])

"""Synthetic data generation: pyreflect's conventions, reproducibility, realism, bundles on disk."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from workbench.data.dataset import DatasetError, import_pyreflect, load_dataset
from workbench.data.generate import GeneratorConfig, generate, generate_to_disk
from workbench.data.realism import Realism
from workbench.data.sampling import BLOCK, ParameterSampler, apply_parameters
from workbench.events import Cancelled, Progress, Reporter
from workbench.physics import FilmStack, Probe, reflectivity
from workbench.physics.refl1d_engine import sld_profile_refl1d

STACK = FilmStack.default()


def test_default_output_has_pyreflects_layout_and_physics():
    data = generate(STACK, GeneratorConfig(num_curves=300, seed=4))
    assert data.nr.shape == (300, 2, 308) and data.sld.shape == (300, 2, 900)
    assert data.nr.dtype == data.sld.dtype == np.float32
    np.testing.assert_allclose(data.nr[:, 0, :], np.broadcast_to(Probe().q, (300, 308)).astype(np.float32))
    # the parameter table pyreflect loses: every bounded parameter, named, inside its bounds
    assert data.params.shape == (300, 19) and len(data.parameter_names) == 19
    assert data.parameter_names[4:6] == ["layer_1.sld", "layer_1.thickness"]
    for col, b in enumerate(STACK.bounds):
        assert np.all((data.params[:, col] >= b.lo) & (data.params[:, col] <= b.hi)), b
    assert np.all(data.params[:, data.parameter_names.index("siox.sld")] == 3.47)
    # NR is the smeared reflectivity of exactly those stacks
    expected = reflectivity(apply_parameters(STACK, data.params), Probe())
    np.testing.assert_allclose(data.nr[:, 1, :], expected, rtol=2e-6)
    # SLD rows: z from 0, substrate side first
    assert np.all(data.sld[:, 0, 0] == 0) and np.all(np.diff(data.sld[:, 0, :], axis=1) > 0)
    # the ends sit 3σ beyond the outermost interfaces (refl1d's range): close to the bulk values
    np.testing.assert_allclose(data.sld[:, 1, 0], 2.07, atol=6e-3)
    np.testing.assert_allclose(data.sld[:, 1, -1], 0.0, atol=1e-2)


def test_sld_profiles_match_pyreflects_refl1d_resampling():
    """pyreflect: refl1d smooth_profile on a 0.1 Å grid, CubicSpline to 900 points, z shifted to 0."""
    data = generate(STACK, GeneratorConfig(num_curves=4, seed=9, sampling="uniform"))
    arrays = apply_parameters(STACK, data.params)
    for b in range(4):
        stack = FilmStack.from_pyreflect(
            [
                dict(
                    d,
                    **{
                        k: float(getattr(arrays, k)[b, i]) if k != "roughness" or i < 7 else 0.0
                        for k in ("sld", "thickness", "roughness")
                    },
                )
                for i, d in enumerate(STACK.to_layer_desc())
            ]
        )
        z, rho, _ = sld_profile_refl1d(stack)
        # same range (refl1d's arange may overshoot its end by < dz = 0.1 Å), 900 points from 0
        assert abs(data.sld[b, 0, -1] - (z[-1] - z[0])) < 0.1
        np.testing.assert_allclose(data.sld[b, 1], CubicSpline(z, rho)(z[0] + data.sld[b, 0].astype(float)), atol=2e-5)


def test_same_seed_same_data_whatever_the_chunking():
    a = generate(STACK, GeneratorConfig(num_curves=3 * BLOCK + 17, seed=11, chunk_size=BLOCK))
    b = generate(STACK, GeneratorConfig(num_curves=3 * BLOCK + 17, seed=11, chunk_size=8 * BLOCK))
    assert np.array_equal(a.nr, b.nr) and np.array_equal(a.sld, b.sld) and np.array_equal(a.params, b.params)
    c = generate(STACK, GeneratorConfig(num_curves=64, seed=12))
    assert not np.array_equal(a.params[:64], c.params)


@pytest.mark.parametrize("method", ["lhs", "uniform"])
def test_sampling_fills_the_bounds(method):
    n = 2000
    sampler = ParameterSampler(STACK, n, seed=5, method=method)
    values, _ = sampler.sample(0, n)
    lo = np.array([b.lo for b in STACK.bounds])
    hi = np.array([b.hi for b in STACK.bounds])
    free = hi > lo
    u = (values[:, free] - lo[free]) / (hi - lo)[free]
    if method == "lhs":  # one sample in each of the n strata of every parameter
        for col in range(u.shape[1]):
            assert np.array_equal(np.sort(np.floor(u[:, col] * n).astype(int)), np.arange(n))
    else:
        assert np.all((u >= 0) & (u < 1)) and abs(u.mean() - 0.5) < 0.02


def test_consistent_roughness_stays_below_a_fraction_of_the_neighbouring_layers():
    data = generate(STACK, GeneratorConfig(num_curves=500, seed=2, consistent_roughness=0.5))
    a = apply_parameters(STACK, data.params)
    for i in range(1, 6):  # interfaces between two finite layers
        cap = 0.5 * np.minimum(a.thickness[:, i], a.thickness[:, i + 1])
        lo = STACK.bound(i, "roughness").lo
        assert np.all(a.roughness[:, i] <= np.maximum(cap, lo) + 1e-12)
    plain = generate(STACK, GeneratorConfig(num_curves=500, seed=2))
    pa = apply_parameters(STACK, plain.params)
    assert np.any(pa.roughness[:, 3] > 0.5 * np.minimum(pa.thickness[:, 3], pa.thickness[:, 4]))


def test_fixed_z_grid_is_shared_and_holds_every_profile():
    data = generate(STACK, GeneratorConfig(num_curves=200, seed=3, fixed_z_grid=True))
    assert np.all(data.sld[:, 0, :] == data.sld[0, 0, :])
    np.testing.assert_allclose(data.sld[:, 1, 0], 2.07, atol=1e-3)
    np.testing.assert_allclose(data.sld[:, 1, -1], 0.0, atol=1e-3)


def test_measurement_realism_is_recorded_and_realistic():
    realism = Realism(counting_noise=True, background=(1e-7, 1e-6), scale_error=0.03, q_shift=0.002)
    data = generate(STACK, GeneratorConfig(num_curves=BLOCK, seed=8, realism=realism))
    names = data.parameter_names
    assert names[-3:] == ["probe.scale", "probe.background", "probe.q_factor"]
    bg = data.params[:, -2]
    assert np.all((bg >= 1e-7) & (bg <= 1e-6))
    assert abs(np.std(data.params[:, -3]) - 0.03) < 0.005 and abs(np.std(data.params[:, -1]) - 0.002) < 0.0003
    # Poisson: dR/R = 1/sqrt(counts); tiny near the edge, large at high Q
    rel = data.dr / np.where(data.nr[:, 1] > 0, data.nr[:, 1], np.nan)
    assert np.nanmedian(rel[:, 0]) < 0.005 and np.nanmedian(rel[:, -1]) > 0.1  # REF_L: ~1 % and ~40 %
    # the noise is unbiased: mean over curves of (R_noisy − R_expected)/dR ≈ 0 at mid Q
    arrays = apply_parameters(STACK, data.params[:, :19])
    expected = reflectivity(arrays, Probe(), scale=data.params[:, -3], background=bg, q_factor=data.params[:, -1])
    z = (data.nr[:, 1, 150] - expected[:, 150]) / data.dr[:, 150]
    assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1
    # off by default: pyreflect's noise-free curves
    assert generate(STACK, GeneratorConfig(num_curves=10)).dr is None


def test_bundle_on_disk_round_trips_with_a_chunking_independent_hash(tmp_path):
    cfg = GeneratorConfig(num_curves=2 * BLOCK + 100, seed=21, chunk_size=BLOCK)
    out = generate_to_disk(STACK, cfg, tmp_path / "a")
    assert sorted(os.listdir(out)) == ["dataset.json", "nr_train.npy", "params.npy", "sld_train.npy"]
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["counts"] == {"curves": 2148, "q_points": 308, "sld_points": 900}
    assert meta["seed"] == 21 and meta["generator"]["sampling"] == "lhs"
    assert meta["stack"]["layer_bound"] == STACK.to_layer_bound()
    assert {"workbench", "refl1d"} <= set(meta["versions"])
    ds = load_dataset(out, verify_hash=True)
    in_memory = generate(STACK, cfg)
    assert np.array_equal(ds.nr, in_memory.nr) and np.array_equal(ds.sld, in_memory.sld)
    assert ds.parameter_names == in_memory.parameter_names
    other = generate_to_disk(STACK, cfg.model_copy(update={"chunk_size": 3 * BLOCK}), tmp_path / "b")
    assert json.loads((other / "dataset.json").read_text())["content_hash"] == meta["content_hash"]
    # pyreflect users load ours with plain numpy
    assert np.load(out / "nr_train.npy").shape == (2148, 2, 308)


def test_two_worker_dask_cluster_writes_the_same_files(tmp_path):
    cfg = GeneratorConfig(num_curves=3 * BLOCK, seed=5, chunk_size=BLOCK)
    local = generate_to_disk(STACK, cfg, tmp_path / "local")
    events = []
    dask = generate_to_disk(STACK, cfg, tmp_path / "dask", dask="local", reporter=Reporter([events.append]))
    for name in ("nr_train.npy", "sld_train.npy", "params.npy"):
        assert (local / name).read_bytes() == (dask / name).read_bytes(), name
    assert (
        json.loads((local / "dataset.json").read_text())["content_hash"]
        == json.loads((dask / "dataset.json").read_text())["content_hash"]
    )
    assert [e.done for e in events if isinstance(e, Progress)][-1] == 3 * BLOCK


def test_cancel_leaves_no_half_written_bundle_and_keeps_existing_ones(tmp_path):
    existing = generate_to_disk(STACK, GeneratorConfig(num_curves=10), tmp_path / "keep")
    before = (existing / "nr_train.npy").read_bytes()
    reporter = Reporter()
    reporter.listeners.append(lambda e: reporter.stop.stop("user pressed Cancel") if isinstance(e, Progress) else None)
    with pytest.raises(Cancelled, match="user pressed Cancel"):
        generate_to_disk(
            STACK, GeneratorConfig(num_curves=4 * BLOCK, chunk_size=BLOCK), tmp_path / "new", reporter=reporter
        )
    assert os.listdir(tmp_path / "new") == []
    with pytest.raises(FileExistsError, match="already holds a data set"):
        generate_to_disk(STACK, GeneratorConfig(num_curves=10, seed=1), existing)
    assert (existing / "nr_train.npy").read_bytes() == before


def test_loading_says_exactly_what_is_wrong(tmp_path):
    out = generate_to_disk(STACK, GeneratorConfig(num_curves=20), tmp_path / "ds")
    nr = np.load(out / "nr_train.npy")
    bad = tmp_path / "bad"
    bad.mkdir()
    np.save(bad / "sld_train.npy", np.load(out / "sld_train.npy"))
    with pytest.raises(DatasetError, match=r"nr_train.npy: file not found"):
        load_dataset(bad)
    np.save(bad / "nr_train.npy", nr[:, 1, :])
    with pytest.raises(DatasetError, match=r"NR must have shape \(N, 2, points\) with rows \(Q, R\), got \(20, 308\)"):
        load_dataset(bad)
    broken = nr.copy()
    broken[7, 1, 30] = np.nan
    np.save(bad / "nr_train.npy", broken)
    with pytest.raises(DatasetError, match=r"non-finite value at index \(7, 1, 30\)"):
        load_dataset(bad)
    np.save(bad / "nr_train.npy", nr[:10])
    with pytest.raises(DatasetError, match=r"has 10 curves but sld_train\.npy has 20"):
        load_dataset(bad)
    np.save(bad / "nr_train.npy", nr.astype(np.int64))
    with pytest.raises(DatasetError, match="must be float32 or float64, got int64"):
        load_dataset(bad)
    tampered = nr.copy()
    tampered[0, 1, 0] *= 1.01
    np.save(out / "nr_train.npy", tampered)
    with pytest.raises(DatasetError, match="content hash mismatch"):
        load_dataset(out, verify_hash=True)


def test_plain_pyreflect_npy_pairs_import(tmp_path):
    data = generate(STACK, GeneratorConfig(num_curves=30))
    np.save(tmp_path / "combined_nr.npy", data.nr.astype(np.float64))
    np.save(tmp_path / "combined_sld.npy", data.sld.astype(np.float64))
    ds = import_pyreflect(tmp_path / "combined_nr.npy", tmp_path / "combined_sld.npy")
    assert ds.n == 30 and ds.params is None and ds.meta["format"] == "pyreflect"
    folder = tmp_path / "pair"
    folder.mkdir()
    np.save(folder / "nr_train.npy", data.nr)
    np.save(folder / "sld_train.npy", data.sld)
    assert load_dataset(folder).n == 30


def test_bad_generator_settings_are_refused_clearly():
    with pytest.raises(ValueError, match="num_curves"):
        GeneratorConfig(num_curves=0)
    with pytest.raises(ValueError, match="background range must satisfy"):
        Realism(background=(1e-5, 1e-7))
    with pytest.raises(ValueError, match="qMax must be greater than qMin"):
        generate(STACK, GeneratorConfig(q_min=0.2, q_max=0.1, num_curves=5))
    with pytest.raises(ValueError, match="no bounds: nothing to sample"):
        generate(FilmStack(layers=STACK.layers), GeneratorConfig(num_curves=5))

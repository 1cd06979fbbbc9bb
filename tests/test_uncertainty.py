"""refl1d export and DREAM uncertainty bands on a small synthetic film (Si / SiOx / film / air, 100 Q points).

Why the refl1d-vs-workbench tolerances are what they are (measured on this stack, dR = 5 % R):
refl1d smears R computed on the data points only (piecewise linear between them), and here the
data points are 3.3 % of Q apart while the 1σ resolution is 1.3 % of Q, so the fringe minima are
badly under-resolved: without oversampling refl1d differs from our converged smearing (itself
within 1e-4 of a brute-force integral, tests/test_smearing.py) by up to ≈ 40 % at the minima, a
mean squared difference of ≈ 2 in units of dR² — as large as the noise.  ``probe.oversample(n)``
adds n − 1 random points per Q (seed 1): n = 10 brings the maximum to ≈ 4.4 % (at the deepest
minima and the last point) and the mean squared difference to ≈ 0.02 dR²; n = 50 gives ≈ 0.85 %
(the last point, where only the points of its neighbours below sample the Gaussian) and ≤ 0.1 %
inside the range.  Below the critical edge both are exact.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from bumps.fitproblem import load_problem

from workbench.analysis.export_refl1d import DATA_FILE, MODEL_FILE, export_refl1d, refl1d_model, refl1d_script
from workbench.analysis.refine import RefineError, refine
from workbench.analysis.uncertainty import Bands, dream_bands
from workbench.data.measured import Measurement
from workbench.events import Reporter, Timing
from workbench.physics import FilmStack, Probe, critical_edge, reflectivity, sld_profile

TRUTH = FilmStack.from_pyreflect(
    [
        {"name": "Si", "sld": 2.07, "roughness": 3.0},
        {"name": "SiOx", "sld": 3.47, "thickness": 15.0, "roughness": 3.0},
        {"name": "film", "sld": 1.5, "thickness": 220.0, "roughness": 5.0},
        {"name": "air", "sld": 0.0},
    ]
)
TRUE_VALUES = {"film.sld": 1.5, "film.thickness": 220.0, "film.roughness": 5.0, "probe.scale": 1.0}
FREE = {
    "film.sld": (0.5, 3.0),
    "film.thickness": (150.0, 300.0),
    "film.roughness": (0.0, 15.0),
    "probe.scale": (0.8, 1.2),
}
Q = np.geomspace(0.008, 0.2, 100)
Z = np.linspace(-30.0, 280.0, 311)
# One noise realisation.  Pointwise SLD bands over a plateau are set by that layer's SLD alone, so in
# a realisation where the fitted SLD lies > 2σ from the truth (≈ 5 % of them) the whole plateau
# leaves the 95 % band: measured with DREAM seed 0, noise seeds 2, 4, 5 → 100 % of z inside,
# noise seed 3 (film SLD 2.1σ high) → 29 %.  Seed 2's fit is within 1σ in every parameter.
NOISE_SEED = 2


def _data(scale: float = 1.0, background: float = 0.0, noise_seed: int | None = None) -> tuple[Measurement, np.ndarray]:
    probe = Probe(Q, dq_over_q=0.03, dq_is_fwhm=True, scale=scale, background=background)
    r = reflectivity(TRUTH, probe, engine="torch").numpy()[0]
    dr = 0.05 * r + 1e-8
    noisy = r if noise_seed is None else r + dr * np.random.default_rng(noise_seed).standard_normal(r.size)
    return Measurement(q=Q, r=noisy, dr=dr, dq_sigma=probe.sigma, source="synthetic", dq_convention_of_file="sigma"), r


# ----------------------------------------------------------------------------------------- export
def test_exported_script_runs_under_refl1d_with_the_free_parameters_and_our_curve(tmp_path):
    data, r_ours = _data(scale=0.95, background=2e-7)
    free = {
        "Si.roughness": (0.0, 10.0),
        "film.sld": (0.5, 3.0),
        "film.thickness": (150.0, 300.0),
        "probe.scale": (0.8, 1.1),
        "probe.background": (0.0, 1e-6),
    }
    path = export_refl1d(tmp_path / "export", TRUTH, data, free, scale=0.95, background=2e-7)
    assert path == tmp_path / "export" / MODEL_FILE and (path.parent / DATA_FILE).is_file()
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp files left behind
    columns = np.loadtxt(path.parent / DATA_FILE)
    np.testing.assert_array_equal(columns[:, 0], Q)  # full precision round trip
    np.testing.assert_array_equal(columns[:, 3], data.dq_sigma)  # dQ written as 1σ

    problem = load_problem(path)  # what `refl1d model.py` does: chdir to the folder and execute the script
    expected = {
        "Si interface": (0.0, 10.0),
        "film rho": (0.5, 3.0),
        "film thickness": (150.0, 300.0),
        "intensity": (0.8, 1.1),
        "background": (0.0, 1e-6),
    }
    assert sorted(problem.labels()) == sorted(expected)
    for label, (lo, hi) in zip(problem.labels(), problem.bounds().T):
        assert (lo, hi) == expected[label]
    values = dict(zip(problem.labels(), problem.getp()))
    assert values == {
        "Si interface": 3.0,
        "film rho": 1.5,
        "film thickness": 220.0,
        "intensity": 0.95,
        "background": 2e-7,
    }

    # theory at the fitted values vs reflectivity(stack, probe, engine="torch"), default oversample=10
    (experiment,) = problem.models
    r_refl1d = experiment.reflectivity()[1]
    rel = np.abs(r_refl1d / r_ours - 1)
    chi = (r_refl1d - r_ours) / data.dr
    assert rel.max() < 0.06 and np.mean(chi**2) < 0.04, (rel.max(), np.mean(chi**2))
    below = Q + 4 * data.dq_sigma < critical_edge(2.07, 0.0)  # the whole resolution window totally reflected
    assert below.sum() >= 5
    np.testing.assert_allclose(r_refl1d[below], r_ours[below], rtol=1e-9)
    assert problem.chisq() < 0.04  # refl1d's own χ²/dof against the noise-free curve


def test_refl1d_smearing_needs_oversampling_and_converges_with_it():
    data, r_ours = _data()
    free = {"film.sld": (0.5, 3.0)}
    errors = {}
    for n in (None, 10, 50):
        r = refl1d_model(TRUTH, data, free=free, oversample=n).experiment.reflectivity()[1]
        errors[n] = (np.abs(r / r_ours - 1), np.mean(((r - r_ours) / data.dr) ** 2))
    assert errors[None][0].max() > 0.2 and errors[None][1] > 1.0  # R on the data points only: as large as the noise
    assert errors[10][0].max() < 0.06 and errors[10][1] < 0.04
    assert errors[50][0].max() < 0.015 and errors[50][0][:-1].max() < 3e-3 and errors[50][1] < 1e-3


def test_script_text_maps_every_parameter_kind_and_names_conventions():
    stack = TRUTH.with_value(2, "isld", 0.01)
    data, _ = _data()
    free = {
        "SiOx.thickness": (5.0, 30.0),
        "SiOx.roughness": (0.0, 10.0),
        "film.sld": (0.5, 3.0),
        "film.isld": (0.0, 0.1),
        "probe.scale": (0.5, 1.5),
        "probe.background": (0.0, 1e-6),
    }
    text = refl1d_script(stack, data, free=free, oversample=None)
    for line in (
        "layers[1].thickness.range(5.0, 30.0)  # SiOx.thickness",
        "layers[1].interface.range(0.0, 10.0)  # SiOx.roughness",
        "layers[2].material.rho.range(0.5, 3.0)  # film.sld",
        "layers[2].material.irho.range(0.0, 0.1)  # film.isld",
        "probe.intensity.range(0.5, 1.5)  # probe.scale",
        "probe.background.range(0.0, 1e-06)  # probe.background",
        "problem = FitProblem(experiment)",
    ):
        assert line in text
    assert "1σ" in text and "NOT FWHM" in text and "probe.oversample(" not in text
    model = refl1d_model(stack, data, free=free, oversample=None)
    assert [p.value for p in model.parameters] == [15.0, 3.0, 1.5, 0.01, 1.0, 0.0]


def test_layer_names_cannot_inject_code_into_the_script():
    hostile = "film\nraise SystemExit('injected')"
    layers = TRUTH.to_layer_desc()
    layers[2]["name"] = hostile
    stack = FilmStack.from_pyreflect(layers)
    data, _ = _data()
    model = refl1d_model(stack, data, free={f"{hostile}.sld": (0.5, 3.0)})  # would raise SystemExit if injected
    assert model.experiment.sample[2].material.name == hostile
    text = refl1d_script(stack, data, free={f"{hostile}.sld": (0.5, 3.0)})
    assert not any(line.lstrip().startswith("raise") for line in text.splitlines())


@pytest.mark.parametrize("name", ["Si.thickness", "air.roughness", "air.isld"])
def test_parameters_without_effect_in_refl1d_are_refused(name):
    data, _ = _data()
    with pytest.raises(RefineError, match=name.replace(".", r"\.")):
        refl1d_script(TRUTH, data, free={name: (0.0, 10.0)})


def test_start_outside_its_range_is_refused():
    data, _ = _data()
    with pytest.raises(RefineError, match=r"film\.thickness"):
        refl1d_script(TRUTH, data, free={"film.thickness": (100.0, 200.0)})


# ------------------------------------------------------------------------------------------ DREAM
@pytest.fixture(scope="module")
def fitted_bands():
    """Least-squares fit from a start 20 Å off, then DREAM: 5000 samples, 50 burn-in generations (~7 s)."""
    data, _ = _data(noise_seed=NOISE_SEED)
    fit = refine(data, TRUTH.with_value(2, "thickness", 200.0), free=list(FREE), bounds=FREE)
    events = []
    t0 = time.perf_counter()
    bands = dream_bands(
        fit.stack,
        data,
        FREE,
        scale=fit.scale,
        background=fit.background,
        samples=5000,
        burn=50,
        seed=0,
        z=Z,
        n_draws=300,
        reporter=Reporter([events.append]),
    )
    return fit, bands, events, time.perf_counter() - t0


def test_dream_bands_bracket_the_truth(fitted_bands):
    fit, bands, events, seconds = fitted_bands
    assert seconds < 40  # ≈ 7 s on an idle 2-core machine
    assert bands.n_draws == 300 and bands.n_posterior >= 2000
    _, rho, _ = sld_profile(TRUTH, z=Z)
    lo95, hi95 = bands.sld_95
    lo68, hi68 = bands.sld_68
    inside = (lo95 - 1e-9 <= rho[0]) & (rho[0] <= hi95 + 1e-9)
    assert inside.mean() >= 0.9, inside.mean()  # measured: 1.0 for this noise realisation
    assert np.all(lo95 <= lo68) and np.all(lo68 <= bands.sld_median) and np.all(bands.sld_median <= hi68)
    assert np.all(hi68 <= hi95)
    assert np.all(bands.r_95[0] <= bands.r_68[0]) and np.all(bands.r_68[1] <= bands.r_95[1])
    # Every draw's smeared R is at most its own scale (R ≤ 1 below the edge) plus the background, so the
    # 97.5th percentile of R is at most the 97.5th percentile of the sampled scale: exact, not a tolerance.
    scale_hi95 = next(row["hi95"] for row in bands.parameter_table if row["name"] == "probe.scale")
    assert np.all(bands.r_95[0] > 0)
    assert np.all(bands.r_95[1] <= scale_hi95 + fit.background + 1e-12), (bands.r_95[1].max(), scale_hi95)
    for row, sigma_lsq in zip(bands.parameter_table, fit.uncertainties):
        sigma = (row["hi68"] - row["lo68"]) / 2
        assert abs(row["median"] - TRUE_VALUES[row["name"]]) < 3 * sigma, row
        assert 0.5 < sigma / sigma_lsq < 2, (row, sigma_lsq)  # DREAM's width agrees with the Jacobian's
        assert row["lo95"] <= row["lo68"] <= row["median"] <= row["hi68"] <= row["hi95"]
    assert [row["name"] for row in bands.parameter_table] == list(FREE)
    assert any(isinstance(e, Timing) and e.stage == "uncertainty" for e in events)


def test_bands_write_documented_csv_files(fitted_bands, tmp_path):
    _, bands, _, _ = fitted_bands
    sld_csv, refl_csv = bands.to_csv(tmp_path / "out")
    assert (sld_csv.name, refl_csv.name) == ("sld_bands.csv", "reflectivity_bands.csv")
    for path, first, unit, n in ((sld_csv, "z", "1e-6 Å⁻²", Z.size), (refl_csv, "q", "Å⁻¹", Q.size)):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith("#") and unit in lines[0]
        assert lines[1] == f"{first},median,lo68,hi68,lo95,hi95"
        table = np.loadtxt(path, delimiter=",", skiprows=2)
        assert table.shape == (n, 6) and np.all(np.isfinite(table))
    np.testing.assert_allclose(np.loadtxt(sld_csv, delimiter=",", skiprows=2)[:, 0], Z, rtol=1e-9)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_bands_read_back_from_their_csv_files_as_written(fitted_bands, tmp_path):
    _, bands, _, _ = fitted_bands
    bands.to_csv(tmp_path / "bands")
    back = Bands.from_csv(
        tmp_path / "bands",
        parameter_table=bands.parameter_table,
        n_posterior=bands.n_posterior,
        converged=bands.converged,
        seconds=bands.seconds,
    )
    assert back.n_draws == 300 and back.n_posterior == bands.n_posterior and back.converged == bands.converged
    assert back.parameter_table == bands.parameter_table and back.seconds == bands.seconds
    for field in ("z", "sld_median", "sld_68", "sld_95", "q", "r_median", "r_68", "r_95"):
        np.testing.assert_allclose(getattr(back, field), getattr(bands, field), rtol=1e-9, atol=0, err_msg=field)
    (tmp_path / "bands" / "sld_bands.csv").write_text("z,sld\n0,1\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"sld_bands\.csv: not a bands file"):
        Bands.from_csv(tmp_path / "bands")
    with pytest.raises(ValueError, match="no such bands file"):
        Bands.from_csv(tmp_path / "elsewhere")


def test_same_seed_same_bands_other_seed_other_bands():
    data, _ = _data(noise_seed=NOISE_SEED)
    start = {"stack": TRUTH, "data": data, "free": FREE, "samples": 400, "burn": 10, "z": Z, "n_draws": 100}
    a, b, c = (dream_bands(**start, seed=s) for s in (3, 3, 4))
    for field in ("sld_median", "r_median"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(a.sld_95[0], b.sld_95[0])
    assert a.parameter_table == b.parameter_table
    assert not np.array_equal(a.sld_95[0], c.sld_95[0])
    # the caller's global numpy RNG is left as it was (bumps' push_seed restores it)
    state = np.random.get_state()[1].copy()
    dream_bands(**start, seed=5)
    np.testing.assert_array_equal(np.random.get_state()[1], state)

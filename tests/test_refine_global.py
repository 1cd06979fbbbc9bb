"""Global search (differential evolution) and co-refinement of several contrasts of one film."""

from __future__ import annotations

import itertools
import pathlib

import numpy as np
import pytest
import refnx

from workbench.analysis.corefine import Contrast, corefine
from workbench.analysis.joint_export import export_joint_refl1d, joint_refl1d_model
from workbench.analysis.refine import RefineError, refine
from workbench.analysis.uncertainty import dream_joint_bands
from workbench.data.measured import Measurement, load_measurement
from workbench.events import Cancelled, Record, Reporter
from workbench.physics import FilmStack, Probe, reflectivity

THICK_TRUTH = 1400.0
THICK_BOUNDS = {
    "oxide.thickness": (1000.0, 1600.0),
    "oxide.sld": (2.5, 4.5),
    "oxide.roughness": (0.0, 15.0),
    "Si.roughness": (0.0, 10.0),
}


def _thick_film(thickness: float = THICK_TRUTH) -> FilmStack:
    return FilmStack.from_pyreflect(
        [
            {"name": "Si", "sld": 2.07, "roughness": 3.0},
            {"name": "oxide", "sld": 3.47, "thickness": thickness, "roughness": 5.0},
            {"name": "air", "sld": 0.0},
        ]
    )


def _synthetic(
    stack: FilmStack, q: np.ndarray, dq_over_q: float, noise: float, seed: int, label: str, floor: float = 2e-7
) -> Measurement:
    """R with ``noise``·R + ``floor`` Gaussian errors (seeded) and a 1σ resolution of ``dq_over_q``·Q."""
    probe = Probe(q, dq=dq_over_q * q, dq_is_fwhm=False)
    r = np.asarray(reflectivity(stack, probe, engine="fast"))[0]
    dr = noise * r + floor
    r_noisy = r + np.random.default_rng(seed).normal(0.0, dr)
    return Measurement(
        q=q, r=r_noisy, dr=dr, dq_sigma=probe.sigma, source=label, dq_convention_of_file="sigma", metadata={}
    )


@pytest.fixture(scope="module")
def thick_case() -> tuple[Measurement, FilmStack]:
    """A 1,400 Å oxide on Si (fine resolution: many fringes) and the stack at the centre of its bounds."""
    data = _synthetic(_thick_film(), np.geomspace(0.008, 0.2, 250), 0.005, 0.03, seed=1, label="thick", floor=1e-8)
    start = _thick_film()
    names = [layer.name for layer in start.layers]
    for name, (lo, hi) in THICK_BOUNDS.items():
        layer, par = name.split(".")
        start = start.with_value(names.index(layer), par, 0.5 * (lo + hi))
    return data, start


def test_de_finds_the_thick_film_that_a_local_fit_from_the_centre_misses(thick_case) -> None:
    data, start = thick_case
    local = refine(data, start, free=list(THICK_BOUNDS), bounds=THICK_BOUNDS, method="lsq")
    local_error = abs(local.values[0] - THICK_TRUTH) / THICK_TRUTH
    assert local_error > 1e-3 and local.chi2_per_point > 10  # a fringe-shifted local minimum
    for method in ("de", "auto"):
        found = refine(data, start, free=list(THICK_BOUNDS), bounds=THICK_BOUNDS, method=method, seed=0)
        assert found.method == method
        assert abs(found.values[0] - THICK_TRUTH) / THICK_TRUTH < 1e-3, (method, found.values[0])
        assert found.chi2_per_point < 1.5
        assert np.all(np.isfinite(found.uncertainties)) and found.uncertainties[0] < 2.0


def test_de_is_seeded_reports_each_generation_and_stops(thick_case) -> None:
    data, start = thick_case
    records: list[Record] = []
    reporter = Reporter([lambda e: records.append(e) if isinstance(e, Record) else None])
    a = refine(data, start, free=list(THICK_BOUNDS), bounds=THICK_BOUNDS, method="de", seed=4, reporter=reporter)
    b = refine(data, start, free=list(THICK_BOUNDS), bounds=THICK_BOUNDS, method="de", seed=4)
    np.testing.assert_array_equal(a.values, b.values)
    generations = [r.data for r in records if r.name == "generation"]
    assert len(generations) >= 2 and [g["generation"] for g in generations] == list(range(1, len(generations) + 1))
    best = [g["chi2"] for g in generations]
    assert all(later <= earlier for earlier, later in itertools.pairwise(best))  # DE keeps its best member
    assert best[-1] <= a.start_chi2

    stopper = Reporter()

    def stop_after_two(event) -> None:
        if isinstance(event, Record) and event.name == "generation" and event.data["generation"] >= 2:
            stopper.stop.stop()

    stopper.listeners.append(stop_after_two)
    with pytest.raises(Cancelled):
        refine(data, start, free=list(THICK_BOUNDS), bounds=THICK_BOUNDS, method="de", reporter=stopper)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        ({"method": "global"}, "unknown method"),
        ({"method": "de", "population": 3}, "population of at least 5"),
        ({"method": "de", "generations": 0}, "at least 1 generation"),
        ({"method": "de", "de_tolerance": -1.0}, "DE tolerance"),
    ],
)
def test_bad_global_settings_are_named(thick_case, options, words) -> None:
    data, start = thick_case
    with pytest.raises(RefineError, match=words):
        refine(data, start, free=list(THICK_BOUNDS), bounds=THICK_BOUNDS, **options)


SOLVENTS = {"D2O": 6.36, "H2O": -0.56, "CMSi": 2.07}
FILM_TRUTH = {"oxide.thickness": 12.0, "oxide.roughness": 3.0, "lipid.sld": 0.5, "lipid.thickness": 45.0}
FILM_BOUNDS = {
    "oxide.thickness": (5.0, 25.0),
    "oxide.roughness": (1.0, 8.0),
    "lipid.sld": (-0.5, 2.0),
    "lipid.thickness": (30.0, 60.0),
    "lipid.roughness": (1.0, 10.0),
}


def _bilayer(solvent: float, lipid_sld: float = 0.5, lipid_thickness: float = 45.0) -> FilmStack:
    """A lipid film on oxidised Si measured through the Si (the ambient, last) against a solvent (the backing)."""
    return FilmStack.from_pyreflect(
        [
            {"name": "solvent", "sld": solvent, "roughness": 4.0},
            {"name": "lipid", "sld": lipid_sld, "thickness": lipid_thickness, "roughness": 3.0},
            {"name": "oxide", "sld": 3.47, "thickness": 12.0, "roughness": 3.0},
            {"name": "Si", "sld": 2.07},
        ]
    )


@pytest.fixture(scope="module")
def three_contrasts() -> list[Contrast]:
    """Three solvent contrasts of one lipid film; each starts 7 Å and 0.5 SLD off, with its solvent's SLD."""
    q = np.geomspace(0.01, 0.3, 200)
    return [
        Contrast(
            _synthetic(_bilayer(sld), q, 0.025, 0.05, seed=k, label=label),
            _bilayer(sld, lipid_sld=1.0, lipid_thickness=38.0),
            label=label,
        )
        for k, (label, sld) in enumerate(SOLVENTS.items())
    ]


def test_three_contrasts_pin_the_film_down_better_than_any_one(three_contrasts) -> None:
    joint = corefine(three_contrasts, free=list(FILM_BOUNDS), bounds=FILM_BOUNDS)
    assert joint.shared == list(FILM_BOUNDS)  # same start in every contrast: the film is shared by default
    assert joint.names == list(FILM_BOUNDS)
    assert joint.n_points == 600 and 0.7 < joint.chi2_per_point < 1.3
    sigma = dict(zip(joint.names, joint.uncertainties))
    values = dict(zip(joint.names, joint.values))
    for name, truth in FILM_TRUTH.items():
        assert abs(values[name] - truth) < 3 * sigma[name], (name, values[name], sigma[name])
    for c in three_contrasts:
        alone = refine(c.data, c.stack, free=list(FILM_BOUNDS), bounds=FILM_BOUNDS)
        for name, s in zip(alone.names, alone.uncertainties):
            assert sigma[name] < s, (c.label, name, sigma[name], s)
    # each contrast's own curve and χ² add up to the joint χ²
    assert sum(c.chi2 for c in joint.contrasts) == pytest.approx(joint.chi2, rel=1e-9)
    d2o = joint.contrast("D2O")
    assert d2o.stack.substrate.sld == 6.36 and d2o.stack.ambient.sld == 2.07 and d2o.r_fit.shape == (200,)
    np.testing.assert_allclose(d2o.uncertainties, joint.uncertainties)


def test_per_contrast_parameters_and_bad_sharing(three_contrasts) -> None:
    free = ["lipid.thickness", "lipid.sld", "probe.scale", "solvent.sld"]
    bounds = {**FILM_BOUNDS, "probe.scale": (0.8, 1.2), "solvent.sld": (-1.0, 7.0)}
    joint = corefine(three_contrasts, free=free, bounds=bounds, method="auto", seed=0)
    assert joint.shared == ["lipid.thickness", "lipid.sld"]  # scale and each solvent's SLD stay per contrast
    assert "H2O:solvent.sld" in joint.names and "D2O:probe.scale" in joint.names
    values = dict(zip(joint.names, joint.values))
    for label, sld in SOLVENTS.items():
        assert values[f"{label}:solvent.sld"] == pytest.approx(sld, abs=0.15)
        assert values[f"{label}:probe.scale"] == pytest.approx(1.0, abs=0.03)
    with pytest.raises(RefineError, match="not free in contrast"):
        corefine(three_contrasts, free=["lipid.thickness"], shared=["lipid.sld"], bounds=FILM_BOUNDS)
    with pytest.raises(RefineError, match="at least two curves"):
        corefine(three_contrasts[:1], free=["lipid.thickness"], bounds=FILM_BOUNDS)
    same = [Contrast(c.data, c.stack, label="x") for c in three_contrasts]
    with pytest.raises(RefineError, match="labels must differ"):
        corefine(same, free=["lipid.thickness"], bounds=FILM_BOUNDS)


def test_joint_refl1d_model_shares_parameters_and_scores_our_chi2(three_contrasts, tmp_path) -> None:
    from bumps.fitproblem import load_problem

    free = ["lipid.thickness", "lipid.sld", "probe.scale", "solvent.sld"]
    bounds = {**FILM_BOUNDS, "probe.scale": (0.8, 1.2), "solvent.sld": (-1.0, 7.0)}
    joint = corefine(three_contrasts, free=free, bounds=bounds)
    datas = [c.data for c in three_contrasts]
    model = joint_refl1d_model(joint, datas)
    assert len(model.problem.getp()) == len(joint.names) == 8  # 2 shared + 3 × (scale, solvent SLD)
    chi2 = sum(float(np.sum(e.residuals() ** 2)) for e in model.experiments)
    assert chi2 == pytest.approx(joint.chi2, rel=5e-3)  # refl1d's smearing, oversampled, against ours
    script = export_joint_refl1d(tmp_path / "refl1d", joint, datas)
    assert sorted(p.name for p in script.parent.iterdir()) == ["data_1.txt", "data_2.txt", "data_3.txt", "model.py"]
    text = script.read_text()
    assert "layers_2[1].thickness = layers_1[1].thickness  # lipid.thickness" in text
    problem = load_problem(str(script))
    assert len(problem.getp()) == 8
    np.testing.assert_allclose(problem.getp(), model.problem.getp())
    assert float(problem.chisq()) == pytest.approx(float(model.problem.chisq()), rel=1e-9)


def test_joint_dream_bands_bracket_the_shared_film(three_contrasts) -> None:
    shared = ["lipid.thickness", "lipid.sld"]
    joint = corefine(three_contrasts, free=shared, bounds=FILM_BOUNDS)
    bands = dream_joint_bands(joint, [c.data for c in three_contrasts], samples=1000, burn=30, seed=0, n_draws=200)
    assert len(bands) == 3
    for b, fit in zip(bands, joint.contrasts):
        table = {row["name"]: row for row in b.parameter_table}
        assert set(table) == set(shared)
        for name, value in zip(joint.names, joint.values):
            assert table[name]["lo95"] <= value <= table[name]["hi95"]
        assert b.r_median.shape == fit.q.shape and np.all(b.r_95[0] <= b.r_95[1])
    # the three contrasts' bands come from the same joint draws: identical shared-parameter intervals
    assert bands[0].parameter_table == bands[2].parameter_table
    # ... but different curves: each contrast is computed with its own solvent
    assert not np.allclose(bands[0].r_median, bands[1].r_median)


def test_real_three_contrast_film_matches_refnx_global_objective() -> None:
    """refnx's own three-contrast polymer film (e361r D2O, e365r CM3, e366r H2O; 5 % FWHM resolution).

    The same model both ways (beam through the Si; film, oxide and the solvent interface shared, one
    background per curve): refnx ``GlobalObjective`` with its least squares against ``corefine``.
    """
    from refnx.analysis import CurveFitter, GlobalObjective, Objective
    from refnx.dataset import ReflectDataset
    from refnx.reflect import SLD, ReflectModel

    folder = pathlib.Path(refnx.__file__).parent / "analysis" / "tests"
    files = {"D2O": ("e361r.txt", 6.36), "CM3": ("e365r.txt", 3.47), "H2O": ("e366r.txt", -0.56)}
    si, sio2, polymer = SLD(2.07, name="Si"), SLD(3.47, name="SiO2"), SLD(1.0, name="polymer")
    s361 = si | sio2(10, 4) | polymer(200, 3) | SLD(6.36)(0, 3)
    structures = [s361] + [si | s361[1] | s361[2] | SLD(sld)(0, 3) for _, sld in list(files.values())[1:]]
    for s in structures[1:]:
        s[-1].rough = s361[-1].rough
    s361[1].thick.setp(vary=True, bounds=(0, 20))
    s361[2].thick.setp(vary=True, bounds=(200.0, 250.0))
    s361[2].sld.real.setp(vary=True, bounds=(0, 2))
    s361[-1].rough.setp(vary=True, bounds=(1, 10))
    models = [ReflectModel(s, bkg=2e-5, dq=5.0) for s in structures]
    for m in models:
        m.bkg.setp(vary=True, bounds=(1e-6, 5e-5))
    theirs = GlobalObjective(
        [Objective(m, ReflectDataset(folder / name)) for m, (name, _) in zip(models, files.values())]
    )
    CurveFitter(theirs).fit("least_squares")

    contrasts = []
    for label, (name, sld) in files.items():
        data = load_measurement(folder / name)
        stack = FilmStack.from_pyreflect(
            [
                {"name": "solvent", "sld": sld, "roughness": 3.0},
                {"name": "polymer", "sld": 1.0, "thickness": 200.0, "roughness": 3.0},
                {"name": "SiO2", "sld": 3.47, "thickness": 10.0, "roughness": 4.0},
                {"name": "Si", "sld": 2.07},
            ]
        )
        probe = data.probe(background=2e-5, default_dq_over_q=0.05)
        contrasts.append(Contrast(data, stack, label=label, probe=probe, background=2e-5))
    bounds = {
        "SiO2.thickness": (0.0, 20.0),
        "polymer.thickness": (200.0, 250.0),
        "polymer.sld": (0.0, 2.0),
        "solvent.roughness": (1.0, 10.0),
        "probe.background": (1e-6, 5e-5),
    }
    ours = corefine(contrasts, free=list(bounds), bounds=bounds, method="auto", seed=0)
    assert ours.shared == ["SiO2.thickness", "polymer.thickness", "polymer.sld", "solvent.roughness"]
    assert ours.chi2 == pytest.approx(theirs.chisqr(), rel=1e-3)
    values = dict(zip(ours.names, ours.values))
    assert values["polymer.thickness"] == pytest.approx(s361[2].thick.value, abs=0.5)
    assert values["polymer.sld"] == pytest.approx(s361[2].sld.real.value, abs=0.01)
    assert values["SiO2.thickness"] == pytest.approx(s361[1].thick.value, abs=0.3)
    for label, m in zip(files, models):
        assert values[f"{label}:probe.background"] == pytest.approx(m.bkg.value, rel=0.02)

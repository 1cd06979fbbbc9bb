"""The facility's hand fit of the REF_L curve: read its layer table, compare, and refine from it."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.analysis.refine import build_problem, refine
from workbench.data.handfit import HandFitError, load_handfit_spreadsheet
from workbench.data.measured import load_measurement
from workbench.physics.probe import FWHM_PER_SIGMA


@pytest.fixture
def ref_l(shared_data):
    folder = shared_data / "real" / "ornl-ref-l-212592"
    return (
        folder,
        load_handfit_spreadsheet(folder / "manual_fit_spreadsheet.csv"),
        load_measurement(folder / "REFL_212592_reduced.txt"),
    )


def test_layer_table_becomes_a_substrate_first_stack_with_rms_roughness(ref_l):
    _, stack, _ = ref_l
    names = [layer.name for layer in stack.layers]
    assert names[0] == "Si" and names[1] == "SiOx" and names[-1] == "air" and len(names) == 23
    assert names[2] == "PEO_10" and names[-2] == "PEO_1"
    assert stack.layers[0].sld == pytest.approx(2.07) and stack.layers[-2].sld == pytest.approx(2.08)
    assert stack.layers[-2].roughness == pytest.approx(10.0 / FWHM_PER_SIGMA)  # PEO_1 / air, given as FWHM 10 Å
    polymer = sum(layer.thickness for layer in stack.layers[2:-1])
    assert polymer == pytest.approx(732.0)  # the spreadsheet's "total thickness": 10 bilayers of 73.2 Å
    assert stack.layers[1].thickness == pytest.approx(10.0)


def test_bad_tables_are_named(tmp_path):
    bad = tmp_path / "fit.csv"
    bad.write_text("Compound,Nb (Å-2)\nair,0\n", encoding="utf-8")
    with pytest.raises(HandFitError, match="lacks the columns"):
        load_handfit_spreadsheet(bad)
    bad.write_text(
        "Compound,Nb (Å-2),μlabs/l [Å-2],d (Å),σfwhm (Å)\nair,0,0,100,\nfilm,abc,0,30,5\nSi,2.07e-6,0,100,5\n",
        encoding="utf-8",
    )
    with pytest.raises(HandFitError, match=r"row 3, column 'Nb \(Å-2\)': 'abc' is not a number"):
        load_handfit_spreadsheet(bad)


def test_refinement_from_the_hand_fit_beats_the_hand_fit_curve(ref_l):
    """Thicknesses (±30 %) and SLDs of all 20 polymer layers free; roughness kept below 40 % of
    the thinner neighbour, where the Névot–Croce factor still describes an interface."""
    folder, hand, data = ref_l
    start = hand
    for i in range(len(hand.layers) - 1):
        thinner = min(t for t in (hand.layers[i].thickness, hand.layers[i + 1].thickness) if t > 0) if i else 12.5
        start = start.with_value(i, "roughness", min(hand.layers[i].roughness, 0.4 * thinner))
    bounds = {}
    for layer in start.layers[1:-1]:
        bounds[f"{layer.name}.sld"] = (0.0, 7.0)
        bounds[f"{layer.name}.thickness"] = (0.7 * layer.thickness, 1.3 * layer.thickness)
    bounds.update(
        {
            "PEO_1.roughness": (0, 15),
            "SiOx.roughness": (0, 10),
            "probe.scale": (0.8, 1.2),
            "probe.background": (0, 1e-5),
        }
    )
    result = refine(data, start, free=list(bounds), bounds=bounds, max_nfev=2000)

    # the spreadsheet's own model curve, scored the same way (same points, same dR)
    problem = build_problem(data, hand, free=["PEO_1.sld"])
    q_fit, r_fit = np.load(folder / "manual_fit_nr.npy")
    inside = (problem.q >= q_fit[0]) & (problem.q <= q_fit[-1])
    hand_chi2 = np.mean(((np.interp(problem.q, q_fit, r_fit) - problem.r) / problem.dr)[inside] ** 2)
    assert 2.0 < hand_chi2 < 3.5  # ≈ 2.75: the hand fit is good, and our metric agrees with it
    assert result.chi2_per_point < hand_chi2
    assert result.start_chi2 / result.n_points > 20 * result.chi2_per_point

"""The facility's hand fit of the REF_L curve: read its layer table, compare, and refine from it."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from workbench.analysis.refine import build_problem, model_curves_fast, refine
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


def _spreadsheet_curves(path) -> dict[str, np.ndarray]:
    """The spreadsheet's "Reflectivity Data" columns Q, R, dR and its own model curve Rmodel, in file order."""
    rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
    header = rows[1]
    first = header.index("Q (Å-1)")
    assert header[first : first + 4] == ["Q (Å-1)", "R", "dR", "Rmodel"]
    table = np.array([[float(v) for v in r[first : first + 4]] for r in rows[2:] if r[first].strip()])
    return dict(zip(("q", "r", "dr", "rmodel"), table.T))


def test_manual_fit_nr_holds_the_measured_curve_not_the_fit(ref_l):
    """The premise behind every hand-fit comparison: ``manual_fit_nr.npy`` is the data (the
    spreadsheet's R column, its two R ≤ 0 points left out), not the hand fit's model curve."""
    folder, _, data = ref_l
    q_npy, r_npy = np.load(folder / "manual_fit_nr.npy")
    sheet = _spreadsheet_curves(folder / "manual_fit_spreadsheet.csv")
    positive = sheet["r"] > 0
    assert (~positive).sum() == 2 and q_npy.size == 414
    np.testing.assert_array_equal(q_npy, sheet["q"][positive])
    np.testing.assert_array_equal(r_npy, sheet["r"][positive])
    # ... which is the reduced file's measured R, to the spreadsheet's 4 significant digits
    measured = data.r > 0
    np.testing.assert_allclose(q_npy, data.q[measured], rtol=1e-3)
    np.testing.assert_allclose(r_npy, data.r[measured], rtol=1e-3)
    # and not the fit's curve, which misses the data by tens of error bars here and there
    assert np.max(np.abs(sheet["rmodel"] - sheet["r"]) / sheet["dr"]) > 20


def test_refinement_from_the_hand_fit_beats_the_hand_fit_27_fold(ref_l):
    """Thicknesses (±30 %) and SLDs of all 20 polymer layers free; roughness kept below 40 % of
    the thinner neighbour, where the Névot–Croce factor still describes an interface.

    The hand fit is scored two ways on the merged data points with their dR: its stack through our
    kernel at the data's resolution (χ²/N ≈ 66), and the spreadsheet's own ``Rmodel`` column
    interpolated onto the same Q (≈ 67; its "χ² 57.1" is the spreadsheet's normalisation on the
    unmerged points).  Refining from it reaches χ²/N ≈ 2.40, ~27× lower."""
    folder, hand, data = ref_l
    problem = build_problem(data, hand, free=["PEO_1.sld"])
    hand_chi2 = float(np.mean(((model_curves_fast(problem, problem.x0[None])[0] - problem.r) / problem.dr) ** 2))
    assert problem.q.size == 350
    assert hand_chi2 == pytest.approx(66, abs=3)

    sheet = _spreadsheet_curves(folder / "manual_fit_spreadsheet.csv")
    order = np.argsort(sheet["q"], kind="stable")
    inside = (problem.q >= sheet["q"].min()) & (problem.q <= sheet["q"].max())
    r_sheet = np.interp(problem.q, sheet["q"][order], sheet["rmodel"][order])
    sheet_chi2 = float(np.mean(((r_sheet - problem.r) / problem.dr)[inside] ** 2))
    assert sheet_chi2 == pytest.approx(67, abs=3)
    assert np.mean(((sheet["rmodel"] - sheet["r"]) / sheet["dr"]) ** 2) == pytest.approx(57.1, abs=1)

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
    assert result.n_points == problem.q.size
    assert result.chi2_per_point == pytest.approx(2.40, abs=0.15)
    assert 20 < hand_chi2 / result.chi2_per_point < 35  # ≈ 27× better than the hand fit

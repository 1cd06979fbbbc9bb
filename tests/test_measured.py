"""Measured-data loading: real files (refnx/Platypus, REF_L), ORSO round trip, pyreflect .npy, malformed files."""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest
import refnx
from orsopy import fileio as orso

from workbench.data.measured import Measurement, MeasurementError, load_measurement, resample, save_orso
from workbench.physics.probe import DEFAULT_DQ_OVER_Q_FWHM, FWHM_PER_SIGMA

REFL = "real/ornl-ref-l-212592/REFL_212592_reduced.txt"
HEADER_4 = "# Q R dR dQ [FWHM]\n"


def platypus_file() -> pathlib.Path:
    found = sorted(pathlib.Path(refnx.__file__).parent.rglob("c_PLP0011859_q.txt"))
    assert found, "refnx no longer ships c_PLP0011859_q.txt"
    return found[0]


def write(tmp_path: pathlib.Path, text: str, name: str = "data.txt") -> pathlib.Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def curve(n: int = 30) -> Measurement:
    q = np.linspace(0.01, 0.2, n)
    r = np.exp(-40 * q)
    return Measurement(q, r, 0.05 * r, 0.02 * q, "synthetic", "sigma")


# ------------------------------------------------------------------------------------------- real files


def test_platypus_file_is_fwhm_when_told() -> None:
    path = platypus_file()
    raw = np.loadtxt(path)
    assert raw.shape == (408, 4)
    m = load_measurement(path, dq_convention="fwhm")
    assert len(m) == 408 and m.n_nonpositive == 0 and not m.has_duplicate_q
    np.testing.assert_array_equal(m.q, raw[:, 0])
    np.testing.assert_array_equal(m.r, raw[:, 1])
    np.testing.assert_array_equal(m.dr, raw[:, 2])
    np.testing.assert_allclose(m.dq_sigma, raw[:, 3] / 2.3548, rtol=1e-4)
    np.testing.assert_allclose(m.dq_sigma, raw[:, 3] / FWHM_PER_SIGMA, rtol=1e-15)
    assert m.dq_convention_of_file == "fwhm" and m.metadata["dq_convention_from"] == "argument"
    probe = m.probe()
    np.testing.assert_allclose(probe.sigma, m.dq_sigma, rtol=1e-15)
    # told it is 1σ instead, the column is taken as it is
    np.testing.assert_array_equal(load_measurement(path, dq_convention="sigma").dq_sigma, raw[:, 3])


def test_platypus_file_without_convention_is_refused() -> None:
    with pytest.raises(MeasurementError, match=r"c_PLP0011859_q\.txt.*dq_convention='fwhm'"):
        load_measurement(platypus_file())


def test_ref_l_file_header_says_fwhm(shared_data) -> None:
    path = shared_data / REFL
    m = load_measurement(path)
    raw = np.loadtxt(path)
    assert len(m) == 416 == raw.shape[0]
    assert m.dq_convention_of_file == "fwhm" and m.metadata["dq_convention_from"] == "header"
    np.testing.assert_allclose(m.dq_sigma, raw[:, 3] / FWHM_PER_SIGMA, rtol=1e-15)
    # background-subtracted points with R ≤ 0 are kept and counted
    assert m.n_nonpositive == 2 and np.count_nonzero(m.r < 0) >= 1
    positive = m.positive()
    assert len(positive) == 414 and np.all(positive.r > 0) and positive.metadata["dropped_nonpositive"] == 2
    assert len(m) == 416  # the original is untouched
    # agreeing argument is fine, contradicting one is an error
    assert load_measurement(path, dq_convention="fwhm").dq_convention_of_file == "fwhm"
    with pytest.raises(MeasurementError, match="header says dQ is fwhm"):
        load_measurement(path, dq_convention="sigma")


def test_ref_l_stitched_overlaps_repeat_q_and_merge(shared_data) -> None:
    m = load_measurement(shared_data / REFL)
    assert m.has_duplicate_q and np.all(np.diff(m.q) >= 0)
    with pytest.raises(MeasurementError, match="merge_duplicate_q"):
        m.probe()
    merged = m.merge_duplicate_q()
    assert len(merged) == len(np.unique(m.q)) == 350 and np.all(np.diff(merged.q) > 0)
    assert merged.n_nonpositive == m.n_nonpositive
    # inverse-variance mean of the first repeated pair
    i = int(np.flatnonzero(np.diff(m.q) == 0)[0])
    w = 1 / m.dr[i : i + 2] ** 2
    j = int(np.searchsorted(merged.q, m.q[i]))
    assert merged.r[j] == pytest.approx(np.sum(w * m.r[i : i + 2]) / np.sum(w), rel=1e-14)
    assert merged.dr[j] == pytest.approx(1 / np.sqrt(np.sum(w)), rel=1e-14)
    np.testing.assert_allclose(merged.probe().sigma, merged.dq_sigma, rtol=1e-15)


def test_ref_l_manual_fit_npy(shared_data) -> None:
    m = load_measurement(shared_data / "real/ornl-ref-l-212592/manual_fit_nr.npy")
    assert len(m) == 414 and m.dr is None and m.dq_sigma is None


# ------------------------------------------------------------------------------------------- ORSO


def test_orso_round_trip_is_exact(tmp_path: pathlib.Path) -> None:
    m = load_measurement(platypus_file(), dq_convention="fwhm")
    out = save_orso(tmp_path / "plp.ort", m, sample_name="Platypus test")
    assert [p.name for p in tmp_path.iterdir()] == ["plp.ort"]  # no temporary file left behind
    back = load_measurement(out)
    for name in ("q", "r", "dr", "dq_sigma"):
        np.testing.assert_array_equal(getattr(back, name), getattr(m, name))
    assert back.dq_convention_of_file == "sigma" and back.metadata["format"] == "orso"
    # orsopy itself reads the file and sees a 1σ resolution column
    (dataset,) = orso.load_orso(str(out))
    assert dataset.info.columns[3].value_is == "sigma" and dataset.info.data_source.sample.name == "Platypus test"


def test_orso_round_trip_without_errors_and_overwrite(tmp_path: pathlib.Path) -> None:
    m = curve()
    bare = Measurement(m.q, m.r, None, None, "bare")
    path = tmp_path / "bare.ort"
    save_orso(path, m)
    save_orso(path, bare)  # replaces the file
    back = load_measurement(path)
    np.testing.assert_array_equal(back.r, bare.r)
    assert back.dr is None and back.dq_sigma is None and back.dq_convention_of_file is None


def test_orso_fwhm_column_is_converted(tmp_path: pathlib.Path) -> None:
    m = curve()
    info = orso.Orso.empty()
    info.columns = [
        orso.Column("Qz", "1/nm"),
        orso.Column("R"),
        orso.ErrorColumn("R", "uncertainty", "sigma"),
        orso.ErrorColumn("Qz", "resolution", "FWHM"),
    ]
    path = tmp_path / "fwhm.ort"
    orso.save_orso([orso.OrsoDataset(info, np.column_stack([10 * m.q, m.r, m.dr, 10 * m.dq_sigma]))], str(path))
    back = load_measurement(path)
    assert back.dq_convention_of_file == "fwhm"
    np.testing.assert_allclose(back.q, m.q, rtol=1e-15)  # 1/nm → 1/Å
    np.testing.assert_allclose(back.dq_sigma, m.dq_sigma / FWHM_PER_SIGMA, rtol=1e-15)
    with pytest.raises(MeasurementError, match=r"fwhm\.ort.*ORSO header says sQz is fwhm"):
        load_measurement(path, dq_convention="sigma")


def test_orso_bad_number_names_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "bad.ort"
    save_orso(path, curve(5))
    lines = path.read_text().splitlines()
    lines[-2] = lines[-2].replace("e-", "x-", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MeasurementError, match=rf"bad\.ort: line {len(lines) - 1}: column 1"):
        load_measurement(path)


# ------------------------------------------------------------------------------------------- .npy


def test_npy_single_and_batched(tmp_path: pathlib.Path) -> None:
    q = np.linspace(0.01, 0.2, 50)
    curves = np.stack([np.stack([q, np.exp(-k * q)]) for k in (10, 20, 30)])  # (3, 2, 50)
    np.save(tmp_path / "one.npy", curves[1])
    np.save(tmp_path / "one3d.npy", curves[1:2])
    np.save(tmp_path / "batch.npy", curves)
    for name in ("one.npy", "one3d.npy"):
        m = load_measurement(tmp_path / name)
        np.testing.assert_array_equal(m.r, curves[1, 1])
        assert m.dr is None and m.dq_sigma is None
    m = load_measurement(tmp_path / "batch.npy", index=2)
    np.testing.assert_array_equal(m.q, q)
    np.testing.assert_array_equal(m.r, curves[2, 1])
    assert m.metadata["n_curves"] == 3
    np.testing.assert_allclose(m.probe().sigma, q * DEFAULT_DQ_OVER_Q_FWHM / FWHM_PER_SIGMA)
    with pytest.raises(MeasurementError, match=r"batch\.npy: index=3 but the file holds 3 curve"):
        load_measurement(tmp_path / "batch.npy", index=3)


def test_npy_bad_shape_and_values(tmp_path: pathlib.Path) -> None:
    np.save(tmp_path / "shape.npy", np.ones((3, 10)))
    with pytest.raises(MeasurementError, match=r"shape\.npy: array of shape \(3, 10\); expected \(2, nQ\)"):
        load_measurement(tmp_path / "shape.npy")
    bad = np.array([[0.01, 0.02, 0.015], [1.0, 0.5, 0.2]])
    np.save(tmp_path / "order.npy", bad)
    with pytest.raises(MeasurementError, match=r"order\.npy: curve 0, point 2: Q = 0.015 is smaller"):
        load_measurement(tmp_path / "order.npy")


# ------------------------------------------------------------------------------------------- text variants


def test_two_and_three_columns_commas_text_header_crlf(tmp_path: pathlib.Path) -> None:
    m2 = load_measurement(write(tmp_path, "Q R\n0.01 1.0\n0.02 0.5\n", "two.txt"))
    assert m2.dr is None and m2.dq_sigma is None and m2.metadata["header"] == ["Q R"]
    m3 = load_measurement(write(tmp_path, "Q,R,dR\r\n0.01, 1.0, 0.1\r\n0.02,0.5,0.05\r\n# end\r\n", "three.csv"))
    np.testing.assert_array_equal(m3.dr, [0.1, 0.05])
    assert m3.dq_sigma is None and m3.dq_convention_of_file is None


def test_header_sigma_and_columns_argument(tmp_path: pathlib.Path) -> None:
    # refl1d-style column order Q, dQ, R, dR with a 1σ statement
    path = write(tmp_path, "# Q dQ (1-sigma) R dR\n0.01 0.001 1.0 0.1\n0.02 0.002 0.5 0.05\n")
    m = load_measurement(path, columns=(0, 2, 3, 1))
    assert m.dq_convention_of_file == "sigma"
    np.testing.assert_array_equal(m.dq_sigma, [0.001, 0.002])
    np.testing.assert_array_equal(m.r, [1.0, 0.5])
    m = load_measurement(path, columns=(0, 2))
    assert m.dr is None and m.dq_sigma is None


def test_header_contradicting_itself_needs_argument(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, "# dQ is FWHM\n# dQ sigma\n0.01 1 0.1 0.001\n0.02 0.5 0.05 0.002\n")
    with pytest.raises(MeasurementError, match="both FWHM and sigma"):
        load_measurement(path)
    assert load_measurement(path, dq_convention="sigma").dq_sigma[0] == 0.001


GOOD = "0.010 1.0 0.10 0.0003\n0.020 0.5 0.05 0.0006\n"


@pytest.mark.parametrize(
    ("body", "line", "says"),
    [
        (GOOD + "0.030 0.2 0.02\n", 4, "3 columns, but the first data line (line 2) has 4"),
        (GOOD + "0.030 abc 0.02 0.0009\n", 4, "column 2: 'abc' is not a number"),
        (GOOD + "0.030,,0.02,0.0009\n", 4, "column 2: an empty field"),
        (GOOD + "0.030 nan 0.02 0.0009\n", 4, "R = nan; every value must be a finite number"),
        (GOOD + "0.030 0.2 inf 0.0009\n", 4, "dR = inf; every value must be a finite number"),
        (GOOD + "0.015 0.2 0.02 0.0009\n", 4, "Q = 0.015 is smaller than the previous Q = 0.02"),
        ("0.0 1.0 0.1 0.0003\n" + GOOD, 2, "Q = 0.0; Q must be > 0"),
        ("-0.01 1.0 0.1 0.0003\n" + GOOD, 2, "Q = -0.01; Q must be > 0"),
        (GOOD + "0.030 0.2 -0.02 0.0009\n", 4, "dR = -0.02; dR must be ≥ 0"),
        (GOOD + "0.030 0.2 0.02 -0.0009\n", 4, "dQ = -0.0009; dQ must be ≥ 0"),
        ("0.01 1 0.1 0.001 7\n", 2, "5 columns; expected 2–4"),
    ],
)
def test_malformed_text_names_file_and_line(tmp_path: pathlib.Path, body: str, line: int, says: str) -> None:
    path = write(tmp_path, HEADER_4 + body, "broken.txt")
    with pytest.raises(MeasurementError) as info:
        load_measurement(path)
    message = str(info.value)
    assert message.startswith(f"{path}: line {line}: "), message
    assert says in message
    assert info.value.path == str(path) and info.value.where == f"line {line}"


@pytest.mark.parametrize("text", ["", "\n\n", "# only a header\n# Q R dR dQ\n"])
def test_empty_file(tmp_path: pathlib.Path, text: str) -> None:
    path = write(tmp_path, text, "empty.txt")
    with pytest.raises(MeasurementError, match=re.escape(f"{path}: no data lines found")):
        load_measurement(path)


def test_bad_arguments(tmp_path: pathlib.Path) -> None:
    path = write(tmp_path, HEADER_4 + GOOD)
    with pytest.raises(ValueError, match="dq_convention must be 'fwhm' or 'sigma'"):
        load_measurement(path, dq_convention="hwhm")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="columns must give distinct indices"):
        load_measurement(path, columns=(0, 0))
    with pytest.raises(MeasurementError, match="asks for index 4"):
        load_measurement(path, columns=(0, 1, 2, 4))


# ------------------------------------------------------------------------------------------- resampling


def test_resample_marks_outside_and_matches_coincident_points() -> None:
    m = curve(30)
    q_model = np.concatenate([[0.005], m.q[::3], [0.25]])
    out = resample(m, q_model)
    assert out.outside.tolist() == [True] + [False] * 10 + [True]
    assert np.all(np.isnan(out.r[out.outside])) and np.all(np.isnan(out.dr[out.outside]))
    np.testing.assert_array_equal(out.r[~out.outside], m.r[::3])
    np.testing.assert_array_equal(out.dr[~out.outside], m.dr[::3])
    # between points R = exp(-40 Q) is followed exactly by log interpolation
    mid = 0.5 * (m.q[:-1] + m.q[1:])
    np.testing.assert_allclose(resample(m, mid).r, np.exp(-40 * mid), rtol=1e-12)


def test_resample_nonpositive_neighbours_linear_and_duplicates() -> None:
    m = Measurement([0.01, 0.02, 0.02, 0.03], [1e-4, -2e-6, 0.0, 4e-6], None, None, "x")
    out = resample(m, [0.015, 0.02, 0.025, 0.03])
    assert not out.outside.any() and out.dr is None
    np.testing.assert_allclose(out.r, [0.5 * (1e-4 - 1e-6), -1e-6, 1.5e-6, 4e-6], rtol=1e-12)


def test_module_is_pure_computation() -> None:
    source = pathlib.Path(load_measurement.__code__.co_filename).read_text()
    assert "ipywidgets" not in source and "plotly" not in source

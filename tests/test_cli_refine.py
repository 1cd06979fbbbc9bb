"""``workbench refine`` through the installed console script."""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import refnx

WORKBENCH = shutil.which("workbench", path=str(pathlib.Path(sys.executable).parent))
STACK = """stack:
  layer_desc:
    - {name: D2O, sld: 6.36, roughness: 3.0}
    - {name: polymer, sld: 2.0, thickness: 250.0, roughness: 3.0}
    - {name: SiO2, sld: 3.47, thickness: 30.0, roughness: 3.0}
    - {name: Si, sld: 2.07}
  layer_bound:
    - {i: 0, par: roughness, bounds: [1, 15]}
    - {i: 1, par: sld, bounds: [0.1, 3]}
    - {i: 1, par: thickness, bounds: [200, 300]}
    - {i: 1, par: roughness, bounds: [1, 15]}
    - {i: 2, par: thickness, bounds: [15, 50]}
    - {i: 2, par: roughness, bounds: [1, 15]}
"""


def _platypus() -> pathlib.Path:
    return next(pathlib.Path(refnx.__file__).parent.rglob("c_PLP0011859_q.txt"))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [WORKBENCH, "refine", *map(str, args)], check=False, capture_output=True, text=True, timeout=300
    )


def test_refine_writes_fit_profile_summary_and_a_refl1d_model(tmp_path):
    (tmp_path / "stack.yaml").write_text(STACK)
    (tmp_path / "bounds.yaml").write_text(
        "D2O.sld: [5.9, 6.36]\nprobe.scale: [0.6, 1.2]\nprobe.background: [1.0e-9, 9.0e-6]\n"
    )
    out = tmp_path / "out"
    free = [
        "D2O.sld",
        "D2O.roughness",
        "polymer.sld",
        "polymer.thickness",
        "polymer.roughness",
        "SiO2.thickness",
        "SiO2.roughness",
        "probe.scale",
        "probe.background",
    ]
    proc = run(
        _platypus(),
        "--stack",
        tmp_path / "stack.yaml",
        "--bounds",
        tmp_path / "bounds.yaml",
        "--free",
        *free,
        "--background",
        "3e-6",
        "--dq-convention",
        "fwhm",
        "--refl1d",
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "refinement.json").read_text())
    values = {row["name"]: row["value"] for row in summary["parameters"]}
    assert abs(values["polymer.thickness"] / 259.0 - 1) < 0.01
    assert summary["chi2_per_point"] < 2.4 < summary["start_chi2_per_point"]
    assert summary["bounds"]["polymer.thickness"] == [200.0, 300.0]  # from the stack file
    fit = np.loadtxt(out / "fit.csv", delimiter=",", skiprows=1)
    assert fit.shape == (summary["points"], 4) and np.all(fit[:, 3] > 0)
    chi2 = np.mean(((fit[:, 1] - fit[:, 3]) / fit[:, 2]) ** 2)
    assert abs(chi2 / summary["chi2_per_point"] - 1) < 1e-6
    assert (out / "profile.csv").read_text().startswith("z,sld\n")
    assert "polymer" in (out / "refl1d" / "model.py").read_text()
    assert "polymer.thickness" in proc.stdout


def test_refine_errors_name_the_problem(tmp_path):
    (tmp_path / "stack.yaml").write_text(STACK)
    proc = run(_platypus(), "--stack", tmp_path / "stack.yaml", "--out", tmp_path / "o")
    assert proc.returncode == 2 and "--dq-convention" in proc.stderr  # the file does not say FWHM or σ
    proc = run(
        _platypus(),
        "--stack",
        tmp_path / "stack.yaml",
        "--free",
        "gold.thickness",
        "--dq-convention",
        "fwhm",
        "--out",
        tmp_path / "o",
    )
    assert proc.returncode == 2 and "unknown layer 'gold'" in proc.stderr
    (tmp_path / "bounds.yaml").write_text("polymer.thickness: 300\n")
    proc = run(
        _platypus(),
        "--stack",
        tmp_path / "stack.yaml",
        "--bounds",
        tmp_path / "bounds.yaml",
        "--dq-convention",
        "fwhm",
        "--out",
        tmp_path / "o",
    )
    assert proc.returncode == 2 and "bounds of 'polymer.thickness' must be a [lo, hi] pair" in proc.stderr
    proc = run(tmp_path / "missing.txt", "--stack", tmp_path / "stack.yaml")
    assert proc.returncode == 2 and "missing.txt" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_placeholder_row_is_left_out_counted_and_flags_are_reported(tmp_path):
    """A reduction placeholder (R = 0, dR = 0) is reported, and a parameter held at a bound is marked."""
    rows = np.loadtxt(_platypus())
    rows[150, 1:3] = 0.0
    data = tmp_path / "with_placeholder.txt"
    np.savetxt(data, rows)
    (tmp_path / "stack.yaml").write_text(STACK.replace("thickness: 250.0", "thickness: 230.0"))
    (tmp_path / "bounds.yaml").write_text("polymer.thickness: [200, 240]\nprobe.background: [1.0e-9, 9.0e-6]\n")
    out = tmp_path / "out"
    proc = run(
        data,
        "--stack",
        tmp_path / "stack.yaml",
        "--bounds",
        tmp_path / "bounds.yaml",
        "--free",
        "polymer.sld",
        "polymer.thickness",
        "polymer.roughness",
        "probe.background",
        "--background",
        "3e-6",
        "--dq-convention",
        "fwhm",
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "refinement.json").read_text())
    assert summary["left_out_points"] == 1 and summary["points"] == rows.shape[0] - 1
    assert summary["left_out_q"] == [rows[150, 0]]
    assert summary["at_bound"]["polymer.thickness"] == "upper"  # the film is 259 Å thick
    parameters = {row["name"]: row for row in summary["parameters"]}
    assert parameters["polymer.thickness"]["at_bound"] == "upper"
    assert any("widen the bound" in note for note in summary["notes"])
    assert "1 left out (no error bar)" in proc.stdout
    assert "[at upper bound]" in proc.stdout and "note: 1 point without an error bar" in proc.stdout
    fit = np.loadtxt(out / "fit.csv", delimiter=",", skiprows=1)
    assert fit.shape[0] == summary["points"] and np.all(fit[:, 2] > 0)  # fit.csv holds the fitted points


CONTRAST_STACK = """stack:
  layer_desc:
    - {name: solvent, sld: 6.36, roughness: 3.0}
    - {name: polymer, sld: 1.0, thickness: 205.0, roughness: 3.0}
    - {name: SiO2, sld: 3.47, thickness: 10.0, roughness: 4.0}
    - {name: Si, sld: 2.07}
  layer_bound:
    - {i: 0, par: roughness, bounds: [1, 10]}
    - {i: 1, par: sld, bounds: [0, 2]}
    - {i: 1, par: thickness, bounds: [200, 250]}
    - {i: 2, par: thickness, bounds: [0, 20]}
"""


def test_refine_several_contrasts_shares_the_film(tmp_path):
    """refnx's three contrasts of one polymer film (D2O, CM3, H2O): one command, shared film, per-curve files."""
    folder = pathlib.Path(refnx.__file__).parent / "analysis" / "tests"
    files = [folder / name for name in ("e361r.txt", "e365r.txt", "e366r.txt")]
    (tmp_path / "stack.yaml").write_text(CONTRAST_STACK)
    out = tmp_path / "joint"
    proc = run(
        *files,
        "--stack",
        tmp_path / "stack.yaml",
        "--contrast",
        "solvent.sld=6.36,3.47,-0.56",
        "--free",
        "solvent.roughness",
        "polymer.sld",
        "polymer.thickness",
        "SiO2.thickness",
        "probe.background",
        "--dq-over-q",
        "0.05",
        "--background",
        "2e-5",
        "--method",
        "auto",
        "--refl1d",
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "refinement.json").read_text())
    assert summary["labels"] == ["e361r", "e365r", "e366r"] and summary["method"] == "auto"
    assert summary["shared"] == ["solvent.roughness", "polymer.sld", "polymer.thickness", "SiO2.thickness"]
    names = [row["name"] for row in summary["parameters"]]
    assert names[4:] == [f"{label}:probe.background" for label in summary["labels"]]
    assert [c["stack"]["layer_desc"][0]["sld"] for c in summary["contrasts"]] == [6.36, 3.47, -0.56]
    # refnx's GlobalObjective reaches χ² 1553.7 on these 297 points with this model (tests/test_refine_global.py)
    assert summary["chi2"] == pytest.approx(1553.7, rel=2e-3) and "(shared)" in proc.stdout
    for label in summary["labels"]:
        rows = np.loadtxt(out / f"fit_{label}.csv", delimiter=",", skiprows=1)
        assert rows.shape[1] == 4 and np.all(np.isfinite(rows[:, 3]))
    assert sorted(p.name for p in (out / "refl1d").iterdir()) == ["data_1.txt", "data_2.txt", "data_3.txt", "model.py"]

    stack = tmp_path / "stack.yaml"
    bad = run(*files, "--stack", stack, "--contrast", "solvent.sld=6.36,-0.56", "--out", tmp_path / "b")
    assert bad.returncode == 2 and "2 values for 3 data files" in bad.stderr
    bad = run(files[0], "--stack", tmp_path / "stack.yaml", "--share", "polymer.sld", "--out", tmp_path / "b")
    assert bad.returncode == 2 and "need several data files" in bad.stderr
    bad = run(*files, "--stack", tmp_path / "stack.yaml", "--contrast", "water.sld=1,2,3", "--out", tmp_path / "b")
    assert bad.returncode == 2 and "unknown layer 'water'" in bad.stderr
    assert not (tmp_path / "b").exists()

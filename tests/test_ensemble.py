"""Ensembles: K tiny models trained on one split, saved atomically, with bands calibrated on the validation split."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.analysis.ensemble import LEVELS, ensemble_bands
from workbench.analysis.predict import predict
from workbench.data.dataset import load_dataset
from workbench.data.generate import GeneratorConfig, generate_to_disk
from workbench.data.preprocess import split_indices
from workbench.physics import FilmStack
from workbench.store.model_bundle import BundleError, load_ensemble, load_model, load_model_bundle
from workbench.training.trainer import TrainConfig
from workbench.workflows.ensemble import run_ensemble
from workbench.workflows.training import TrainRequest

TINY = {"width": 8, "stages": 3, "latent": 32}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "ds"  # 3000 curves: 300 validation and 300 test curves
    return generate_to_disk(FilmStack.default(), GeneratorConfig(num_curves=3000, seed=5, sld_points=80), folder)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "ens"
    request = TrainRequest(
        data=dataset, out=out, model=TINY, train=TrainConfig(epochs=2, batch_size=64, seed=11, device="cpu")
    )
    return run_ensemble(request, 3)


def test_an_ensemble_of_three_trains_on_one_split_and_is_saved_whole(trained):
    assert trained.status == "completed" and trained.path.is_dir()
    info = json.loads((trained.path / "ensemble.json").read_text())
    assert info["members"] == ["member-0", "member-1", "member-2"] and info["seeds"] == [11, 12, 13]
    assert sorted(p.name for p in trained.path.iterdir()) == ["ensemble.json", "member-0", "member-1", "member-2"]
    assert not [p for p in trained.path.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left
    ens = load_model(trained.path)
    assert len(ens.members) == 3 and ens.task == "nr_sld"
    # one split for all members (the members' own seeds differ), and different weights
    assert {json.dumps(m.normalization["preprocess"]) for m in ens.members} == {
        json.dumps(ens.members[0].normalization["preprocess"])
    }
    assert [m.config["train"]["seed"] for m in ens.members] == [11, 12, 13]
    w = [next(m.model.parameters()).detach().numpy().ravel() for m in ens.members]
    assert not np.allclose(w[0], w[1])


def test_bands_are_ordered_and_the_mean_is_the_members_mean(trained, dataset):
    ens = load_ensemble(trained.path)
    ds = load_dataset(dataset)
    r = np.asarray(ds.nr[:5])
    b = ensemble_bands(ens, r)
    (lo68, hi68), (lo95, hi95) = b.bands["68 %"], b.bands["95 %"]
    assert b.calibrated and b.center.shape == (5, 80) and b.z.shape == (5, 80)
    assert np.all(lo95 <= lo68) and np.all(lo68 <= b.center) and np.all(b.center <= hi68) and np.all(hi68 <= hi95)
    assert np.all(hi68 - lo68 > 0)
    mean = np.mean([predict(m, r) for m in ens.members], axis=0)
    np.testing.assert_allclose(predict(ens, r), mean)
    np.testing.assert_allclose(b.center, mean[:, 1, :])


def test_calibrated_bands_cover_the_test_split_within_five_points(trained, dataset):
    cal = trained.calibration
    assert cal["validation_curves"] == 300 and cal["test_curves"] == 300
    raw, calibrated = cal["coverage"]["raw"], cal["coverage"]["calibrated"]
    for level, nominal in LEVELS.items():
        assert abs(calibrated[level]["all"] - nominal) <= 0.05, (level, raw, calibrated)
    # the raw Gaussian band of 3 members is over-confident; the calibration widens it
    assert raw["68 %"]["all"] < 0.63 and cal["factors"]["68 %"] > 1.0
    # measured again here, on the test split the ensemble's split puts aside
    ens = load_ensemble(trained.path)
    ds = load_dataset(dataset)
    pre = ens.normalization["preprocess"]
    test = np.sort(split_indices(ds.n, tuple(pre["split"]), pre["seed"])["test"])
    lo, hi = ensemble_bands(ens, np.asarray(ds.nr[test])).bands["68 %"]
    truth = np.asarray(ds.sld[test][:, 1, :])
    assert np.mean((truth >= lo) & (truth <= hi)) == pytest.approx(calibrated["68 %"]["all"], abs=1e-9)


def test_bad_input_is_refused_with_a_clear_error(trained, dataset, tmp_path):
    request = TrainRequest(data=dataset, out=tmp_path / "e", model=TINY, train=TrainConfig(epochs=1))
    with pytest.raises(ValueError, match="an ensemble needs 2 to 32 members, got 1"):
        run_ensemble(request, 1)
    with pytest.raises(ValueError, match="not χ"):
        run_ensemble(request.model_copy(update={"target": "chi"}), 3)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep me")
    with pytest.raises(ValueError, match="holds neither a model nor an ensemble"):
        run_ensemble(request.model_copy(update={"out": tmp_path / "notes"}), 2)
    assert (tmp_path / "notes" / "a.txt").read_text() == "keep me"
    member = trained.path / "member-0"
    with pytest.raises(BundleError, match=r"not an ensemble \(no ensemble.json\)"):
        load_ensemble(member)
    assert load_model(member).task == "nr_sld"  # a single bundle still loads as one
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "ensemble.json").write_text(json.dumps({"format": "workbench-ensemble/1", "members": ["../x", "y"]}))
    with pytest.raises(BundleError, match="must be the name of a folder inside the ensemble"):
        load_ensemble(bad)
    (bad / "ensemble.json").write_text(json.dumps({"format": "workbench-ensemble/1", "members": ["a"]}))
    with pytest.raises(BundleError, match="2 to 32 member folders"):
        load_ensemble(bad)
    assert load_model_bundle(member).task == "nr_sld"


def test_the_command_refuses_bad_input_before_training(dataset, tmp_path, capsys):
    from workbench.cli.main import main

    out = tmp_path / "e"
    assert main(["ensemble", "--data", str(dataset), "--out", str(out), "--members", "1", "--epochs", "1"]) == 2
    assert "an ensemble needs 2 to 32 members, got 1" in capsys.readouterr().err
    assert main(["ensemble", "--data", str(dataset), "--out", str(out), "--members", "3", "--detach"]) == 2
    assert "--detach does not apply to an ensemble" in capsys.readouterr().err
    scheduler = ["--scheduler", "tcp://127.0.0.1:1"]
    assert main(["ensemble", "--data", str(dataset), "--out", str(out), "--members", "3", *scheduler]) == 2
    assert "--scheduler does not apply to an ensemble" in capsys.readouterr().err
    assert not out.exists()


def test_the_command_line_predicts_and_refines_with_an_ensemble(trained, shared_data, tmp_path):
    """`workbench predict` and `workbench refine --model` take an ensemble folder like a single bundle."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    workbench = shutil.which("workbench", path=str(Path(sys.executable).parent))
    measured = shared_data / "real/ornl-ref-l-212592/REFL_212592_reduced.txt"
    out = tmp_path / "p.json"
    done = subprocess.run(
        [workbench, "predict", "--model", str(trained.path), "--input", str(measured), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert len(json.loads(out.read_text())["profile"]["sld"]) == 80
    done = subprocess.run(
        [workbench, "refine", str(measured), "--model", str(trained.path), "--max-nfev", "20", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "predicted profile, fitted by its stack family"
        in json.loads((tmp_path / "refinement.json").read_text())["start"]
    )

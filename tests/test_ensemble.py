"""Ensembles: K tiny models trained on one split, saved atomically, with bands calibrated on the validation split."""

from __future__ import annotations

import json
import time
from pathlib import Path

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
    assert main(["ensemble", "--data", str(dataset), "--out", str(out), "--members", "3", "--resume", "x"]) == 2
    assert "--resume does not apply to an ensemble" in capsys.readouterr().err
    scheduler = ["--scheduler", "tcp://127.0.0.1:1"]
    assert main(["ensemble", "--data", str(dataset), "--out", str(out), "--members", "3", *scheduler]) == 2
    assert "--scheduler places a --detach job on a Dask worker: add --detach" in capsys.readouterr().err
    ws = ["--workspace", str(tmp_path / "ws")]
    assert main(["ensemble", "--data", str(dataset), "--out", str(out), "--members", "1", "--detach", *ws]) == 2
    assert "an ensemble needs 2 to 32 members, got 1" in capsys.readouterr().err  # refused before it is queued
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


def test_an_on_the_fly_prior_bounds_ensemble_trains_as_a_job_and_calibrates_on_unseen_curves(tmp_path):
    """Two members on their own streams, as one ensemble job: one loss curve member after member in the
    registry, bands calibrated on fresh curves of a seed no member used, and bands inside narrowed bounds."""
    from workbench.batch.jobs import submit_job
    from workbench.store.workspace import Workspace
    from workbench.training.on_the_fly import OnTheFly

    ws = Workspace(tmp_path / "ws")
    settings = OnTheFly.of(
        FilmStack.default(),
        generator=GeneratorConfig(num_q=80, sld_points=80),
        batches_per_epoch=4,
        fit_curves=64,
        val_curves=64,
        test_curves=64,
    )
    request = TrainRequest(
        target="params",
        on_the_fly=settings,
        out=ws.models / "ens",
        model={"kind": "param_bounds", "width": 8, "latent": 32},
        train=TrainConfig(epochs=2, batch_size=16, seed=4, threads=1),
    )
    run_id = submit_job(ws, "ensemble", {**request.model_dump(mode="json"), "ensemble_members": 2})
    registry = ws.registry
    deadline = time.monotonic() + 240
    while registry.get_run(run_id).status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.5)
    run = registry.get_run(run_id)
    assert run.status == "completed", (run.status, run.error, registry.logs(run_id)[-5:])
    epochs = registry.epochs(run_id)
    assert [e["epoch"] for e in epochs] == [1, 2, 3, 4]  # member 2's epochs follow member 1's, none overwritten
    assert [(e["member"], e["member_epoch"]) for e in epochs] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    ens = load_model(run.model)
    info = json.loads((Path(run.model) / "ensemble.json").read_text())
    assert info["seeds"] == [4, 5] and info["calibration_seed"] == 6
    cal = info["calibration"]
    assert cal["validation_curves"] == 64 and cal["test_curves"] == 64
    for level in LEVELS:
        assert 0.0 <= cal["coverage"]["calibrated"][level]["all"] <= 1.0
    assert cal["coverage"]["calibrated"]["95 %"]["all"] >= cal["coverage"]["calibrated"]["68 %"]["all"]
    # the members drew different curves: their first-epoch losses differ
    assert epochs[0]["train_loss"] != epochs[2]["train_loss"]
    # bands inside narrowed prior bounds
    names = ens.members[0].normalization["y"]["names"]
    family = np.asarray(ens.members[0].normalization["y"]["bounds"])
    lo, hi = family[0, 0], family[0, 0] + 0.5 * (family[0, 1] - family[0, 0])
    curve = load_dataset_free_curve(settings)
    bands = ensemble_bands(ens, curve, bounds={names[0]: [lo, hi]})
    for level in LEVELS:
        band_lo, band_hi = bands.bands[level]
        assert lo <= band_lo[0, 0] <= band_hi[0, 0] <= hi


def load_dataset_free_curve(settings) -> np.ndarray:
    """One fresh curve of the family (stream seed 99), as a measured curve would come."""
    from workbench.training.on_the_fly import fixed_sets

    ds, split = fixed_sets(settings.model_copy(update={"fit_curves": 16, "val_curves": 16, "test_curves": 16}), 99)
    return np.asarray(ds.nr[split["test"][:1]])

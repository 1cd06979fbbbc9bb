"""The training engine and the NR workflows: events, stop/pause/resume, checkpoints, bundles, predictions."""

from __future__ import annotations

import itertools
import json
import math
import os

import numpy as np
import pytest
import torch

from workbench.analysis.predict import predict, predict_measurement, substrate_surface
from workbench.data.dataset import load_dataset
from workbench.data.generate import GeneratorConfig, generate_to_disk
from workbench.data.measured import load_measurement
from workbench.data.parameters import stacks_from_parameters
from workbench.data.preprocess import STD_FLOOR, PreprocessConfig, nr_features
from workbench.events import Log, Progress, Record, Reporter
from workbench.models import build_model
from workbench.physics import FilmStack
from workbench.physics.kernel_profile import profile_range_numpy
from workbench.store.model_bundle import BundleError, load_model_bundle
from workbench.training import TrainConfig, Trainer
from workbench.training.checkpoint import load_checkpoint
from workbench.training.nr_workflow import prepare, resume_nr_training, train_nr_model
from workbench.training.trainer import machine_threads
from workbench.workflows.training import TrainRequest, run_training

TINY = {"width": 8, "stages": 3, "latent": 32}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data") / "ds"
    return load_dataset(
        generate_to_disk(FilmStack.default(), GeneratorConfig(num_curves=640, seed=3, sld_points=120), folder)
    )


@pytest.fixture(scope="module")
def prepared(dataset):
    return prepare(dataset, "sld", PreprocessConfig())


def _trainer(prepared, config: TrainConfig, **kw) -> Trainer:
    torch.manual_seed(config.seed)
    model = build_model({"kind": "compact", "n_z": 120, **TINY})
    return Trainer(model, prepared.x, prepared.y, prepared.split, config, **kw)


def test_epochs_report_losses_and_learning_progresses(prepared):
    events = []
    result = _trainer(
        prepared, TrainConfig(epochs=4, batch_size=32, learning_rate=3e-3), reporter=Reporter([events.append])
    ).fit()
    epochs = [e.data for e in events if isinstance(e, Record) and e.name == "epoch"]
    assert result.status == "completed" and [e["epoch"] for e in epochs] == [1, 2, 3, 4]
    for e in epochs:
        assert all(math.isfinite(e[k]) for k in ("train_loss", "train_loss_eval", "val_loss", "lr", "seconds"))
    assert epochs[-1]["val_loss"] < 0.5 * epochs[0]["val_loss"]
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress[-1].done == progress[-1].total and progress[-1].unit == "batches"


def test_stop_ends_the_run_without_a_checkpoint(prepared, tmp_path):
    ckpt = tmp_path / "ckpt.safetensors"
    trainer = _trainer(prepared, TrainConfig(epochs=5, batch_size=32), checkpoint_path=ckpt)
    trainer.reporter.listeners.append(lambda e: trainer.stop() if isinstance(e, Record) else None)
    result = trainer.fit()
    assert result.status == "stopped" and result.epochs_done == 1 and not ckpt.exists()


def test_pause_then_resume_is_bit_identical_to_an_uninterrupted_run(prepared, tmp_path):
    config = TrainConfig(epochs=2, batch_size=32, seed=5, progress_every=1)
    full = _trainer(prepared, config)
    full.fit()
    ckpt = tmp_path / "pause.safetensors"
    paused = _trainer(prepared, config, checkpoint_path=ckpt)
    count = {"n": 0}

    def pause_after_a_few_batches(event):
        if isinstance(event, Progress):
            count["n"] += 1
            if count["n"] == 21:  # mid second epoch
                paused.pause()

    paused.reporter.listeners.append(pause_after_a_few_batches)
    result = paused.fit()
    assert result.status == "paused" and result.checkpoint == ckpt and ckpt.exists()
    _, meta, _ = load_checkpoint(ckpt)
    assert (meta["epoch"], meta["batch"]) == (1, 5)
    resumed = Trainer.resume(ckpt, prepared.x, prepared.y)
    assert resumed.fit().status == "completed"
    for key, value in full.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [h["val_loss"] for h in resumed.state.history] == [h["val_loss"] for h in full.state.history]


def test_periodic_checkpoints_and_best_weights(prepared, tmp_path):
    ckpt = tmp_path / "periodic.safetensors"
    trainer = _trainer(
        prepared, TrainConfig(epochs=4, batch_size=64, checkpoint_every=2, early_stopping=10), checkpoint_path=ckpt
    )
    result = trainer.fit()
    assert ckpt.exists() and not list(tmp_path.glob(".*.tmp"))
    _, meta, _ = load_checkpoint(ckpt)
    assert meta["epoch"] == 2  # written after epoch 2 (the final epoch needs none)
    # the best weights were restored at the end
    assert trainer.evaluate(prepared.split["val"]) == pytest.approx(result.best_val_loss, rel=1e-6)


def test_the_best_validation_weights_are_kept_without_early_stopping(prepared):
    """Adam at lr 1e-2 overshoots in its 4th epoch (val loss 0.012 → 0.050): the model keeps epoch 3's weights."""
    events = []
    trainer = _trainer(
        prepared, TrainConfig(epochs=4, batch_size=32, learning_rate=1e-2), reporter=Reporter([events.append])
    )
    result = trainer.fit()
    val = [h["val_loss"] for h in result.history]
    best = int(np.argmin(val)) + 1
    assert result.status == "completed" and best != 4 and val[-1] > 2 * min(val)
    assert result.kept_epoch == result.best_epoch == best
    assert trainer.evaluate(prepared.split["val"]) == pytest.approx(min(val), rel=1e-6)
    assert any(isinstance(e, Log) and f"kept the best weights: epoch {best}" in e.message for e in events)


def test_a_time_budget_ends_the_run_at_a_batch_boundary_and_says_why(dataset, tmp_path):
    """A budget of 6 ms lets one batch run; that partial epoch is validated and the bundle is written."""
    out = run_training(
        TrainRequest(
            data=dataset.path,
            out=tmp_path / "m",
            model=TINY,
            train=TrainConfig(epochs=2, batch_size=32, minutes=1e-4),
        )
    )
    assert out.status == "time-limit" and out.finished and out.epochs_done == 1
    assert len(out.history) == 1 and out.history[0]["partial"] == pytest.approx(1 / 16)  # 512 curves / 32
    assert "time budget of 0.0001 min reached" in out.stop_reason and "after 1 of 16 batches" in out.stop_reason
    assert out.kept_epoch == 1 and out.bundle is not None
    config = load_model_bundle(out.bundle).config
    assert config["train"]["minutes"] == 1e-4 and config["train"]["run"]["stop_reason"] == out.stop_reason
    card = (out.bundle / "README.md").read_text()
    assert "weights of epoch 1 of 1" in card and "time budget" in card and "1 CPU threads" in card


def _cosine_rates(prepared, **config) -> tuple[Trainer, list[float]]:
    """A cosine-schedule trainer at lr 1e-2 and the list its learning rate is recorded into, batch by batch."""
    rates: list[float] = []
    trainer = _trainer(
        prepared, TrainConfig(batch_size=32, learning_rate=1e-2, schedule="cosine", progress_every=1, **config)
    )
    trainer.reporter.listeners.append(
        lambda e: rates.append(trainer.optimizer.param_groups[0]["lr"]) if isinstance(e, Progress) else None
    )
    return trainer, rates


def test_cosine_schedule_anneals_to_the_time_budget(prepared):
    """Given minutes and 1,000 epochs, the rate reaches ~0 when the clock runs out, not after epoch 1,000."""
    trainer, rates = _cosine_rates(prepared, epochs=1000, minutes=0.05)
    result = trainer.fit()
    assert result.status == "time-limit" and result.epochs_done < 1000
    assert rates[0] > 0.99e-2 and rates[-1] < 0.05e-2  # annealed to the deadline
    assert all(b <= a for a, b in itertools.pairwise(rates))  # falls monotonically
    halfway = rates[len(rates) // 2]
    assert 0.2e-2 < halfway < 0.8e-2  # half a cosine: near half the rate mid-run


def test_cosine_schedule_without_a_budget_ends_with_the_last_epoch(prepared):
    trainer, rates = _cosine_rates(prepared, epochs=3)
    assert trainer.fit().status == "completed"
    per_epoch = len(rates) // 3
    assert rates[0] == pytest.approx(1e-2) and rates[-1] < 0.01e-2
    assert rates[per_epoch] == pytest.approx(0.75e-2, rel=0.05)  # cos at a third of the way: (1 + cos(π/3)) / 2


def test_time_before_a_pause_counts_against_the_budget(prepared, tmp_path):
    """A run paused after its budget's worth of training is not handed a fresh budget on resume."""
    ckpt = tmp_path / "budget.safetensors"
    trainer = _trainer(prepared, TrainConfig(epochs=50, batch_size=32, minutes=10), checkpoint_path=ckpt)
    trainer.reporter.listeners.append(lambda e: trainer.pause() if isinstance(e, Record) else None)
    assert trainer.fit().status == "paused"
    _, meta, _ = load_checkpoint(ckpt)
    assert 0 < meta["seconds"] <= trainer.state.seconds
    meta_seconds = 700.0  # as if 11 2/3 of the 10 minutes had been trained before the pause
    resumed = Trainer.resume(ckpt, prepared.x, prepared.y)
    resumed.state.seconds = meta_seconds
    result = resumed.fit()
    assert result.status == "time-limit" and "time budget of 10 min reached (700 s)" in result.stop_reason
    assert result.epochs_done == 2  # the epoch it was in is validated, then the run ends


def test_threads_are_set_for_the_run_and_restored(prepared, monkeypatch):
    seen = []
    listener = Reporter([lambda e: seen.append(torch.get_num_threads()) if isinstance(e, Record) else None])
    before = torch.get_num_threads()
    result = _trainer(prepared, TrainConfig(epochs=1, batch_size=64, threads=3), reporter=listener).fit()
    assert result.threads == 3 and set(seen) == {3} and torch.get_num_threads() == before
    seen.clear()
    result = _trainer(prepared, TrainConfig(epochs=1, batch_size=64), reporter=listener).fit()
    assert result.threads == machine_threads() and set(seen) == {result.threads}


def test_machine_threads_leave_busy_cores_alone(monkeypatch):
    before = torch.get_num_threads()
    torch.set_num_threads(16)
    try:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(2)))
        assert machine_threads() == 1  # 2 cores: one torch thread, whatever the load
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
        monkeypatch.setattr(os, "getloadavg", lambda: (2.3, 1.0, 1.0))
        assert machine_threads() == 5  # 8 cores, 3 busy
        monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
        assert machine_threads() == 1  # all busy
        torch.set_num_threads(2)
        monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
        assert machine_threads() == 2  # never above torch's own setting (OMP_NUM_THREADS)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("optimizer, schedule", [("adamw", "cosine"), ("sgd", "step"), ("adam", "plateau")])
def test_optimizers_and_schedules(prepared, optimizer, schedule):
    trainer = _trainer(
        prepared, TrainConfig(epochs=2, batch_size=64, optimizer=optimizer, schedule=schedule, learning_rate=1e-2)
    )
    result = trainer.fit()
    assert result.status == "completed" and all(math.isfinite(h["val_loss"]) for h in result.history)


def test_device_requests_are_checked(prepared):
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is visible"):
            _trainer(prepared, TrainConfig(device="cuda"))
    assert _trainer(prepared, TrainConfig(device="auto")).device.type == (
        "cuda" if torch.cuda.is_available() else "cpu"
    )


def test_sld_workflow_bundle_round_trip_and_resume_checks(dataset, tmp_path):
    out = run_training(
        TrainRequest(data=dataset.path, out=tmp_path / "m", model=TINY, train=TrainConfig(epochs=2, batch_size=32))
    )
    assert out.status == "completed" and out.bundle == tmp_path / "m"
    assert {"sld_mse", "sld_mae", "sld_r2", "computed_nr_log_r_rmse"} <= set(out.metrics)
    assert out.metrics["test_curves"] == 64
    bundle = load_model_bundle(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "README.md",
        "config.json",
        "history.json",
        "metrics.json",
        "model.safetensors",
        "normalization.json",
    ]
    assert bundle.config["data"]["dataset"]["content_hash"] == dataset.content_hash
    curves = np.asarray(dataset.nr[:4])
    trained = train_nr_model(
        dataset, target="sld", model=TINY, train=TrainConfig(epochs=2, batch_size=32)
    )  # same seeds
    with torch.no_grad():
        from workbench.analysis.predict import model_inputs

        before = trained.model.eval()(model_inputs(bundle, curves[:, 1])).numpy()
    after = bundle.model(model_inputs(bundle, curves[:, 1])).detach().numpy()
    np.testing.assert_array_equal(before, after)
    profiles = predict(bundle, curves)
    assert profiles.shape == (4, 2, 120) and np.all(np.isfinite(profiles))
    assert "sld_r2" in (tmp_path / "m" / "README.md").read_text()
    json.loads((tmp_path / "m" / "normalization.json").read_text())  # plain JSON, no pickle


@pytest.mark.parametrize(
    ("scaling", "method", "per_point"),
    [("standard", "zscore", True), ("minmax", "minmax", False), ("auto", "zscore", True)],
)
def test_the_chosen_scaling_is_trained_with_and_kept_in_the_bundle(dataset, tmp_path, scaling, method, per_point):
    request = TrainRequest(
        data=dataset.path, out=tmp_path / "m", model=TINY, train=TrainConfig(epochs=1, batch_size=64, scaling=scaling)
    )
    run_training(request)
    norm = load_model_bundle(tmp_path / "m").normalization
    assert norm["preprocess"]["normalization"] == norm["x"]["method"] == norm["y"]["method"] == method
    stats = norm["x"]["stats"]["std" if method == "zscore" else "max"]
    assert np.size(stats) == (dataset.nr.shape[2] if per_point else 1)  # one scale per Q point, or one for all
    x = prepare(dataset, "sld", PreprocessConfig(**{k: norm["preprocess"][k] for k in ("normalization", "per_point")}))
    if per_point:  # every Q point of the training curves has mean 0 and spread 1, except where they hardly vary
        train = np.asarray(x.x[np.sort(x.split["train"])])
        spread = train.std(axis=0)
        assert np.allclose(train.mean(axis=0), 0, atol=1e-3)
        assert np.all(spread <= 1.01) and np.mean(np.isclose(spread, 1, atol=1e-2)) > 0.9
        # total reflection (R = 1 in every curve): scaled by the floor, not blown up
        log_r = nr_features(dataset.nr[np.sort(x.split["train"])], PreprocessConfig())
        assert np.min(norm["x"]["stats"]["std"]) == pytest.approx(STD_FLOOR * log_r.std(), rel=1e-3)


def test_auto_scaling_is_standard_for_the_sld_model_and_min_max_for_the_others():
    auto = TrainConfig()
    assert auto.scaling == "auto"
    assert auto.preprocess(kind="compact").normalization == "zscore" and auto.preprocess(kind="compact").per_point
    for kind in ("param", "param_bounds", "parity_cnn", None):
        assert auto.preprocess(kind=kind).normalization == "minmax", kind
    assert TrainConfig(scaling="minmax").preprocess(kind="compact").normalization == "minmax"


def test_resume_refuses_a_different_data_set(dataset, tmp_path):
    ckpt = tmp_path / "run.safetensors"
    reporter = Reporter()
    reporter.listeners.append(lambda e: reporter.pause.set() if isinstance(e, Progress) else None)  # a Pause click
    out = train_nr_model(
        dataset,
        model=TINY,
        train=TrainConfig(epochs=1, batch_size=32, progress_every=1),
        checkpoint_path=ckpt,
        reporter=reporter,
    )
    assert out.result.status == "paused"
    other = load_dataset(
        generate_to_disk(
            FilmStack.default(), GeneratorConfig(num_curves=640, seed=4, sld_points=120), tmp_path / "other"
        )
    )
    with pytest.raises(ValueError, match="resume on the same data"):
        resume_nr_training(ckpt, other)
    done = resume_nr_training(ckpt, dataset)
    assert done.result.status == "completed" and done.bundle_contents["task"] == "nr_sld"


def test_parameter_model_predicts_stacks_inside_the_bounds(dataset, tmp_path, shared_data):
    out = run_training(
        TrainRequest(
            target="params",
            data=dataset.path,
            out=tmp_path / "p",
            model={**TINY, "kind": "param"},
            train=TrainConfig(epochs=2, batch_size=32),
        )
    )
    assert set(out.metrics["mae"]) == set(out.metrics["r2"]) and "layer_2.thickness" in out.metrics["mae"]
    bundle = load_model_bundle(tmp_path / "p")
    values = predict(bundle, np.asarray(dataset.nr[:3]))
    stacks = stacks_from_parameters(bundle.config, values)
    stack = FilmStack.default()
    for s in stacks:
        for b in stack.bounds:
            assert b.lo - 1e-9 <= s.get(b.i, b.par) <= b.hi + 1e-9
    measured = load_measurement(shared_data / "real/ornl-ref-l-212592/REFL_212592_reduced.txt")
    with pytest.warns(UserWarning, match="model points were filled"):
        result = predict_measurement(bundle, measured)
    assert result.computed.shape == result.q.shape and np.all(np.isfinite(result.computed))
    assert result.outside.sum() == 3 and "chi2_per_point" in result.metrics


def test_predicted_profiles_have_increasing_z_with_the_substrate_surface_at_zero(dataset, tmp_path, shared_data):
    """The raw z row of an SLD model jitters point by point; predictions give an evenly spaced, increasing z
    row, and on a measured curve the stack family's fit puts the substrate's top at z = 0."""
    run_training(
        TrainRequest(data=dataset.path, out=tmp_path / "m", model=TINY, train=TrainConfig(epochs=1, batch_size=32))
    )
    bundle = load_model_bundle(tmp_path / "m")
    profiles = predict(bundle, np.asarray(dataset.nr[:8]))
    steps = np.diff(profiles[:, 0, :], axis=1)
    assert np.all(steps > 0) and np.allclose(steps, steps[:, :1], rtol=1e-9)
    measured = load_measurement(shared_data / "real/ornl-ref-l-212592/REFL_212592_reduced.txt")
    with pytest.warns(UserWarning, match="model points were filled"):
        result = predict_measurement(bundle, measured)
    z = result.profile[0]
    assert np.all(np.diff(z) > 0)
    if result.surface_shift is not None:  # a one-epoch model's profile may be beyond the family's reach
        assert z[0] < 0 < z[-1]

    # the surface finder, on true profiles: refl1d's range starts 10 Å (or 3σ of a rough interface) below it
    base = FilmStack.from_pyreflect(**bundle.config["data"]["stack"])
    for k in (0, 1, 2):
        truth = base
        for name, value in zip(dataset.parameter_names, np.asarray(dataset.params[k], dtype=float)):
            layer, par = name.rsplit(".", 1)
            truth = truth.with_value([x.name for x in base.layers].index(layer), par, float(value))
        arrays = truth.to_arrays()
        left = profile_range_numpy(arrays.thickness, arrays.roughness)[0][0]
        z_true, rho_true = np.asarray(dataset.sld[k], dtype=float)
        assert substrate_surface(bundle, z_true, rho_true) == pytest.approx(-left, abs=0.5)


def test_bundle_errors_name_the_file(tmp_path):
    with pytest.raises(BundleError, match="not a model bundle folder"):
        load_model_bundle(tmp_path / "nothing")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "config.json").write_text("{broken")
    with pytest.raises(BundleError, match=r"config.json: invalid JSON"):
        load_model_bundle(tmp_path / "b")

"""The SLD profile → χ workflow on the SCFT set: model, KL term, accuracy, flags, split and normalisers."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.events import Record, Reporter
from workbench.models import build_model
from workbench.models.chi import ChiModel, ChiTask
from workbench.training import TrainConfig
from workbench.training.chi_workflow import CHI_NAMES, ChiResult, load_chi_scft, predict_chi, resume_chi, train_chi

# Whitened inputs reach the data's ceiling in 10 epochs (≈ 5–8 s on one thread): test R² measured
# 0.748 / 0.757 / 0.754 (χ_AB; a linear fit and k-NN reach ≈ 0.75 too) and ≥ 0.996 (χ_substrate,
# χ_air) for seeds 0 / 1 / 2.
FAST = {"whiten": 16}
FAST_TRAIN = TrainConfig(epochs=10, batch_size=64, learning_rate=1e-3, schedule="cosine", device="cpu", seed=0)


@functools.cache
def _data(folder: str):
    return load_chi_scft(Path(folder) / "chi-scft")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small dense nets: one thread is as fast as two here and leaves the other core alone."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@functools.cache
def _trained(folder: str) -> ChiResult:
    _, profiles, chi, _, _ = _data(folder)
    return train_chi(profiles, chi, model_config=FAST, train_config=FAST_TRAIN, seed=0)


@pytest.fixture
def data(shared_data):
    return _data(str(shared_data))


@pytest.fixture
def trained(shared_data) -> ChiResult:
    return _trained(str(shared_data))


def _batch(profiles: np.ndarray, chi: np.ndarray, n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = profiles.min(), profiles.max()
    y = (chi[:n] - chi.mean(axis=0)) / chi.std(axis=0)
    return torch.as_tensor((profiles[:n] - lo) / (hi - lo), dtype=torch.float32), torch.as_tensor(
        y, dtype=torch.float32
    )


# ------------------------------------------------------------------ model
@pytest.mark.parametrize(
    "kwargs", [{}, {"vae_beta": 0.5, "latent": 8, "hidden": (64, 32), "mlp_hidden": (16,)}, {"whiten": 12}]
)
def test_config_round_trips_through_build_model(kwargs) -> None:
    torch.manual_seed(0)
    model = ChiModel(**kwargs)
    if model.whiten:
        model.set_whitening(torch.rand(88), torch.randn(model.whiten, 88), torch.rand(model.whiten) + 0.5)
    config = json.loads(json.dumps(model.config))
    assert config["kind"] == "chi" == ChiModel.kind
    clone = build_model(config)
    assert isinstance(clone, ChiModel) and clone.config == model.config
    clone.load_state_dict(model.state_dict())
    x = torch.rand(5, 88)
    model.eval(), clone.eval()
    assert torch.equal(model(x), clone(x)) and model(x).shape == (5, 3)
    rec = model.reconstruct(x).detach()
    assert rec.shape == (5, 88) and 0 <= float(rec.min()) <= float(rec.max()) <= 1


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="vae_beta"):
        build_model({"kind": "chi", "vae_beta": -1})
    with pytest.raises(RuntimeError, match="whitening has not been fitted"):
        ChiModel(whiten=4)(torch.rand(2, 88))


def test_vae_kl_term_is_in_the_loss_and_inference_is_deterministic(data) -> None:
    _, profiles, chi, _, _ = data
    x, y = _batch(profiles, chi)
    torch.manual_seed(0)
    vae = ChiModel(vae_beta=1.0)
    ae = ChiModel(vae_beta=0.0)
    ae.load_state_dict(vae.state_dict(), strict=False)  # same weights, no log-variance head
    assert ae.encode(x)[1] is None and vae.encode(x)[1] is not None
    task = ChiTask()
    with torch.no_grad():
        t_vae, t_ae = task.terms(vae, x, y, sample=False), task.terms(ae, x, y, sample=False)
    assert float(t_vae["kl"]) > 0 and float(t_ae["kl"]) == 0
    assert torch.allclose(t_vae["loss"], t_ae["loss"] + t_vae["kl"])  # evaluation: same mean code, plus β·KL
    torch.manual_seed(1)
    loss_vae = task.loss(vae, x, y)
    assert loss_vae.item() > task.loss(ae, x, y).item()  # training: sampled code and the KL term
    loss_vae.backward()
    assert (
        vae.logvar.weight.grad is not None and float(vae.logvar.weight.grad.abs().sum()) > 0
    )  # the KL term trains the encoder
    assert not torch.equal(task.loss(vae, x, y), task.loss(vae, x, y))  # the reparameterised code is sampled
    vae.eval()
    with torch.no_grad():
        assert torch.equal(vae(x), vae(x)) and torch.equal(vae(x), vae.mlp(vae.encode(x)[0]))
        assert torch.equal(task.eval_loss(vae, x, y), task.eval_loss(vae, x, y))


# ------------------------------------------------------------------ data
def test_loader_checks_the_experiment_grid(data, shared_data, tmp_path) -> None:
    z, profiles, chi, exp_z, exp_sld = data
    assert profiles.shape == (4016, 88) and chi.shape == (4016, 3) and exp_sld.shape == (88,)
    np.testing.assert_allclose(exp_z, z)
    folder = tmp_path / "chi-scft"
    folder.mkdir()
    for name in ("train_data.npy", "train_pars.npy"):
        (folder / name).symlink_to(shared_data / "chi-scft" / name)
    np.savetxt(folder / "experiment.txt", np.c_[exp_z + 5.0, exp_sld])
    with pytest.raises(ValueError, match=r"experiment\.txt: z grid does not match"):
        load_chi_scft(folder)
    np.savetxt(folder / "experiment.txt", np.c_[exp_z, exp_sld][:80])
    with pytest.raises(ValueError, match=r"experiment\.txt: 80 points"):
        load_chi_scft(folder)


# ------------------------------------------------------------------ training
def test_split_is_disjoint_and_normalisers_saw_training_rows_only(trained, data) -> None:
    _, profiles, chi, _, _ = data
    s = trained.split
    assert sorted(map(len, s.values())) == [401, 402, 3213]
    assert not (set(s["train"]) & set(s["val"]) or set(s["train"]) & set(s["test"]) or set(s["val"]) & set(s["test"]))
    assert len(np.union1d(np.union1d(s["train"], s["val"]), s["test"])) == len(profiles)
    tr = s["train"]
    stats = trained.profile_norm["stats"]
    assert np.isclose(np.ravel(stats["min"])[0], profiles[tr].min()) and np.isclose(
        np.ravel(stats["max"])[0], profiles[tr].max()
    )
    np.testing.assert_allclose(trained.chi_norm["stats"]["mean"], chi[tr].mean(axis=0))
    np.testing.assert_allclose(trained.chi_norm["stats"]["std"], chi[tr].std(axis=0), rtol=1e-6)
    for j, name in enumerate(CHI_NAMES):
        assert trained.chi_range[name] == (chi[tr, j].min(), chi[tr, j].max())
    assert trained.profile_range == (profiles[tr].min(), profiles[tr].max())
    json.dumps(trained.parts())


def test_training_reaches_the_accuracy_of_the_data(trained, data) -> None:
    _, _, chi, _, _ = data
    m = trained.metrics
    assert not trained.model.training and m["status"] == "completed" and len(trained.history) == FAST_TRAIN.epochs
    assert m["chi_AB"]["r2"] > 0.65
    assert m["chi_substrate"]["r2"] > 0.95 and m["chi_air"]["r2"] > 0.95
    for j, name in enumerate(CHI_NAMES):
        assert m[name]["mae"] < 0.5 * chi[:, j].std()  # physical units, well inside the spread of the data


def test_flags_for_out_of_range_inputs_and_predictions(trained, data) -> None:
    _, profiles, chi, _, exp_sld = data
    tr = trained.split["train"]
    lo, hi = chi[tr].min(axis=0), chi[tr].max(axis=0)
    central = tr[np.argmin(np.abs((chi[tr] - (lo + hi) / 2) / (hi - lo)).max(axis=1))]
    pred, flags = predict_chi(trained, np.stack([profiles[central], 3.0 * profiles[central]]))
    assert pred.shape == (2, 3) and np.all(np.isfinite(pred))
    assert not flags.any[0] and not flags.chi[0].any()  # a training profile of central χ: nothing to flag
    assert flags.profile[1] and flags.profile_excess[1] > 10 and flags.any[1]  # 3 × SLD: outside the training range
    # χ flags compare each χ with its own training range, in both directions
    pred, _ = predict_chi(trained, profiles[trained.split["test"]])
    mid = float(np.median(pred[:, 0]))
    parts = {**trained.parts(), "model": trained.model, "chi_range": {**trained.chi_range, "chi_AB": (mid, 1.0)}}
    _, flags = predict_chi(parts, profiles[trained.split["test"]])
    np.testing.assert_array_equal(flags.chi[:, 0], pred[:, 0] < mid)
    # held-out profiles are rarely "unlike training"; the measured profile is (its nearest training
    # profile is ≈ 2.1e-6 Å⁻² RMS away, 50 × farther than any test profile's nearest)
    _, flags = predict_chi(trained, profiles[trained.split["test"]])
    assert flags.unlike_training.mean() < 0.02
    pred, flags = predict_chi(trained, exp_sld)
    assert pred.shape == (1, 3) and np.all(np.isfinite(pred))
    assert not flags.profile[0] and flags.unlike_training[0] and flags.any[0]
    with pytest.raises(ValueError, match=r"\(N, 88\)"):
        predict_chi(trained, profiles[:2, :80])


def test_pause_resume_continues_the_same_run(data, tmp_path) -> None:
    _, profiles, chi, _, _ = data
    profiles, chi = profiles[:800], chi[:800]
    config = TrainConfig(epochs=2, batch_size=64, device="cpu")
    full = train_chi(profiles, chi, train_config=config, seed=3)
    reporter = Reporter()
    reporter.listeners.append(
        lambda e: reporter.pause.set() if isinstance(e, Record) and e.data.get("epoch") == 1 else None
    )
    ckpt = tmp_path / "chi.safetensors"
    paused = train_chi(profiles, chi, train_config=config, seed=3, reporter=reporter, checkpoint_path=ckpt)
    assert paused.metrics["status"] == "paused" and ckpt.is_file()
    resumed = resume_chi(ckpt, profiles, chi)
    assert resumed.metrics["status"] == "completed" and [h["epoch"] for h in resumed.history] == [1, 2]
    assert all(np.array_equal(full.split[k], resumed.split[k]) for k in full.split)
    assert resumed.profile_norm == full.profile_norm and resumed.chi_range == full.chi_range
    np.testing.assert_allclose(
        predict_chi(resumed, profiles[:50])[0], predict_chi(full, profiles[:50])[0], rtol=1e-5, atol=1e-6
    )


def test_model_bundle_round_trip_predicts_the_same(trained, data, tmp_path) -> None:
    from workbench.store.model_bundle import load_model_bundle, save_model_bundle

    _, profiles, _, _, _ = data
    parts = trained.parts()
    folder = save_model_bundle(
        tmp_path / "chi", trained.model, task="chi", normalization=parts, metrics=parts["metrics"]
    )
    bundle = load_model_bundle(folder)
    got, flags = predict_chi({**bundle.normalization, "model": bundle.model}, profiles[:20])
    want, want_flags = predict_chi(trained, profiles[:20])
    np.testing.assert_allclose(got, want, rtol=1e-6)
    np.testing.assert_array_equal(flags.any, want_flags.any)

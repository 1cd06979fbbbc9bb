"""The prior-bounds parameter model: the curve and each parameter's range in, a prediction inside that range out."""

from __future__ import annotations

import html
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_stack

from workbench.analysis.ensemble import LEVELS, ensemble_bands
from workbench.analysis.predict import predict
from workbench.data.generate import GeneratorConfig, generate
from workbench.models import build_model
from workbench.models.inference import LoweredModule, inference_module
from workbench.store.model_bundle import load_model, load_model_bundle, write_ensemble_info
from workbench.store.registry import Registry
from workbench.training import TrainConfig
from workbench.training.on_the_fly import ENDLESS, OnTheFly
from workbench.training.prior_bounds import SubRangeSampler
from workbench.workflows.training import TrainRequest, run_training

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
GRID = {"num_q": 80, "sld_points": 60}
SIZES = {"fit_curves": 256, "val_curves": 256, "test_curves": 256}
MODEL = {"kind": "param_bounds", "width": 8, "stages": 3, "latent": 64, "min_width": 0.1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small prior-bounds model trained on the fly on the three-parameter stack, and fresh curves it never saw."""
    tmp = tmp_path_factory.mktemp("prior")
    request = TrainRequest(
        target="params",
        on_the_fly=OnTheFly.of(small_stack(), generator=GeneratorConfig(**GRID), batches_per_epoch=40, **SIZES),
        model=MODEL,
        out=tmp / "m",
        train=TrainConfig(epochs=5, batch_size=64, learning_rate=3e-3, threads=1, seed=3),
    )
    outcome = run_training(request, registry=Registry(tmp / "registry.sqlite"))
    assert outcome.status == "completed"
    bundle = load_model_bundle(outcome.bundle)
    fresh = generate(small_stack(), GeneratorConfig(**GRID, num_curves=60, seed=99))
    names = bundle.config["data"]["parameters"]["names"]
    true = fresh.params[:, [fresh.parameter_names.index(n) for n in names]]
    return bundle, fresh, true, names, np.asarray(bundle.config["data"]["parameters"]["bounds"])


def test_sub_range_sampler_draws_every_parameter_inside_its_own_range_reproducibly():
    stack = small_stack()
    sampler = SubRangeSampler(stack, ENDLESS, 7, "uniform", 0.5, min_width=0.2)
    values, _ = sampler.sample(0, 2048)
    low, high = sampler.physical(sampler.ranges(0, 2048))
    free = [i for i, b in enumerate(sampler.bounds) if not b.fixed]
    span = np.array([b.hi - b.lo for b in sampler.bounds])[free]
    assert np.all(values[:, free] >= low[:, free] - 1e-9) and np.all(values[:, free] <= high[:, free] + 1e-9)
    widths = (high - low)[:, free] / span
    assert widths.min() >= 0.2 - 1e-12 and np.mean(widths == 1.0) > 0.05  # some curves see the whole family
    again, _ = SubRangeSampler(stack, ENDLESS, 7, "uniform", 0.5, min_width=0.2).sample(0, 2048)
    np.testing.assert_array_equal(values, again)


def test_the_inference_copy_predicts_like_the_model():
    torch.manual_seed(0)
    model = build_model({**MODEL, "n_q": 80, "n_params": 3}).eval()
    x = torch.cat([torch.randn(5, 80), torch.rand(5, 3) * 0.5, 0.5 + torch.rand(5, 3) * 0.5], dim=1)
    fast = inference_module(model, x[:1])
    assert isinstance(fast, LoweredModule)
    torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="80 Q points \\+ 6 range edges"):
        model(torch.randn(2, 80))


def test_predictions_lie_inside_the_bounds_given(trained):
    bundle, fresh, _, names, family = trained
    lo = family[:, 0] + 0.6 * (family[:, 1] - family[:, 0])
    hi = family[:, 0] + 0.7 * (family[:, 1] - family[:, 0])
    pred = predict(bundle, fresh.nr, {n: [a, b] for n, a, b in zip(names, lo, hi)})
    assert np.all(pred >= lo) and np.all(pred <= hi)
    full = predict(bundle, fresh.nr)  # no bounds: the family's
    assert np.all(full >= family[:, 0]) and np.all(full <= family[:, 1])


def test_narrow_bounds_around_the_truth_give_a_smaller_error_than_the_full_range(trained):
    bundle, fresh, true, names, family = trained
    span = family[:, 1] - family[:, 0]
    rng = np.random.default_rng(5)
    full = np.abs(predict(bundle, fresh.nr) - true) / span
    narrow, middle = [], []
    for curve, t in zip(fresh.nr, true):  # a 30 % range holding the truth, not centred on it
        lo = np.clip(t - rng.uniform(0, 0.3, len(t)) * span, family[:, 0], family[:, 1] - 0.3 * span)
        hi = lo + 0.3 * span
        p = predict(bundle, curve[None], {n: [a, b] for n, a, b in zip(names, lo, hi)})[0]
        narrow.append(np.abs(p - t) / span)
        middle.append(np.abs((lo + hi) / 2 - t) / span)
    narrow, middle = np.array(narrow), np.array(middle)
    print("mean |error| / family span: full", full.mean(0), "narrow", narrow.mean(0), "range middle", middle.mean(0))
    assert narrow.mean() < 0.6 * full.mean()
    assert narrow.mean() < 0.9 * middle.mean()  # it reads the curve, not just the range's middle


def test_bad_bounds_name_what_is_wrong(trained):
    bundle, fresh, _, names, family = trained
    first = names[0]
    with pytest.raises(ValueError, match=f"bounds of '{first}'.*outside the family's range"):
        predict(bundle, fresh.nr[:1], {first: [family[0, 0] - 1.0, family[0, 1]]})
    with pytest.raises(ValueError, match=f"bounds of '{first}' must be finite with lo < hi"):
        predict(bundle, fresh.nr[:1], {first: [family[0, 1], family[0, 0]]})
    with pytest.raises(ValueError, match=r"'nope\.thickness': not a free parameter"):
        predict(bundle, fresh.nr[:1], {"nope.thickness": [0, 1]})


def test_the_prior_bounds_model_trains_on_the_fly_only(tmp_path):
    with pytest.raises(ValueError, match="train it on the fly"):
        TrainRequest(target="params", data=tmp_path, out=tmp_path / "m", model={"kind": "param_bounds"})
    with pytest.raises(ValueError, match="does not fit target 'sld'"):
        TrainRequest(target="sld", data=tmp_path, out=tmp_path / "m", model={"kind": "param_bounds"})


def test_cli_trains_and_predicts_inside_bounds(trained, tmp_path):
    bundle, fresh, _, names, family = trained
    config = tmp_path / "otf.json"
    config.write_text(json.dumps({"on_the_fly": {**SIZES, "generator": GRID}, "model": MODEL}))
    run = [WORKBENCH, "train", "--target", "params", "--model", "param_bounds", "--on-the-fly", "--stack", "default"]
    result = subprocess.run(
        [
            *run,
            "--minutes",
            "0.02",
            "--threads",
            "1",
            "--config",
            str(config),
            "--out",
            str(tmp_path / "cli"),
            "--workspace",
            str(tmp_path / "ws"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert load_model_bundle(tmp_path / "cli").config["model"]["kind"] == "param_bounds"

    curves = tmp_path / "curves.npy"
    np.save(curves, fresh.nr[:5])
    lo, hi = family[0, 0] + 0.25 * (family[0, 1] - family[0, 0]), family[0, 0] + 0.5 * (family[0, 1] - family[0, 0])
    bounds = tmp_path / "bounds.yaml"
    bounds.write_text(f"{names[0]}: [{lo}, {hi}]\n")
    base = [WORKBENCH, "predict", "--model", str(bundle.path), "--input", str(curves), "--bounds", str(bounds)]
    ok = subprocess.run([*base, "--out", str(tmp_path / "p.json")], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    pred = np.load(tmp_path / "p.npy")
    assert pred.shape == (5, len(names)) and np.all((pred[:, 0] >= lo) & (pred[:, 0] <= hi))
    one = subprocess.run([*base, "--index", "2", "--out", str(tmp_path / "one.json")], capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    summary = json.loads((tmp_path / "one.json").read_text())
    assert summary["bounds"][names[0]] == pytest.approx([lo, hi]) and lo <= summary["parameters"][names[0]] <= hi

    bounds.write_text(f"{names[0]}: [{family[0, 0]}, {family[0, 1] + 100}]\n")
    bad = subprocess.run([*base, "--out", str(tmp_path / "bad.json")], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and f"bounds of '{names[0]}'" in bad.stderr
    assert "outside the family's range" in bad.stderr


def test_the_train_panel_offers_the_model_and_trains_it_on_the_fly(tmp_path):
    """Choosing the model in the Train tab ticks 'on the fly' (it learns from fresh ranges per curve) and holds it."""
    from workbench.ui.context import AppContext
    from workbench.ui.train_panel import TrainPanel

    panel = TrainPanel(AppContext(tmp_path / "ws", autosave_delay=0))
    assert not panel.on_the_fly.value
    panel.model_kind.value = "param_bounds"
    assert panel.on_the_fly.value and panel.on_the_fly.disabled and not panel.as_job.disabled  # a job draws too
    panel.model_kind.value = "compact"
    assert not panel.on_the_fly.disabled


@pytest.fixture(scope="module")
def ensemble(trained, tmp_path_factory):
    """A prior-bounds ensemble: the trained model and a second member, saved as an ensemble.

    On the fly, the seed draws the fixed validation and test curves, which the members of an ensemble share
    (load_ensemble checks it); the second member has the first's seed and differs by its learning rate and epochs.
    """
    bundle = trained[0]
    folder = tmp_path_factory.mktemp("ens") / "ens-bounds"
    folder.mkdir()
    shutil.copytree(bundle.path, folder / "member-0")
    request = TrainRequest(
        target="params",
        on_the_fly=OnTheFly.of(small_stack(), generator=GeneratorConfig(**GRID), batches_per_epoch=20, **SIZES),
        model=MODEL,
        out=folder / "member-1",
        train=TrainConfig(epochs=2, batch_size=64, learning_rate=1e-3, threads=1, seed=3),
    )
    assert run_training(request).status == "completed"
    write_ensemble_info(folder, {"name": "ens-bounds", "members": ["member-0", "member-1"], "seeds": [3, 3]})
    return load_model(folder)


def test_a_prior_bounds_ensemble_gives_bands_inside_the_bounds_given(ensemble, trained):
    _, fresh, _, names, family = trained
    r = fresh.nr[:8]
    full = ensemble_bands(ensemble, r)  # the training ranges
    assert full.names == names and full.center.shape == (8, len(names))
    lo = family[:, 0] + 0.3 * (family[:, 1] - family[:, 0])
    hi = family[:, 0] + 0.6 * (family[:, 1] - family[:, 0])
    given = {n: [a, b] for n, a, b in zip(names, lo, hi)}
    bands = ensemble_bands(ensemble, r, bounds=given)
    members = np.stack([predict(m, r, given) for m in ensemble.members])
    np.testing.assert_allclose(bands.center, members.mean(axis=0))
    assert not np.allclose(bands.center, full.center)  # the members read the ranges
    for level in LEVELS:
        band_lo, band_hi = bands.bands[level]
        assert np.all(band_lo >= lo - 1e-9) and np.all(band_hi <= hi + 1e-9) and np.all(band_lo <= band_hi)
        full_lo, full_hi = full.bands[level]
        assert np.all(full_lo >= family[:, 0] - 1e-9) and np.all(full_hi <= family[:, 1] + 1e-9)
    assert np.mean(bands.bands["95 %"][1] - bands.bands["95 %"][0]) > 0
    for row in bands.table(3):
        assert row["lo95"] <= row["lo68"] <= row["value"] <= row["hi68"] <= row["hi95"]
    with pytest.raises(ValueError, match=f"bounds of '{names[0]}'.*outside the family's range"):
        ensemble_bands(ensemble, r, bounds={names[0]: [family[0, 0] - 5.0, family[0, 1]]})


def test_the_predict_panel_takes_bounds_for_a_prior_bounds_ensemble(ensemble, trained, shared_data, tmp_path):
    from workbench.ui.context import AppContext
    from workbench.ui.predict_panel import PredictPanel

    _, _, _, names, family = trained
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    shutil.copytree(ensemble.path, ctx.workspace.models / "ens-bounds")
    shutil.copy(shared_data / "real" / "ornl-ref-l-212592" / "REFL_212592_reduced.txt", ctx.measured_dir)
    panel = PredictPanel(ctx)
    panel.model.value = str(ctx.workspace.models / "ens-bounds")
    assert panel.bounds.active and panel.bounds.names == names
    np.testing.assert_array_equal(panel.bounds.family, family)
    panel.source.value = "file"
    panel.measured.value = str(ctx.measured_dir / "REFL_212592_reduced.txt")
    name = names[0]
    lo, hi = family[0, 0] + 0.5 * (family[0, 1] - family[0, 0]), family[0, 1]
    panel.bounds.set(name, lo, hi)
    panel.run.click()
    assert panel.status.level == "ok", panel.status.text
    p = ctx.prediction
    assert p.bands is not None and p.bands.names == names and lo <= p.parameters[name] <= hi
    row = p.bands.table()[0]
    assert lo - 1e-9 <= row["lo95"] <= row["lo68"] <= row["value"] <= row["hi68"] <= row["hi95"] <= hi + 1e-9
    assert "Ensemble of 2 models" in panel.metrics.value and "95 % interval" in panel.metrics.value
    assert f"inside your prior bounds: {name} {lo:.4g}–{hi:.4g}" in html.unescape(panel.metrics.value)
    # a plain parameter model or an SLD model shows no bounds box
    panel.bounds.set_model(None)
    assert not panel.bounds.active and panel.bounds.layout.display == "none"

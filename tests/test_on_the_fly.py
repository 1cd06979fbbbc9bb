"""On-the-fly training: fresh seeded curves every batch, reproducible, unrepeated, ties held, bundles that predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small_stack

from workbench.analysis.predict import predict
from workbench.data.family import SampleFamily
from workbench.data.generate import GeneratorConfig, generate
from workbench.data.preprocess import PreprocessConfig
from workbench.store.model_bundle import load_model_bundle
from workbench.store.registry import Registry
from workbench.training import TrainConfig
from workbench.training.nr_workflow import prepare
from workbench.training.on_the_fly import CurveStream, OnTheFly, fixed_sets, train_on_the_fly
from workbench.workflows.training import TrainRequest, run_training

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
GRID = {"num_q": 80, "sld_points": 60}
SIZES = {"fit_curves": 256, "val_curves": 128, "test_curves": 128}
TINY = {"width": 8, "stages": 3, "latent": 32}


def settings(stack=None, **kw) -> OnTheFly:
    values = {"generator": GeneratorConfig(**GRID), "batches_per_epoch": 8, **SIZES, **kw}
    return OnTheFly.of(stack or small_stack(), **values)


def multilayer_family():
    """Si / SiOx / 3 × [PEO | dPS] / air with every repeat tied and the PEO and dPS thicknesses swelling together."""
    layers = [
        {"name": "Si", "sld": 2.07, "roughness": 3},
        {"name": "SiOx", "sld": 3.47, "thickness": 12, "roughness": 3},
        {
            "repeat": 3,
            "layers": [{"name": "PEO", "sld": 0.6, "thickness": 33}, {"name": "dPS", "sld": 6.0, "thickness": 40}],
        },
        {"name": "air"},
    ]
    family = {"name": "PEO/dPS", "layers": layers, "ranges": {"thickness": "20%", "sld": 0.5, "roughness": 5}}
    family["ties"] = [{"together": ["PEO_*.thickness", "dPS_*.thickness"]}]
    return SampleFamily.from_dict(family).expand()


def stream_of(s: OnTheFly, target: str, seed: int = 0) -> CurveStream:
    ds, split = fixed_sets(s, seed)
    return CurveStream(s, seed, prepare(ds, target, PreprocessConfig(seed=seed), split), target)


def take(stream: CurveStream, start: int, batches: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    stream.start(start)
    try:
        parts = [stream.take(start + k * size, size) for k in range(batches)]
    finally:
        stream.close()
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def test_the_stream_is_a_uniform_data_set_of_its_seed_preprocessed_as_a_stored_one():
    s = settings()
    stream = stream_of(s, "params", seed=5)
    x, y = take(stream, 0, 40, 64)  # 2560 curves: three producer blocks
    stored = generate(small_stack(), GeneratorConfig(**GRID, num_curves=2560, seed=5, sampling="uniform"))
    np.testing.assert_array_equal(x, stream.prep.x.transform(stored.nr))
    np.testing.assert_array_equal(y, stream.prep.y.transform(stored.params))
    # a resumed run restarts mid-block at exactly the batch it reached
    x_late, _ = take(stream, 1000, 3, 64)
    np.testing.assert_array_equal(x_late, x[1000:1192])


def test_no_curve_repeats_across_batches_or_with_the_fixed_sets():
    s = settings()
    _, y = take(stream_of(s, "params"), 0, 50, 64)
    ds, _ = fixed_sets(s, 0)
    free = [ds.parameter_names.index(n) for n in ("layer_1.roughness", "layer_2.sld", "layer_2.thickness")]
    rows = np.concatenate([y, ds.params[:, free]])
    assert y.shape == (3200, 3) and len(np.unique(rows, axis=0)) == len(rows)


def test_ties_of_a_family_hold_in_every_generated_batch():
    family = multilayer_family()
    s = settings(family)
    stream = stream_of(s, "params")
    _, y = take(stream, 0, 20, 64)
    assert y.shape[1] == family.drawn_parameters  # one target per tie, none per follower
    data = generate(family, GeneratorConfig(**GRID, num_curves=1280, sampling="uniform"))
    np.testing.assert_array_equal(y, stream.prep.y.transform(data.params))  # those batches' curves
    names = data.parameter_names
    p = data.params
    for layer in ("PEO", "dPS"):
        for par in ("sld", "roughness"):
            cols = [names.index(f"{layer}_{k}.{par}") for k in (1, 2, 3)]
            assert np.all(p[:, cols] == p[:, cols[:1]])  # the repeats share one value
    thick = [names.index(n) for n in ("PEO_1.thickness", "dPS_1.thickness", "PEO_3.thickness")]
    spans = {n: (0.8 * v, 1.2 * v) for n, v in (("PEO", 33), ("dPS", 40))}
    fraction = [(p[:, c] - spans[names[c][:3]][0]) / np.diff(spans[names[c][:3]])[0] for c in thick]
    np.testing.assert_allclose(fraction[0], fraction[1], atol=1e-9)  # PEO and dPS swell by one factor
    np.testing.assert_allclose(fraction[0], fraction[2], atol=1e-9)
    assert fraction[0].std() > 0.2  # and it varies


def test_the_same_seed_trains_the_same_model_another_seed_another():
    def run(seed: int):
        out = train_on_the_fly(
            settings(),
            target="sld",
            model=TINY,
            train=TrainConfig(epochs=2, batch_size=32, seed=seed, threads=1),
        )
        return out.model.state_dict(), [h["val_loss"] for h in out.result.history], out

    w1, h1, out = run(4)
    w2, h2, _ = run(4)
    _, h3, _ = run(5)
    assert all(torch.equal(w1[k], w2[k]) for k in w1) and h1 == h2
    assert h1 != h3
    stats = out.bundle_contents["train"]["on_the_fly"]
    assert stats["curves_trained"] == 2 * 8 * 32 and stats["curves_produced"] >= 1024


def test_a_params_bundle_trained_on_the_fly_predicts_its_family(tmp_path):
    request = TrainRequest(
        target="params",
        on_the_fly=settings(batches_per_epoch=25),
        out=tmp_path / "m",
        train=TrainConfig(epochs=3, batch_size=64, learning_rate=3e-3, threads=1),
    )
    outcome = run_training(request, registry=Registry(tmp_path / "registry.sqlite"))
    assert outcome.status == "completed" and outcome.summary["data_mode"] == "on-the-fly"
    bundle = load_model_bundle(outcome.bundle)
    assert bundle.config["data"]["on_the_fly"] is True
    fresh = generate(small_stack(), GeneratorConfig(**GRID, num_curves=200, seed=99))  # curves it never saw
    pred = predict(bundle, fresh.nr)
    names = bundle.config["data"]["parameters"]["names"]
    true = fresh.params[:, [fresh.parameter_names.index(n) for n in names]]
    r2 = 1 - ((pred - true) ** 2).sum(0) / ((true - true.mean(0)) ** 2).sum(0)
    assert np.median(r2) > 0.5, dict(zip(names, r2))


def test_request_needs_one_source_of_curves(tmp_path):
    with pytest.raises(ValueError, match="give a data set"):
        TrainRequest(out=tmp_path / "m")
    with pytest.raises(ValueError, match="not both"):
        TrainRequest(data=tmp_path, on_the_fly=settings(), out=tmp_path / "m")
    with pytest.raises(ValueError, match="no varying parameter"):
        OnTheFly.of(small_stack().model_copy(update={"bounds": []}))


def test_cli_trains_on_the_fly_against_the_clock_and_records_the_mode(tmp_path):
    config = tmp_path / "otf.json"
    config.write_text(json.dumps({"on_the_fly": {**SIZES, "generator": GRID}, "model": TINY}))
    result = subprocess.run(
        [
            *(WORKBENCH, "train", "--on-the-fly", "--stack", "default", "--minutes", "0.05", "--threads", "1"),
            *("--config", str(config), "--out", str(tmp_path / "m"), "--workspace", str(tmp_path / "ws")),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "time budget of 0.05 min reached" in result.stdout and "wrote model bundle" in result.stdout
    run = Registry(tmp_path / "ws" / "registry.sqlite").list_runs(kind="train")[0]
    assert run.params["on_the_fly"]["stack"]["layer_desc"][0]["name"] == "substrate" and run.params["data"] is None
    assert run.metrics["data_mode"] == "on-the-fly" and run.metrics["curves_trained"] > 0
    bad = subprocess.run(
        [WORKBENCH, "train", "--on-the-fly", "--data", str(tmp_path), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "give --data or --on-the-fly, not both" in bad.stderr


def test_train_panel_trains_on_the_fly_pauses_and_resumes_at_the_batch_it_reached(tmp_path):
    from workbench.ui.context import AppContext  # the panel test only: ipywidgets
    from workbench.ui.train_panel import TrainPanel

    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = TrainPanel(ctx)
    panel.on_the_fly.value = True
    assert panel.dataset.layout.display == "none" and panel.batches_per_epoch.layout.display == ""
    assert panel.as_job.value  # on the fly too, a job process draws the curves from the request's stack
    # epochs long enough that Pause (a registry command the job polls) lands inside the second one
    panel.epochs.value, panel.batch_size.value, panel.batches_per_epoch.value = 2, 32, 300
    panel.width.value, panel.name.value = 8, "fly"
    panel.start.click()
    deadline = time.time() + 120
    while len(panel.history) < 1 and time.time() < deadline:
        time.sleep(0.05)
    panel.pause.click()
    panel.job.join(300)
    assert "paused" in panel.status.text, panel.status.text
    panel.resume.click()
    panel.job.join(300)
    assert "completed" in panel.status.text, panel.status.text
    run = ctx.registry().get_run(panel.last_run_id)
    assert run.status == "completed" and run.metrics["data_mode"] == "on-the-fly"
    assert run.job is not None and run.pid != os.getpid()
    assert 0 < run.metrics["curves_trained"] < 2 * 300 * 32  # the resumed part: the rest was trained before the pause
    assert [h["epoch"] for h in panel.history] == [1, 2]
    assert load_model_bundle(tmp_path / "ws" / "models" / "fly").config["data"]["on_the_fly"] is True


def test_cli_detaches_a_training_on_the_fly_as_a_job(tmp_path):
    """`train --on-the-fly --detach`: the request carries the stack, so a job process draws the curves itself."""
    from workbench.batch.jobs import wait_for_job

    config = tmp_path / "otf.json"
    config.write_text(json.dumps({"on_the_fly": {**SIZES, "generator": GRID}, "model": TINY}))
    result = subprocess.run(
        [
            *(WORKBENCH, "train", "--on-the-fly", "--stack", "default", "--minutes", "0.05", "--threads", "1"),
            *("--config", str(config), "--out", str(tmp_path / "m"), "--workspace", str(tmp_path / "ws"), "--detach"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    run_id = next(w for w in result.stdout.split() if "-train-" in w)
    run = wait_for_job(Registry(tmp_path / "ws" / "registry.sqlite"), run_id, timeout=300)
    assert run.status == "completed", run.error
    assert run.metrics["data_mode"] == "on-the-fly" and run.job is not None
    assert load_model_bundle(tmp_path / "m").config["data"]["on_the_fly"] is True


def test_train_panel_trains_an_ensemble_in_the_page_and_a_stopped_one_leaves_nothing(tmp_path):
    """'ensemble members' 2, trained in the kernel: both members on one loss chart, the bands' coverage shown,
    the ensemble announced to the Predict tab; a second one stopped during its first member writes nothing."""
    from workbench.store.model_bundle import is_ensemble, load_model
    from workbench.ui.context import AppContext  # the panel test only: ipywidgets
    from workbench.ui.train_panel import TrainPanel

    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    announced = []
    ctx.follow("bundle", announced.append)
    panel = TrainPanel(ctx)
    panel.on_the_fly.value, panel.as_job.value = True, False
    panel.held_out.value, panel.batches_per_epoch.value = 32, 2
    panel.epochs.value, panel.batch_size.value, panel.width.value = 2, 16, 8
    panel.members.value, panel.name.value = 2, "ens"
    panel.start.click()
    assert panel.pause.disabled and not panel.stop.disabled  # an ensemble stops, it does not pause
    panel.job.join(300)
    assert panel.status.level == "ok" and "ensemble of 2 models trained in" in panel.status.text, panel.status.text
    folder = tmp_path / "ws" / "models" / "ens"
    assert is_ensemble(folder) and len(load_model(folder).members) == 2 and announced[-1] == folder
    assert [h["epoch"] for h in panel.history] == [1, 2, 3, 4]
    assert [h["member"] for h in panel.history] == [1, 1, 2, 2]
    assert list(panel.loss.data[0].x) == [1, 2, 3, 4]
    assert "68 % band: covers" in panel.metrics.value
    assert ctx.registry().get_run(panel.last_run_id).kind == "ensemble"
    assert ctx.panel_settings("train")["ensemble_members"] == 2  # saved with the page's settings
    from workbench.ui.history_panel import HistoryPanel, kind_options

    assert "ensemble" in [value for _, value in HistoryPanel(ctx).kind.options]
    order = [value for _, value in kind_options({"sweep", "search", "ensemble", "train"})]
    assert order == ["", "train", "ensemble", "sweep", "search"]  # next to the trainings, in the loop's order

    panel.name.value, panel.batches_per_epoch.value = "ens2", 10_000
    panel.start.click()
    deadline = time.time() + 120
    while panel.progress.value < 1 and time.time() < deadline:  # the first member's batches are running
        time.sleep(0.05)
    panel.stop.click()
    panel.job.join(120)
    assert panel.status.level == "warn" and "nothing was saved" in panel.status.text, panel.status.text
    assert not (tmp_path / "ws" / "models" / "ens2").exists()
    assert not [p for p in (tmp_path / "ws" / "models").iterdir() if p.name.startswith(".")]


def test_cli_trains_an_ensemble_on_the_fly_with_bands_calibrated_on_unseen_curves(tmp_path, capsys):
    from workbench.cli.main import main
    from workbench.store.model_bundle import load_model, read_ensemble_info

    config = tmp_path / "otf.json"
    config.write_text(json.dumps({"on_the_fly": {**SIZES, "generator": GRID, "batches_per_epoch": 2}, "model": TINY}))
    out = tmp_path / "ens"
    args = ["ensemble", "--members", "2", "--on-the-fly", "--stack", "default", "--epochs", "2", "--threads", "1"]
    assert main([*args, "--config", str(config), "--out", str(out), "--workspace", str(tmp_path / "ws")]) == 0
    printed = capsys.readouterr().out
    assert f"ensemble of 2 models written to {out}" in printed and "68 % band: covers" in printed
    info = read_ensemble_info(out)
    assert info["calibration_seed"] == 2 and info["calibration"]["test_curves"] == SIZES["test_curves"]
    members = load_model(out).members
    assert [m.config["train"]["seed"] for m in members] == [0, 1]
    assert all(m.config["data"]["on_the_fly"] for m in members)

"""How far to trust a prediction on a measured curve: χ²/N with its N, the training distribution, bounds, verdict."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from workbench.analysis.predict import predict_measurement
from workbench.analysis.trust import (
    OUTSIDE_PERCENTILE,
    assess,
    at_bounds,
    fit_input_distribution,
    input_distance,
)
from workbench.cli.main import main as workbench
from workbench.data.generate import GeneratorConfig, generate, generate_to_disk
from workbench.data.measured import Measurement
from workbench.data.realism import Realism
from workbench.physics import FilmStack, Probe, reflectivity
from workbench.store.model_bundle import load_model_bundle
from workbench.training.trainer import TrainConfig
from workbench.ui.context import AppContext
from workbench.ui.predict_panel import PredictPanel
from workbench.workflows.training import TrainRequest, run_training

TINY = {"width": 8, "stages": 3, "latent": 32}
REAL = "real/ornl-ref-l-212592/REFL_212592_reduced.txt"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace with a default-family data set (1000 curves) and one-epoch SLD and parameter models."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ws")
    ctx = AppContext(root, autosave_delay=0)
    config = GeneratorConfig(num_curves=1000, seed=5, sld_points=120)
    ds = generate_to_disk(FilmStack.default(), config, ctx.workspace.datasets / "ds", progress=False)
    for target, name, model, scaling in (
        ("sld", "sld1", TINY, "minmax"),
        ("params", "par1", {}, "minmax"),
        ("sld", "sld-standard", TINY, "standard"),
    ):
        run_training(
            TrainRequest(
                target=target,
                data=ds,
                out=ctx.workspace.models / name,
                name=name,
                model=model,
                train=TrainConfig(epochs=1, batch_size=32, device="cpu", scaling=scaling),
            )
        )
    return root


def family(changed: dict[tuple[int, str], tuple[float, float]]) -> FilmStack:
    """The default family with some bounds replaced: (layer index, parameter) → (lo, hi)."""
    s = FilmStack.default()
    bounds = s.to_layer_bound()
    for b in bounds:
        if (b["i"], b["par"]) in changed:
            b["bounds"] = list(changed[(b["i"], b["par"])])
    return FilmStack.from_pyreflect(s.to_layer_desc(), bounds)


def measurements(stack: FilmStack, n: int, seed: int, noise: bool = False) -> list[Measurement]:
    """``n`` curves of a family on the default grid as measurements (with REF_L-like counting noise and dR if asked)."""
    config = GeneratorConfig(num_curves=n, seed=seed, sld_points=120, realism=Realism(counting_noise=noise))
    g = generate(stack, config)
    probe = config.probe()
    nr = np.asarray(g.nr, dtype=np.float64)
    return [
        Measurement(
            q=nr[k, 0],
            r=nr[k, 1],
            dr=None if g.dr is None else np.asarray(g.dr[k], dtype=np.float64),
            dq_sigma=probe.sigma,
            source=f"curve {k}",
            dq_convention_of_file="sigma",
        )
        for k in range(n)
    ]


def test_training_keeps_the_held_out_distances_in_the_bundle(workspace):
    bundle = load_model_bundle(workspace / "models" / "sld1")
    dist = bundle.normalization["input_distribution"]
    assert dist["train_curves"] == 800 and dist["held_out_curves"] == 100  # the 80/10/10 split's train and val rows
    q = np.asarray(dist["quantiles"])
    assert np.all(np.diff(q) >= 0) and 0.5 < q[dist["percentiles"].index(50.0)] < 1.5  # a typical curve is ≈ 1


@pytest.mark.parametrize("model", ["sld1", "par1", "sld-standard"])
def test_a_much_thicker_film_is_outside_the_training_distribution_and_the_family_is_not(workspace, model):
    bundle = load_model_bundle(workspace / "models" / model)
    # layer_2 at 2000–2500 Å with sharp interfaces: the default family reaches at most 240 Å
    thick = family({(3, "thickness"): (2000, 2500), (3, "roughness"): (3, 6), (5, "roughness"): (3, 6)})
    outside = [predict_measurement(bundle, m).trust for m in measurements(thick, 10, seed=11)]
    assert sum(t.outside_training for t in outside) >= 9, [t.distance for t in outside]
    flagged = next(t for t in outside if t.outside_training)
    assert flagged.level == "warn" and "outside the training distribution" in flagged.words
    assert f"{OUTSIDE_PERCENTILE:g} % lie within" in flagged.words
    inside = [predict_measurement(bundle, m).trust for m in measurements(FilmStack.default(), 10, seed=12)]
    assert sum(t.outside_training for t in inside) <= 1, [t.distance for t in inside]
    assert all(t.chi2_per_point is None and "outside the training" not in t.words for t in inside if t.percentile < 99)
    # with REF_L-like counting noise and its error bars the family's curves stay inside: the noise is allowed for
    noisy = [predict_measurement(bundle, m).trust for m in measurements(FilmStack.default(), 10, seed=13, noise=True)]
    assert sum(t.outside_training for t in noisy) <= 1, [t.distance for t in noisy]


def test_chi2_is_over_the_points_inside_the_models_q_range_and_says_so(workspace):
    bundle = load_model_bundle(workspace / "models" / "par1")
    q = np.geomspace(0.005, 0.3, 400)
    stack = FilmStack.default()
    probe = Probe(q, dq_over_q=0.03, dq_is_fwhm=True)
    r = reflectivity(stack, probe)[0]
    dr = 0.05 * r
    m = Measurement(q=q, r=r, dr=dr, dq_sigma=probe.sigma, source="wide", dq_convention_of_file="sigma")
    result = predict_measurement(bundle, m)  # the measurement covers the model's whole grid and more
    q_model = np.asarray(bundle.config["data"]["q"])
    inside = (q >= q_model[0]) & (q <= q_model[-1])
    below, above = int((q < q_model[0]).sum()), int((q > q_model[-1]).sum())
    t = result.trust
    assert t.n_points == inside.sum() == 400 - below - above and below > 0 and above > 0
    expected = np.mean(((r[inside] - result.computed[inside]) / dr[inside]) ** 2)
    assert t.chi2_per_point == pytest.approx(expected) == pytest.approx(result.metrics["chi2_per_point"])
    assert f"{below} below Q {q_model[0]:.4g} and {above} above Q {q_model[-1]:.4g}" in t.left_out
    assert f"{below + above} measured points outside the model's Q range left out" in t.words
    assert f"over {inside.sum()} points" in t.words


def test_a_parameter_at_a_bound_is_named_with_its_value_and_bound():
    names = ["layer_2.thickness", "layer_2.sld", "siox.roughness"]
    bounds = np.array([[117.4, 239.91], [1.64, 3.10], [1.108, 2.998]])
    hits = at_bounds(names, np.array([237.0, 2.4, 1.12]), bounds)  # 237 of 240 Å: 2.4 % of the range — not at it
    assert hits == ["siox.roughness 1.12 at its minimum 1.108"]
    hits = at_bounds(names, np.array([238.9, 2.4, 2.0]), bounds)  # 1.01 Å from the top of a 122.5 Å range: < 1 %
    assert hits == ["layer_2.thickness 238.9 at its maximum 239.9"]
    t = assess(1.2, 250, None, None, None, hits)
    assert t.level == "warn" and "1 predicted at a bound of the family (layer_2.thickness 238.9 at its max" in t.words
    assert "training distribution unknown" in t.words
    ok = assess(1.2, 250, None, None, None, [])
    assert ok.level == "ok" and "χ²/N 1.2 over 250 points" in ok.words and "unknown" in ok.words


def test_the_distance_grows_off_the_training_curves():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(3, 50))
    train = rng.normal(size=(400, 3)) @ basis + 0.01 * rng.normal(size=(400, 50))
    held = rng.normal(size=(100, 3)) @ basis + 0.01 * rng.normal(size=(100, 50))
    dist = fit_input_distribution(train, held)
    assert len(dist["components"]) <= 32 and 0.5 < np.median(input_distance(dist, held)) < 2  # typical: ≈ 1
    off = held[:5] + 0.2 * rng.normal(size=(5, 50))  # structure off the training curves' directions
    assert np.all(input_distance(dist, off) > 5 * dist["quantiles"][-1])
    # noise of the measurement's own size is allowed for
    assert np.all(input_distance(dist, off, noise_variance=np.full(50, 0.04)) < 2 * dist["quantiles"][-1])


def test_an_older_bundle_without_the_distribution_says_unknown(workspace, shared_data):
    bundle = load_model_bundle(workspace / "models" / "sld1")
    del bundle.normalization["input_distribution"]
    m = measurements(FilmStack.default(), 1, seed=12)[0]
    t = predict_measurement(bundle, m).trust
    assert t.distance is None and t.outside_training is None and "training distribution unknown" in t.words


def test_the_real_multilayer_is_not_trusted_by_a_default_family_model(workspace, shared_data):
    """REF_L run 212592 (742 Å, 20 PEO/dPS layers): the default family cannot describe it, and the verdict says so."""
    from workbench.data.measured import load_measurement

    for model in ("sld1", "par1"):
        bundle = load_model_bundle(workspace / "models" / model)
        with pytest.warns(UserWarning, match="model points were filled"):
            t = predict_measurement(bundle, load_measurement(shared_data / REAL)).trust
        assert t.level == "warn" and t.chi2_per_point > 10, t.words
        assert f"over {t.n_points} points" in t.words and 300 < t.n_points < 400
        assert "measured points outside the model's Q range left out" in t.words and "above Q 0.1975" in t.left_out


def test_the_predict_panel_shows_the_verdict(workspace, shared_data):
    ctx = AppContext(workspace, autosave_delay=0)
    shutil.copy(shared_data / REAL, ctx.measured_dir)
    panel = PredictPanel(ctx)
    panel.model.value = str(workspace / "models" / "par1")
    panel.source.value = "file"
    panel.measured.value = str(ctx.measured_dir / "REFL_212592_reduced.txt")
    panel.run.click()
    assert panel.status.level == "ok", panel.status.text
    assert "wb-trust" in panel.trust._dom_classes
    shown = panel.trust.value
    assert "wb-warn" in shown and "do not trust as is" in shown and "#9a6700" in shown
    assert ctx.prediction.trust.level == "warn"
    run = ctx.registry().list_runs(kind="predict")[0]
    assert run.metrics["trust"] == "warn"
    panel.source.value = "sample"  # a test sample has its truth beside it: no verdict shown
    panel.dataset.value = str(workspace / "datasets" / "ds")
    panel.run.click()
    assert panel.status.level == "ok" and panel.trust.value == ""


def test_the_cli_prints_the_verdict_and_writes_it(workspace, shared_data, tmp_path, capsys):
    out = tmp_path / "p.json"
    args = ["predict", "--model", str(workspace / "models" / "sld1"), "--input", str(shared_data / REAL)]
    assert workbench([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "⚠ trust: warn: do not trust as is: χ²/N" in printed
    trust = json.loads(out.read_text())["trust"]
    assert trust["level"] == "warn" and trust["chi2_points"] > 300 and trust["verdict"] in printed
    assert trust["training_distance"] > 0 and trust["training_threshold"] > 0

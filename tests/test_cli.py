"""The installed ``workbench`` console script."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from workbench.physics import FilmStack, Probe, reflectivity

WORKBENCH = str(Path(sys.executable).with_name("workbench"))


def test_report_writes_an_interactive_html_of_the_default_stack(tmp_path):
    out = tmp_path / "report.html"
    result = subprocess.run([WORKBENCH, "report", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    html = out.read_text()
    assert "Plotly.newPlot" in html and "plotly.js" in html.lower()  # self-contained, works offline
    # the figure carries the real curve of the default stack
    spec = json.loads(re.search(r'Plotly\.newPlot\(\s*"[^"]+",\s*(\[.*?\]),\s*\{', html, re.DOTALL).group(1))
    curve = next(trace for trace in spec if trace["name"] == "R(Q)")
    expected = reflectivity(FilmStack.default(), Probe())[0]
    y = curve["y"]
    y = (
        np.frombuffer(__import__("base64").b64decode(y["bdata"]), dtype=y["dtype"])
        if isinstance(y, dict)
        else np.asarray(y)
    )
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    assert any(trace["name"] == "ρ (SLD)" for trace in spec)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically


def test_bad_input_exits_with_a_clear_message(tmp_path):
    out = tmp_path / "report.html"
    out.write_text("previous report")
    result = subprocess.run(
        [WORKBENCH, "report", "--q-min", "0.3", "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2
    assert "qMax must be greater than qMin" in result.stderr
    assert out.read_text() == "previous report"  # nothing already saved is lost


def test_generate_writes_a_bundle_from_a_yaml_config(tmp_path):
    from workbench.data.dataset import load_dataset
    from workbench.physics import FilmStack

    stack = FilmStack.default()
    config = tmp_path / "gen.yaml"
    import yaml

    config.write_text(
        yaml.safe_dump(
            {
                "num_curves": 1500,
                "seed": 7,
                "sampling": "uniform",
                "sld_points": 200,
                "stack": {"layer_desc": stack.to_layer_desc(), "layer_bound": stack.to_layer_bound()[:4]},
            }
        )
    )
    out = tmp_path / "ds"
    result = subprocess.run(
        [WORKBENCH, "generate", "--config", str(config), "--out", str(out), "--seed", "8"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    ds = load_dataset(out, verify_hash=True)
    assert ds.n == 1500 and ds.sld.shape == (1500, 2, 200) and len(ds.parameter_names) == 4
    assert ds.meta["seed"] == 8 and ds.meta["generator"]["sampling"] == "uniform"  # flags override the file
    again = subprocess.run(
        [WORKBENCH, "generate", "--out", str(out), "--num-curves", "10"], capture_output=True, text=True, timeout=300
    )
    assert again.returncode == 2 and "already holds a data set" in again.stderr and "--overwrite" in again.stderr


def test_generate_reports_bad_settings_by_name(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_curves: many\n")
    result = subprocess.run(
        [WORKBENCH, "generate", "--config", str(bad), "--out", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "num_curves" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = subprocess.run(
        [WORKBENCH, "generate", "--config", str(broken), "--out", str(tmp_path / "y")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "broken.json: not valid JSON" in result.stderr
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_train_then_predict_a_measured_file(tmp_path, shared_data):
    data = tmp_path / "ds"
    assert (
        subprocess.run(
            [WORKBENCH, "generate", "--out", str(data), "--num-curves", "400", "--sld-points", "100"],
            capture_output=True,
            timeout=300,
        ).returncode
        == 0
    )
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"batch_size": 32, "model": {"width": 8, "stages": 3, "latent": 32}}))
    model = tmp_path / "model"
    train = ["--data", str(data), "--out", str(model), "--config", str(config), "--epochs", "1"]
    result = subprocess.run(
        [WORKBENCH, "train", *train, "--threads", "1", "--minutes", "5"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "epoch 1: train" in result.stdout and "sld_r2" in result.stdout and (model / "model.safetensors").exists()
    assert "completed after 1 epochs (completed all 1 epochs); kept the weights of epoch 1" in result.stdout
    assert "1 CPU threads" in result.stdout
    out = tmp_path / "prediction.json"
    measured = shared_data / "real/ornl-ref-l-212592/REFL_212592_reduced.txt"
    result = subprocess.run(
        [WORKBENCH, "predict", "--model", str(model), "--input", str(measured), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "model points were filled" in result.stderr  # REF_L reaches beyond the model's Q range
    summary = json.loads(out.read_text())
    assert len(summary["profile"]["sld"]) == 100 and len(summary["computed"]["r"]) == 350
    assert np.isfinite(summary["metrics"]["chi2_per_point"])

    # an SLD model starts a refinement: its profile fitted by the stack family it was trained on; and the
    # default stack starts one without a stack file
    for start, words in (
        (["--model", str(model)], "predicted profile, fitted by its stack family"),
        (["--stack", "default"], "the default stack"),
    ):
        fit = tmp_path / f"fit-{start[0][2:]}"
        result = subprocess.run(
            [WORKBENCH, "refine", str(measured), *start, "--max-nfev", "30", "--out", str(fit)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        refined = json.loads((fit / "refinement.json").read_text())
        assert words in refined["start"] and refined["chi2_per_point"] < refined["start_chi2_per_point"]


def test_chi_workflow_from_the_command_line(tmp_path, shared_data):
    model = tmp_path / "chi"
    folder = shared_data / "chi-scft"
    result = subprocess.run(
        [WORKBENCH, "train", "--target", "chi", "--data", str(folder), "--out", str(model), "--epochs", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "chi_AB" in result.stdout and (model / "model.safetensors").exists()
    out = tmp_path / "chi.json"
    result = subprocess.run(
        [WORKBENCH, "predict", "--model", str(model), "--input", str(folder / "experiment.txt"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    prediction = json.loads(out.read_text())["predictions"][0]
    assert set(prediction["chi"]) == {"chi_AB", "chi_substrate", "chi_air"}
    assert (
        prediction["unlike_training_profiles"] and "FLAGGED" in result.stdout
    )  # the measured profile is unlike any SCFT one


def test_a_stack_file_outside_nevot_croces_range_is_warned_about_not_refused(capsys):
    from workbench.cli.stacks import parse_stack
    from workbench.physics import FilmStack

    default = FilmStack.default()
    stack = parse_stack({"layer_desc": default.to_layer_desc(), "layer_bound": default.to_layer_bound()}, "stack.yaml")
    assert len(stack.layers) == len(FilmStack.default().layers)
    err = capsys.readouterr().err
    assert "warning: stack.yaml: layer 6 ('layer_5'): roughness 76.63 Å" in err and "Névot–Croce" in err

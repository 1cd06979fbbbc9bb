"""A model trained in pyreflect (its .pth and normalisation .npy) predicts in the workbench exactly as in pyreflect."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pyreflect_support import pyreflect_cnn_class, pyreflect_data_processor

from workbench.analysis.predict import predict, uniform_z
from workbench.physics import FilmStack, Probe, reflectivity, sld_profile
from workbench.store.model_bundle import load_model_bundle
from workbench.store.pyreflect_import import bundle_from_pyreflect, read_pyreflect_stats


@pytest.fixture
def pyreflect_model(tmp_path):
    """What a pyreflect user has after training: the CNN's state_dict and the statistics file."""
    dp = pyreflect_data_processor()
    rng = np.random.default_rng(3)
    base = FilmStack.default()
    stacks = [
        base.with_value(3, "thickness", float(t)).with_value(2, "sld", float(s))
        for t, s in zip(rng.uniform(80, 300, 12), rng.uniform(1.0, 4.0, 12), strict=True)
    ]
    probe = Probe()
    nr = np.stack([np.stack([probe.q, reflectivity(s, probe)[0]]) for s in stacks])  # (N, 2, 308)
    z, rho, _ = sld_profile(stacks, n_points=900)
    sld = np.stack([z, rho], axis=1)  # (N, 2, 900)
    log_nr = nr.copy()
    log_nr[:, 1] = np.log10(np.clip(log_nr[:, 1], 1e-8, None))
    stats = {
        "nr": dp.DataProcessor.get_xy_norm_stats(None, log_nr),
        "sld": dp.DataProcessor.get_xy_norm_stats(None, sld),
    }
    np.save(tmp_path / "normalization_stat.npy", stats, allow_pickle=True)  # as pyreflect's preprocess() does
    torch.manual_seed(1)
    cnn = pyreflect_cnn_class()(layers=4, dropout_prob=0.1)
    for m in cnn.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    torch.save(cnn.state_dict(), tmp_path / "trained_nr_sld_model.pth")
    return {"dp": dp, "cnn": cnn.eval(), "nr": nr, "stats": stats, "dir": tmp_path}


def test_the_bundle_predicts_what_pyreflect_predicts(pyreflect_model, tmp_path):
    m = pyreflect_model
    folder = bundle_from_pyreflect(
        m["dir"] / "trained_nr_sld_model.pth", m["dir"] / "normalization_stat.npy", tmp_path / "bundle"
    )
    bundle = load_model_bundle(folder)
    assert bundle.task == "nr_sld"
    np.testing.assert_allclose(bundle.config["data"]["q"], Probe().q, rtol=1e-6)  # pyreflect's Q grid, from the stats
    ours = predict(bundle, m["nr"])
    # pyreflect's predict_sld_from_nr, step by step with its own functions
    dp = m["dp"]
    proc = dp.NRSLDDataProcessor()
    x = proc.reshape_nr_to_single_channel(
        dp.DataProcessor.normalize_xy_curves(m["nr"], apply_log=True, min_max_stats=m["stats"]["nr"])
    )
    with torch.no_grad():
        y = m["cnn"](torch.tensor(x, dtype=torch.float32)).numpy()
    theirs = proc.denormalize(y, curve_type="sld", min_max_stats=m["stats"]["sld"])
    assert ours.shape == theirs.shape == (12, 2, 900)
    # the SLD row is pyreflect's; the z row is its least-squares straight line (a predicted z row need not
    # increase: every generated z row is evenly spaced, so the workbench keeps the line through it)
    sld_span = np.ptp(theirs[:, 1])
    assert np.max(np.abs(ours[:, 1] - theirs[:, 1])) / sld_span < 1e-5
    np.testing.assert_allclose(ours[:, 0], uniform_z(theirs[:, 0]), rtol=1e-5, atol=1e-5 * np.ptp(theirs[:, 0]))
    assert np.all(np.diff(ours[:, 0], axis=1) > 0)


def test_bad_statistics_are_refused_without_running_them(pyreflect_model, tmp_path):
    with pytest.raises(ValueError, match=r"nr\.x needs finite min < max"):
        bad = {**pyreflect_model["stats"], "nr": {"x": {"min": 1.0, "max": 1.0}, "y": {"min": -8.0, "max": 0.0}}}
        np.save(tmp_path / "flat.npy", bad, allow_pickle=True)
        read_pyreflect_stats(tmp_path / "flat.npy")
    with pytest.raises(ValueError, match="missing 'sld'"):
        np.save(tmp_path / "half.npy", {"nr": pyreflect_model["stats"]["nr"]}, allow_pickle=True)
        read_pyreflect_stats(tmp_path / "half.npy")

    class Exploit:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    np.save(tmp_path / "evil.npy", np.array(Exploit(), dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="open is not allowed in a statistics file"):
        read_pyreflect_stats(tmp_path / "evil.npy")
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ValueError, match="not pyreflect normalisation statistics"):
        read_pyreflect_stats(b"hello")


def test_uploading_the_pair_in_the_files_tab_gives_a_registered_model(pyreflect_model, tmp_path):
    from workbench.limits import Limits
    from workbench.ui.context import AppContext
    from workbench.ui.files_panel import FilesPanel

    ctx = AppContext(
        tmp_path / "ws", autosave_delay=0, limits=Limits(max_upload_bytes=2**30)
    )  # pyreflect's are ~0.6 GB
    panel = FilesPanel(ctx)
    pth = (pyreflect_model["dir"] / "trained_nr_sld_model.pth").read_bytes()
    npy = (pyreflect_model["dir"] / "normalization_stat.npy").read_bytes()
    panel.handle([("normalization_stat.npy", npy)])
    assert panel.status.level == "error" and "need their .pth weights" in panel.status.text
    assert ctx.models() == []
    panel.handle([("trained_nr_sld_model.pth", pth), ("normalization_stat.npy", npy)])
    assert panel.status.level != "error", panel.status.text
    [folder] = ctx.models()
    assert folder.name == "trained_nr_sld_model" and "Predict tab" in panel.uploaded.value
    [row] = ctx.workspace.registry.list_models()
    assert (row["name"], row["target"], row["active"]) == ("trained_nr_sld_model", "sld", True)
    assert predict(load_model_bundle(folder), pyreflect_model["nr"][:2]).shape == (2, 2, 900)


def test_import_pyreflect_from_the_command_line(pyreflect_model, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    wb = str(Path(sys.executable).with_name("workbench"))
    d = pyreflect_model["dir"]
    np.save(tmp_path / "nr_train.npy", pyreflect_model["nr"])  # pyreflect's NR array carries the Q grid

    def run(*args):
        return subprocess.run(
            [wb, *map(str, args), "--workspace", tmp_path / "ws"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    done = run(
        "import-pyreflect",
        d / "trained_nr_sld_model.pth",
        d / "normalization_stat.npy",
        "--q",
        tmp_path / "nr_train.npy",
    )
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "ws" / "models" / "trained_nr_sld_model"
    assert f"registered as {folder.name} v1" in done.stdout
    np.testing.assert_array_equal(load_model_bundle(folder).config["data"]["q"], pyreflect_model["nr"][0, 0])
    swapped = run("import-pyreflect", d / "normalization_stat.npy", d / "trained_nr_sld_model.pth")
    assert swapped.returncode == 1 and "error:" in swapped.stderr
    assert sorted(p.name for p in (tmp_path / "ws" / "models").iterdir() if not p.name.startswith(".")) == [folder.name]

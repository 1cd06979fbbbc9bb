"""Files, History and the composite Workbench app; the dashboard notebook under papermill."""

from __future__ import annotations

import base64
import io
import json
import re
import time
import zipfile
from pathlib import Path

import ipywidgets as W
import numpy as np
import papermill
import pytest
import torch

from workbench.data.generate import GeneratorConfig, generate
from workbench.limits import Limits
from workbench.physics import FilmStack
from workbench.ui.app import TABS, URL_PARAMETERS, Workbench, apply_query_string
from workbench.ui.context import AppContext
from workbench.ui.files_panel import FilesPanel

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "workbench.ipynb"


def link_payload(html: str, filename: str) -> bytes:
    m = re.search(rf'download="{re.escape(filename)}" href="data:[^;]+;base64,([^"]+)"', html)
    assert m, html[:300]
    return base64.b64decode(m.group(1))


def test_uploads_are_validated_and_stored(tmp_path, shared_data):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0, limits=Limits(max_upload_bytes=2 * 2**20))
    panel = FilesPanel(ctx)
    text = (shared_data / "real" / "ornl-ref-l-212592" / "REFL_212592_reduced.txt").read_bytes()
    data = generate(FilmStack.default(), GeneratorConfig(num_curves=8, seed=2))
    nr, sld = io.BytesIO(), io.BytesIO()
    np.save(nr, data.nr)
    np.save(sld, data.sld)
    lines = panel.handle(
        [("REFL_212592_reduced.txt", text), ("my_nr.npy", nr.getvalue()), ("my_sld.npy", sld.getvalue())]
    )
    assert panel.status.level == "ok", panel.status.text
    assert (ctx.measured_dir / "REFL_212592_reduced.txt").is_file()
    assert ctx.datasets()[0].name == "my_nr" and ctx.dataset == ctx.datasets()[0]
    assert any("data set" in line for line in lines)
    # refused: oversize, bad text, pickled npy, zip with path traversal, unknown type
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("../../etc/evil", "x")
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    lines = panel.handle(
        [
            ("big.txt", b"0" * (3 * 2**20)),
            ("bad.dat", b"hello world\n"),
            ("evil.zip", evil.getvalue()),
            ("x.exe", b"MZ"),
            ("obj.npy", pickled.getvalue()),
        ]
    )
    assert panel.status.level == "error"
    msg = panel.status.text
    assert (
        "upload limit" in msg
        and "bad.dat" in msg
        and "unsafe path" in msg
        and "unsupported" in msg
        and "obj.npy" in msg
    )
    assert not (ctx.measured_dir / "bad.dat").exists() and not any(
        p.name.startswith(".") for p in ctx.measured_dir.iterdir()
    )


def test_bundle_and_pth_uploads_and_downloads(tmp_path):
    from workbench.models.parity_cnn import ParityCNN
    from workbench.store.model_bundle import save_model_bundle

    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = FilesPanel(ctx)
    torch.manual_seed(0)
    model = ParityCNN(layers=2, kernel_size=3, dropout=0.1, n_q=16, n_z=20)
    src = save_model_bundle(tmp_path / "b1", model, task="nr_sld", normalization={"x": {}}, name="b1")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in src.iterdir():
            z.write(f, f"b1/{f.name}")
    pth = io.BytesIO()
    torch.save(model.state_dict(), pth)
    panel.handle([("b1.zip", buf.getvalue()), ("cnn.pth", pth.getvalue()), ("junk.pth", b"not a torch file")])
    assert (ctx.workspace.models / "b1" / "model.safetensors").is_file()
    assert [(m["name"], m["target"], m["active"]) for m in ctx.workspace.registry.list_models()] == [
        ("b1", "sld", True)
    ]
    assert (ctx.workspace.root / "weights" / "cnn.pth").is_file()
    assert "junk.pth" in panel.status.text and panel.status.level == "error"
    assert "parameters" in panel.uploaded.value
    panel.refresh_lists()
    panel.model.value = str(ctx.workspace.models / "b1")
    panel.zip.click()
    archive = zipfile.ZipFile(io.BytesIO(link_payload(panel.links.value, "b1.zip")))
    assert sorted(archive.namelist()) == sorted(f"b1/{f.name}" for f in src.iterdir())


def test_workbench_tabs_chart_download_history_and_resume(tmp_path):
    torch.set_num_threads(1)
    wb = Workbench(tmp_path / "ws", tab="generate")
    assert wb.selected_index == TABS.index("generate") and len(wb.children) == len(TABS)
    assert isinstance(wb.children[TABS.index("stack")].children[0], W.HTML)  # built when first shown
    wb.select("stack")
    assert wb.children[TABS.index("stack")].children[0] is wb.stack
    wb.files.chart.value = "film stack R(Q)"
    wb.files.export.click()
    csv = link_payload(wb.files.links.value, "film-stack-R-Q.csv").decode()
    assert csv.startswith("trace,Q (Å⁻¹),R\n") and len(csv.splitlines()) == 309  # the axis units name the columns
    js = json.loads(link_payload(wb.files.links.value, "film-stack-R-Q.json"))
    np.testing.assert_allclose(js["traces"][0]["y"], np.array(wb.stack.rq.data[0].y))
    assert wb.predict.chi is not None  # Predict's χ chart is made when a χ model is first used
    assert "prediction chi" not in wb.files.chart.options
    wb.select("files")  # showing the Files tab lists the charts made since
    assert "prediction chi" in wb.files.chart.options
    wb.select("stack")
    # generate, train and pause: the paused run shows in the History and resumes from there
    wb.generate.num_curves.value = 120
    wb.generate.name.value = "d"
    wb.generate.start.click()
    assert wb.generate.job.join(300)
    wb.train.epochs.value = 30  # enough that the pause lands before the last epoch (an epoch here takes ~0.1 s)
    wb.train.name.value = "m"
    wb.train.start.click()
    deadline = time.time() + 120
    while not wb.train.history and time.time() < deadline:
        time.sleep(0.05)
    wb.train.pause.click()
    assert wb.train.job.join(300)
    assert "paused" in wb.train.status.text
    h = wb.history
    h.refresh.click()
    assert len(h.runs.options) == 2
    paused = next(v for label, v in h.runs.options if "paused" in label)
    h.runs.value = paused
    assert not h.resume.disabled and "paused" in h.details.value
    assert len(h.loss.data[0].x) >= 1
    h.new_name.value = "first model"
    h.rename.click()
    assert wb.ctx.registry().get_run(paused).name == "first model"
    h.resume.click()
    assert wb.selected_index == TABS.index("train")
    assert wb.train.job.join(300)
    assert "completed" in wb.train.status.text, wb.train.status.text
    assert wb.ctx.registry().get_run(paused).status == "completed"
    [model] = wb.ctx.registry().list_models("sld")  # registered as the command line registers it
    assert model["active"] and model["run_id"] == paused and set(model["metrics"]) == {"train", "val", "test"}
    h.refresh.click()  # the details of the selected run follow
    assert h.runs.value == paused and "test.sld_r2" in h.details.value and "best_val_loss" in h.details.value
    gen = next(v for label, v in h.runs.options if "generate" in label)
    h.runs.value = gen
    h.delete.click()
    assert h.status.level == "error" and "really delete" in h.status.text
    h.confirm.value = True
    h.delete.click()
    assert len(h.runs.options) == 1


def test_query_string_overrides_ui_parameters_but_never_paths():
    params = {"tab": "stack", "epochs": 0, "num_curves": 0, "model": "", "workspace": "", "summary_path": ""}
    out = apply_query_string(
        params, "tab=train&epochs=5&unknown=1&model=param&workspace=/tmp/elsewhere&summary_path=/tmp/x.json"
    )
    assert out == {"tab": "train", "epochs": 5, "num_curves": 0, "model": "param", "workspace": "", "summary_path": ""}
    assert "workspace" not in URL_PARAMETERS and "summary_path" not in URL_PARAMETERS
    # a bad value keeps the default and says which parameter was wrong: a link never breaks the dashboard
    notes: list[str] = []
    with pytest.warns(UserWarning) as shown:
        assert apply_query_string(params, "epochs=lots&model=x", notes=notes) == params
    assert [str(w.message) for w in shown] == notes
    assert notes[0] == "URL parameter epochs='lots' is not a valid int; using 0 instead"
    kinds = "compact, parity_cnn, param, param_bounds, chi"
    assert notes[1] == f"URL parameter model='x' is not one of {kinds}; using '' instead"
    flags = apply_query_string({"flag": False}, "flag=yes", allowed=("flag",))
    assert flags == {"flag": True}


def test_dashboard_notebook_runs_with_papermill_and_the_url_parameters(tmp_path, monkeypatch):
    summary = tmp_path / "summary.json"
    # a link may choose the tab and settings, never the workspace or where the summary is written
    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("QUERY_STRING", f"tab=train&epochs=7&workspace={elsewhere}&summary_path={elsewhere}.json")
    papermill.execute_notebook(
        str(NOTEBOOK),
        str(tmp_path / "out.ipynb"),
        parameters={"workspace": str(tmp_path / "ws"), "num_curves": 300, "summary_path": str(summary)},
        kernel_name="python3",
        progress_bar=False,
    )
    data = json.loads(summary.read_text())
    assert data["tab"] == TABS.index("train") and data["epochs"] == 7 and data["num_curves"] == 300
    assert data["q_points"] == 308 and data["layers"] == 8
    assert Path(data["workspace"]) == (tmp_path / "ws").resolve()
    assert not elsewhere.exists() and not Path(f"{elsewhere}.json").exists()


def test_search_tab_hands_its_best_settings_to_the_train_tab(tmp_path):
    torch.set_num_threads(1)
    wb = Workbench(tmp_path / "ws", tab="generate")
    assert isinstance(wb.children[TABS.index("search")].children[0], W.HTML)  # built when first shown
    wb.generate.num_curves.value = 128
    wb.generate.name.value = "d"
    wb.generate.start.click()
    assert wb.generate.job.join(300)
    wb.select("search")
    s = wb.search
    assert wb.children[TABS.index("search")].children[0] is s and Path(s.dataset.value).name == "d"
    s.trials.value, s.epochs.value, s.batch_sizes.value = 2, 1, "16"
    s.layers_lo.value, s.layers_hi.value = 2, 2
    s.run_button.click()
    assert s.job.join(300) and s.status.level == "ok", s.status.text
    best = s.best_settings["train"]
    s.use_button.click()
    assert wb.selected_index == TABS.index("train")
    t = wb.train
    assert t.status.level == "ok", t.status.text
    assert (t.model_kind.value, t.batch_size.value, t.epochs.value) == ("compact", 16, 1)
    assert t.learning_rate.value == pytest.approx(best["learning_rate"])
    assert t.model_config()["stages"] == 2 and t.train_config().learning_rate == pytest.approx(best["learning_rate"])
    # the next Start trains with them: the saved bundle's model has two stages
    t.name.value = "from-search"
    t.start.click()
    assert t.job.join(300) and "completed" in t.status.text, t.status.text
    assert json.loads((t.bundle / "config.json").read_text())["model"]["stages"] == 2
    # out-of-range values are clamped (and said so); settings for another model do not leak
    wb.use_settings({"train": {"epochs": 10**6, "optimizer": "sgd"}, "model": {"kind": "parity_cnn", "kernel_size": 4}})
    assert t.epochs.value == wb.ctx.limits.max_epochs and t.kernel_size.value % 2 == 1 and t.optimizer.value == "sgd"
    assert t.status.level == "warn" and "limit" in t.status.text
    assert "stages" not in t.model_config()
    wb.use_settings({"model": {"kind": "gpt"}, "train": {"epochs": 3}})
    assert t.status.level == "error" and "unknown model" in t.status.text and t.model_kind.value == "parity_cnn"
    assert t.epochs.value == wb.ctx.limits.max_epochs
    # the Sweep tab is there too, offering the shipped pipeline notebook (never a typed path)
    assert "pipeline.ipynb" in wb.sweep.notebook.options and "wb-sweep-panel" in wb.sweep._dom_classes
    wb.sweep.spec.value = "workspace: [/tmp/elsewhere]\nepochs: [1]\n"  # a page visitor cannot pick where runs write
    wb.sweep.run_button.click()
    assert (
        wb.sweep.status.level == "error" and "workspace cannot be set" in wb.sweep.status.text and wb.sweep.job is None
    )

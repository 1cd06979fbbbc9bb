"""History after a Generate → Train → Predict loop: every kind present is offered, runs say what they ran on."""

from __future__ import annotations

import shutil

import pytest
import torch
from conftest import small_stack

from workbench.data.dataset import load_dataset
from workbench.data.generate import GeneratorConfig, generate_to_disk
from workbench.store.recorded import recorded_run
from workbench.training.trainer import TrainConfig
from workbench.ui.context import AppContext
from workbench.ui.history_panel import HistoryPanel, dataset_name, parameter_rows
from workbench.ui.predict_panel import PredictPanel
from workbench.workflows.training import TrainRequest, run_training

REF_L = ("real", "ornl-ref-l-212592", "REFL_212592_reduced.txt")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A workspace with a registered data set "films" and a parameter model "par1" trained on it (recorded)."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("ws")
    ctx = AppContext(root, autosave_delay=0)
    folder = ctx.workspace.datasets / "films"
    config = GeneratorConfig(num_curves=200, seed=1)
    registry = ctx.registry()
    with recorded_run(registry, "generate", name="films", params={}) as run:  # recorded as the Generate tab does
        ds = load_dataset(generate_to_disk(small_stack(), config, folder, progress=False))
        registry.register_dataset(ds.content_hash, folder, config.model_dump(mode="json"))
        registry.update_run(run.id, dataset_hash=ds.content_hash)
    run_training(
        TrainRequest(
            target="params",
            data=folder,
            out=ctx.workspace.models / "par1",
            name="par1",
            train=TrainConfig(epochs=1, batch_size=32, device="cpu"),
        ),
        registry=registry,
    )
    return root


def test_predictions_are_recorded_and_history_names_model_data_set_and_file(workspace, shared_data):
    ctx = AppContext(workspace, autosave_delay=0)
    shutil.copy(shared_data.joinpath(*REF_L), ctx.measured_dir)
    history = HistoryPanel(ctx)
    assert [v for _, v in history.kind.options] == ["", "generate", "train"]  # only the kinds present
    predict = PredictPanel(ctx)
    predict.model.value = str(workspace / "models" / "par1")
    predict.source.value = "sample"
    predict.dataset.value = str(workspace / "datasets" / "films")
    predict.index.value = 3
    predict.run.click()
    assert predict.status.level == "ok", predict.status.text
    predict.source.value = "file"
    predict.measured.value = str(ctx.measured_dir / REF_L[-1])
    predict.run.click()
    assert predict.status.level == "ok", predict.status.text

    # the History followed (no Refresh click): a "predict" filter, and two predict runs
    assert [v for _, v in history.kind.options] == ["", "generate", "train", "predict"]
    history.kind.value = "predict"
    assert len(history.runs.options) == 2 and all("predict" in label for label, _ in history.runs.options)
    newest, older = (v for _, v in history.runs.options)
    history.runs.value = newest
    text = history.details.value
    assert "par1" in text and f"measured file</td><td style='padding:2px 8px'>{REF_L[-1]}" in text
    assert "predicted.layer_2.thickness" in text and "10⁻⁶ Å⁻²" in text
    assert "χ²/N of the computed R(Q)" in text and "chi2_per_point" in text  # readable name, stored key beside it
    row = ctx.registry().get_run(newest)
    assert row.kind == "predict" and row.status == "completed" and row.params["data"] == REF_L[-1]
    assert row.metrics["chi2_per_point"] == pytest.approx(predict.result.metrics["chi2_per_point"])
    history.runs.value = older
    text = history.details.value
    assert "data set</td><td style='padding:2px 8px'>films" in text and "sample index" in text and ">3<" in text
    assert "SLD profile error (mean square, (10⁻⁶ Å⁻²)²)" in text and "sld_mse" in text
    assert history.loss_box.layout.display == "none"  # a prediction has no loss curve: no empty chart

    # the training entry names its data set, not its content hash, and shows its loss curve
    history.kind.value = "train"
    [(_, train_id)] = history.runs.options
    history.runs.value = train_id
    content_hash = ctx.registry().get_run(train_id).dataset_hash
    assert content_hash and content_hash[:16] not in history.details.value
    assert "data set</td><td style='padding:2px 8px'>films</td>" in history.details.value
    assert "test.mae.layer_2.thickness" in history.details.value  # a statistic, not listed as a parameter value
    assert "<b>Parameters</b>" not in history.details.value
    assert history.loss_box.layout.display == "" and len(history.loss.data[0].x) == 1

    # Open with nothing selected says so instead of doing nothing
    history.kind.value = ""
    history.runs.value = None
    history.open_button.click()
    assert history.status.level == "error" and history.status.text == "select a run first"


def test_refine_and_dream_entries_name_the_fitted_file_and_show_values_with_sigma(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    registry = ctx.registry()
    source = "/ws/measured/REFL_212592_reduced.txt"
    params = {"free": ["layer_1.thickness", "probe.scale"], "data": source}
    with recorded_run(registry, "refine", params=params) as fit:  # as the Refine panel records a fit
        fit.metrics.update(
            {
                "data": "REFL_212592_reduced.txt",
                "chi2_per_point": 2.25,
                "converged": True,
                "verdict": "good fit: χ²/N 2.25, all 2 parameters inside their bounds and determined",
                "verdict_level": "ok",
                "layer_1.thickness": 258.9,
                "layer_1.thickness.sigma": 1.4,
                "probe.scale": 0.98,
                "probe.scale.sigma": 0.01,
            }
        )
    with recorded_run(registry, "dream", params={**params, "samples": 500}) as dream:
        dream.metrics.update(
            {"layer_1.thickness.median": 259.1, "layer_1.thickness.lo68": 257.5, "layer_1.thickness.hi68": 260.4}
        )
        dream.metrics.update({"samples": 500, "posterior_samples": 480})
    history = HistoryPanel(ctx)
    assert [v for _, v in history.kind.options] == ["", "refine", "dream"]
    history.runs.value = fit.id
    text = history.details.value
    assert "fitted file</td><td style='padding:2px 8px'>REFL_212592_reduced.txt</td>" in text
    assert "value ± 1σ" in text and "<td style='padding:2px 8px'>258.9</td><td style='padding:2px 8px'>1.4</td>" in text
    assert ">Å<" in text and "good fit: χ²/N 2.25" in text and "#1a7f37" in text  # the verdict, in green
    assert history.loss_box.layout.display == "none"  # no empty "Loss" chart for a fit
    rows, used = parameter_rows(fit.metrics)
    assert [(r["parameter"], r["value"], r["± 1σ"], r["unit"]) for r in rows] == [
        ("layer_1.thickness", 258.9, 1.4, "Å"),
        ("probe.scale", 0.98, 0.01, ""),
    ]
    assert "chi2_per_point" not in used and "layer_1.thickness.sigma" in used
    history.runs.value = dream.id
    text = history.details.value
    assert "fitted file" in text and "Posterior" in text and "257.5 – 260.4" in text
    assert "posterior samples kept" in text and ">480<" in text


def test_dataset_name_from_the_registered_hash(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    registry = ctx.registry()
    registry.register_dataset("248a0049acf17d16aaaa", tmp_path / "ws" / "datasets" / "polymer films", {})
    with recorded_run(registry, "train", dataset_hash="248a0049acf17d16aaaa", params={}) as run:
        pass
    assert dataset_name(registry, registry.get_run(run.id)) == "polymer films"
    with recorded_run(registry, "train", dataset_hash="0123456789abcdef99", params={}) as unknown:
        pass
    assert dataset_name(registry, registry.get_run(unknown.id)) == "content hash 0123456789abcdef"

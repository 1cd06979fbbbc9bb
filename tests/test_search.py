"""Optuna search: pruning fed by epoch validation losses, resuming a stored study, trials on Dask
workers, and the Search panel handing the best settings to a Train-settings hook."""

from __future__ import annotations

import optuna
import pytest
import torch

from workbench.batch.search import SearchConfig, SearchSpace, open_study, run_search, settings_from_params
from workbench.data.generate import GeneratorConfig, generate_to_disk
from workbench.events import Record, Reporter
from workbench.physics import FilmStack
from workbench.store.workspace import Workspace
from workbench.training import TrainConfig


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("search") / "ds"
    return generate_to_disk(FilmStack.default(), GeneratorConfig(num_curves=128, seed=5), out, progress=False)


def config(dataset, tmp_path, **kw) -> SearchConfig:
    space = SearchSpace(learning_rate=(1e-4, 10.0), batch_size=[32], dropout=None, layers=(1, 2), width=[8])
    settings = {"epochs": 3, "study_name": "t", **kw}
    return SearchConfig(dataset=str(dataset), storage=str(tmp_path / "study.sqlite"), space=space, **settings)


def test_a_diverging_trial_is_pruned_and_a_resumed_study_adds_trials(tiny_dataset, tmp_path):
    cfg = config(tiny_dataset, tmp_path, workspace=str(tmp_path / "ws"))
    events = []
    # two sane trials, then one whose learning rate makes the loss explode at once
    first = run_search(
        cfg,
        3,
        reporter=Reporter([events.append]),
        enqueue=[
            {"learning_rate": 1e-3, "layers": 1},
            {"learning_rate": 3e-3, "layers": 2},
            {"learning_rate": 10.0, "layers": 1},
        ],
    )
    states = list(first.trials["state"])
    assert states == ["COMPLETE", "COMPLETE", "PRUNED"]
    pruned = first.trials.iloc[2]
    assert (
        pruned["epochs_reported"] == 1 and pruned["last_intermediate"] > 100 * first.best_value
    )  # stopped after epoch 1 of 3
    epochs = [e.data for e in events if isinstance(e, Record) and e.name == "epoch"]
    assert [(d["trial"], d["epoch"]) for d in epochs] == [(0, 1), (0, 2), (0, 3), (1, 1), (1, 2), (1, 3), (2, 1)]
    assert first.best_value == pytest.approx(min(first.trials["value"][:2]))
    # the best settings build a training config and a model config
    best = first.best_settings
    TrainConfig(**best["train"])
    assert best["model"]["kind"] == "compact" and best["model"]["stages"] == first.best_params["layers"]
    # every trial is a run in the registry; the pruned one shows as stopped
    registry = Workspace(tmp_path / "ws").registry
    runs = {r.name: r for r in registry.list_runs(kind="train")}
    assert runs["t-trial-2"].status == "stopped" and runs["t-trial-0"].status == "completed"
    assert len(registry.epochs(runs["t-trial-0"].id)) == 3

    # resume: the same storage and study name continue the same study
    second = run_search(cfg, 1)
    assert list(second.trials["number"]) == [0, 1, 2, 3]
    assert list(second.trials["state"])[:3] == states
    study = optuna.load_study(study_name="t", storage=cfg.storage_url)
    assert len(study.trials) == 4


def test_bad_search_settings_name_the_problem(tiny_dataset, tmp_path):
    with pytest.raises(ValueError, match="lo ≤ hi"):
        SearchSpace(learning_rate=(1e-2, 1e-4))
    with pytest.raises(ValueError, match="no such data-set folder"):
        run_search(SearchConfig(dataset=str(tmp_path / "missing"), storage=str(tmp_path / "s.sqlite")), 1)
    with pytest.raises(ValueError, match="number of trials"):
        run_search(config(tiny_dataset, tmp_path), 0)


def test_parity_cnn_settings_map_layers_and_kernel_size():
    s = settings_from_params(
        {"layers": 3, "kernel_size": 7, "dropout": 0.2, "learning_rate": 0.01}, "parity_cnn", {"epochs": 4}
    )
    assert s == {
        "train": {"learning_rate": 0.01, "epochs": 4},
        "model": {"kind": "parity_cnn", "dropout": 0.2, "layers": 3, "kernel_size": 7},
    }


@pytest.mark.slow
def test_trials_run_in_dask_worker_processes_on_one_study(tiny_dataset, tmp_path):
    cfg = config(tiny_dataset, tmp_path, epochs=1)
    result = run_search(cfg, 2, workers=2)
    assert len(result.trials) == 2 and set(result.trials["state"]) <= {"COMPLETE", "PRUNED"}
    study = open_study(cfg)
    assert {t.number for t in study.trials} == {0, 1}
    assert result.best_value is not None


def test_search_panel_shows_the_history_and_hands_over_the_best_settings(tiny_dataset, tmp_path):
    from workbench.ui.search_panel import SearchPanel

    received = []
    panel = SearchPanel(
        workspace=Workspace(tmp_path / "ws"),
        dataset=tiny_dataset,
        storage=tmp_path / "panel.sqlite",
        on_use_best=received.append,
    )
    panel.trials.value, panel.epochs.value, panel.batch_sizes.value = 2, 2, "32"
    panel.layers_lo.value, panel.layers_hi.value = 1, 1
    assert panel.use_button.disabled
    panel.run_button.click()
    assert panel.job.join(timeout=300), "the search did not finish"
    assert panel.status.level == "ok", panel.status.text
    assert panel.progress.value == 2
    complete = next(t for t in panel.figure.data if t.name == "trial value")
    pruned = next(t for t in panel.figure.data if t.name.startswith("pruned"))
    assert len(complete.x) + len(pruned.x) == 2
    assert "best: trial" in panel.best.value and not panel.use_button.disabled
    panel.use_button.click()
    assert received and received[0]["model"]["stages"] == 1 and received[0]["train"]["epochs"] == 2
    TrainConfig(**received[0]["train"])

    # resuming in a new panel shows the stored trials before adding more
    again = SearchPanel(workspace=Workspace(tmp_path / "ws"), dataset=tiny_dataset, storage=tmp_path / "panel.sqlite")
    again.trials.value, again.epochs.value, again.batch_sizes.value = 1, 1, "32"
    again.run_button.click()
    assert again.job.join(timeout=300)
    assert len(again.result.trials) == 3


def test_search_panel_without_a_data_set_says_so(tmp_path):
    from workbench.ui.search_panel import SearchPanel

    panel = SearchPanel(workspace=Workspace(tmp_path / "ws"))
    panel.run_button.click()
    assert panel.status.level == "error" and "choose a data set" in panel.status.text
    panel.use_button.click()
    assert panel.status.level == "error" and "no trial has completed" in panel.status.text


def test_search_panel_refuses_data_sets_outside_its_workspace(tiny_dataset, tmp_path):
    from workbench.ui.search_panel import SearchPanel

    panel = SearchPanel(workspace=Workspace(tmp_path / "ws"))
    panel.dataset.value = str(tiny_dataset)  # another folder on the server, typed in the browser
    panel.run_button.click()
    assert panel.status.level == "error" and "must be in this workspace" in panel.status.text
    panel.dataset.value = "../../etc"
    panel.run_button.click()
    assert panel.status.level == "error" and "must be in this workspace" in panel.status.text
    panel.dataset.value = "missing"  # a bare name means the workspace's datasets/missing
    panel.run_button.click()
    assert panel.status.level == "error" and "no such data-set folder" in panel.status.text

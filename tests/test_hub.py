"""Model bundles, training data and checkpoints through the real ``huggingface_hub`` client.

The Hub is a local HTTP server (tests/hub_server.py) answering the API calls the client makes;
``HF_ENDPOINT`` points at it and ``HF_TOKEN`` holds a made-up token that must reach the server
and never land in a written file or the registry.
"""

from __future__ import annotations

import json
import secrets
import shutil

import numpy as np
import pytest
import torch
from hub_server import FakeHub

from workbench.events import Record, Reporter, Warning_
from workbench.store import hub as H
from workbench.store.model_bundle import load_model_bundle
from workbench.store.workspace import Workspace
from workbench.training import TrainConfig
from workbench.workflows.training import TrainRequest, resume_training, run_training

TOKEN = "hf_" + secrets.token_hex(17)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny generated data set and a model bundle trained on it (2 epochs, seconds)."""
    from workbench.data.generate import GeneratorConfig, generate_to_disk
    from workbench.physics import FilmStack

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("trained")
    config = GeneratorConfig(num_curves=64, seed=1, sld_points=40, num_q=60)
    data = generate_to_disk(FilmStack.default(), config, root / "ds", progress=False)
    out = run_training(
        TrainRequest(
            data=data,
            out=root / "sld-tiny",
            model={"width": 4, "stages": 2, "latent": 8},
            train=TrainConfig(epochs=2, batch_size=16, device="cpu"),
        )
    )
    return {"data": data, "bundle": out.bundle, "config": config, "stack": FilmStack.default()}


@pytest.fixture
def hub(tmp_path, monkeypatch):
    with FakeHub() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        yield server


def _warnings(events):
    return [e.message for e in events if isinstance(e, Warning_)]


def _assert_token_nowhere(*folders):
    needle = TOKEN.encode()
    checked = 0
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                assert needle not in path.read_bytes(), f"the token was written into {path}"
                checked += 1
    assert checked > 0


def test_push_then_pull_by_revision_and_load(trained, hub, tmp_path):
    bundle = trained["bundle"]
    ref = H.push_model_bundle(bundle, "lab/nr-models", model_id="sld-tiny", dataset=trained["data"])
    assert ref.path == "models/sld-tiny" and len(ref.revision) == 40
    repo = hub.state.repos[("model", "lab/nr-models")]
    assert repo.private  # private by default
    files = hub.files("lab/nr-models")
    for name in (
        "model.safetensors",
        "config.json",
        "normalization.json",
        "metrics.json",
        "README.md",
        "nr_train.npy",
        "sld_train.npy",
        "dataset.json",
    ):
        assert f"models/sld-tiny/{name}" in files
    card = files["models/sld-tiny/README.md"].decode()
    assert "sld_r2" in card and "Test metrics" in card
    assert all(a == f"Bearer {TOKEN}" for a in hub.state.auth) and hub.state.auth  # the token came from HF_TOKEN

    # a second version of the model, then pull the first one by its commit
    metrics = json.loads((bundle / "metrics.json").read_text())
    changed = tmp_path / "sld-tiny"
    shutil.copytree(bundle, changed)
    (changed / "metrics.json").write_text(json.dumps({**metrics, "note": "v2"}))
    ref2 = H.push_model_bundle(changed, "lab/nr-models")
    assert ref2.revision != ref.revision

    old = H.pull_model_bundle("lab/nr-models", "sld-tiny", revision=ref.revision, dest=tmp_path / "pulled-v1")
    new = H.pull_model_bundle("lab/nr-models", "sld-tiny")
    assert "note" not in json.loads((old / "metrics.json").read_text())
    assert json.loads((new / "metrics.json").read_text())["note"] == "v2"
    np.testing.assert_array_equal(np.load(old / "nr_train.npy"), np.load(trained["data"] / "nr_train.npy"))

    original, pulled = load_model_bundle(bundle), load_model_bundle(old)
    x = torch.randn(3, 1, 60)
    with torch.no_grad():
        torch.testing.assert_close(pulled.model(x), original.model(x), rtol=0, atol=0)
    assert pulled.normalization == original.normalization and pulled.config == original.config
    assert ("HEAD", "/lab/nr-models/resolve/" + ref.revision + "/models/sld-tiny/config.json") in hub.state.requests

    with pytest.raises(H.HubError, match="has no model bundle models/other/ \\(it has sld-tiny\\)"):
        H.pull_model_bundle("lab/nr-models", "other")
    with pytest.raises(H.HubError, match="repository not found"):
        H.pull_model_bundle("lab/missing", "sld-tiny")
    _assert_token_nowhere(tmp_path, bundle.parent)


def test_dataset_type_repo_and_offline_loading_from_the_cache(trained, hub, tmp_path, monkeypatch):
    H.push_model_bundle(trained["bundle"], "lab/nr-data", repo_type="dataset", model_id="m1")
    assert ("dataset", "lab/nr-data") in hub.state.repos
    online = H.load_hub_model("lab/nr-data", "m1", repo_type="dataset")
    hub.stop()  # the Hub is gone
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = H.load_hub_model("lab/nr-data", "m1", repo_type="dataset")
    assert offline.path == online.path and offline.config == online.config
    for key, value in online.model.state_dict().items():
        torch.testing.assert_close(offline.model.state_dict()[key], value, rtol=0, atol=0)
    with pytest.raises(H.HubError, match="HF_HUB_OFFLINE=1 and it is not in the local cache"):
        H.pull_model_bundle("lab/nr-data", "never-downloaded", repo_type="dataset")


def test_a_failing_upload_is_retried_with_backoff_and_otherwise_keeps_the_local_copy(trained, hub):
    events = []
    reporter = Reporter([events.append])
    hub.state.fail["commit"] = 2  # the Hub answers 500 twice, then recovers
    ref = H.push_model_bundle(trained["bundle"], "lab/flaky", reporter=reporter, base_delay=0.01)
    assert "models/sld-tiny/model.safetensors" in hub.files("lab/flaky")
    retries = _warnings(events)
    assert len(retries) == 2 and all("retrying in" in w and "500" in w for w in retries)
    assert ref.revision == hub.state.repos[("model", "lab/flaky")].branches["main"]

    before = {p.name: p.read_bytes() for p in trained["bundle"].iterdir()}
    events.clear()
    hub.state.fail["commit"] = 10
    with pytest.raises(H.HubUploadError, match=r"failed after 3 attempts .* the local copy is kept at") as info:
        H.push_model_bundle(
            trained["bundle"], "lab/flaky", model_id="v2", reporter=reporter, attempts=3, base_delay=0.01
        )
    assert info.value.local == trained["bundle"]
    assert {p.name: p.read_bytes() for p in trained["bundle"].iterdir()} == before
    assert "local copy is kept" in _warnings(events)[-1] and len(_warnings(events)) == 3
    assert not any(p.startswith("models/v2/") for p in hub.files("lab/flaky"))


def test_training_data_is_uploaded_after_generation_and_reused_by_a_retry(trained, hub, tmp_path):
    stack, config = trained["stack"], trained["config"].model_copy(update={"seed": 5})
    events = []
    first, reused = H.generate_or_fetch(
        stack,
        config,
        tmp_path / "first",
        repo_id="lab/training-data",
        reporter=Reporter([events.append]),
        progress=False,
    )
    assert not reused
    key = H.dataset_key(stack, config)
    assert f"datasets/{key}/nr_train.npy" in hub.files("lab/training-data", "dataset")
    assert hub.state.repos[("dataset", "lab/training-data")].private

    events.clear()
    again, reused = H.generate_or_fetch(
        stack,
        config,
        tmp_path / "retry",
        repo_id="lab/training-data",
        reporter=Reporter([events.append]),
        progress=False,
    )
    assert reused
    assert not any(isinstance(e, Record) for e in events) and not any(
        getattr(e, "stage", "") == "generate" for e in events
    )
    for name in ("nr_train.npy", "sld_train.npy", "params.npy"):
        np.testing.assert_array_equal(np.load(again / name), np.load(first / name))

    # the Hub failing during the upload leaves the generated data in place and says so
    hub.state.fail["commit"] = 99
    events.clear()
    other = config.model_copy(update={"seed": 6})
    local, reused = H.generate_or_fetch(
        stack,
        other,
        tmp_path / "offline-copy",
        repo_id="lab/training-data",
        reporter=Reporter([events.append]),
        progress=False,
        attempts=2,
        base_delay=0.01,
    )
    assert not reused and (local / "nr_train.npy").is_file()
    assert "local copy is kept" in _warnings(events)[-1]


def test_checkpoints_go_to_the_hub_and_a_paused_run_resumes_from_there(trained, hub, tmp_path):
    ws = Workspace(tmp_path / "ws")
    reg = ws.registry
    bundle_dir = ws.models / "sld-resumed"
    request = TrainRequest(
        target="sld",
        data=trained["data"],
        out=bundle_dir,
        name="hub-resume",
        model={"width": 4, "stages": 2, "latent": 8},
        hub_repo="lab/checkpoints",
        hub_every=1,
        train=TrainConfig(epochs=4, batch_size=16, device="cpu", checkpoint_every=1),
    )
    reporter = Reporter()
    reporter.listeners.append(
        lambda e: reporter.pause.set() if isinstance(e, Record) and e.data.get("epoch") == 2 else None
    )
    out = run_training(request, reporter, reg)
    run, checkpoint = reg.get_run(out.run_id), out.checkpoint
    uploads = [line["message"] for line in reg.logs(run.id) if line["message"].startswith("uploaded checkpoint")]
    assert out.status == "paused", [line["message"] for line in reg.logs(run.id)]
    warnings = [line["message"] for line in reg.logs(run.id) if line["level"] == "warning"]
    assert not warnings, warnings
    assert [H.checkpoint_position(checkpoint)[0]] == [2]
    assert len(uploads) == 2  # the periodic checkpoint after epoch 1, then the pause checkpoint
    latest = reg.checkpoints(run.id)[-1]["hub"]
    on_hub = tmp_path / "on-hub.safetensors"
    on_hub.write_bytes(hub.files("lab/checkpoints")[H.HubRef.parse(latest).path])
    assert H.checkpoint_position(on_hub) == (2, 0)
    paused = reg.get_run(run.id)
    assert paused.status == "paused" and paused.last_epoch == 2
    assert latest.startswith("model:lab/checkpoints:checkpoints/")

    checkpoint.unlink()  # the local checkpoint is lost: resume fetches it from the Hub
    resume_training(run.id, reg)
    resumed = reg.get_run(run.id)
    assert resumed.status == "completed" and resumed.last_epoch == 4
    assert [e["epoch"] for e in reg.epochs(run.id)] == [1, 2, 3, 4]
    model = reg.list_models("sld")[0]
    assert model["name"] == "hub-resume" and model["run_id"] == run.id and model["active"]  # the run's name
    assert set(model["metrics"]) == {"train", "val", "test"} and "sld_r2" in model["metrics"]["test"]
    assert load_model_bundle(bundle_dir).history[-1]["epoch"] == 4
    assert any("resuming from checkpoint" in line["message"] for line in reg.logs(run.id))
    _assert_token_nowhere(ws.root, tmp_path / "hf-home")


@pytest.mark.slow
def test_hub_push_and_pull_from_the_command_line(trained, hub, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    wb = str(Path(sys.executable).with_name("workbench"))
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home")}  # HF_ENDPOINT, HF_TOKEN, HF_HOME from the fixture

    def run(*args):
        return subprocess.run(
            [wb, "hub", *map(str, args)], capture_output=True, text=True, env=env, timeout=300, check=False
        )

    pushed = run(
        "push", trained["bundle"], "--repo", "lab/cli", "--model-id", "cli-model", "--dataset", trained["data"]
    )
    assert pushed.returncode == 0, pushed.stderr
    assert "pushed" in pushed.stdout and "model:lab/cli:models/cli-model@" in pushed.stdout
    assert "models/cli-model/sld_train.npy" in hub.files("lab/cli")
    pulled = run("pull", "--repo", "lab/cli", "--model-id", "cli-model", "--out", tmp_path / "pulled")
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "pulled" / "model.safetensors").read_bytes() == (
        trained["bundle"] / "model.safetensors"
    ).read_bytes()
    # without --out the bundle goes into the workspace and the registry, with where it came from
    adopted = run("pull", "--repo", "lab/cli", "--model-id", "cli-model")
    again = run("pull", "--repo", "lab/cli", "--model-id", "cli-model")
    assert adopted.returncode == 0 and again.returncode == 0, adopted.stderr + again.stderr
    models = tmp_path / "home" / "models"
    assert (models / "cli-model" / "model.safetensors").read_bytes() == (
        trained["bundle"] / "model.safetensors"
    ).read_bytes()
    assert (models / "cli-model-1").is_dir()  # a second pull never overwrites the first

    registered = {m["name"]: m for m in Workspace(tmp_path / "home").registry.list_models("sld")}
    assert set(registered) == {"cli-model", "cli-model-1"}
    assert registered["cli-model"]["active"] and not registered["cli-model-1"]["active"]
    assert registered["cli-model"]["hub"] == "lab/cli:models/cli-model@main"
    assert registered["cli-model"]["metrics"]["test"] == load_model_bundle(trained["bundle"]).metrics
    assert "registered as cli-model v1" in adopted.stdout
    missing = run("pull", "--repo", "lab/cli", "--model-id", "nope")
    assert missing.returncode == 1 and "has no model bundle models/nope/" in missing.stderr

    hub.state.fail["commit"] = 99
    failed = run("push", trained["bundle"], "--repo", "lab/cli", "--model-id", "again")
    assert failed.returncode == 1 and "the local copy is kept" in failed.stderr and "retrying in" in failed.stderr
    _assert_token_nowhere(tmp_path, tmp_path / "hf-home")


def test_a_families_ties_are_part_of_its_data_set_key():
    """Two families with the same layers and ranges draw different curves when one ties parameters: a shared
    data-set cache must not hand one's curves to the other."""
    from workbench.data.family import SampleFamily
    from workbench.data.generate import GeneratorConfig

    base = {
        "layers": [
            {"name": "Si", "sld": 2.07, "thickness": 0, "roughness": 3},
            {"name": "A_1", "sld": 1.0, "thickness": 40, "roughness": 3},
            {"name": "A_2", "sld": 1.0, "thickness": 40, "roughness": 3},
            {"name": "air", "sld": 0.0, "thickness": 0, "roughness": 0},
        ],
        "ranges": {"sld": 0.5},
    }
    free = SampleFamily.from_dict(base).expand()
    tied = SampleFamily.from_dict({**base, "ties": ["A_*.sld"]}).expand()
    assert free.to_layer_bound() == tied.to_layer_bound() and tied.ties and not free.ties
    config = GeneratorConfig(num_curves=10)
    assert H.dataset_key(free, config) != H.dataset_key(tied, config)
    assert H.dataset_key(tied, config) == H.dataset_key(
        SampleFamily.from_dict({**base, "ties": ["A_*.sld"]}).expand(), config
    )

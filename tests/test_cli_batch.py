"""The batch subcommands through the installed console script: sweep, search, notebooks, doctor, dashboard."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from test_sweep import toy_notebook

WORKBENCH = str(Path(sys.executable).with_name("workbench"))
REPO = Path(__file__).resolve().parents[1]


def run(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [WORKBENCH, *map(str, args)], check=False, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_sweep_command_runs_a_grid_reports_failures_and_resumes(tmp_path):
    nb = toy_notebook(tmp_path / "toy.ipynb")
    out = tmp_path / "sweep"
    first = run("sweep", nb, "-p", "x", "2,3", "--out", out, "--workers", "2", "--threads")
    assert first.returncode == 0, first.stderr
    assert "2 completed, 0 failed, 0 skipped" in first.stdout
    assert (out / "results.csv").is_file() and (out / "chart.html").is_file()
    spec = tmp_path / "more.yaml"
    spec.write_text(yaml.safe_dump({"grid": {"x": [2, 3, 4]}, "runs": [{"x": 9, "fail": True}]}))
    second = run("sweep", nb, "--file", spec, "--out", out, "--workers", "2", "--threads")
    assert second.returncode == 1  # a failed run makes the exit code non-zero
    assert "1 completed, 1 failed, 2 skipped" in second.stdout
    assert "x=9 is not allowed" in second.stderr and "output.ipynb" in second.stderr


def test_sweep_command_rejects_bad_input_with_exit_code_2(tmp_path):
    nb = toy_notebook(tmp_path / "toy.ipynb")
    bad = run("sweep", nb, "-p", "y", "1,2", "--out", tmp_path / "s")
    assert bad.returncode == 2 and "has no parameter 'y'" in bad.stderr
    typed = run("sweep", nb, "-p", "x", "1,two", "--out", tmp_path / "s")
    assert typed.returncode == 2 and "'x' is an int; got 'two'" in typed.stderr
    missing = run("sweep", "nope.ipynb", "-p", "x", "1", "--out", tmp_path / "s")
    assert missing.returncode == 2 and "nope.ipynb" in missing.stderr


def test_search_command_writes_best_settings_that_train_accepts(tmp_path):
    from workbench.data.generate import GeneratorConfig, generate_to_disk
    from workbench.physics import FilmStack

    data = generate_to_disk(
        FilmStack.default(), GeneratorConfig(num_curves=128, seed=2), tmp_path / "ds", progress=False
    )
    out = tmp_path / "best.json"
    args = (
        "search",
        "--data",
        data,
        "--trials",
        "2",
        "--epochs",
        "1",
        "--storage",
        tmp_path / "s.sqlite",
        "--study",
        "cli",
        "--lr",
        "1e-3,1e-2",
        "--layers",
        "1,1",
        "--width",
        "8",
        "--batch-size",
        "32",
        "--out",
        out,
    )
    result = run(*args)
    assert result.returncode == 0, result.stderr
    summary = json.loads(out.read_text())
    assert summary["trials"] == 2 and summary["best_settings"]["model"]["stages"] == 1
    assert (tmp_path / "best.trials.csv").is_file() and "Plotly.newPlot" in (tmp_path / "best.history.html").read_text()
    again = run(*args[:4], "1", *args[5:])  # one more trial in the same study
    assert again.returncode == 0 and json.loads(out.read_text())["trials"] == 3
    train = run("train", "--data", data, "--out", tmp_path / "model", "--config", tmp_path / "best.train.yaml")
    assert train.returncode == 0, train.stderr
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model"]["stages"] == 1
    bad = run("search", "--data", data, "--lr", "1e-3", "--storage", tmp_path / "s.sqlite")
    assert bad.returncode == 2 and "lo,hi" in bad.stderr


def test_notebooks_command_copies_and_keeps_edited_copies(tmp_path):
    dest = tmp_path / "mine"
    first = run("notebooks", "--dest", dest)
    assert first.returncode == 0, first.stderr
    shipped = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in dest.glob("*.ipynb")) == shipped and "pipeline.ipynb" in shipped
    assert "up to date" in run("notebooks", "--dest", dest).stdout  # identical copies: nothing to do
    edited = dest / "pipeline.ipynb"
    edited.write_text(edited.read_text().replace("num_curves: int = 256", "num_curves: int = 999"))
    kept = run("notebooks", "--dest", dest)
    assert kept.returncode == 0 and "kept your edited" in kept.stderr and "999" in edited.read_text()
    forced = run("notebooks", "--dest", dest, "--force")
    assert forced.returncode == 0 and edited.read_bytes() == (REPO / "notebooks" / "pipeline.ipynb").read_bytes()
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    assert run("notebooks", "--dest", afile).returncode == 2


@pytest.mark.slow
def test_an_installed_wheel_ships_the_notebooks(tmp_path):
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert build.returncode == 0, build.stderr
    prefix = tmp_path / "prefix"
    # --ignore-installed: never uninstall the development (editable) install while installing into the prefix
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--ignore-installed",
            "-q",
            "--prefix",
            str(prefix),
            str(next(wheels.glob("workbench-*.whl"))),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stderr
    site = next(prefix.glob("lib/python*/site-packages"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    code = "import workbench, workbench.batch.notebooks as n; print(workbench.__file__); print(n.notebooks_folder())"
    where = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120
    )
    assert where.returncode == 0, where.stderr
    package, folder = where.stdout.split()
    assert package.startswith(str(prefix)) and folder == str(prefix / "share" / "workbench" / "notebooks")
    copied = subprocess.run(
        [sys.executable, "-m", "workbench", "notebooks", "--dest", str(tmp_path / "dest")],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "dest" / "pipeline.ipynb").read_bytes() == (REPO / "notebooks" / "pipeline.ipynb").read_bytes()


def test_doctor_reports_versions_and_finds_a_widget_mismatch(tmp_path):
    ok = run("doctor")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    for name in ("ipywidgets", "jupyterlab_widgets", "anywidget", "plotly", "voila", "ipykernel", "torch", "refl1d"):
        assert name in ok.stdout
    assert "gpu:" in ok.stdout and "everything matches" in ok.stdout
    # an old jupyterlab_widgets earlier on the path (as a stray user-site install would be) is a mismatch
    shadow = tmp_path / "shadow" / "jupyterlab_widgets-1.1.0.dist-info"
    shadow.mkdir(parents=True)
    (shadow / "METADATA").write_text("Metadata-Version: 2.1\nName: jupyterlab_widgets\nVersion: 1.1.0\n")
    bad = run("doctor", "--json", env={**os.environ, "PYTHONPATH": str(shadow.parent)})
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["versions"]["jupyterlab_widgets"] == "1.1.0"
    failing = [c for c in report["checks"] if c["status"] == "fail"]
    assert any(c["name"] == "jupyterlab_widgets" and "needs jupyterlab_widgets 3.x" in c["message"] for c in failing)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_serves_a_notebook_with_voila(tmp_path):
    nb = toy_notebook(tmp_path / "toy.ipynb")
    port = _free_port()
    home = tmp_path / "home"
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / "cfg"),
        "JUPYTER_DATA_DIR": str(home / "data"),
        "JUPYTER_RUNTIME_DIR": str(home / "rt"),
        "IPYTHONDIR": str(home / "ipy"),
    }
    proc = subprocess.Popen(
        [WORKBENCH, "dashboard", "--notebook", str(nb), "--port", str(port), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        body, deadline = None, time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=60) as response:
                    body = response.read().decode()
                break
            except OSError:
                time.sleep(1)
        assert body is not None, f"voila did not answer: {proc.poll()}"
        assert "voila" in body.lower()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    missing = run("dashboard", "--notebook", tmp_path / "none.ipynb", "--no-browser")
    assert missing.returncode == 2 and "none.ipynb: no such notebook" in missing.stderr

"""The facility path, end to end: a real JupyterHub on loopback, two users, Voilà dashboard links.

JupyterHub (PyPI) with configurable-http-proxy (npm, pinned by ``.ci/run``), the dummy
authenticator and the simple local-process spawner; hub state and user homes in a temp dir.
Each user gets the shipped notebooks with ``workbench notebooks --dest``; Chromium (playwright)
logs in, opens ``/hub/user-redirect/voila/render/...`` with parameters in the link, checks the
stack editor and charts render with them and without JavaScript errors, generates a small data
set and trains one epoch; a second user then sees none of the first user's runs.

Marked ``hub``: skip it locally with ``pytest -m "not hub"``.  Under CI=true a missing browser or
proxy is a failure, not a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from browser_support import ARTIFACTS, CHROMIUM, chromium, free_port, stop_server, wait_for_http, watched_page

from workbench.batch.dashboard import TEMPLATE_ROOT

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PASSWORD = "correct horse"

pytestmark = [pytest.mark.hub, pytest.mark.slow]


def _required(what: str, found) -> None:
    if not found:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{what} is missing (required under CI=true; .ci/run installs it)")
        pytest.skip(f"{what} is missing")


def _proxy() -> str | None:
    for candidate in (
        os.environ.get("WORKBENCH_CHP"),
        str(REPO / ".ci" / "node" / "node_modules" / ".bin" / "configurable-http-proxy"),
        shutil.which("configurable-http-proxy"),
    ):
        if candidate and Path(candidate).exists():
            return candidate
    return None


CONFIG = """
import os
root = {root!r}
homes = os.path.join(root, "home")

def per_user(sub):
    return lambda spawner: os.path.join(homes, spawner.user.name, sub)

c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api_port}"
c.ConfigurableHTTPProxy.command = [{proxy!r}]
c.ConfigurableHTTPProxy.pid_file = os.path.join(root, "proxy.pid")
c.JupyterHub.db_url = "sqlite:///" + os.path.join(root, "hub.sqlite")
c.JupyterHub.cookie_secret_file = os.path.join(root, "cookie_secret")
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = os.path.join(homes, "{{username}}")
c.Spawner.cmd = [{singleuser!r}]
c.Spawner.args = ["--allow-root", "--ServerApp.ip=127.0.0.1",
                  # the offline template (no CDN requests) for Voilà's server extension (admin guide, section 3)
                  "--VoilaConfiguration.template=workbench",
                  # the app cell's ~600 widget messages must not be cut off after 4 s on a busy server (docs)
                  "--VoilaExecutor.iopub_timeout=120",
                  # each Voilà render starts a kernel: cull idle ones, never one with a job or an open page
                  "--MappingKernelManager.cull_idle_timeout=600", "--MappingKernelManager.cull_interval=60",
                  "--MappingKernelManager.cull_busy=False", "--MappingKernelManager.cull_connected=False"]
c.Spawner.environment = {{
    "WORKBENCH_HOME": per_user(".workbench"),
    "JUPYTER_CONFIG_DIR": per_user(".jupyter"),
    "JUPYTER_DATA_DIR": per_user(".local/share/jupyter"),
    "JUPYTER_RUNTIME_DIR": per_user(".local/share/jupyter/runtime"),
    "IPYTHONDIR": per_user(".ipython"),
    "WORKBENCH_LIMITS": '{{"max_curves": 2000, "max_epochs": 5}}',
    "OMP_NUM_THREADS": "1",
    "JUPYTER_PATH": {template_root!r},
}}
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
"""


@pytest.fixture
def hub(tmp_path):
    proxy = _proxy()
    _required("configurable-http-proxy (npm install configurable-http-proxy@5.3.0)", proxy)
    _required("jupyterhub", (BIN / "jupyterhub").exists() and (BIN / "jupyterhub-singleuser").exists())
    root = tmp_path / "hub"
    for user in ("alice", "bob"):
        home = root / "home" / user
        home.mkdir(parents=True)
        # what a hub user does once (or an admin's pre-spawn hook): copy the shipped notebooks
        subprocess.run(
            [str(BIN / "workbench"), "notebooks", "--dest", str(home / "workbench")],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        )
    port = free_port()
    (root / "jupyterhub_config.py").write_text(
        CONFIG.format(
            root=str(root),
            port=port,
            hub_port=free_port(),
            api_port=free_port(),
            proxy=proxy,
            password=PASSWORD,
            singleuser=str(BIN / "jupyterhub-singleuser"),
            template_root=str(TEMPLATE_ROOT),
        )
    )
    env = {**os.environ, "HOME": str(root), "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    log = open(tmp_path / "hub.log", "w")
    proc = subprocess.Popen(
        [str(BIN / "jupyterhub"), "-f", str(root / "jupyterhub_config.py")],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    if not wait_for_http(f"{url}/hub/health", proc, within=120, request_timeout=10):
        log.close()
        pytest.fail("JupyterHub did not start:\n" + (tmp_path / "hub.log").read_text()[-4000:])
    yield url, root
    stop_server(proc, grace=30)
    subprocess.run(["pkill", "-f", str(root)], check=False)  # single-user servers and the proxy
    log.close()


def _login(browser, url: str, user: str, problems: list[str]):
    context = browser.new_context()
    # the hub renders through Voilà's server extension with its lab template (CDN stylesheets and MathJax);
    page = watched_page(context, problems, user)  # the workbench template: no request leaves the machine
    page.goto(f"{url}/hub/login", timeout=120_000)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("input[type=submit], button[type=submit]")
    page.wait_for_url("**/user/**", timeout=300_000)  # the server spawned and the hub redirected
    return context, page


def _dashboard(page, url: str, query: str, panel: str = ".wb-stack-panel", chart: bool = True) -> None:
    page.goto(f"{url}/hub/user-redirect/voila/render/workbench/workbench.ipynb?{query}", timeout=600_000)
    try:
        page.wait_for_selector(panel, timeout=300_000)
        if chart:
            page.wait_for_function(
                f"() => {{ const el = document.querySelector('{panel} .js-plotly-plot');"
                " return el && el.data && el.data[0] && el.data[0].y && el.data[0].y.length > 0; }",
                timeout=300_000,
            )
    except Exception:
        page.screenshot(path=str(ARTIFACTS / "hub-failed.png"))
        raise


def _runs(root: Path, user: str) -> list[tuple[str, str, str, str]]:
    db = root / "home" / user / ".workbench" / "registry.sqlite"
    if not db.exists():
        return []
    with sqlite3.connect(db) as con:
        return con.execute("SELECT id, name, kind, status FROM runs ORDER BY created").fetchall()


def test_two_users_on_a_real_jupyterhub(hub):
    url, root = hub
    _required(CHROMIUM, Path(CHROMIUM).exists())
    problems: list[str] = []
    with chromium() as browser:
        context, page = _login(browser, url, "alice", problems)
        t0 = time.perf_counter()
        _dashboard(page, url, "num_curves=300&epochs=1")
        print(f"\nalice: login → dashboard with charts in {time.perf_counter() - t0:.1f} s")
        page.screenshot(path=str(ARTIFACTS / "hub-0-alice-stack.png"))
        # the link's parameters pre-filled the dashboard: 300 curves to generate, 1 epoch to train
        page.get_by_role("tab", name="Generate").click()
        page.wait_for_selector(".wb-generate-panel", timeout=120_000)
        num = page.locator(".wb-generate-panel .wb-field-num_curves input")
        assert num.input_value() == "300"
        page.screenshot(path=str(ARTIFACTS / "hub-1-alice-generate.png"))
        page.locator(".wb-generate-panel button", has_text="Generate").click()
        page.wait_for_selector(".wb-generate-panel .wb-output", timeout=300_000)
        # train one epoch (epochs=1 came from the link)
        page.get_by_role("tab", name="Train").click()
        page.wait_for_selector(".wb-train-panel .js-plotly-plot", timeout=300_000)
        assert page.locator(".wb-train-panel .wb-field-epochs input").input_value() == "1"
        page.locator(".wb-train-panel button", has_text="Start").click()
        page.wait_for_function(
            "() => Array.from(document.querySelectorAll('.wb-train-panel .wb-status'))"
            ".some(e => /(completed|finished) after 1 epochs/.test(e.textContent))",
            timeout=600_000,
        )
        page.screenshot(path=str(ARTIFACTS / "hub-2-alice-trained.png"))
        alice_runs = _runs(root, "alice")
        done = {(kind, status) for _, _, kind, status in alice_runs}
        assert ("generate", "completed") in done and ("train", "completed") in done, alice_runs
        # positive control: alice's own History lists her runs
        page.get_by_role("tab", name="History").click()
        page.wait_for_selector(".wb-history-panel select", timeout=120_000)
        page.get_by_role("button", name="Refresh").click()
        page.wait_for_function(
            "() => document.querySelector('.wb-history-panel select').options.length >= 2", timeout=60_000
        )
        text = page.locator(".wb-history-panel").inner_text()
        assert all(name in text for _, name, _, _ in alice_runs), text
        page.goto(f"{url}/hub/home")  # leave the dashboard so its kernel shuts down
        context.close()

        context, page = _login(browser, url, "bob", problems)
        _dashboard(page, url, "tab=history", panel=".wb-history-panel", chart=False)
        page.wait_for_selector(".wb-history-panel select", timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "hub-3-bob-history.png"))
        text = page.locator(".wb-history-panel").inner_text()
        assert not any(run_id in text or name in text for run_id, name, _, _ in alice_runs), (
            text
        )  # none of alice's runs
        assert not any(kind in ("generate", "train") for _, _, kind, _ in _runs(root, "bob"))
        assert len(_runs(root, "alice")) == len(alice_runs)  # bob's dashboard touched nothing of alice's
        page.goto(f"{url}/hub/home")
        context.close()
    assert not problems, "\n".join(problems[:20])


def test_dashboard_link_is_documented_with_the_same_parameter_names_papermill_uses():
    nb = json.loads((REPO / "notebooks" / "workbench.ipynb").read_text())
    params = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    source = "".join(params["source"])
    for name in ("tab", "num_curves", "epochs"):
        assert f"{name}:" in source
    readme = (REPO / "README.md").read_text()
    assert "/hub/user-redirect/voila/render/" in readme

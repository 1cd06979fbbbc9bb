"""What every browser test shares: Debian's chromium through playwright, offline, with its errors collected."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.request import urlopen

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
IGNORED = ("Unsatisfied version", "No satisfying version", "Failed to load resource", "favicon")
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:")


def browser_or_skip():
    """playwright's sync API; a missing chromium fails under CI=true and skips elsewhere."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{CHROMIUM} is missing (required under CI=true)")
        pytest.skip(f"{CHROMIUM} is missing")
    return pytest.importorskip("playwright.sync_api")


@contextmanager
def chromium() -> Iterator:
    """Debian's chromium launched through playwright (see :func:`browser_or_skip`), closed afterwards."""
    sync_api = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, proc: subprocess.Popen, *, within: float, request_timeout: float = 30) -> bool:
    """Poll ``url`` until it answers; False when ``proc`` exits or ``within`` seconds pass first."""
    deadline = time.time() + within
    while time.time() < deadline and proc.poll() is None:
        try:
            urlopen(url, timeout=request_timeout).close()
            return True
        except OSError:
            time.sleep(0.5)
    return False


def wait_for_port(port: int, proc: subprocess.Popen, *, within: float) -> bool:
    """Wait until 127.0.0.1:``port`` accepts connections, without asking for a page (which would claim a
    preheated kernel); False when ``proc`` exits or ``within`` seconds pass first."""
    deadline = time.time() + within
    while time.time() < deadline and proc.poll() is None:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


def stop_server(proc: subprocess.Popen, grace: float = 60) -> None:
    """SIGTERM (servers shut their kernels down on it), then SIGKILL after ``grace`` seconds."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


def watched_page(owner, problems: list[str], who: str = "", *, offline: bool = True):
    """A new page of ``owner`` (browser or context) that blocks non-local requests and appends
    them (unless ``offline`` is False: pages that are not ours, e.g. a hub's), page errors and console errors
    (except the known harmless ones) to ``problems``."""
    page = owner.new_page()
    page.set_viewport_size({"width": 1400, "height": 1000})

    def route(route) -> None:
        if route.request.url.startswith(LOCAL):
            route.continue_()
        else:  # a page that works offline asks nothing of the outside world
            if offline:
                problems.append(f"{prefix}request leaving the machine: {route.request.url}")
            route.abort()

    page.route("**/*", route)
    prefix = f"{who} " if who else ""
    page.on("pageerror", lambda e: problems.append(f"{prefix}pageerror: {e}"))
    page.on(
        "console",
        lambda m: (
            problems.append(f"{prefix}console {m.type}: {m.text}")
            if m.type == "error" and not any(s in m.text for s in IGNORED)
            else None
        ),
    )
    return page


def kernel_processes(server_pid: int) -> list[int]:
    """The process ids of the ipykernel processes a Jupyter/Voilà server ``server_pid`` started."""
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(server_pid) and b"ipykernel" in cmdline:
            found.append(int(status.parent.name))
    return found


def leave(page) -> None:
    """Leave and close a page as a person closing the tab: its unload handlers run (Voilà's page asks the
    server to shut its kernel down), then the page closes."""
    page.unroute("**/*")  # playwright's request routing drops the unload beacon (sendBeacon) otherwise
    page.goto("about:blank")
    time.sleep(0.5)  # the unload beacon leaves with the navigation
    page.close()

"""A background job keeps its kernel 'busy' for the Jupyter server's culler, and 'idle' follows when it ends."""

from __future__ import annotations

import queue
import time

from jupyter_client.manager import start_new_kernel

CODE = """
import time
from workbench.ui.background import Job
job = Job(lambda reporter: time.sleep(6)).start()
"""


def _states(client, seconds: float) -> list[tuple[float, str]]:
    seen, end = [], time.time() + seconds
    while time.time() < end:
        try:
            msg = client.get_iopub_msg(timeout=0.2)
        except queue.Empty:
            continue
        if msg["msg_type"] == "status":
            seen.append((time.time(), msg["content"]["execution_state"]))
    return seen


def test_a_running_job_reports_busy_until_it_ends(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "ws"))
    manager, client = start_new_kernel(kernel_name="python3", startup_timeout=120)
    try:
        client.execute(CODE)
        seen = _states(client, 12.0)
        states = [s for _, s in seen]
        # the cell ends "idle" while the job runs; the job's beat says "busy" again within seconds,
        # and the last word, once the job is done, is "idle"
        cell_idle = states.index("idle")
        assert "busy" in states[cell_idle:], states
        assert states[-1] == "idle" and seen[-1][0] - seen[0][0] >= 5, seen
        client.execute("print(job.running)")
        assert [s for _, s in _states(client, 3.0)] == ["busy", "idle"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)

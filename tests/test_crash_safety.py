"""kill -9 of ``workbench generate`` at seeded random points: no data set looks whole unless it is whole.

Two kinds of kill: at a seeded random call of the functions that write and rename (``pwrite_rows`` for the
rows, ``os.replace`` for every rename: the arrays, ``dataset.json``, the final folder and an overwrite's
swap), before or after the call, in a process forked from one that imported the command line once (≈ 1 s
per kill instead of ≈ 5 s); and at a seeded random moment of a real ``workbench generate`` process.  After
each kill, every folder beside the output either loads as a whole data set (its content hash verified,
its curve count the one asked for) or is refused; the next generation removes what the dead one left.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.data.dataset import DatasetError, is_partial, load_dataset
from workbench.data.generate import GeneratorConfig, generate_to_disk
from workbench.physics import FilmStack

N = 2148  # three chunks of 1024 curves: rows are written in several pieces
OLD_N = 64
SEED = 20250115
WORKBENCH = str(Path(sys.executable).parent / "workbench")

KILLER = r"""
import json, os, signal, sys, traceback

import workbench.data.dataset as D
from workbench.cli.main import main
import workbench.cli.data  # noqa: F401 - imported once here, not in every forked child

def kill_at(owner, name, k, when):
    original, calls = getattr(owner, name), [0]
    def hooked(*args, **kwargs):
        calls[0] += 1
        if calls[0] == k and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        out = original(*args, **kwargs)
        if calls[0] == k and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return out
    setattr(owner, name, hooked)

for case in json.loads(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        code = 99
        try:
            sys.stdout = sys.stderr = open(case["ws"] + ".log", "w", buffering=1)
            kill_at(D if case["target"] == "pwrite_rows" else os, case["target"], case["k"], case["when"])
            args = ["generate", "--out", case["out"], "--num-curves", str(case["n"]), "--sld-points", "60",
                    "--chunk-size", "1024", "--workspace", case["ws"]] + (["--overwrite"] if case["overwrite"] else [])
            code = main(args) or 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)  # never return into the loop: this is the child
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"id": case["id"], "killed": os.WIFSIGNALED(status), "exit": os.waitstatus_to_exitcode(status)}))
"""


def _cases(tmp: Path, count: int) -> list[dict]:
    rnd = random.Random(SEED)
    cases = []
    for i in range(count):
        target = rnd.choice(["pwrite_rows", "replace"])
        parent = tmp / f"case{i}" / "datasets"
        cases.append(
            {
                "id": i,
                "target": target,
                "k": rnd.randint(1, 9 if target == "pwrite_rows" else 6),
                "when": rnd.choice(["before", "after"]),
                "overwrite": rnd.random() < 0.4,
                "out": str(parent / "ds"),
                "ws": str(tmp / f"case{i}" / "ws"),
                "n": N,
            }
        )
    return cases


def _assert_nothing_looks_whole_unless_it_is(parent: Path, allowed: set[int]) -> list[str]:
    """Every folder in ``parent`` either is a whole data set (hash verified, all its curves) or is refused."""
    whole = []
    for entry in sorted(parent.iterdir()):
        if not entry.is_dir():
            continue
        try:
            ds = load_dataset(entry, verify_hash=True)
        except DatasetError:
            continue
        assert not is_partial(entry), entry
        assert ds.content_hash and ds.params is not None, f"{entry} loads without a hash or parameters"
        assert ds.n == ds.meta["counts"]["curves"] and ds.n in allowed, f"{entry}: {ds.n} curves"
        whole.append(entry.name)
    return whole


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.rglob("*") if ".partial" in p.name)


def test_kills_at_every_write_and_rename_leave_no_half_data_set(tmp_path):
    stack = FilmStack.default()
    cases = _cases(tmp_path, 10)
    for case in cases:
        Path(case["ws"]).parent.mkdir(parents=True)
        if case["overwrite"]:  # an existing data set to replace
            generate_to_disk(stack, GeneratorConfig(num_curves=OLD_N, sld_points=60), case["out"], progress=False)
    proc = subprocess.run(
        [sys.executable, "-c", KILLER, json.dumps(cases)], capture_output=True, text=True, timeout=600, check=False
    )
    assert proc.returncode == 0, proc.stderr
    results = {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    killed = 0
    for case in cases:
        parent = Path(case["out"]).parent
        killed += results[case["id"]]["killed"]
        whole = _assert_nothing_looks_whole_unless_it_is(parent, {N, OLD_N} if case["overwrite"] else {N})
        if not results[case["id"]]["killed"]:  # the chosen call came after the last one: the run finished
            log = Path(case["ws"] + ".log").read_text()[-2000:]
            assert whole == ["ds"], (case, results[case["id"]], log)
        # the next generation beside it removes what the dead one left
        generate_to_disk(stack, GeneratorConfig(num_curves=8, sld_points=60), parent / "next", progress=False)
        assert _leftovers(parent) == [], case
    assert killed >= 7  # most seeded points fall inside the run


def test_a_kill_at_a_random_moment_of_the_command_leaves_no_half_data_set(tmp_path):
    rnd = random.Random(SEED + 1)
    parent = tmp_path / "datasets"
    cmd = [WORKBENCH, "generate", "--out", str(parent / "ds"), "--num-curves", "12000", "--sld-points", "60"]
    proc = subprocess.Popen(
        [*cmd, "--workspace", str(tmp_path / "ws")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(rnd.uniform(4.0, 8.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if not parent.exists():
        pytest.skip("killed before the command created anything")
    _assert_nothing_looks_whole_unless_it_is(parent, {12000})
    generate_to_disk(FilmStack.default(), GeneratorConfig(num_curves=8, sld_points=60), parent / "next", progress=False)
    assert _leftovers(parent) == []


def test_generation_never_replaces_a_folder_that_holds_other_files(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("a scientist's notes")
    config = GeneratorConfig(num_curves=8)
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match=r"results holds files that are not part of a data set \(notes\.txt"):
            generate_to_disk(FilmStack.default(), config, out, overwrite=overwrite, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]
    assert (out / "notes.txt").read_text() == "a scientist's notes"

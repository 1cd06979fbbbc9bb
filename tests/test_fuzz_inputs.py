"""Every untrusted input gets a clear error: property-based fuzzing of the loaders, plus the cases from issue 15.

The property tests run each family of :mod:`fuzz_cases` under hypothesis (``derandomize=True``: the same
inputs on every run, ≈ 40 s in all on 2 cores): only the project's error type for that entry point may
escape, an accepted curve has no NaN and no Q ≤ 0 and keeps every row that starts with a number, an
accepted stack holds its values exactly, and an upload writes nothing outside its folder.
``benchmarks/bench_fuzz.py`` runs the same families at scale.
"""

from __future__ import annotations

import collections
import io
import json
import logging
import os
import subprocess
import sys
import time
import types
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from fuzz_cases import FAMILIES, _bundle_files, run_case
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workbench.data.dataset import DatasetError, load_dataset
from workbench.data.measured import MeasurementError, load_measurement
from workbench.limits import Limits
from workbench.physics import FilmStack, Probe, reflectivity
from workbench.physics.stack import DEFAULT_LAYER_BOUND, DEFAULT_LAYER_DESC, StackError
from workbench.store.model_bundle import BundleError, load_model_bundle
from workbench.store.pyreflect_import import read_pyreflect_stats
from workbench.store.workspace import Workspace
from workbench.ui.app import TABS, Workbench, apply_query_string
from workbench.ui.context import AppContext
from workbench.ui.files_panel import FilesPanel, UploadError, store_bundle

REF_L = Path("real/ornl-ref-l-212592/REFL_212592_reduced.txt")
WORKBENCH = str(Path(sys.executable).parent / "workbench")
EXAMPLES = {
    "measured text": 300,
    "measured ORSO": 120,
    "measured .npy": 300,
    "stack definitions": 150,
    "URL values": 300,
    "saved settings": 120,
    "bundle zips (upload)": 60,
    "bundle folders (hub, adopt)": 60,
    "pyreflect statistics": 300,
}


@pytest.fixture(autouse=True)
def _quiet_restore_warnings():
    logging.disable(logging.WARNING)  # hundreds of damaged settings files each log one warning
    yield
    logging.disable(logging.NOTSET)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_only_the_projects_errors_escape_and_nothing_wrong_is_accepted(family):
    @settings(
        derandomize=True,
        max_examples=EXAMPLES[family],
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(st.randoms(use_true_random=False))
    def check(rnd):
        outcome = run_case(family, rnd)
        seen[outcome.kind] += 1
        assert outcome.ok, f"{family}: {outcome.kind}: {outcome.detail}"

    seen: collections.Counter = collections.Counter()
    check()
    assert seen["accepted"] and seen["clean"], f"{family}: the inputs reached one side only: {dict(seen)}"
    print(f"{family}: {dict(seen)}")


# ------------------------------------------------------------------------------------------ measured files
def test_a_first_data_line_with_a_bad_field_is_an_error_not_a_header(shared_data, tmp_path):
    lines = (shared_data / REF_L).read_text().splitlines()
    first = next(i for i, s in enumerate(lines) if s.strip() and not s.startswith("#"))
    fields = lines[first].split()
    lines[first] = " ".join([fields[0], fields[1], "1,5", fields[3]])
    path = tmp_path / "decimal_comma.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(MeasurementError, match=rf"decimal_comma\.txt: line {first + 1}: .*decimal comma"):
        load_measurement(path)


def test_a_double_byte_order_mark_drops_no_row(shared_data, tmp_path):
    original = load_measurement(shared_data / REF_L)
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbf\xef\xbb\xbf" + (shared_data / REF_L).read_bytes())
    twice = load_measurement(path)
    assert len(twice) == len(original) == 416
    np.testing.assert_array_equal(twice.q, original.q)


def _orso(path: Path, m, value_is: str, distribution: str | None = None) -> Path:
    """The REF_L curve as an ORSO file whose sQz column is written as ``value_is`` (any spelling)."""
    from orsopy import fileio as orso  # heavy (orsopy): only these tests write ORSO files

    dq = {"fwhm": m.dq_sigma * 2.3548200450309493, "variance": m.dq_sigma**2}.get(value_is.lower(), m.dq_sigma)
    info = orso.Orso.empty()
    info.columns = [
        orso.Column("Qz", "1/angstrom"),
        orso.Column("R"),
        orso.ErrorColumn("R", "uncertainty", "sigma"),
        orso.ErrorColumn("Qz", "resolution", "FWHM", distribution),
    ]
    orso.save_orso([orso.OrsoDataset(info, np.column_stack([m.q, m.r, m.dr, dq]))], str(path))
    path.write_text(path.read_text().replace("value_is: FWHM", f"value_is: {value_is}"))
    return path


@pytest.mark.parametrize("value_is", ["FWHM", "fwhm", "Fwhm", "variance", "sigma"])
def test_orso_resolution_is_converted_to_sigma_whatever_the_spelling(shared_data, tmp_path, value_is):
    ref = load_measurement(shared_data / REF_L)  # header: dQ [FWHM], stored as 1σ
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # orsopy warns about spellings outside its schema; the loader decides
        back = load_measurement(_orso(tmp_path / "ref_l.ort", ref, value_is))
    np.testing.assert_allclose(back.dq_sigma, ref.dq_sigma, rtol=1e-12)
    assert back.dq_convention_of_file == value_is.lower()


def test_orso_resolution_that_has_no_sigma_is_refused(shared_data, tmp_path):
    ref = load_measurement(shared_data / REF_L)
    with pytest.raises(MeasurementError, match=r"sQz: a lorentzian distribution given as FWHM has no σ"):
        load_measurement(_orso(tmp_path / "lorentz.ort", ref, "FWHM", "lorentzian"))
    with warnings.catch_warnings(), pytest.raises(MeasurementError, match=r"sQz: value_is 'hwhm'; expected sigma"):
        warnings.simplefilter("ignore")
        load_measurement(_orso(tmp_path / "hwhm.ort", ref, "hwhm"))


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"", "EOF"),
        (b"\x93NUMPY\x01\x00\x10\x00{'descr': '<f8',\n", "not a .npy array"),
        (None, "not a .npy array"),  # a zip named .npy
        (b"huge", r"declares shape \(2, 1000000000000\).*bytes of data follow"),
    ],
)
def test_corrupt_npy_files_are_measurement_errors(tmp_path, data, says):
    if data is None:
        buf = io.BytesIO()
        np.savez(buf, a=np.ones((2, 5)))
        data = buf.getvalue()
    elif data == b"huge":
        buf = io.BytesIO()
        np.save(buf, np.ones((2, 5)))
        data = buf.getvalue().replace(b"(2, 5)", b"(2, 1000000000000)", 1)
    path = tmp_path / "curve.npy"
    path.write_bytes(data)
    t0 = time.perf_counter()
    with pytest.raises(MeasurementError, match=rf"curve\.npy: .*{says}"):
        load_measurement(path)
    assert time.perf_counter() - t0 < 1.0  # nothing of the declared 16 TB is allocated


# ------------------------------------------------------------------------------------------ stack definitions
def _stack_yaml(text: str) -> FilmStack:
    data = yaml.safe_load(text)
    return FilmStack.from_pyreflect(data["layer_desc"], data.get("layer_bound"))


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        ("thickness: 1" + "0" * 400, r"layer_desc\[2\] \('layer_1'\) thickness: expected a number"),
        ("thickness: .inf", r"layer_desc\[2\] \('layer_1'\) thickness: expected a finite number, got inf"),
        ("i: .inf", r"layer_bound\[0\] i: expected a whole layer index"),
        ("i: 1.7", r"layer_bound\[0\] i: expected a whole layer index \(substrate = 0\), got 1.7"),
        ("bounds: [1, 2, 3]", r"layer_bound\[0\] bounds must be a \[lo, hi\] pair of numbers, got \[1, 2, 3\]"),
        ("bounds: '12'", r"layer_bound\[0\] bounds must be a \[lo, hi\] pair of numbers, got '12'"),
        ("sld: true", r"layer_desc\[2\] \('layer_1'\) sld: expected a number, got True"),
    ],
)
def test_bad_stack_entries_are_refused_naming_the_entry(edit, says):
    desc = [dict(d) for d in DEFAULT_LAYER_DESC]
    bound = [dict(b) for b in DEFAULT_LAYER_BOUND]
    key = edit.split(":")[0]
    target = bound[0] if key in ("i", "bounds") else desc[2]
    target[key] = "@@"
    text = yaml.safe_dump({"layer_desc": desc, "layer_bound": bound}, width=1000).replace(f"{key}: '@@'", edit)
    with pytest.raises(StackError, match=says):
        _stack_yaml(text)


def test_physical_caps_name_the_layer_and_the_limit():
    desc = [dict(d) for d in DEFAULT_LAYER_DESC]
    desc[3]["thickness"] = 300_000.0
    desc[4]["thickness"] = 250_000.0  # 55 µm in all
    with pytest.raises(StackError, match=r"film is up to 550[0-9,.]* Å thick \('layer_2' 300000 Å, 'layer_3' 250000"):
        FilmStack.from_pyreflect(desc)
    desc = [dict(d) for d in DEFAULT_LAYER_DESC]
    desc[2]["roughness"] = 1500.0
    with pytest.raises(
        StackError, match=r"layer 'layer_1': roughness 1500 Å is outside the physical limits \[0, 1000\]"
    ):
        FilmStack.from_pyreflect(desc)
    bound = [dict(b) for b in DEFAULT_LAYER_BOUND] + [{"i": 4, "par": "thickness", "bounds": [50.0, 600_000.0]}]
    bound = [b for b in bound if not (b["i"] == 4 and b["par"] == "thickness" and b["bounds"][1] < 1000)]
    with pytest.raises(StackError, match=r"'layer_3' 600000 Å.*Limits\.max_total_thickness, 50 µm"):
        FilmStack.from_pyreflect(DEFAULT_LAYER_DESC, bound)


def test_pyreflects_default_stack_loads_with_a_roughness_warning_not_an_error():
    stack = FilmStack.default()  # 76.63 Å roughness on the 72.61 Å layer_5
    warnings = stack.physics_warnings()
    assert len(warnings) == 1 and "roughness 76.63 Å is larger than the 72.61 Å of 'layer_5'" in warnings[0]


# ------------------------------------------------------------------------------------------ URL and saved settings
def test_a_bad_link_does_not_reach_the_saved_settings_and_says_so(tmp_path):
    with pytest.warns(UserWarning) as shown:
        p = apply_query_string({"tab": "stack", "num_curves": 0, "epochs": 0, "model": ""}, "model=x&tab=nope")
    assert p["model"] == "" and p["tab"] == "stack"
    assert [str(w.message) for w in shown] == [
        "URL parameter model='x' is not one of compact, parity_cnn, param, param_bounds, chi; using '' instead",
        "URL parameter tab='nope' is not one of " + ", ".join(TABS) + "; using 'stack' instead",
    ]
    ws = tmp_path / "ws"
    Workbench(ws, tab=p["tab"], settings={"train": {"model": p["model"] or "compact"}}).ctx.save_settings()
    assert Workbench(ws).train.model_kind.value == "compact"


def test_a_damaged_saved_setting_falls_back_to_its_default_with_a_warning_naming_it(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.settings_path.write_text(
        '{"version": 1, "panels": {"train": {"model": "x", "epochs": Infinity, "seed": 4},'
        ' "generate": {"num_curves": "lots", "realism": 5}}}'
    )
    wb = Workbench(ws)
    error = wb.ctx.restore_error
    for name in ("train.model = 'x'", "train.epochs = inf", "generate.num_curves = 'lots'", "generate.realism = 5"):
        assert name in error
    assert "train.seed" not in error and wb.train.seed.value == 4  # good values are kept
    assert wb.train.model_kind.value == "compact" and wb.train.epochs.value == 10
    assert wb.generate.num_curves.value == 1000
    assert wb.stack.status.level == "warn" and "train.model" in wb.stack.status.text


# ------------------------------------------------------------------------------------------ bundles and uploads
def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buf.getvalue()


def _ctx(tmp_path: Path):
    return types.SimpleNamespace(workspace=Workspace(tmp_path / "ws"), limits=Limits())


def test_a_bundle_whose_config_asks_for_a_huge_model_is_refused_before_allocating(tmp_path):
    files = dict(_bundle_files())
    config = json.loads(files["config.json"])
    config["model"] = {"kind": "parity_cnn", "n_q": 1000, "n_z": 1000, "layers": 2}  # the 4.7 KB zip
    files["config.json"] = json.dumps(config).encode()
    data = _zip(files)
    assert len(data) < 10_000
    t0 = time.perf_counter()
    with pytest.raises(UploadError, match=r"513,693,958 parameters, above the limit of 200,000,000"):
        store_bundle(_ctx(tmp_path), "big.zip", data, 2**20)
    assert time.perf_counter() - t0 < 1.0  # it cost 7 s and 2.3 GB before
    assert list((tmp_path / "ws" / "models").iterdir()) == []


def test_a_safetensors_header_that_lies_is_refused_naming_the_tensor(tmp_path):
    folder = tmp_path / "bundle"
    folder.mkdir()
    for name, data in _bundle_files().items():
        (folder / name).write_bytes(data)
    raw = (folder / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    name = next(k for k in header if k.endswith(".weight"))
    header[name]["shape"] = [100_000, 100_000]
    text = json.dumps(header).encode()
    (folder / "model.safetensors").write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])
    with pytest.raises(BundleError, match=rf"tensor '{name}': shape \[100000, 100000\] of F32 does not fit bytes"):
        load_model_bundle(folder)


def test_one_bad_file_in_an_upload_costs_only_itself(shared_data, tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = FilesPanel(ctx)
    good = (shared_data / REF_L).read_bytes()
    evil = _zip({**_bundle_files(), ".": b"x"})
    lying = bytearray(_zip(dict(_bundle_files())))
    lying[lying.index(b"PK\x01\x02") + 24 : lying.index(b"PK\x01\x02") + 28] = (1).to_bytes(4, "little")
    lines = panel.handle(
        [
            ("REFL_212592_reduced.txt", good),
            ("dots.zip", evil),
            ("lying.zip", bytes(lying)),
            ("broken.txt", b"0.01 0.5 0.01\n0.02 0.4 x\n"),
            ("again.dat", good),
        ]
    )
    stored = [line for line in lines if "→" in line]
    assert len(stored) == 2 and len(ctx.measurements()) == 2
    assert any(line.startswith("dots.zip: entry '.' is not a bundle file name") for line in lines)
    assert any(line.startswith("lying.zip:") for line in lines)
    assert any(line.startswith("broken.txt: not a readable measured curve") and "line 2" in line for line in lines)
    assert panel.status.level == "error"


def test_pyreflect_statistics_with_damaged_bytes_are_bundle_errors():
    buf = io.BytesIO()
    stats = {"nr": {"x": {"min": 0.008, "max": 0.2}, "y": {"min": -8.0, "max": 0.0}}, "sld": {"x": 1}}
    np.save(buf, np.array(stats, dtype=object), allow_pickle=True)
    with pytest.raises(BundleError, match=r"missing 'sld\.x\.min'"):
        read_pyreflect_stats(buf.getvalue())
    with pytest.raises(BundleError, match="not pyreflect normalisation statistics"):
        read_pyreflect_stats(buf.getvalue()[:70])


# ------------------------------------------------------------------------------------------ data sets and the CLI
def test_a_data_set_array_linked_out_of_its_folder_is_refused(tmp_path):
    secret = tmp_path / "elsewhere.npy"
    np.save(secret, np.ones((3, 2, 4)))
    folder = tmp_path / "ds"
    folder.mkdir()
    q = np.broadcast_to(np.linspace(0.01, 0.2, 4), (3, 4))
    np.save(folder / "sld_train.npy", np.stack([q, q], axis=1))
    os.symlink(secret, folder / "nr_train.npy")
    with pytest.raises(DatasetError, match=r"nr_train\.npy: a symbolic link to .*elsewhere\.npy, outside the data-set"):
        load_dataset(folder)


def test_command_line_refinements_are_recorded_in_the_run_registry(tmp_path):
    stack = {
        "stack": {
            "layer_desc": [
                {"name": "Si", "sld": 2.07, "roughness": 3.0},
                {"name": "oxide", "sld": 3.47, "thickness": 120.0, "roughness": 3.0},
                {"name": "air", "sld": 0.0},
            ],
            "layer_bound": [{"i": 1, "par": "thickness", "bounds": [80.0, 160.0]}],
        }
    }
    (tmp_path / "stack.yaml").write_text(yaml.safe_dump(stack))
    q = np.linspace(0.01, 0.2, 60)
    r = reflectivity(FilmStack.from_pyreflect(stack["stack"]["layer_desc"]), Probe(q))[0]
    np.savetxt(tmp_path / "curve.txt", np.column_stack([q, r, 0.02 * r]))
    ws = tmp_path / "ws"
    args = ["refine", tmp_path / "curve.txt", "--stack", tmp_path / "stack.yaml", "--out", tmp_path / "fit"]
    proc = subprocess.run(
        [WORKBENCH, *args, "--workspace", ws],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    runs = Workspace(ws).registry.list_runs(kind="refine")
    assert len(runs) == 1 and runs[0].status == "completed"
    assert abs(runs[0].metrics["oxide.thickness"] - 120.0) < 0.5 and runs[0].params["start"].startswith("stack file")

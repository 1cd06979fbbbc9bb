"""Sample families: hand fit → family → JSON → generator, repeated blocks, ties held in every curve, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workbench.cli.main import main
from workbench.data.dataset import load_dataset
from workbench.data.family import (
    FamilyError,
    Range,
    SampleFamily,
    load_family,
    parse_tie_text,
    stack_from_meta,
    stack_meta,
)
from workbench.data.generate import GeneratorConfig, generate, generate_to_disk
from workbench.data.parameters import free_parameter_columns, stacks_from_parameters
from workbench.data.sampling import apply_parameters
from workbench.physics import reflectivity
from workbench.store.model_bundle import _card

SMALL = {"sld_points": 60, "num_q": 80}
RANGES = {"thickness": "20%", "sld": 0.5, "roughness": 5}


def handfit_family(shared_data, **extra) -> SampleFamily:
    csv = shared_data / "real" / "ornl-ref-l-212592" / "manual_fit_spreadsheet.csv"
    return SampleFamily.from_dict({"name": "REF_L 212592", "from": str(csv), "ranges": RANGES, **extra})


def multilayer(**block) -> dict:
    """Si / SiOx / N × [PEO | dPS] / air, written as a scientist would."""
    repeated = {"name": "PEO", "sld": 0.6, "thickness": 33}, {"name": "dPS", "sld": 6.0, "thickness": 40}
    return {
        "name": "PEO/dPS multilayer",
        "layers": [
            {"name": "Si", "sld": 2.07, "roughness": 3},
            {"name": "SiOx", "sld": 3.47, "thickness": 12, "roughness": 3},
            {"repeat": 10, "layers": list(repeated)} | block,
            {"name": "air"},
        ],
        "ranges": RANGES,
    }


def column(data, name: str) -> np.ndarray:
    return data.params[:, data.parameter_names.index(name)]


def test_hand_fit_family_round_trips_through_json_into_a_data_set(shared_data, tmp_path):
    family = handfit_family(shared_data, ties=["PEO_*.sld", {"together": ["PEO_*.thickness", "dPS_*.thickness"]}])
    stack = family.expand()
    # the spreadsheet's 20 film layers between SiOx and air, ambient last
    assert len(stack.layers) == 23 and stack.layers[0].name == "Si" and stack.layers[-1].name == "air"
    peo = stack.layers[[x.name for x in stack.layers].index("PEO_1")]
    assert peo.thickness == pytest.approx(33.4)
    b = stack.bound(stack.layers.index(peo), "thickness")
    assert (b.lo, b.hi) == pytest.approx((0.8 * 33.4, 1.2 * 33.4))  # ±20 % of the hand fit's value
    # one PEO SLD: the hand fit's ten values (1.15 … 3.38) become their mean, the range the union of theirs ±0.5
    peo_sld = stack.bound(stack.layers.index(peo), "sld")
    assert (peo_sld.lo, peo_sld.hi) == pytest.approx((1.15 - 0.5, 3.38 + 0.5))
    assert peo.sld == pytest.approx(np.mean([2.08, 2.38, 3.38, 2.06, 3.24, 2.21, 2.45, 2.43, 1.15, 1.20]))
    assert stack.drawn_parameters == len(stack.free_parameters) - 9 - 19

    saved = family.save(tmp_path / "family.json")
    again = load_family(saved)
    assert again.expand().model_dump() == stack.model_dump()

    folder = generate_to_disk(again.expand(), GeneratorConfig(num_curves=96, seed=2, **SMALL), tmp_path / "ds")
    meta = load_dataset(folder).meta
    assert meta["stack"]["family"]["name"] == "REF_L 212592" and meta["stack"]["family"]["ranges"]["thickness"] == "20%"
    assert [t["mode"] for t in meta["stack"]["ties"]] == ["same", "together"]
    assert stack_from_meta(meta["stack"]).model_dump() == stack.model_dump()


def test_ties_hold_in_every_generated_curve_and_in_its_reflectivity(shared_data):
    family = handfit_family(
        shared_data, ties=["PEO_*.sld", "dPS_*.sld", {"together": ["PEO_*.thickness", "dPS_*.thickness"]}]
    )
    stack = family.expand()
    data = generate(stack, GeneratorConfig(num_curves=300, seed=5, consistent_roughness=0.5, **SMALL))
    peo = np.stack([column(data, f"PEO_{k}.sld") for k in range(1, 11)], axis=1)
    dps = np.stack([column(data, f"dPS_{k}.sld") for k in range(1, 11)], axis=1)
    assert np.all(peo == peo[:, :1]) and np.all(dps == dps[:, :1])
    assert np.ptp(peo[:, 0]) > 2.5  # the shared value still spans its range
    # together: every thickness at the same fraction of its own ±20 % range (one swelling factor per curve)
    names = [f"{p}_{k}.thickness" for p in ("PEO", "dPS") for k in range(1, 11)]
    index = {x.name: i for i, x in enumerate(stack.layers)}
    bounds = [stack.bound(index[n.removesuffix(".thickness")], "thickness") for n in names]
    fractions = np.stack([(column(data, n) - b.lo) / (b.hi - b.lo) for n, b in zip(names, bounds)], axis=1)
    np.testing.assert_allclose(fractions - fractions[:, :1], 0, atol=1e-12)
    factor = column(data, "PEO_1.thickness") / 33.4
    np.testing.assert_allclose(column(data, "dPS_1.thickness") / 39.8, factor, rtol=1e-12)
    # the curves are the reflectivity of exactly those tied stacks
    probe = GeneratorConfig(**SMALL).probe()
    expected = reflectivity(apply_parameters(stack, data.params[:20]), probe)
    np.testing.assert_allclose(data.nr[:20, 1, :], expected, rtol=2e-5)


def test_repeated_block_expands_to_its_layers_with_repeats_tied():
    stack = SampleFamily.from_dict(multilayer()).expand()
    names = [x.name for x in stack.layers]
    assert len(names) == 2 + 20 + 1 and names[2:6] == ["PEO_1", "dPS_1", "PEO_2", "dPS_2"] and names[-2] == "dPS_10"
    # every varying parameter of a repeated layer is one value across the ten repeats (PEO and dPS × sld,
    # thickness, roughness); isld has no range and stays fixed
    assert sorted(len(t.members) for t in stack.ties) == [10] * 6
    data = generate(stack, GeneratorConfig(num_curves=64, seed=1, **SMALL))
    for par in ("sld", "thickness", "roughness"):
        values = np.stack([column(data, f"PEO_{k}.{par}") for k in range(1, 11)], axis=1)
        assert np.all(values == values[:, :1]), par
    # Si's SLD is known (fixed), its interface roughness varies; air's SLD fixed
    assert stack.bound(0, "sld") is None and stack.bound(0, "roughness").hi == 8
    assert stack.bound(len(names) - 1, "sld") is None
    independent = SampleFamily.from_dict(multilayer(tie=[])).expand()
    assert independent.ties == [] and len(independent.free_parameters) == len(stack.free_parameters)


def test_ranges_relative_absolute_interval_and_clipped_at_zero():
    family = SampleFamily.from_dict(
        {
            "layers": [
                {"name": "Si", "sld": 2.07, "roughness": 2},
                {"name": "d2o_like", "sld": -0.56, "thickness": 50, "roughness": 3},
                {"name": "air"},
            ],
            "ranges": {"sld": "±10%", "thickness": 0, "roughness": 5},
            "overrides": {"d2o_like": {"thickness": [40, 70]}, "Si": {"sld": "fixed"}},
        }
    )
    stack = family.expand()
    sld, thickness, rough = (stack.bound(1, p) for p in ("sld", "thickness", "roughness"))
    assert (sld.lo, sld.hi) == pytest.approx((-0.616, -0.504))  # ±10 % of a negative SLD
    assert (thickness.lo, thickness.hi) == (40, 70)  # the override's interval beats thickness: 0 (fixed)
    assert (rough.lo, rough.hi) == (0, 8)  # 3 ± 5 Å, never below 0
    assert stack.bound(0, "sld") is None
    assert Range.parse("20%", "x").around(-50) == pytest.approx((-60, -40))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"repeat": -2}, "repeat count must be a whole number ≥ 1, got -2"),
        ({"repeat": 2.5}, "got 2.5"),
        ({"repeat": True}, "got True"),
        ({"tie": ["density"]}, "unknown parameter 'density'"),
        ({"layers": []}, "a block needs a list of one or more layers"),
    ],
)
def test_bad_blocks_are_named(change, message):
    with pytest.raises(FamilyError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SampleFamily.from_dict(multilayer(**change)).expand()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ties": ["PS_*.sld"]}, "unknown tie target, no layer is named like 'PS_\\*'"),
        ({"ties": ["PEO_*.density"]}, "unknown parameter 'density'"),
        ({"ties": ["PEO_*"]}, "names no parameter"),
        ({"ties": ["Si.sld"]}, "Si.sld is fixed"),
        ({"ties": [{"along": ["PEO_*.sld"]}]}, "a tie is 'LAYER.par' or"),
        ({"ranges": {"thickness": "20%%"}}, "ranges.thickness: cannot read the range '20%%'"),
        ({"ranges": {"thickness": -5}}, "must be a finite number ≥ 0, got -5"),
        ({"ranges": {"thick": 5}}, "unknown parameter 'thick'"),
        ({"ranges": {"sld": [1, 0]}}, "finite lo ≤ hi"),
        ({"overrides": {"PMMA": {"sld": 1}}}, "no layer is named like 'PMMA'"),
        ({"overrides": {"Si": {"thickness": 5}}}, "'Si' is semi-infinite"),
        ({"colour": "red"}, "unknown key\\(s\\) \\['colour'\\]"),
    ],
)
def test_bad_families_are_named(change, message):
    with pytest.raises(FamilyError, match=message):
        SampleFamily.from_dict(multilayer() | change).expand()


@settings(max_examples=150, deadline=None)
@given(st.floats(min_value=0, max_value=1e6, allow_nan=False), st.sampled_from(["", "±", "+-", "+/-"]))
def test_range_parser_reads_every_well_formed_range(x, sign):
    text = repr(x)
    assert Range.parse(f"{sign}{text}%", "r") == Range("relative", x)
    assert Range.parse(f"{sign}{text}", "r") == Range("absolute", x)
    assert Range.parse(x, "r") == Range("absolute", x)
    assert Range.parse(Range.parse(f"{text}%", "r").to_json(), "r") == Range("relative", x)  # saved and read back
    assert Range.parse(f"{text}%", "r").around(10.0)[1] == pytest.approx(10 + 10 * x / 100)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=12))
def test_range_parser_refuses_anything_else_by_name(text):
    try:
        parsed = Range.parse(text, "layers.PEO.sld")
    except FamilyError as exc:
        assert "layers.PEO.sld" in str(exc)
    else:
        assert parsed.width >= 0 and np.isfinite(parsed.width)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=-3, max_value=12),
    st.sampled_from(["20%", 0.5, "abc", "-1", [1, 2], "5 %"]),
    st.sampled_from(["PEO_*.sld", "dPS_*.thickness", "x.sld", "PEO_1.roughness"]),
)
def test_family_parser_either_builds_a_valid_stack_or_names_the_problem(count, rng, tie):
    data = multilayer()
    data["layers"][2]["repeat"] = count
    data["ranges"] = {"sld": rng, "thickness": "10%"}
    data["ties"] = [tie]
    try:
        stack = SampleFamily.from_dict(data).expand()
    except FamilyError as exc:
        assert any(word in str(exc) for word in ("repeat", "range", "tie", "sld"))
    else:
        assert len(stack.layers) == 3 + 2 * count


def test_parameter_model_predicts_one_column_per_tie_and_stacks_keep_the_ties(tmp_path):
    stack = SampleFamily.from_dict(multilayer(tie=["sld"]) | {"ties": ["PEO_*.roughness"]}).expand()
    folder = generate_to_disk(stack, GeneratorConfig(num_curves=32, seed=3, **SMALL), tmp_path / "ds", progress=False)
    ds = load_dataset(folder)
    cols, names, _ = free_parameter_columns(ds)
    assert "PEO_1.sld" in names and "PEO_2.sld" not in names and "PEO_2.thickness" in names
    assert len(names) == stack.drawn_parameters
    config = {"data": {"stack": ds.meta["stack"], "parameters": {"names": names}}}
    truth = ds.params[5]
    predicted = stacks_from_parameters(config, truth[cols][None, :])[0]
    np.testing.assert_allclose(apply_parameters(stack, truth[None, :]).sld[0], predicted.to_arrays().sld[0])
    assert len({x.roughness for x in predicted.layers if x.name.startswith("PEO_")}) == 1


def test_model_card_names_the_family_and_its_ranges():
    stack = SampleFamily.from_dict(multilayer()).expand()
    config = {
        "task": "nr_to_params",
        "model": {"kind": "params"},
        "versions": {"workbench": "0", "torch": "2"},
        "created": "today",
        "data": {"stack": stack_meta(stack)},
    }
    card = _card(config, {}, 10)
    assert "sample family: 'PEO/dPS multilayer'" in card and "10 × [PEO | dPS]" in card
    assert "thickness ±20 %" in card and "sld ±0.5 1e-6 Å⁻²" in card and "roughness ±5 Å" in card
    assert f"{len(stack.free_parameters)} varying parameters drawn as {stack.drawn_parameters} (6 ties)" in card


def test_generate_cli_with_a_family_writes_it_into_the_data_set(tmp_path, capsys):
    family_file = tmp_path / "family.yaml"
    SampleFamily.from_dict(multilayer() | {"ties": [{"together": ["PEO_*.thickness", "SiOx.thickness"]}]}).save(
        family_file
    )
    out = tmp_path / "ds"
    argv = ["generate", "--stack", str(family_file), "--out", str(out), "--num-curves", "40", "--sld-points", "50"]
    assert main([*argv, "--sld-range", "0.25", "--workspace", str(tmp_path / "ws")]) == 0
    assert "23 layers" in capsys.readouterr().out
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["stack"]["family"]["name"] == "PEO/dPS multilayer"
    assert meta["stack"]["family"]["ranges"]["sld"] == 0.25  # the option replaced the file's ±0.5
    assert {len(t["members"]) for t in meta["stack"]["ties"]} == {10, 11}
    params = np.load(out / "params.npy")
    sld = [meta["parameter_names"].index(f"dPS_{k}.sld") for k in range(1, 11)]
    assert np.all(params[:, sld] == params[:, sld[:1]]) and np.all(np.abs(params[:, sld[0]] - 6.0) <= 0.25)
    # bad input: exit code 2 and the message names the option and the text
    assert main([*argv[:-4], "--thickness-range", "20%%", "--overwrite"]) == 2
    assert "--thickness-range: cannot read the range '20%%'" in capsys.readouterr().err


def test_folding_layers_into_a_block_keeps_patterns_matching_and_names_bad_folds(shared_data):
    family = handfit_family(shared_data, ties=["PEO_*.sld"])
    folded = family.fold("PEO_10", 4, 5)
    block = folded.layers[2]
    assert [x["name"] for x in block.layers] == ["PEO_a", "dPS_a", "dPS_b", "PEO_b"] and block.repeat == 5
    # each period layer takes the mean of its five repeats (PEO_10, PEO_8, PEO_6, PEO_4, PEO_2)
    assert block.layers[0]["sld"] == pytest.approx(np.mean([1.2, 2.43, 2.21, 2.06, 2.38]))
    stack = folded.expand()
    assert len(stack.layers) == 23 and stack.layers[2].name == "PEO_a_1"
    assert [len(t.members) for t in stack.ties if t.members[0] == "PEO_a_1.sld"] == [10]  # PEO_* still ties them
    partial = family.fold("PEO_10", 2, 1)  # PEO_10, dPS_10 → PEO_1 would collide with the hand fit's PEO_1
    assert [x["name"] for x in partial.layers[2].layers] == ["PEO_r", "dPS_r"] and len(partial.expand().layers) == 23
    with pytest.raises(FamilyError, match="run past the film"):
        family.fold("PEO_10", 4, 6)
    with pytest.raises(FamilyError, match="no layer named 'PMMA'"):
        family.fold("PMMA", 2, 2)
    with pytest.raises(FamilyError, match="blocks do not nest"):
        folded.fold(2, 1, 1)


def test_ties_written_one_a_line():
    assert parse_tie_text("PEO_*.sld\n# a comment\n\ntogether: PEO_*.thickness, dPS_*.thickness") == [
        ("same", ("PEO_*.sld",)),
        ("together", ("PEO_*.thickness", "dPS_*.thickness")),
    ]
    with pytest.raises(FamilyError, match=r"ties line 2: 'alike: a\.sld' starts with 'alike'"):
        parse_tie_text("a.sld\nalike: a.sld")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("sametogherPEOdS_*.,:#ld1 \n\t")) | st.characters(), max_size=40))
def test_tie_text_from_the_panel_parses_or_names_its_line(text):
    """Whatever is typed in the Sample family's ties box: ties, or a FamilyError saying what is wrong — never
    another exception."""
    try:
        ties = parse_tie_text(text)
    except FamilyError as exc:
        assert str(exc)
    else:
        assert all(mode in ("same", "together") and patterns for mode, patterns in ties)

"""The typed film stack: defaults, pyreflect round trip, validation errors that name the culprit."""

from __future__ import annotations

import json

import numpy as np
import pytest

from workbench.physics import FilmStack, Layer, StackError
from workbench.physics.stack import DEFAULT_LAYER_BOUND, DEFAULT_LAYER_DESC


def test_default_stack_is_pyreflects_example_with_values_at_bound_midpoints():
    stack = FilmStack.default()
    assert [layer.name for layer in stack.layers] == [
        "substrate",
        "siox",
        "layer_1",
        "layer_2",
        "layer_3",
        "layer_4",
        "layer_5",
        "air",
    ]
    assert stack.substrate.sld == 2.07 and stack.ambient.sld == 0.0
    for b in stack.bounds:
        assert stack.get(b.i, b.par) == pytest.approx(0.5 * (b.lo + b.hi), abs=6e-3), (b.i, b.par)
    assert len(stack.free_parameters) == 18  # siox sld is fixed at 3.47
    assert stack.parameter_names()[:2] == ["substrate.roughness", "siox.thickness"]


def test_pyreflect_layer_desc_and_layer_bound_round_trip_losslessly():
    stack = FilmStack.from_pyreflect(DEFAULT_LAYER_DESC, DEFAULT_LAYER_BOUND)
    assert stack.to_layer_desc() == DEFAULT_LAYER_DESC
    assert stack.to_layer_bound() == DEFAULT_LAYER_BOUND
    # and through JSON, as a pyreflect settings file would carry them
    again = FilmStack.from_pyreflect(
        json.loads(json.dumps(stack.to_layer_desc())), json.loads(json.dumps(stack.to_layer_bound()))
    )
    assert again == stack


def test_solid_liquid_cell_with_silicon_ambient_is_valid():
    stack = FilmStack(
        layers=[
            Layer(name="D2O", sld=6.36, roughness=3),
            Layer(name="film", sld=1.0, thickness=50, roughness=4),
            Layer(name="Si", sld=2.07),
        ]
    )
    assert stack.ambient.name == "Si"
    assert stack.to_arrays().roughness.shape == (1, 2)


@pytest.mark.parametrize(
    "layer, message",
    [
        ({"name": "layer_2", "thickness": -5.0}, "layer 'layer_2': thickness must be ≥ 0"),
        ({"name": "layer_3", "roughness": -1.0}, "layer 'layer_3': roughness must be ≥ 0"),
        ({"name": "gold", "sld": float("nan")}, "layer 'gold': sld must be a finite number"),
        ({"name": "gold", "isld": float("inf")}, "layer 'gold': isld must be a finite number"),
        ({"name": "boron", "isld": -0.1}, "layer 'boron': isld must be ≥ 0"),
    ],
)
def test_invalid_layer_values_name_the_layer_and_field(layer, message):
    with pytest.raises(ValueError, match=message):
        Layer(**layer)


def test_invalid_bounds_name_the_layer_and_parameter():
    desc = [dict(d) for d in DEFAULT_LAYER_DESC]
    with pytest.raises(ValueError, match=r"bound for layer 2 thickness: lo > hi \(98.0 > 9.0\)"):
        FilmStack.from_pyreflect(desc, [{"i": 2, "par": "thickness", "bounds": [98.0, 9.0]}])
    with pytest.raises(ValueError, match=r"layer index out of range, the stack has layers 0..7"):
        FilmStack.from_pyreflect(desc, [{"i": 9, "par": "sld", "bounds": [1, 2]}])
    with pytest.raises(ValueError, match="par"):
        FilmStack.from_pyreflect(desc, [{"i": 1, "par": "density", "bounds": [1, 2]}])
    with pytest.raises(StackError, match=r"layer_bound\[0\] must look like"):
        FilmStack.from_pyreflect(desc, [{"i": 1, "par": "sld"}])
    with pytest.raises(ValueError, match=r"bound for layer 3 \('layer_2'\) roughness: lo must be ≥ 0"):
        FilmStack.from_pyreflect(desc, [{"i": 3, "par": "roughness", "bounds": [-1, 2]}])


def test_unknown_field_index_and_non_numbers_are_rejected_clearly():
    stack = FilmStack.default()
    with pytest.raises(StackError, match="unknown parameter 'density'"):
        stack.get(1, "density")
    with pytest.raises(StackError, match="layer index 12 out of range"):
        stack.with_value(12, "sld", 1.0)
    with pytest.raises(StackError, match=r"layer_desc\[1\] \('siox'\) thickness: expected a number, got 'thick'"):
        FilmStack.from_pyreflect([{"name": "si", "sld": 2.07}, {"name": "siox", "thickness": "thick"}, {"name": "air"}])
    with pytest.raises(StackError, match=r"unknown field\(s\) \['density'\]"):
        FilmStack.from_pyreflect([{"name": "si", "density": 2.3}, {"name": "air"}])
    with pytest.raises(ValueError, match="at least a substrate and an ambient"):
        FilmStack(layers=[Layer(name="si")])


def test_with_value_returns_a_validated_copy():
    stack = FilmStack.default()
    thicker = stack.with_value(3, "thickness", 200.0)
    assert thicker.get(3, "thickness") == 200.0 and stack.get(3, "thickness") == 178.66
    with pytest.raises(ValueError, match="layer 'layer_2': thickness must be ≥ 0"):
        stack.with_value(3, "thickness", -1.0)


def test_arrays_follow_the_substrate_first_interface_on_top_convention():
    a = FilmStack.default().to_arrays()
    assert a.sld.shape == (1, 8) and a.roughness.shape == (1, 7)
    np.testing.assert_allclose(a.roughness[0], [1.35, 2.05, 20.61, 57.26, 21.86, 17.57, 76.63])

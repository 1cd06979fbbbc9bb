"""The typed film stack: layers (substrate first, ambient last) and their sampling bounds.

Conventions (refl1d's and pyreflect's): SLD and imaginary SLD in 1e-6 Å⁻², thickness and
roughness in Å.  ``layers[0]`` is the substrate, ``layers[-1]`` the ambient (incident medium,
which need not be air: in a solid–liquid cell the beam enters through silicon).  The roughness
of layer ``i`` is the interface on top of it, between layer ``i`` and layer ``i + 1``; the
ambient's roughness is unused.  The thicknesses of substrate and ambient are ignored.

Every stack is held to the physical caps of :class:`~workbench.limits.Limits` (``$WORKBENCH_LIMITS``):
SLD and imaginary SLD within their ranges, roughness ≤ 1,000 Å, the inner layers together (at their
values and at the tops of their thickness bounds) ≤ 50 µm.  Before the caps, a 1e8 Å layer made
``workbench generate`` raise MemoryError after 66 s and 1e308 an OverflowError.  A roughness larger
than the thinner neighbouring layer is allowed (pyreflect's own default stack has 76.6 Å on a
72.6 Å layer) but Névot–Croce is outside its range there: :meth:`FilmStack.physics_warnings` says so.
Stack definitions from files (:meth:`FilmStack.from_pyreflect`) are checked entry by entry: no
silent coercion (``i: 1.7``, ``bounds: "12"`` and ``true`` are refused), and every error is a
:class:`StackError` naming the entry.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..limits import Limits

PARAMETER_FIELDS: tuple[str, ...] = ("sld", "isld", "thickness", "roughness")
ParameterName = Literal["sld", "isld", "thickness", "roughness"]


class StackError(ValueError):
    """A film stack, a layer or a bound is invalid; the message names which and why."""


class Layer(BaseModel):
    """One slab of the film: a name and its four physical parameters."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)

    name: str = Field(description="Layer name shown in tables and charts")
    sld: float = Field(0.0, description="Scattering length density, 1e-6 Å⁻²")
    isld: float = Field(0.0, description="Imaginary SLD (absorption), 1e-6 Å⁻², ≥ 0")
    thickness: float = Field(0.0, description="Thickness, Å (ignored for substrate and ambient)")
    roughness: float = Field(0.0, description="RMS roughness of the interface on top of this layer, Å")

    @model_validator(mode="after")
    def _check_values(self) -> Layer:
        for field in PARAMETER_FIELDS:
            value = getattr(self, field)
            if not math.isfinite(value):
                raise StackError(f"layer {self.name!r}: {field} must be a finite number, got {value!r}")
        for field in ("isld", "thickness", "roughness"):
            value = getattr(self, field)
            if value < 0:
                unit = "1e-6 Å⁻²" if field == "isld" else "Å"
                raise StackError(f"layer {self.name!r}: {field} must be ≥ 0 {unit}, got {value!r}")
        limits = Limits.from_env()
        for field in ("sld", "isld", "roughness"):
            _check_cap(limits, field, getattr(self, field), f"layer {self.name!r}")
        if self.thickness > limits.max_total_thickness:
            raise StackError(
                f"layer {self.name!r}: thickness {self.thickness:g} Å is above the limit for a whole film, "
                f"{limits.max_total_thickness:g} Å (Limits.max_total_thickness)"
            )
        return self


_UNITS = {"sld": "1e-6 Å⁻²", "isld": "1e-6 Å⁻²", "thickness": "Å", "roughness": "Å"}


def _check_cap(limits: Limits, field: str, value: float, what: str) -> None:
    """``value`` of ``field`` inside its physical range of ``limits``, else a StackError naming ``what``."""
    rng = limits.parameter(field)
    if value not in rng:
        unit = _UNITS[field]
        raise StackError(
            f"{what}: {field} {value:g} {unit} is outside the physical limits [{rng.lo:g}, {rng.hi:g}] {unit} "
            f"(Limits.{field})"
        )


class Bound(BaseModel):
    """Sampling/fitting range of one parameter of one layer (pyreflect's ``layer_bound`` entry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    i: int = Field(description="Layer index, substrate = 0")
    par: ParameterName
    lo: float
    hi: float

    @model_validator(mode="after")
    def _check_range(self) -> Bound:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)):
            raise StackError(f"bound for layer {self.i} {self.par}: limits must be finite, got [{self.lo}, {self.hi}]")
        if self.lo > self.hi:
            raise StackError(f"bound for layer {self.i} {self.par}: lo > hi ({self.lo} > {self.hi})")
        return self

    @property
    def fixed(self) -> bool:
        return self.lo == self.hi


class FilmStack(BaseModel):
    """A film stack and the bounds within which its parameters may vary."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    layers: list[Layer]
    bounds: list[Bound] = Field(default_factory=list)

    @field_validator("layers")
    @classmethod
    def _at_least_two(cls, layers: list[Layer]) -> list[Layer]:
        if len(layers) < 2:
            raise StackError(f"a film stack needs at least a substrate and an ambient, got {len(layers)} layer(s)")
        return layers

    @model_validator(mode="after")
    def _check_bounds(self) -> FilmStack:
        limits = Limits.from_env()
        seen: set[tuple[int, str]] = set()
        for b in self.bounds:
            if not 0 <= b.i < len(self.layers):
                raise StackError(
                    f"bound for layer {b.i} {b.par}: layer index out of range, the stack has layers "
                    f"0..{len(self.layers) - 1}"
                )
            if (b.i, b.par) in seen:
                raise StackError(f"bound for layer {b.i} ({self.layers[b.i].name!r}) {b.par} is given twice")
            seen.add((b.i, b.par))
            last = len(self.layers) - 1
            if b.par == "thickness" and b.i in (0, last):
                raise StackError(
                    f"bound for layer {b.i} ({self.layers[b.i].name!r}) thickness: the substrate and the ambient are "
                    "semi-infinite, their thickness has no effect; bound an inner layer's thickness"
                )
            if b.par == "roughness" and b.i == last:
                raise StackError(
                    f"bound for layer {b.i} ({self.layers[b.i].name!r}) roughness: "
                    "the ambient has no interface above it; "
                    "the roughness of layer i is the interface between layers i and i + 1"
                )
            if b.par == "isld" and b.i == last:
                raise StackError(
                    f"bound for layer {b.i} ({self.layers[b.i].name!r}) isld: absorption in the incident medium is "
                    "ignored (refl1d's convention); bound another layer's isld"
                )
            if b.par in ("isld", "thickness", "roughness") and b.lo < 0:
                raise StackError(
                    f"bound for layer {b.i} ({self.layers[b.i].name!r}) {b.par}: lo must be ≥ 0, got {b.lo}"
                )
            if b.par != "thickness":
                for value in (b.lo, b.hi):
                    _check_cap(limits, b.par, value, f"bound for layer {b.i} ({self.layers[b.i].name!r})")
        self._check_total_thickness()
        return self

    def _check_total_thickness(self) -> None:
        """The inner layers at their thickest (value or top of the bound) fit in ``Limits.max_total_thickness``."""
        cap = Limits.from_env().max_total_thickness
        thickest = {i: layer.thickness for i, layer in enumerate(self.layers[1:-1], start=1)}
        for b in self.bounds:
            if b.par == "thickness" and b.i in thickest:
                thickest[b.i] = max(thickest[b.i], b.hi)
        total = sum(thickest.values())
        if total > cap:
            top = sorted(thickest, key=thickest.get, reverse=True)[:3]
            named = ", ".join(f"{self.layers[i].name!r} {thickest[i]:g} Å" for i in top)
            raise StackError(
                f"the film is up to {total:g} Å thick ({named}{', …' if len(thickest) > 3 else ''}), above the "
                f"limit of {cap:g} Å (Limits.max_total_thickness, {cap / 1e4:g} µm); thin those layers or their bounds"
            )

    def physics_warnings(self) -> list[str]:
        """Where the numbers may not mean what they seem, though the stack is valid (not errors).

        A roughness larger than the thinner of the two layers it separates: Névot–Croce (and the error
        function profile) assume interfaces well apart, so R can exceed what refl1d's profile slicing gives.
        """
        out = []
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers[:-1]):
            finite = [self.layers[j] for j in (i, i + 1) if 0 < j < last]
            if not finite or layer.roughness == 0:
                continue
            thinner = min(finite, key=lambda x: x.thickness)
            if layer.roughness > thinner.thickness:
                out.append(
                    f"layer {i} ({layer.name!r}): roughness {layer.roughness:g} Å is larger than the "
                    f"{thinner.thickness:g} Å of {thinner.name!r}; Névot–Croce is outside its range there "
                    "(the profile and R are approximate)"
                )
        return out

    # ------------------------------------------------------------------ access
    @property
    def substrate(self) -> Layer:
        return self.layers[0]

    @property
    def ambient(self) -> Layer:
        return self.layers[-1]

    def bound(self, i: int, par: str) -> Bound | None:
        """The bound on ``par`` of layer ``i``, or None when that parameter is fixed."""
        self._check_parameter(i, par)
        for b in self.bounds:
            if b.i == i and b.par == par:
                return b
        return None

    def _check_parameter(self, i: int, par: str) -> None:
        if par not in PARAMETER_FIELDS:
            raise StackError(f"unknown parameter {par!r}; expected one of {', '.join(PARAMETER_FIELDS)}")
        if not -len(self.layers) <= i < len(self.layers):
            raise StackError(f"layer index {i} out of range, the stack has layers 0..{len(self.layers) - 1}")

    def get(self, i: int, par: str) -> float:
        self._check_parameter(i, par)
        return float(getattr(self.layers[i], par))

    def with_value(self, i: int, par: str, value: float) -> FilmStack:
        """A copy with one parameter changed (validated)."""
        self._check_parameter(i, par)
        layers = [layer.model_copy() for layer in self.layers]
        data = layers[i].model_dump()
        data[par] = float(value)
        layers[i] = Layer(**data)
        return FilmStack(layers=layers, bounds=list(self.bounds))

    @property
    def free_parameters(self) -> list[Bound]:
        """Bounds whose range is not a single value, in stack order: the sampled/fitted parameters."""
        return [b for b in self.bounds if not b.fixed]

    def parameter_names(self, bounds: Sequence[Bound] | None = None) -> list[str]:
        """Readable names ``"<layer>.<par>"`` for a list of bounds (default: the free ones)."""
        bounds = self.free_parameters if bounds is None else bounds
        return [f"{self.layers[b.i].name}.{b.par}" for b in bounds]

    # ------------------------------------------------------------------ arrays
    def to_arrays(self) -> StackArrays:
        """This stack as a batch of one, in the array form every kernel takes."""
        return StackArrays.from_stacks([self])

    # ------------------------------------------------------------- pyreflect
    def to_layer_desc(self) -> list[dict[str, Any]]:
        """pyreflect's ``layer_desc``: a list of ``{name, sld, isld, thickness, roughness}``."""
        return [layer.model_dump() for layer in self.layers]

    def to_layer_bound(self) -> list[dict[str, Any]]:
        """pyreflect's ``layer_bound``: a list of ``{i, par, bounds: [lo, hi]}``."""
        return [{"i": b.i, "par": b.par, "bounds": [b.lo, b.hi]} for b in self.bounds]

    @classmethod
    def from_pyreflect(
        cls, layer_desc: Iterable[dict[str, Any]], layer_bound: Iterable[dict[str, Any]] | None = None
    ) -> FilmStack:
        """Build a stack from pyreflect's ``layer_desc`` and ``layer_bound`` lists (e.g. read from a file).

        Raises :class:`StackError` naming the entry (``layer_desc[2] ('polymer') thickness: ...``).
        """
        if not isinstance(layer_desc, (list, tuple)):
            raise StackError(f"layer_desc must be a list of layers, got {type(layer_desc).__name__}")
        if layer_bound is not None and not isinstance(layer_bound, (list, tuple)):
            raise StackError(
                f"layer_bound must be a list of {{i, par, bounds}} entries, got {type(layer_bound).__name__}"
            )
        layers = []
        for index, entry in enumerate(layer_desc):
            if not isinstance(entry, dict):
                raise StackError(f"layer_desc[{index}] must be a dict, got {type(entry).__name__}")
            unknown = set(entry) - {"name", *PARAMETER_FIELDS}
            if unknown:
                raise StackError(
                    f"layer_desc[{index}]: unknown field(s) {sorted(map(str, unknown))}; expected name, "
                    f"{', '.join(PARAMETER_FIELDS)}"
                )
            name = entry.get("name", f"layer{index}")
            if not isinstance(name, str):
                raise StackError(f"layer_desc[{index}] name must be text, got {name!r}")
            data: dict[str, Any] = {"name": name}
            for field in PARAMETER_FIELDS:
                if field in entry:
                    data[field] = _as_float(entry[field], f"layer_desc[{index}] ({name!r}) {field}")
            layers.append(_validated(Layer, data, f"layer_desc[{index}] ({name!r})"))
        bounds = []
        for index, entry in enumerate(layer_bound or []):
            what = f"layer_bound[{index}]"
            if not isinstance(entry, dict) or set(entry) != {"i", "par", "bounds"}:
                raise StackError(f"{what} must look like {{'i': int, 'par': str, 'bounds': [lo, hi]}}, got {entry!r}")
            par, pair = entry["par"], entry["bounds"]
            if par not in PARAMETER_FIELDS:
                raise StackError(f"{what}: unknown parameter {par!r}; expected one of {', '.join(PARAMETER_FIELDS)}")
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise StackError(f"{what} bounds must be a [lo, hi] pair of numbers, got {pair!r}")
            data = {
                "i": _as_index(entry["i"], f"{what} i"),
                "par": par,
                "lo": _as_float(pair[0], f"{what} lo"),
                "hi": _as_float(pair[1], f"{what} hi"),
            }
            bounds.append(_validated(Bound, data, what))
        return _validated(cls, {"layers": layers, "bounds": bounds}, "the stack")

    @classmethod
    def default(cls) -> FilmStack:
        """pyreflect's example stack and bounds (Si / SiOx / five polymer layers / air)."""
        return cls.from_pyreflect(DEFAULT_LAYER_DESC, DEFAULT_LAYER_BOUND)


def _as_float(value: Any, what: str) -> float:
    """A finite float from a number or numeric text; never a bool (``true`` is not 1 Å)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise StackError(f"{what}: expected a number, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError, OverflowError):
        raise StackError(f"{what}: expected a number, got {value!r}") from None
    if not math.isfinite(out):
        raise StackError(f"{what}: expected a finite number, got {value!r}")
    return out


def _as_index(value: Any, what: str) -> int:
    """A layer index: an integer (or a float with no fraction, as JSON may write it), never 1.7 → 1."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    raise StackError(f"{what}: expected a whole layer index (substrate = 0), got {value!r}")


def _validated(model: type[BaseModel], data: dict[str, Any], what: str) -> Any:
    """``model(**data)`` with pydantic's error turned into a StackError naming ``what``."""
    try:
        return model(**data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        message = str(err.get("msg", exc)).removeprefix("Value error, ")
        loc = ".".join(str(x) for x in err.get("loc", ()))
        raise StackError(message if err.get("type") == "value_error" else f"{what} {loc}: {message}") from None


class StackArrays:
    """A batch of stacks with the same number of layers, as float arrays of shape (B, L).

    ``roughness`` has shape (B, L - 1): entry ``j`` is the interface between layer ``j`` and
    ``j + 1`` (substrate first).  Arrays may be numpy arrays or torch tensors.
    """

    __slots__ = ("isld", "roughness", "sld", "thickness")

    def __init__(self, sld, isld, thickness, roughness):
        self.sld, self.isld, self.thickness, self.roughness = sld, isld, thickness, roughness
        if sld.ndim != 2 or isld.shape != sld.shape or thickness.shape != sld.shape:
            raise StackError(
                f"sld, isld and thickness must share one (batch, layers) shape; got {tuple(sld.shape)}, "
                f"{tuple(isld.shape)}, {tuple(thickness.shape)}"
            )
        if tuple(roughness.shape) != (sld.shape[0], sld.shape[1] - 1):
            raise StackError(
                f"roughness must have shape (batch, layers - 1) = {(sld.shape[0], sld.shape[1] - 1)}, got "
                f"{tuple(roughness.shape)}"
            )

    @classmethod
    def from_stacks(cls, stacks: Sequence[FilmStack]) -> StackArrays:
        if not stacks:
            raise StackError("need at least one stack")
        n = len(stacks[0].layers)
        if any(len(s.layers) != n for s in stacks):
            raise StackError("all stacks in a batch must have the same number of layers")
        table = np.array(
            [[[getattr(layer, f) for f in PARAMETER_FIELDS] for layer in s.layers] for s in stacks], dtype=np.float64
        )
        return cls(table[..., 0], table[..., 1], table[..., 2], table[..., 3][:, :-1].copy())

    @property
    def batch(self) -> int:
        return int(self.sld.shape[0])

    @property
    def n_layers(self) -> int:
        return int(self.sld.shape[1])

    def map(self, fn) -> StackArrays:
        """Apply ``fn`` to each array (e.g. ``torch.as_tensor``)."""
        return StackArrays(fn(self.sld), fn(self.isld), fn(self.thickness), fn(self.roughness))

    def __getitem__(self, index) -> StackArrays:
        return StackArrays(self.sld[index], self.isld[index], self.thickness[index], self.roughness[index])

    def __len__(self) -> int:
        return self.batch


DEFAULT_LAYER_DESC: list[dict[str, Any]] = [
    {"name": "substrate", "sld": 2.07, "isld": 0.0, "thickness": 0.0, "roughness": 1.35},
    {"name": "siox", "sld": 3.47, "isld": 0.0, "thickness": 12.17, "roughness": 2.05},
    {"name": "layer_1", "sld": 3.96, "isld": 0.0, "thickness": 53.79, "roughness": 20.61},
    {"name": "layer_2", "sld": 2.37, "isld": 0.0, "thickness": 178.66, "roughness": 57.26},
    {"name": "layer_3", "sld": 3.85, "isld": 0.0, "thickness": 79.63, "roughness": 21.86},
    {"name": "layer_4", "sld": 3.24, "isld": 0.0, "thickness": 67.49, "roughness": 17.57},
    {"name": "layer_5", "sld": 2.67, "isld": 0.0, "thickness": 72.61, "roughness": 76.63},
    {"name": "air", "sld": 0.0, "isld": 0.0, "thickness": 0.0, "roughness": 0.0},
]

DEFAULT_LAYER_BOUND: list[dict[str, Any]] = [
    {"i": 0, "par": "roughness", "bounds": [1.177, 1.5215]},
    {"i": 1, "par": "sld", "bounds": [3.47, 3.47]},
    {"i": 1, "par": "thickness", "bounds": [9.7216, 14.624]},
    {"i": 1, "par": "roughness", "bounds": [1.108, 2.998]},
    {"i": 2, "par": "sld", "bounds": [3.7235, 4.197]},
    {"i": 2, "par": "thickness", "bounds": [8.717, 98.867]},
    {"i": 2, "par": "roughness", "bounds": [2.2571, 38.969]},
    {"i": 3, "par": "sld", "bounds": [1.6417, 3.1033]},
    {"i": 3, "par": "thickness", "bounds": [117.4, 239.91]},
    {"i": 3, "par": "roughness", "bounds": [19.32, 95.202]},
    {"i": 4, "par": "sld", "bounds": [3.0246, 4.6755]},
    {"i": 4, "par": "thickness", "bounds": [64.482, 94.768]},
    {"i": 4, "par": "roughness", "bounds": [15.713, 28.007]},
    {"i": 5, "par": "sld", "bounds": [1.501, 4.9837]},
    {"i": 5, "par": "thickness", "bounds": [51.655, 83.334]},
    {"i": 5, "par": "roughness", "bounds": [9.7741, 25.373]},
    {"i": 6, "par": "sld", "bounds": [0.85516, 4.4906]},
    {"i": 6, "par": "thickness", "bounds": [58.479, 86.738]},
    {"i": 6, "par": "roughness", "bounds": [43.155, 110.11]},
]

"""The pure state behind the Film stack and Probe panels: no widgets, no plotting.

:class:`StackModel` holds the layers, their bounds and the probe settings, clamps every value to
the hard limits of :mod:`workbench.limits`, and notifies observers after each change (the
refnx split: a model object, views that observe it).  Substrate (first) and ambient (last) stay
in place: layers are added, removed and reordered between them.  The same object serialises to
the settings file the dashboard autosaves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..limits import Limits
from ..physics import FilmStack, Layer, Probe, reflectivity, sld_profile
from ..physics.probe import DEFAULT_DQ_OVER_Q_FWHM, DEFAULT_NUM_Q, DEFAULT_Q_MAX, DEFAULT_Q_MIN
from ..physics.stack import PARAMETER_FIELDS, StackError

Observer = Callable[[str], None]


class ProbeSettings(BaseModel):
    """pyreflect's probe settings (qMin, qMax, numQPoints, qResolution) plus scale and background.

    The Probe panel's widgets are generated from these fields; their ranges come from the limits.
    """

    model_config = ConfigDict(extra="forbid")

    q_min: float = Field(
        DEFAULT_Q_MIN,
        description="lowest Q of the preview and of generated curves",
        json_schema_extra={"label": "Q min", "unit": "Å⁻¹", "pyreflect": "qMin"},
    )
    q_max: float = Field(
        DEFAULT_Q_MAX,
        description="highest Q of the preview and of generated curves",
        json_schema_extra={"label": "Q max", "unit": "Å⁻¹", "pyreflect": "qMax"},
    )
    num_q: int = Field(
        DEFAULT_NUM_Q,
        description="points of the Q grid from Q min to Q max",
        json_schema_extra={"label": "Q points", "pyreflect": "numQPoints"},
    )
    q_resolution: float = Field(
        DEFAULT_DQ_OVER_Q_FWHM,
        description="relative instrument resolution dQ/Q as a full width at half maximum (0: no smearing)",
        json_schema_extra={"label": "resolution dQ/Q (FWHM)", "pyreflect": "qResolution"},
    )
    scale: float = Field(
        1.0,
        description="multiplies the computed R (normalisation of the measurement)",
        json_schema_extra={"label": "scale factor"},
    )
    background: float = Field(
        0.0,
        description="constant added to R (incoherent background at high Q)",
        json_schema_extra={"label": "background"},
    )

    def probe(self) -> Probe:
        return Probe.from_grid(self.q_min, self.q_max, self.num_q, self.q_resolution, self.scale, self.background)


@dataclass
class Preview:
    q: np.ndarray
    r: np.ndarray
    z: np.ndarray
    rho: np.ndarray
    irho: np.ndarray


def compute_preview(stack: FilmStack, probe: Probe) -> Preview:
    """R(Q) (fast engine, the probe's resolution) and the SLD profile of ``stack``: pure, any thread."""
    r = np.asarray(reflectivity(stack, probe, engine="fast"))[0]
    z, rho, irho = sld_profile(stack)
    return Preview(probe.q, r, z[0], rho[0], irho[0])


UNITS = {"sld": "10⁻⁶ Å⁻²", "isld": "10⁻⁶ Å⁻²", "thickness": "Å", "roughness": "Å"}
LABELS = {"sld": "SLD", "isld": "iSLD", "thickness": "thickness", "roughness": "roughness"}


def short(x: float) -> str:
    """A number as a person reads it: 4 significant digits, no exponent from 0.001 to 99 999 (9.7216 → 9.722)."""
    x = float(x)
    if x == 0 or 1e-3 <= abs(x) < 1e5:
        return np.format_float_positional(x, precision=4, unique=True, fractional=False, trim="-")
    return f"{x:.3e}"


def shown(x: float) -> float:
    """``x`` rounded to 6 significant digits for a number box: 3.4700000000000006 shows as 3.47."""
    return float(f"{float(x):.6g}")


@dataclass(frozen=True)
class OutOfBounds:
    """A parameter whose value lies outside its sampling range (the range it varies in)."""

    i: int
    name: str
    par: str
    value: float
    lo: float
    hi: float

    @property
    def message(self) -> str:
        unit = UNITS[self.par]
        return (
            f"{self.name} {LABELS[self.par]} {short(self.value)} {unit} is outside its bounds "
            f"{short(self.lo)}–{short(self.hi)} {unit}"
        )


def applicable(par: str, i: int, n_layers: int) -> bool:
    """Whether parameter ``par`` of layer ``i`` has any effect (and so may be edited or bounded)."""
    last = n_layers - 1
    if par == "thickness":
        return 0 < i < last
    if par in ("roughness", "isld"):
        return i < last
    return True


class StackModel:
    """Layers, bounds and probe settings with validation, clamping and change notification."""

    def __init__(
        self, stack: FilmStack | None = None, probe: ProbeSettings | None = None, limits: Limits | None = None
    ) -> None:
        self.limits = limits or Limits()
        self._observers: list[Observer] = []
        self._set_stack(stack or FilmStack.default())
        self.probe_settings = probe or ProbeSettings()
        self._probe: Probe | None = None

    # ------------------------------------------------------------------ observers
    def observe(self, callback: Observer) -> None:
        """``callback(what)`` after each change; ``what`` is 'value', 'bounds', 'layers', 'probe' or 'reset'."""
        self._observers.append(callback)

    def _notify(self, what: str) -> None:
        for callback in list(self._observers):
            callback(what)

    # ------------------------------------------------------------------ state
    def _set_stack(self, stack: FilmStack) -> None:
        self._layers: list[Layer] = [layer.model_copy() for layer in stack.layers]
        self._bounds: list[dict[str, tuple[float, float]]] = [{} for _ in stack.layers]
        for b in stack.bounds:
            self._bounds[b.i][b.par] = (b.lo, b.hi)
        self._stack: FilmStack | None = stack

    @property
    def stack(self) -> FilmStack:
        """The current stack with its bounds (validated)."""
        if self._stack is None:
            self._stack = self._build(self._layers, self._bounds)
        return self._stack

    @staticmethod
    def _build(layers: list[Layer], bounds: list[dict[str, tuple[float, float]]]) -> FilmStack:
        flat = [
            {"i": i, "par": par, "bounds": [lo, hi]}
            for i, entry in enumerate(bounds)
            for par, (lo, hi) in sorted(entry.items(), key=lambda kv: PARAMETER_FIELDS.index(kv[0]))
        ]
        return FilmStack.from_pyreflect([layer.model_dump() for layer in layers], flat)

    @property
    def n_layers(self) -> int:
        return len(self._layers)

    def layer(self, i: int) -> Layer:
        return self._layers[i]

    def value(self, i: int, par: str) -> float:
        return float(getattr(self._layers[i], par))

    def bound(self, i: int, par: str) -> tuple[float, float] | None:
        return self._bounds[i].get(par)

    def probe(self) -> Probe:
        if self._probe is None:
            self._probe = self.probe_settings.probe()
        return self._probe

    # ------------------------------------------------------------------ edits
    def _check(self, i: int, par: str) -> None:
        if par not in PARAMETER_FIELDS:
            raise StackError(f"unknown parameter {par!r}; expected one of {', '.join(PARAMETER_FIELDS)}")
        if not 0 <= i < self.n_layers:
            raise StackError(f"layer index {i} out of range, the stack has layers 0..{self.n_layers - 1}")

    def clamp(self, par: str, value: float) -> float:
        """``value`` inside the hard physical limit of ``par`` (non-finite values are rejected)."""
        value = float(value)
        if not math.isfinite(value):
            raise StackError(f"{par} must be a finite number, got {value!r}")
        return self.limits.parameter(par).clamp(value)

    def set_value(self, i: int, par: str, value: float) -> float:
        """Set one parameter (clamped to its hard limit); returns the value stored.

        A fixed bound (min = max: the value generation uses) follows the value, so what the row shows is
        what is sampled; a range (min < max) stays, and :meth:`outside_bounds` reports a value left outside it.
        """
        self._check(i, par)
        value = self.clamp(par, value)
        if value == self.value(i, par):
            return value
        data = self._layers[i].model_dump()
        data[par] = value
        self._layers[i] = Layer(**data)
        bound = self._bounds[i].get(par)
        if bound is not None and bound[0] == bound[1]:
            self._bounds[i][par] = (value, value)
        self._stack = None
        self._notify("value")
        return value

    def outside(self, i: int, par: str) -> OutOfBounds | None:
        """Parameter ``par`` of layer ``i`` if its value lies outside the range it varies in, else None."""
        bound, value = self.bound(i, par), self.value(i, par)
        if bound is None or bound[0] == bound[1] or bound[0] <= value <= bound[1]:
            return None
        return OutOfBounds(i, self._layers[i].name, par, value, *bound)

    def outside_bounds(self) -> list[OutOfBounds]:
        """Every varying parameter whose value (the start and central value) lies outside its bounds."""
        found = (self.outside(i, par) for i in range(self.n_layers) for par in PARAMETER_FIELDS)
        return [o for o in found if o is not None]

    def widen_bound(self, i: int, par: str) -> tuple[float, float] | None:
        """Stretch the bounds of ``par`` of layer ``i`` just enough to include its value; returns the new bounds."""
        bound = self.bound(i, par)
        if bound is None:
            return None
        value = self.value(i, par)
        return self.set_bound(i, par, min(bound[0], value), max(bound[1], value))

    def set_bound(self, i: int, par: str, lo: float | None, hi: float | None = None) -> tuple[float, float] | None:
        """Set (or with ``lo=None`` remove) the sampling/fitting range of one parameter, clamped."""
        self._check(i, par)
        if lo is None:
            if self._bounds[i].pop(par, None) is not None:
                self._stack = None
                self._notify("bounds")
            return None
        if not applicable(par, i, self.n_layers):
            raise StackError(f"layer {i} ({self._layers[i].name!r}) {par} has no effect and cannot be bounded")
        lo, hi = self.clamp(par, lo), self.clamp(par, lo if hi is None else hi)
        if lo > hi:
            raise StackError(f"bound of {self._layers[i].name}.{par}: min {lo:g} is above max {hi:g}")
        bounds = [dict(b) for b in self._bounds]
        bounds[i][par] = (lo, hi)
        stack = self._build(self._layers, bounds)  # validates
        self._bounds, self._stack = bounds, stack
        self._notify("bounds")
        return lo, hi

    def rename(self, i: int, name: str) -> None:
        name = str(name).strip()[:40]
        if not name:
            raise StackError(f"layer {i}: the name must not be empty")
        data = self._layers[i].model_dump()
        data["name"] = name
        self._layers[i] = Layer(**data)
        self._stack = None
        self._notify("layers")

    def add_layer(self, index: int | None = None) -> int:
        """Insert a new layer at ``index`` (default: just below the ambient); returns its index."""
        if self.n_layers >= self.limits.max_layers:
            raise StackError(f"a stack may have at most {self.limits.max_layers} layers")
        index = self.n_layers - 1 if index is None else int(index)
        index = min(max(index, 1), self.n_layers - 1)
        names = {layer.name for layer in self._layers}
        k = 1
        while f"layer_{k}" in names:
            k += 1
        below = self._layers[index - 1]
        self._layers.insert(index, Layer(name=f"layer_{k}", sld=below.sld, thickness=50.0, roughness=5.0))
        self._bounds.insert(index, {})
        self._stack = None
        self._notify("layers")
        return index

    def remove_layer(self, i: int) -> None:
        if not 0 < i < self.n_layers - 1:
            raise StackError("the substrate (first) and the ambient (last) cannot be removed")
        del self._layers[i], self._bounds[i]
        self._stack = None
        self._notify("layers")

    def move_layer(self, i: int, delta: int) -> int:
        """Move an inner layer up (+1, towards the ambient) or down (−1); returns its new index."""
        j = i + int(delta)
        if not (0 < i < self.n_layers - 1 and 0 < j < self.n_layers - 1):
            return i
        for seq in (self._layers, self._bounds):
            seq[i], seq[j] = seq[j], seq[i]
        self._stack = None
        self._notify("layers")
        return j

    def set_probe(self, **changes: Any) -> ProbeSettings:
        """Update probe settings, clamped to the limits; a bad combination raises ProbeError."""
        lim = self.limits
        data = self.probe_settings.model_dump()
        data.update(changes)
        data["q_min"] = lim.q.clamp(data["q_min"])
        data["q_max"] = lim.q.clamp(data["q_max"])
        data["num_q"] = int(min(max(int(data["num_q"]), 2), lim.max_q_points))
        data["q_resolution"] = min(max(float(data["q_resolution"]), 0.0), lim.max_q_resolution)
        data["scale"] = lim.scale.clamp(data["scale"])
        data["background"] = lim.background.clamp(data["background"])
        settings = ProbeSettings(**data)
        probe = settings.probe()  # raises ProbeError naming the bad setting
        self.probe_settings, self._probe = settings, probe
        self._notify("probe")
        return settings

    def reset_stack(self) -> None:
        """Back to the default stack and bounds; the probe stays as it is."""
        self._set_stack(FilmStack.default())
        self._notify("reset")

    def reset(self) -> None:
        """Back to the default stack, bounds and probe."""
        self._set_stack(FilmStack.default())
        self.probe_settings, self._probe = ProbeSettings(), None
        self._notify("reset")

    # ------------------------------------------------------------------ computation
    def preview(self) -> Preview:
        """R(Q) (fast engine, the probe's resolution) and the SLD profile of the current stack."""
        return compute_preview(self.stack, self.probe())

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        s = self.stack
        return {
            "stack": {"layer_desc": s.to_layer_desc(), "layer_bound": s.to_layer_bound()},
            "probe": self.probe_settings.model_dump(),
        }

    def load_dict(self, data: dict[str, Any]) -> None:
        """Restore from :meth:`to_dict` output (validated; on error nothing changes)."""
        stack = FilmStack.from_pyreflect(data["stack"]["layer_desc"], data["stack"].get("layer_bound"))
        if len(stack.layers) > self.limits.max_layers:
            raise StackError(
                f"the saved stack has {len(stack.layers)} layers, more than the limit {self.limits.max_layers}"
            )
        for i, layer in enumerate(stack.layers):
            for par in PARAMETER_FIELDS:
                v = getattr(layer, par)
                if v not in self.limits.parameter(par):
                    raise StackError(f"saved layer {i} ({layer.name!r}) {par} = {v} is outside the limits")
        probe = ProbeSettings(**data.get("probe", {}))
        probe.probe()
        self._set_stack(stack)
        self.probe_settings, self._probe = probe, None
        self._notify("reset")

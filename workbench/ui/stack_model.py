"""The pure state behind the Film stack and Probe panels: no widgets, no plotting.

:class:`StackModel` holds the layers, their bounds and the probe settings, clamps every value to
the hard limits of :mod:`workbench.limits`, and notifies observers after each change (the
refnx split: a model object, views that observe it).  Substrate (first) and ambient (last) stay
in place: layers are added, removed and reordered between them.  The same object serialises to
the settings file the dashboard autosaves.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..data.family import Block, FamilyError, FamilyStack, Range, SampleFamily, Tie, TieMode, merge_groups
from ..limits import Limits
from ..physics import FilmStack, Layer, Probe, reflectivity, sld_profile
from ..physics.probe import DEFAULT_DQ_OVER_Q_FWHM, DEFAULT_NUM_Q, DEFAULT_Q_MAX, DEFAULT_Q_MIN
from ..physics.stack import PARAMETER_FIELDS, StackError

Observer = Callable[[str], None]
log = logging.getLogger("workbench.ui")


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


@dataclass
class Span:
    """A repeated block in the layer list: ``count`` × the period layers ``bases``, from layer ``start`` on.

    Repeat ``k`` of period layer ``A`` is the layer ``A_k`` (as :meth:`SampleFamily.layer_list` names it).
    """

    start: int
    bases: list[str]
    count: int
    tie: tuple[str, ...] = PARAMETER_FIELDS

    @property
    def size(self) -> int:
        return len(self.bases)

    @property
    def end(self) -> int:
        return self.start + self.size * self.count

    def __contains__(self, i: int) -> bool:
        return self.start <= i < self.end

    def repeats(self, i: int) -> list[int]:
        """The layers that repeat layer ``i`` of this block (``i`` included), first repeat first."""
        j = (i - self.start) % self.size
        return [self.start + k * self.size + j for k in range(self.count)]


@dataclass
class FamilyState:
    """What the Film stack keeps of a sample family: its name, source, ranges, ties as written, blocks, and
    the tie groups (``layer.par`` names) its edits keep equal."""

    name: str
    source: str
    ranges: dict[str, Range]
    patterns: list[tuple[TieMode, tuple[str, ...]]]
    blocks: list[Span] = field(default_factory=list)
    groups: list[tuple[TieMode, list[str]]] = field(default_factory=list)


def _spans(family: SampleFamily) -> list[Span]:
    spans, i = [], 0
    for item in family.layers:
        if isinstance(item, Block):
            spans.append(Span(i, [x["name"] for x in item.layers], item.repeat, tuple(item.tie)))
            i += len(item.layers) * item.repeat
        else:
            i += 1
    return spans


def _merged(same: list[set[str]], together: list[set[str]]) -> set[tuple[str, frozenset[str]]]:
    """Tie groups as :meth:`SampleFamily.expand` joins them: overlaps merge; 'same' unless a 'together' joined."""
    same = merge_groups(same)
    return {("same" if g in same else "together", frozenset(g)) for g in merge_groups(same + together)}


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
        self._family: FamilyState | None = None

    @property
    def stack(self) -> FilmStack:
        """The current stack with its bounds (validated); with a family, a FamilyStack with its ties."""
        if self._stack is None:
            stack = self._build(self._layers, self._bounds)
            if self._family is not None:
                stack = self._family_stack(stack)
            self._stack = stack
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
        linked = self.linked(i, par)
        if all(value == self.value(j, p) for j, p in linked):
            return value
        for j, p in linked:
            data = self._layers[j].model_dump()
            data[p] = value
            self._layers[j] = Layer(**data)
            bound = self._bounds[j].get(p)
            if bound is not None and bound[0] == bound[1]:
                self._bounds[j][p] = (value, value)
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
        linked = self.linked(i, par)
        if lo is None:
            if [self._bounds[j].pop(p, None) for j, p in linked] != [None] * len(linked):
                self._stack = None
                self._notify("bounds")
            return None
        if not applicable(par, i, self.n_layers):
            raise StackError(f"layer {i} ({self._layers[i].name!r}) {par} has no effect and cannot be bounded")
        lo, hi = self.clamp(par, lo), self.clamp(par, lo if hi is None else hi)
        if lo > hi:
            raise StackError(f"bound of {self._layers[i].name}.{par}: min {lo:g} is above max {hi:g}")
        before, self._bounds = self._bounds, [dict(b) for b in self._bounds]
        for j, p in linked:
            self._bounds[j][p] = (lo, hi)
        self._stack = None
        try:
            self.stack  # noqa: B018 - validates (and keeps) the stack with the new bounds
        except Exception:
            self._bounds, self._stack = before, None
            raise
        self._notify("bounds")
        return lo, hi

    def rename(self, i: int, name: str) -> None:
        """Rename layer ``i``; in a repeated block, its period layer (every repeat becomes ``name_k``)."""
        name = str(name).strip()[:40]
        if not name:
            raise StackError(f"layer {i}: the name must not be empty")
        span = self.block_of(i)
        renames = {i: name} if span is None else {j: f"{name}_{k}" for k, j in enumerate(span.repeats(i), 1)}
        if self._family is not None:
            if any(c in name for c in ".*?["):
                raise StackError(f"layer {i}: a layer of a sample family is named without . * ? [ (ties use them)")
            others = {x.name for j, x in enumerate(self._layers) if j not in renames}
            taken = sorted(others & set(renames.values()))
            if taken:
                raise StackError(f"layer {i}: another layer is named {taken[0]!r}; tied layers need unique names")
            old = {self._layers[j].name: new for j, new in renames.items()}
            for _mode, members in self._family.groups:
                members[:] = [f"{old.get(layer, layer)}.{par}" for layer, par in (m.rsplit(".", 1) for m in members)]
            if span is not None:
                span.bases[(i - span.start) % span.size] = name
        for j, new in renames.items():
            data = self._layers[j].model_dump()
            data["name"] = new
            self._layers[j] = Layer(**data)
        self._stack = None
        self._notify("layers")

    def add_layer(self, index: int | None = None) -> int:
        """Insert a new layer at ``index`` (default: just below the ambient); returns its index."""
        if self.n_layers >= self.limits.max_layers:
            raise StackError(f"a stack may have at most {self.limits.max_layers} layers")
        index = self.n_layers - 1 if index is None else int(index)
        index = min(max(index, 1), self.n_layers - 1)
        span = next((b for b in self.blocks if b.start < index < b.end), None)
        if span is not None:
            raise StackError("a layer cannot go inside a repeated block: change the block's period in the family")
        for b in self.blocks:
            b.start += b.start >= index
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
        if self.block_of(i) is not None:
            raise StackError(f"{self._layers[i].name} is in a repeated block: lower the block's count instead")
        if self._family is not None:
            gone = self._layers[i].name
            groups = [(m, [x for x in members if x.rsplit(".", 1)[0] != gone]) for m, members in self._family.groups]
            self._family.groups = [(m, members) for m, members in groups if len(members) > 1]
        for b in self.blocks:
            b.start -= b.start > i
        del self._layers[i], self._bounds[i]
        self._stack = None
        self._notify("layers")

    def move_layer(self, i: int, delta: int) -> int:
        """Move an inner layer up (+1, towards the ambient) or down (−1); returns its new index."""
        j = i + int(delta)
        if not (0 < i < self.n_layers - 1 and 0 < j < self.n_layers - 1) or self.block_of(i) is not None:
            return i
        span = self.block_of(j)
        if span is not None:  # a layer next to a repeated block moves past the whole block
            j = span.end - 1 if delta > 0 else span.start
            span.start += -1 if delta > 0 else 1
        for seq in (self._layers, self._bounds):
            seq.insert(j, seq.pop(i))
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

    # ------------------------------------------------------------------ sample family
    @property
    def family(self) -> FamilyState | None:
        """The sample family the stack came from (its blocks and ties), or None for a plain stack."""
        return self._family

    @property
    def blocks(self) -> list[Span]:
        return self._family.blocks if self._family is not None else []

    def block_of(self, i: int) -> Span | None:
        """The repeated block layer ``i`` is in, or None."""
        return next((b for b in self.blocks if i in b), None)

    def display_name(self, i: int) -> str:
        """The name a person edits: a block's period layer ``PEO`` rather than its repeat ``PEO_3``."""
        span = self.block_of(i)
        return self._layers[i].name if span is None else span.bases[(i - span.start) % span.size]

    def linked(self, i: int, par: str) -> list[tuple[int, str]]:
        """The parameters an edit of ``par`` of layer ``i`` moves: itself, its repeats in a block and the
        members of its 'same' ties (and theirs), so the ties hold."""
        if self._family is None:
            return [(i, par)]
        index = {x.name: j for j, x in enumerate(self._layers)}
        out: list[tuple[int, str]] = []
        todo = [(i, par)]
        while todo:
            j, p = todo.pop()
            if (j, p) in out:
                continue
            out.append((j, p))
            span = self.block_of(j)
            todo += [(k, p) for k in span.repeats(j)] if span is not None else []
            name = f"{self._layers[j].name}.{p}"
            for mode, members in self._family.groups:
                if mode == "same" and name in members:
                    todo += [(index[m.rsplit(".", 1)[0]], m.rsplit(".", 1)[1]) for m in members]
        return sorted(out)

    def set_family(self, family: SampleFamily) -> FamilyStack:
        """Use the expanded family as the stack: its values and bounds, and its blocks and ties from then on."""
        stack = family.expand()
        self._check_limits(stack, "family's")
        self._set_stack(stack)
        self._adopt(family, stack, family.ties)
        self._notify("reset")
        return stack

    def set_block_count(self, b: int, count: int) -> int:
        """Repeat block ``b`` ``count`` times (its period and the ties as they are); returns the layer count."""
        if not 0 <= b < len(self.blocks):
            raise StackError(f"there is no repeated block {b}; the stack has {len(self.blocks)}")
        if isinstance(count, bool) or int(count) != count or count < 1:
            raise StackError(f"the repeat count must be a whole number ≥ 1, got {count!r}")
        family = self.family_record({b: int(count)})
        stack = family.expand()
        self._check_limits(stack, "repeated")
        patterns = self._family.patterns
        self._set_stack(stack)
        self._adopt(family, stack, patterns)
        self._notify("layers")
        return self.n_layers

    def _adopt(self, family: SampleFamily, stack: FamilyStack, patterns: list) -> None:
        self._family = FamilyState(
            family.name,
            family.source,
            dict(family.ranges),
            list(patterns),
            _spans(family),
            [(t.mode, list(t.members)) for t in stack.ties],
        )
        self._stack = None

    def _varying(self, i: int, par: str) -> bool:
        bound = self._bounds[i].get(par)
        return bound is not None and bound[1] > bound[0]

    def _family_stack(self, stack: FilmStack) -> FamilyStack:
        order = {f"{stack.layers[b.i].name}.{b.par}": col for col, b in enumerate(stack.bounds)}
        ties = []
        for mode, members in self._family.groups:
            varying = [m for m in members if m in order and stack.bounds[order[m]].hi > stack.bounds[order[m]].lo]
            if len(varying) > 1:
                ties.append(Tie(mode=mode, members=tuple(sorted(varying, key=order.get))))
        ties.sort(key=lambda t: order[t.members[0]])
        try:
            record = self.family_record().to_dict()
        except FamilyError as exc:  # the stack and its ties still hold; only the record of the family is left out
            log.warning("the sample family's record is left out: %s", exc)
            record = None
        return FamilyStack(layers=stack.layers, bounds=stack.bounds, ties=ties, family=record)

    def family_record(self, counts: dict[int, int] | None = None) -> SampleFamily:
        """The family as the stack stands now (values, bounds, blocks with ``counts`` changes, ties): its ranges,
        plus an override wherever a bound differs from what they give; it expands to this stack."""
        state, counts = self._family, counts or {}
        if state is None:
            raise StackError("the film stack is not a sample family")
        items: list[dict[str, Any] | Block] = []
        expanded: list[tuple[str, int]] = []  # (name after expansion, the layer whose values and bounds it takes)
        starts = {b.start: (k, b) for k, b in enumerate(state.blocks)}
        i = 0
        while i < self.n_layers:
            if i in starts:
                k, span = starts[i]
                count = counts.get(k, span.count)
                period = [
                    {**self._layers[span.start + j].model_dump(), "name": span.bases[j]} for j in range(span.size)
                ]
                items.append(Block(count, period, span.tie))
                expanded += [
                    (f"{x}_{r}", span.start + j) for r in range(1, count + 1) for j, x in enumerate(span.bases)
                ]
                i = span.end
            else:
                items.append(self._layers[i].model_dump())
                expanded.append((self._layers[i].name, i))
                i += 1
        default = SampleFamily(items, state.ranges).range_bounds()
        overrides: dict[str, dict[str, Range]] = {}
        for pos, (name, src) in enumerate(expanded):
            for par in PARAMETER_FIELDS:
                if not applicable(par, pos, len(expanded)):
                    continue
                bound = self._bounds[src][par] if self._varying(src, par) else None
                if bound != default.get(f"{name}.{par}"):
                    rng = Range("interval", lo=bound[0], hi=bound[1]) if bound else Range("absolute", 0.0)
                    overrides.setdefault(name, {})[par] = rng
        groups = self._groups_after(expanded)
        family = SampleFamily(items, state.ranges, overrides, list(state.patterns), state.name, state.source)
        try:
            if {(t.mode, frozenset(t.members)) for t in family.expand().ties} == groups:
                return family
        except FamilyError:
            pass  # the ties as written no longer match (a layer renamed or removed): write the groups out
        family.ties = [(mode, tuple(sorted(members))) for mode, members in groups]
        return family

    def _groups_after(self, expanded: list[tuple[str, int]]) -> set[tuple[str, frozenset[str]]]:
        """The tie groups of the stack :meth:`family_record` describes (block repeats as many as it has)."""
        repeats: dict[int, list[str]] = {}
        for name, src in expanded:
            repeats.setdefault(src, []).append(name)
        index = {x.name: j for j, x in enumerate(self._layers)}
        same: list[set[str]] = []
        together: list[set[str]] = []
        for mode, members in self._family.groups:
            group = set()
            for m in members:
                layer, par = m.rsplit(".", 1)
                src = self.first_repeat(index[layer])
                if self._varying(src, par):
                    group |= {f"{n}.{par}" for n in repeats.get(src, [])} if self.block_of(src) else {m}
            (same if mode == "same" else together).append(group)
        for span in self._family.blocks:  # a block's repeats keep their tie when its count changes
            for j in range(span.size):
                src = span.start + j
                if len(repeats[src]) > 1:
                    same += [{f"{n}.{p}" for n in repeats[src]} for p in span.tie if self._varying(src, p)]
        return {(mode, g) for mode, g in _merged(same, together) if len(g) > 1}

    def first_repeat(self, i: int) -> int:
        """Layer ``i``, or for a repeat in a block the block's first repeat of it (the one its card shows)."""
        span = self.block_of(i)
        return i if span is None else span.repeats(i)[0]

    # ------------------------------------------------------------------ computation
    def preview(self) -> Preview:
        """R(Q) (fast engine, the probe's resolution) and the SLD profile of the current stack."""
        return compute_preview(self.stack, self.probe())

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        s = self.stack
        out: dict[str, Any] = {
            "stack": {"layer_desc": s.to_layer_desc(), "layer_bound": s.to_layer_bound()},
            "probe": self.probe_settings.model_dump(),
        }
        if self._family is not None:
            out["family"] = self.family_record().to_dict()
        return out

    def load_dict(self, data: dict[str, Any]) -> None:
        """Restore from :meth:`to_dict` output (validated; on error nothing changes); a saved family comes back
        with its blocks and ties."""
        family = SampleFamily.from_dict(data["family"], "saved family") if data.get("family") else None
        if family is not None:
            stack: FilmStack = family.expand()
        else:
            stack = FilmStack.from_pyreflect(data["stack"]["layer_desc"], data["stack"].get("layer_bound"))
        self._check_limits(stack, "saved")
        probe = ProbeSettings(**data.get("probe", {}))
        probe.probe()
        self._set_stack(stack)
        if family is not None:
            self._adopt(family, stack, family.ties)
        self.probe_settings, self._probe = probe, None
        self._notify("reset")

    def _check_limits(self, stack: FilmStack, what: str) -> None:
        if len(stack.layers) > self.limits.max_layers:
            raise StackError(
                f"the {what} stack has {len(stack.layers)} layers, more than the limit {self.limits.max_layers}"
            )
        for i, layer in enumerate(stack.layers):
            for par in PARAMETER_FIELDS:
                v = getattr(layer, par)
                if v not in self.limits.parameter(par):
                    raise StackError(f"{what} layer {i} ({layer.name!r}) {par} = {v} is outside the limits")

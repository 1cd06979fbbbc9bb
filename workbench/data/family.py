"""Sample families: a generation stack described the way a scientist describes a sample.

A family is a list of layers (substrate first, ambient last) taken from a hand-fit spreadsheet, a
fitted stack (``refinement.json``) or a pyreflect/JSON/YAML stack, or written out, where an entry may
be a repeated block ``{repeat: N, layers: [A, B]}`` (a multilayer, N × [A | B]).  Bounds are ranges
around each value, for every layer at once (``ranges: {thickness: 20%, sld: 0.5, roughness: 5}``:
± relative or ± absolute) with per-layer ``overrides`` (by name or glob, ``[lo, hi]`` allowed).
The substrate's and ambient's SLD are known materials and stay fixed unless an override names them.

Ties: ``same`` parameters share one value (``PEO_*.sld``: all PEO layers one SLD; their value becomes
the members' mean and their range the union of theirs); ``together`` parameters share one draw, each
at the same fraction of its own range (``±20 %`` thicknesses then swell by one factor).  The layers
of a repeated block are ``same`` across repeats in every parameter unless the block says
``tie: [...]`` (``tie: []``: independent repeats).  Overlapping ties merge.

:meth:`SampleFamily.expand` gives a :class:`FamilyStack`: a :class:`~workbench.physics.FilmStack` whose
bounds are all the parameters, plus the tie groups; the sampler draws one value per group (the
parameter table keeps one column per bound, so tied columns repeat their group's value) and the data
set's ``dataset.json`` keeps the ties and the family under ``stack``.
"""

from __future__ import annotations

import fnmatch
import json
import math
import numbers
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..limits import Limits
from ..physics.stack import PARAMETER_FIELDS, Bound, FilmStack, Layer, StackError
from .handfit import load_handfit_spreadsheet

TieMode = Literal["same", "together"]
UNITS = {"sld": "1e-6 Å⁻²", "isld": "1e-6 Å⁻²", "thickness": "Å", "roughness": "Å"}
FAMILY_KEYS = ("name", "from", "layers", "ranges", "overrides", "ties", "source")
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_RANGE_TEXT = re.compile(rf"^(?:±|\+/-|\+-)?\s*({_NUMBER})\s*(%?)$")


class FamilyError(ValueError):
    """A sample family (its layers, ranges, overrides or ties) is invalid; the message names what and where."""


# ----------------------------------------------------------------------------- ranges
@dataclass(frozen=True)
class Range:
    """How far a parameter may vary: ± a percentage of its value, ± an absolute amount, or an interval."""

    kind: Literal["relative", "absolute", "interval"]
    width: float = 0.0
    lo: float = 0.0
    hi: float = 0.0

    @classmethod
    def parse(cls, value: Any, what: str) -> Range:
        """``"20%"``/``"±20 %"`` (relative), ``0.5``/``"±0.5"`` (absolute), ``[lo, hi]``, ``0``/``"fixed"``."""
        if isinstance(value, (list, tuple)):
            if len(value) != 2 or not all(_is_number(v) for v in value):
                raise FamilyError(f"{what}: an interval must be [lo, hi] with two numbers, got {value!r}")
            lo, hi = float(value[0]), float(value[1])
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi:
                raise FamilyError(f"{what}: an interval needs finite lo ≤ hi, got [{value[0]}, {value[1]}]")
            return cls("interval", lo=lo, hi=hi)
        if _is_number(value):
            width = float(value)
            if not math.isfinite(width) or width < 0:
                raise FamilyError(f"{what}: a ± range must be a finite number ≥ 0, got {value!r}")
            return cls("absolute", width)
        if isinstance(value, str):
            text = value.strip()
            if text.lower() == "fixed":
                return cls("absolute", 0.0)
            match = _RANGE_TEXT.match(text)
            if match is None:
                raise FamilyError(
                    f"{what}: cannot read the range {value!r}; write ±20% (relative), 0.5 (± absolute, in the "
                    "parameter's unit), [lo, hi] or fixed"
                )
            number = float(match.group(1))
            if not math.isfinite(number):
                raise FamilyError(f"{what}: the range {value!r} is not finite")
            return cls("relative" if match.group(2) else "absolute", number)
        raise FamilyError(f"{what}: expected a range like 20%, 0.5 or [lo, hi], got {value!r}")

    def around(self, value: float) -> tuple[float, float]:
        """The interval this range allows around ``value`` (before physical clipping)."""
        if self.kind == "interval":
            return self.lo, self.hi
        half = abs(value) * self.width / 100 if self.kind == "relative" else self.width
        return value - half, value + half

    def to_json(self) -> str | float | list[float]:
        if self.kind == "interval":
            return [self.lo, self.hi]
        return f"{_plain(self.width)}%" if self.kind == "relative" else self.width

    def text(self, par: str) -> str:
        if self.kind == "interval":
            return f"[{self.lo:g}, {self.hi:g}] {UNITS[par]}"
        if self.width == 0:
            return "fixed"
        return f"±{self.width:g} %" if self.kind == "relative" else f"±{self.width:g} {UNITS[par]}"


def _plain(x: float) -> str:
    """``20`` for 20.0, else every digit (so a saved range reads back exactly)."""
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _parameter(par: Any, what: str) -> str:
    if par not in PARAMETER_FIELDS:
        raise FamilyError(f"{what}: unknown parameter {par!r}; expected one of {', '.join(PARAMETER_FIELDS)}")
    return par


def parse_ranges(value: Any, what: str) -> dict[str, Range]:
    """``{parameter: range}`` from a mapping such as ``{thickness: 20%, sld: 0.5}``."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FamilyError(f"{what}: expected a mapping of parameter → range, got {value!r}")
    return {_parameter(p, what): Range.parse(v, f"{what}.{p}") for p, v in value.items()}


# ----------------------------------------------------------------------------- the expanded stack
class Tie(BaseModel):
    """Parameters (``layer.par`` names) that share one draw: one value (``same``) or one fraction (``together``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: TieMode
    members: tuple[str, ...]


class FamilyStack(FilmStack):
    """A film stack plus the ties its bounds are drawn with (and the family it came from, for the record)."""

    ties: list[Tie] = Field(default_factory=list)
    family: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check_ties(self) -> FamilyStack:
        names = self.parameter_names(self.bounds)
        column = {name: col for col, name in enumerate(names)}
        if self.ties and len(column) != len(names):
            raise StackError("a stack with ties needs unique layer names (ties name parameters as layer.par)")
        seen: set[str] = set()
        for tie in self.ties:
            if len(tie.members) < 2:
                raise StackError(f"tie {list(tie.members)}: a tie needs two or more parameters")
            for name in tie.members:
                if name not in column:
                    raise StackError(f"tie {tie.mode} {list(tie.members)}: {name!r} is not a bounded parameter")
                if self.bounds[column[name]].fixed:
                    raise StackError(f"tie {tie.mode}: {name!r} is fixed (lo = hi); only varying parameters tie")
                if name in seen:
                    raise StackError(f"{name!r} is in two ties; merge them into one")
                seen.add(name)
            if tie.mode == "same":
                first = self.bounds[column[tie.members[0]]]
                for name in tie.members[1:]:
                    b = self.bounds[column[name]]
                    if (b.lo, b.hi) != (first.lo, first.hi) or self.get(b.i, b.par) != self.get(first.i, first.par):
                        raise StackError(
                            f"tie same: {name!r} has value/range {self.get(b.i, b.par):g} [{b.lo:g}, {b.hi:g}], "
                            f"{tie.members[0]!r} {self.get(first.i, first.par):g} [{first.lo:g}, {first.hi:g}]; "
                            "parameters sharing one value need one value and one range"
                        )
        return self

    def tie_columns(self) -> list[list[int]]:
        """Each tie as bound (parameter-table) columns, its first member first."""
        column = {name: col for col, name in enumerate(self.parameter_names(self.bounds))}
        return [[column[name] for name in tie.members] for tie in self.ties]

    @property
    def drawn_parameters(self) -> int:
        """Free parameters the sampler draws: one per tie group, one per untied free bound."""
        tied = sum(len(t.members) - 1 for t in self.ties)
        return len(self.free_parameters) - tied


def tie_columns(stack: FilmStack) -> list[list[int]]:
    """The tie groups of ``stack`` as parameter-table columns (none for a plain FilmStack)."""
    return stack.tie_columns() if isinstance(stack, FamilyStack) else []


def stack_meta(stack: FilmStack) -> dict[str, Any]:
    """The ``stack`` entry of a data set's metadata: pyreflect's lists, and the ties and family when there are."""
    out: dict[str, Any] = {"layer_desc": stack.to_layer_desc(), "layer_bound": stack.to_layer_bound()}
    if isinstance(stack, FamilyStack):
        out["ties"] = [t.model_dump(mode="json") for t in stack.ties]
        if stack.family is not None:
            out["family"] = stack.family
    return out


def stack_from_meta(info: dict[str, Any]) -> FilmStack:
    """The stack a data set (or a model bundle's ``data.stack``) was generated from, ties included."""
    base = FilmStack.from_pyreflect(info["layer_desc"], info.get("layer_bound"))
    if not info.get("ties") and not info.get("family"):
        return base
    ties = [Tie(mode=t["mode"], members=tuple(t["members"])) for t in info.get("ties") or []]
    return FamilyStack(layers=base.layers, bounds=base.bounds, ties=ties, family=info.get("family"))


# ----------------------------------------------------------------------------- the family
@dataclass
class Block:
    """``repeat`` × the ``layers`` (substrate side first); ``tie``: parameters equal across the repeats."""

    repeat: int
    layers: list[dict[str, Any]]
    tie: tuple[str, ...] = PARAMETER_FIELDS

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"repeat": self.repeat, "layers": [dict(x) for x in self.layers]}
        if self.tie != PARAMETER_FIELDS:
            out["tie"] = list(self.tie)
        return out


@dataclass
class SampleFamily:
    """Layers and blocks (substrate first), ranges for every layer, per-layer overrides and ties."""

    layers: list[dict[str, Any] | Block]
    ranges: dict[str, Range] = field(default_factory=dict)
    overrides: dict[str, dict[str, Range]] = field(default_factory=dict)
    ties: list[tuple[TieMode, tuple[str, ...]]] = field(default_factory=list)
    name: str = "sample family"
    source: str = ""

    # ------------------------------------------------------------------ building
    @classmethod
    def from_stack(cls, stack: FilmStack, *, name: str = "sample family", source: str = "", **kwargs) -> SampleFamily:
        """A family of the values of ``stack`` (its bounds are replaced by the family's ranges)."""
        return cls(layers=[layer.model_dump() for layer in stack.layers], name=name, source=source, **kwargs)

    @classmethod
    def from_dict(cls, data: Any, where: str = "family", base: str | os.PathLike | None = None) -> SampleFamily:
        """Parse a family mapping; ``from: PATH`` (relative to ``base``) reads the layers from a file."""
        if not isinstance(data, dict):
            raise FamilyError(f"{where}: expected a mapping with 'layers' or 'from', got {type(data).__name__}")
        unknown = sorted(set(map(str, data)) - set(FAMILY_KEYS))
        if unknown:
            raise FamilyError(f"{where}: unknown key(s) {unknown}; a family has {', '.join(FAMILY_KEYS)}")
        if ("from" in data) == ("layers" in data):
            raise FamilyError(f"{where}: give either 'layers' or 'from' (a hand fit, refinement.json or stack file)")
        name = data.get("name", "sample family")
        if not isinstance(name, str):
            raise FamilyError(f"{where}.name: expected text, got {name!r}")
        source = str(data.get("source", ""))
        if "from" in data:
            path = Path(str(data["from"]))
            path = path if path.is_absolute() or base is None else Path(base) / path
            stack, source = load_source(path)
            layers: list[dict[str, Any] | Block] = [layer.model_dump() for layer in stack.layers]
        else:
            layers = _parse_layers(data["layers"], f"{where}.layers")
        overrides_in = data.get("overrides") or {}
        if not isinstance(overrides_in, dict):
            raise FamilyError(f"{where}.overrides: expected a mapping of layer name → ranges, got {overrides_in!r}")
        overrides = {str(k): parse_ranges(v, f"{where}.overrides.{k}") for k, v in overrides_in.items()}
        ties = _parse_ties(data.get("ties") or [], f"{where}.ties")
        ranges = parse_ranges(data.get("ranges"), f"{where}.ranges")
        return cls(layers, ranges, overrides, ties, name, source)

    def to_dict(self) -> dict[str, Any]:
        """A JSON/YAML-ready mapping, layers inline (so it is complete without the file it came from)."""
        out: dict[str, Any] = {"name": self.name}
        if self.source:
            out["source"] = self.source
        out["layers"] = [x.to_dict() if isinstance(x, Block) else dict(x) for x in self.layers]
        out["ranges"] = {p: r.to_json() for p, r in self.ranges.items()}
        if self.overrides:
            out["overrides"] = {k: {p: r.to_json() for p, r in v.items()} for k, v in self.overrides.items()}
        if self.ties:
            out["ties"] = [{mode: list(patterns)} for mode, patterns in self.ties]
        return out

    def save(self, path: str | os.PathLike) -> Path:
        """Write as YAML (or JSON for a ``.json`` name)."""
        path = Path(path)
        data = {"family": self.to_dict()}
        text = json.dumps(data, indent=1) if path.suffix.lower() == ".json" else yaml.safe_dump(data, sort_keys=False)
        path.write_text(text, encoding="utf-8")
        return path

    # ------------------------------------------------------------------ expanding
    def layer_list(self) -> tuple[list[dict[str, Any]], list[tuple[str, ...]]]:
        """Blocks written out (layer ``A`` of repeat k is ``A_k``, substrate side first) and the block ties."""
        layers: list[dict[str, Any]] = []
        block_ties: list[tuple[str, ...]] = []
        for item in self.layers:
            if not isinstance(item, Block):
                layers.append(dict(item))
                continue
            for k in range(1, item.repeat + 1):
                layers.extend({**x, "name": f"{x['name']}_{k}"} for x in item.layers)
            if item.repeat > 1:
                for x in item.layers:
                    block_ties += [tuple(f"{x['name']}_{k}.{p}" for k in range(1, item.repeat + 1)) for p in item.tie]
        return layers, block_ties

    def expand(self) -> FamilyStack:
        """The film stack with a bound on every varying parameter, and the tie groups (see the module notes)."""
        layers, block_ties = self.layer_list()
        names = [x["name"] for x in layers]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise FamilyError(f"family {self.name!r}: layer name(s) {repeated} appear twice; names must be unique")
        if len(layers) < 2:
            raise FamilyError(f"family {self.name!r}: needs at least a substrate and an ambient layer")
        bounds = self._bounds(layers)
        same = [set(g) for g in block_ties if _block_tie_varies(g, bounds)]
        together: list[set[str]] = []
        for mode, patterns in self.ties:
            members = _tie_members(patterns, names, bounds, mode)
            (same if mode == "same" else together).append(members)
        same_groups = merge_groups(same)
        for group in same_groups:  # one value (the mean) and one range (the union) per group
            keys = [_split(m) for m in group]
            values = [layers[names.index(n)][p] for n, p in keys]
            mean = values[0] if len(set(values)) == 1 else sum(values) / len(values)  # equal values stay exact
            lo, hi = min(bounds[m][0] for m in group), max(bounds[m][1] for m in group)
            for (n, p), m in zip(keys, group):
                layers[names.index(n)][p] = mean
                bounds[m] = (lo, hi)
        groups = merge_groups(same_groups + together)
        order = {m: col for col, m in enumerate(bounds)}
        ties = []
        for group in groups:
            members = tuple(sorted(group, key=order.get))
            mode = "same" if any(group == g for g in same_groups) else "together"
            ties.append(Tie(mode=mode, members=members))
        ties.sort(key=lambda t: order[t.members[0]])
        try:
            bound_list = [Bound(i=names.index(n), par=p, lo=a, hi=b) for (n, p), (a, b) in _keyed(bounds)]
            return FamilyStack(layers=[Layer(**x) for x in layers], bounds=bound_list, ties=ties, family=self.to_dict())
        except (StackError, ValidationError) as exc:
            raise FamilyError(f"family {self.name!r}: {_message(exc)}") from None

    def range_bounds(self) -> dict[str, tuple[float, float]]:
        """``{"layer.par": (lo, hi)}`` the ranges and overrides give each varying parameter, before any tie."""
        return self._bounds(self.layer_list()[0])

    def fold(self, first: int | str, per_period: int, count: int) -> SampleFamily:
        """This family with ``count`` periods of ``per_period`` layers from ``first`` (an index or a layer name)
        folded into one repeated block; each period layer takes the mean of its repeats' values.

        The period's names lose a trailing ``_N`` (``PEO_10`` → ``PEO``) and take ``_a``, ``_b`` … where one
        name repeats within the period, so ``PEO_*`` patterns still match the expanded ``PEO_a_1``.
        """
        names = ["(block)" if isinstance(x, Block) else x["name"] for x in self.layers]
        if isinstance(first, str):
            if first not in names:
                raise FamilyError(f"fold: no layer named {first!r}; layers are {', '.join(names)}")
            first = names.index(first)
        for what, n in (("layers per period", per_period), ("count", count)):
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
                raise FamilyError(f"fold: the {what} must be a whole number ≥ 1, got {n!r}")
        end = first + per_period * count
        if first < 1 or end > len(self.layers) - 1:
            raise FamilyError(
                f"fold: {count} × {per_period} layers from layer {first} run past the film (layers 1 to "
                f"{len(self.layers) - 2}); the substrate and the ambient stay outside a block"
            )
        span = self.layers[first:end]
        if any(isinstance(x, Block) for x in span):
            raise FamilyError("fold: the layers to fold include a repeated block; blocks do not nest")
        period = [dict(x) for x in span[:per_period]]
        for j, layer in enumerate(period):
            for p in PARAMETER_FIELDS:
                values = [float(span[k * per_period + j].get(p, 0.0)) for k in range(count)]
                layer[p] = values[0] if len(set(values)) == 1 else sum(values) / count
        stems = [re.sub(r"_\d+$", "", x["name"]) or x["name"] for x in period]
        seen: dict[str, int] = {}
        bases = []
        for stem in stems:
            seen[stem] = seen.get(stem, 0) + 1
            tag = chr(96 + seen[stem]) if seen[stem] <= 26 else f"n{seen[stem]}"
            bases.append(f"{stem}_{tag}" if stems.count(stem) > 1 else stem)
        outside = {x["name"] for x in self.layers[:first] + self.layers[end:] if not isinstance(x, Block)}
        while any(f"{b}_{k}" in outside for b in bases for k in range(1, count + 1)):
            bases = [f"{b}_r" for b in bases]
        block = Block(count, [{**x, "name": b} for x, b in zip(period, bases)])
        layers = [*self.layers[:first], block, *self.layers[end:]]
        return SampleFamily(layers, self.ranges, self.overrides, self.ties, self.name, self.source)

    def _bounds(self, layers: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
        """``{"layer.par": (lo, hi)}`` of every varying parameter, in stack order."""
        names = [x["name"] for x in layers]
        last = len(layers) - 1
        chosen: list[dict[str, Range]] = []
        for i in range(len(layers)):
            inner = 0 < i < last
            defaults = {p: r for p, r in self.ranges.items() if inner or (p == "roughness" and i == 0)}
            chosen.append(defaults)
        for pattern, ranges in self.overrides.items():
            hits = [i for i, n in enumerate(names) if fnmatch.fnmatchcase(n, pattern)]
            if not hits:
                raise FamilyError(f"overrides: no layer is named like {pattern!r}; layers are {', '.join(names)}")
            for i in hits:
                for p, r in ranges.items():
                    why = _not_variable(p, i, last)
                    if why:
                        raise FamilyError(f"overrides.{pattern}.{p}: layer {names[i]!r} {why}")
                    chosen[i][p] = r
        limits = Limits.from_env()
        out: dict[str, tuple[float, float]] = {}
        for i, layer in enumerate(layers):
            for p in PARAMETER_FIELDS:
                r = chosen[i].get(p)
                if r is None or _not_variable(p, i, last):
                    continue
                value = float(layer.get(p, 0.0))
                lo, hi = r.around(value)
                cap = limits.parameter(p)
                lo, hi = max(lo, cap.lo, 0.0 if p != "sld" else -math.inf), min(hi, cap.hi)
                if p == "thickness":
                    hi = min(hi, limits.max_total_thickness)
                if hi > lo:
                    out[f"{layer['name']}.{p}"] = (lo, hi)
        return out

    # ------------------------------------------------------------------ reading
    def summary(self) -> str:
        """One line: name, source, layer count, ranges, overrides and ties."""
        n_layers = len(self.layer_list()[0])
        blocks = [x for x in self.layers if isinstance(x, Block)]
        parts = [f"{self.name!r}" + (f" ({self.source})" if self.source else ""), f"{n_layers} layers"]
        parts += [f"{b.repeat} × [{' | '.join(x['name'] for x in b.layers)}]" for b in blocks]
        if self.ranges:
            parts.append("ranges " + ", ".join(f"{p} {r.text(p)}" for p, r in self.ranges.items()))
        for pattern, ranges in self.overrides.items():
            parts.append(f"{pattern}: " + ", ".join(f"{p} {r.text(p)}" for p, r in ranges.items()))
        parts += [f"{mode} {', '.join(patterns)}" for mode, patterns in self.ties]
        return "; ".join(parts)


def card_lines(info: Any) -> list[str]:
    """Model-card lines saying which stack or family, and which ranges, a model was trained for."""
    if not isinstance(info, dict) or "layer_desc" not in info:
        return []
    bounds = info.get("layer_bound") or []
    free = sum(1 for b in bounds if b["bounds"][1] > b["bounds"][0])
    ties = info.get("ties") or []
    drawn = free - sum(len(t["members"]) - 1 for t in ties)
    counts = f"{free} varying parameters" + (f" drawn as {drawn} ({len(ties)} ties)" if ties else "")
    if not info.get("family"):
        return [f"- film stack: {len(info['layer_desc'])} layers, {counts}; bounds in config.json data.stack"]
    try:
        text = SampleFamily.from_dict(info["family"]).summary()
    except (FamilyError, StackError):
        text = repr(info["family"].get("name"))
    return [f"- sample family: {text}", f"  - {counts}; bounds in config.json data.stack"]


def load_source(path: str | os.PathLike) -> tuple[FilmStack, str]:
    """The layers of a hand-fit spreadsheet (.csv), a ``refinement.json`` or a pyreflect stack YAML/JSON."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return load_handfit_spreadsheet(path), f"hand fit {path.name}"
    data = _read_mapping(path)
    stack = data.get("stack", data)
    if not isinstance(stack, dict) or "layer_desc" not in stack:
        hint = " (a joint refinement: pick one contrast's stack)" if "contrasts" in data else ""
        raise FamilyError(f"{path}: no 'stack' with 'layer_desc' (pyreflect's stack format){hint}")
    kind = "fitted stack" if "chi2_per_point" in data or "history" in data else "stack"
    return FilmStack.from_pyreflect(stack["layer_desc"], stack.get("layer_bound")), f"{kind} {path.name}"


def load_family(path: str | os.PathLike) -> SampleFamily:
    """A family from a YAML/JSON file (its ``family`` entry, or the whole file); ``from`` is relative to it."""
    path = Path(path)
    data = _read_mapping(path)
    return SampleFamily.from_dict(data.get("family", data), f"{path}: family", base=path.parent)


def is_family(data: Any) -> bool:
    """Whether a settings mapping describes a family (rather than a pyreflect stack)."""
    return isinstance(data, dict) and ("family" in data or "layers" in data or "from" in data)


def _read_mapping(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FamilyError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise FamilyError(f"{path}: not valid JSON/YAML: {exc}") from None
    if not isinstance(data, dict):
        raise FamilyError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------- helpers
def _parse_layers(value: Any, what: str) -> list[dict[str, Any] | Block]:
    if not isinstance(value, list) or not value:
        raise FamilyError(f"{what}: expected a list of layers (substrate first), got {value!r}")
    out: list[dict[str, Any] | Block] = []
    for k, entry in enumerate(value):
        where = f"{what}[{k}]"
        if isinstance(entry, dict) and "repeat" in entry:
            out.append(_parse_block(entry, where))
        else:
            out.append(_parse_layer(entry, where))
    return out


def _parse_block(entry: dict[str, Any], what: str) -> Block:
    unknown = sorted(set(map(str, entry)) - {"repeat", "layers", "tie"})
    if unknown:
        raise FamilyError(f"{what}: unknown key(s) {unknown}; a block has repeat, layers and tie")
    count = entry["repeat"]
    if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 1:
        raise FamilyError(f"{what}.repeat: the repeat count must be a whole number ≥ 1, got {count!r}")
    inner = entry.get("layers")
    if not isinstance(inner, list) or not inner:
        raise FamilyError(f"{what}.layers: a block needs a list of one or more layers, got {inner!r}")
    layers = []
    for k, x in enumerate(inner):
        if isinstance(x, dict) and "repeat" in x:
            raise FamilyError(f"{what}.layers[{k}]: blocks do not nest; write the inner block out")
        layers.append(_parse_layer(x, f"{what}.layers[{k}]"))
    tie = entry.get("tie", list(PARAMETER_FIELDS))
    if not isinstance(tie, list):
        raise FamilyError(f"{what}.tie: expected a list of parameters (e.g. [sld, thickness]), got {tie!r}")
    return Block(int(count), layers, tuple(_parameter(p, f"{what}.tie") for p in tie))


def _parse_layer(entry: Any, what: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise FamilyError(f"{what}: expected a layer {{name, sld, isld, thickness, roughness}}, got {entry!r}")
    unknown = sorted(set(map(str, entry)) - {"name", *PARAMETER_FIELDS})
    if unknown:
        raise FamilyError(f"{what}: unknown field(s) {unknown}; a layer has name, {', '.join(PARAMETER_FIELDS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip() or any(c in name for c in ".*?["):
        raise FamilyError(f"{what}: a layer needs a name (text without . * ? [), got {name!r}")
    data: dict[str, Any] = {"name": name}
    for p in PARAMETER_FIELDS:
        if p in entry:
            if not _is_number(entry[p]):
                raise FamilyError(f"{what} ({name!r}) {p}: expected a number, got {entry[p]!r}")
            data[p] = float(entry[p])
    try:
        return Layer(**data).model_dump()
    except (StackError, ValidationError) as exc:
        raise FamilyError(f"{what}: {_message(exc)}") from None


def parse_tie_text(text: str) -> list[tuple[TieMode, tuple[str, ...]]]:
    """Ties written one a line: ``same: PEO_*.sld``, ``together: PEO_*.thickness, dPS_*.thickness`` or a bare
    ``PEO_*.sld`` (same); blank lines and ``#`` comments are skipped."""
    entries: list[Any] = []
    for k, line in enumerate(str(text).splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        mode, sep, rest = line.partition(":")
        if not sep:
            mode, rest = "same", line
        mode = mode.strip().lower()
        if mode not in ("same", "together"):
            raise FamilyError(f"ties line {k}: {line!r} starts with {mode!r}; write same: or together: before it")
        patterns = [p.strip() for p in re.split(r"[,\s]+", rest) if p.strip()]
        entries.append({mode: patterns})
    return _parse_ties(entries, "ties")


def _parse_ties(value: Any, what: str) -> list[tuple[TieMode, tuple[str, ...]]]:
    if not isinstance(value, list):
        raise FamilyError(f"{what}: expected a list of ties (e.g. - PEO_*.sld), got {value!r}")
    out: list[tuple[TieMode, tuple[str, ...]]] = []
    for k, entry in enumerate(value):
        where = f"{what}[{k}]"
        if isinstance(entry, str):
            mode, patterns = "same", [entry]
        elif isinstance(entry, dict) and len(entry) == 1 and next(iter(entry)) in ("same", "together"):
            mode, patterns = next(iter(entry.items()))
            patterns = [patterns] if isinstance(patterns, str) else patterns
        else:
            raise FamilyError(f"{where}: a tie is 'LAYER.par' or {{same|together: [LAYER.par, ...]}}, got {entry!r}")
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
            raise FamilyError(f"{where}: expected LAYER.par names (globs allowed), got {patterns!r}")
        for p in patterns:
            if "." not in p:
                raise FamilyError(f"{where}: {p!r} names no parameter; write LAYER.par, e.g. PEO_*.sld")
            _parameter(p.rsplit(".", 1)[1], f"{where} {p!r}")
        out.append((mode, tuple(patterns)))
    return out


def _tie_members(patterns: tuple[str, ...], names: list[str], bounds: dict[str, Any], mode: str) -> set[str]:
    members: set[str] = set()
    for pattern in patterns:
        layer_glob, par = pattern.rsplit(".", 1)
        hits = [f"{n}.{par}" for n in names if fnmatch.fnmatchcase(n, layer_glob)]
        if not hits:
            raise FamilyError(f"tie {mode} {pattern!r}: unknown tie target, no layer is named like {layer_glob!r}")
        fixed = [h for h in hits if h not in bounds]
        if fixed:
            raise FamilyError(
                f"tie {mode} {pattern!r}: {', '.join(fixed)} {'is' if len(fixed) == 1 else 'are'} fixed (no range); "
                "give a range or leave it out of the tie"
            )
        members.update(hits)
    if len(members) < 2:
        raise FamilyError(f"tie {mode} {list(patterns)}: names only {sorted(members)}; a tie needs two or more")
    return members


def _block_tie_varies(group: tuple[str, ...], bounds: dict[str, Any]) -> bool:
    """Whether a block's repeats of one parameter vary (all of them) or are fixed (none); a mix is refused."""
    varying = [m for m in group if m in bounds]
    if varying and len(varying) < len(group):
        fixed = [m for m in group if m not in bounds]
        raise FamilyError(
            f"block repeats {group[0]} … {group[-1]} are tied, but {', '.join(fixed)} is fixed while "
            f"{', '.join(varying)} varies; give the repeats one range, or leave the parameter out of the block's tie"
        )
    return bool(varying)


def merge_groups(groups: list[set[str]]) -> list[set[str]]:
    """Overlapping groups joined (A = B and B = C make one group)."""
    out: list[set[str]] = []
    for group in groups:
        group = set(group)
        for other in [g for g in out if g & group]:
            group |= other
            out.remove(other)
        out.append(group)
    return out


def _keyed(bounds: dict[str, tuple[float, float]]) -> list[tuple[tuple[str, str], tuple[float, float]]]:
    return [(_split(m), lo_hi) for m, lo_hi in bounds.items()]


def _split(name: str) -> tuple[str, str]:
    layer, par = name.rsplit(".", 1)
    return layer, par


def _not_variable(par: str, i: int, last: int) -> str:
    """Why parameter ``par`` of layer ``i`` cannot vary ('' when it can)."""
    if par == "thickness" and i in (0, last):
        return "is semi-infinite (substrate or ambient): its thickness has no effect"
    if par in ("roughness", "isld") and i == last:
        return "is the ambient: it has no interface above it and its absorption is ignored"
    return ""


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return str(exc.errors(include_url=False)[0].get("msg", exc)).removeprefix("Value error, ")
    return str(exc)

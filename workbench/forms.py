"""Form fields read from the typed configuration: one declaration feeds widgets, command-line options and checks.

A setting is declared once, as a pydantic field (type, default, bounds, and a description that
explains it; in ``json_schema_extra`` the label a scientist reads, its unit, pyreflect's name for it
and the :class:`~workbench.limits.Limits` entry that caps it).
:func:`field_specs` reads those declarations into plain :class:`FieldSpec` values; the panels
build their widgets from them (``ui/forms.py``) and the command line its options (``cli/options.py``),
in the spirit of ipywidgets' ``interactive``, which builds widgets from values and bounds.

    class TrainConfig(BaseModel):
        batch_size: int = Field(32, ge=1, description="curves per optimizer step",
                                json_schema_extra={"label": "batch size", "unit": "curves", "pyreflect": "batchSize"})
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel

from .limits import Limits

Kind = Literal["int", "float", "bool", "choice", "text"]


@dataclass(frozen=True)
class FieldSpec:
    """One setting as a form shows it: its type, default, closed range, choices, label and help."""

    name: str
    kind: Kind
    default: Any
    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] = ()
    label: str = ""
    help: str = ""
    optional: bool = False  # None is allowed (e.g. early stopping off)
    odd: bool = False  # odd integers only (a convolution's kernel size)
    choice_labels: tuple[str, ...] = ()  # what a form shows for each choice
    unit: str = ""  # shown after the label: "Q min (Å⁻¹)"
    pyreflect: str = ""  # pyreflect's name for the setting (its config files, the command line's help)

    @property
    def description(self) -> str:
        """What a form shows before the field: the label in words, with the unit in brackets."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def clamp(self, value: Any) -> Any:
        """``value`` converted to the field's type and moved into its range; raises ValueError naming the field."""
        if value is None and self.optional:
            return None
        try:
            if self.kind == "int":
                value = int(value)
            elif self.kind == "float":
                value = float(value)
            elif self.kind == "bool":
                value = bool(value)
            elif self.kind == "text":
                value = str(value)
        except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
            raise ValueError(f"{self.name} = {value!r} is not a {self.kind}") from None
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(f"{self.name} = {value!r} is not one of {', '.join(map(str, self.choices))}")
            return value
        if self.kind in ("int", "float"):
            if self.kind == "float" and not math.isfinite(value):
                raise ValueError(f"{self.name} = {value!r} is not a finite number")
            if self.lo is not None:
                value = max(value, type(value)(self.lo))
            if self.hi is not None:
                value = min(value, type(value)(self.hi))
            if self.odd and value % 2 == 0:
                value = value + 1 if self.hi is None or value < self.hi else value - 1
        return value


def _bounds(kind: Kind, metadata: list[Any]) -> tuple[float | None, float | None]:
    lo = hi = None
    step = 1 if kind == "int" else 0.0
    for m in metadata:
        if isinstance(m, at.Ge):
            lo = m.ge
        elif isinstance(m, at.Gt):  # strict bounds: the nearest value inside, so a form cannot offer the bound itself
            lo = m.gt + step if kind == "int" else math.nextafter(m.gt, math.inf)
        elif isinstance(m, at.Le):
            hi = m.le
        elif isinstance(m, at.Lt):
            hi = m.lt - step if kind == "int" else math.nextafter(m.lt, -math.inf)
    return lo, hi


def _kind(annotation: Any) -> tuple[Kind, tuple[Any, ...], bool]:
    optional = False
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else str
        origin = typing.get_origin(annotation)
    if origin is Literal:
        return "choice", typing.get_args(annotation), optional
    if annotation is bool:
        return "bool", (), optional
    if annotation is int:
        return "int", (), optional
    if annotation is float:
        return "float", (), optional
    return "text", (), optional


def field_specs(
    model: type[BaseModel],
    *,
    limits: Limits | None = None,
    exclude: tuple[str, ...] = (),
    include: tuple[str, ...] | None = None,
) -> list[FieldSpec]:
    """The form fields of a pydantic model, in declaration order, capped by ``limits`` where a field names one."""
    specs = []
    for name, info in model.model_fields.items():
        if name in exclude or (include is not None and name not in include):
            continue
        kind, choices, optional = _kind(info.annotation)
        lo, hi = _bounds(kind, list(info.metadata))
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        cap = extra.get("limit")
        if limits is not None and cap:
            hi = min(hi, getattr(limits, cap)) if hi is not None else getattr(limits, cap)
        lo = extra.get("min", lo)
        hi = extra.get("max", hi)
        default = None if info.is_required() else info.get_default(call_default_factory=True)
        labels = extra.get("choice_labels") or {}
        specs.append(
            FieldSpec(
                name,
                kind,
                default,
                lo,
                hi,
                tuple(choices),
                str(extra.get("label", name)),
                info.description or "",
                optional,
                bool(extra.get("odd", False)),
                tuple(str(labels.get(c, c)) for c in choices) if labels else (),
                str(extra.get("unit", "")),
                str(extra.get("pyreflect", "")),
            )
        )
    return specs


def clamp_values(specs: list[FieldSpec], values: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Known values converted and clamped; returns (values, notes on what was clamped, names not in the form)."""
    by_name = {s.name: s for s in specs}
    out, notes = {}, []
    for name, raw in values.items():
        spec = by_name.get(name)
        if spec is None:
            continue
        value = spec.clamp(raw)
        if value != raw and spec.kind in ("int", "float") and raw is not None:
            notes.append(
                f"{name} {raw:g} → {value:g} (limit)" if isinstance(raw, (int, float)) else f"{name} → {value}"
            )
        out[name] = value
    return out, notes, sorted(set(values) - set(by_name))

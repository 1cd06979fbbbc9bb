"""Widgets generated from a configuration model: one :class:`Form` per pydantic settings class.

The widget type, range, step, label and tooltip of every field come from its declaration
(:func:`workbench.forms.field_specs`), capped by the app's :class:`~workbench.limits.Limits`.
Reading, remembering and applying settings are the same three calls for every form:
:meth:`Form.values`, :meth:`Form.set` (clamped, with a note per clamped value) and :meth:`Form.observe`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import ipywidgets as W
from pydantic import BaseModel

from ..forms import FieldSpec, clamp_values, field_specs
from ..limits import Limits

STYLE = {"description_width": "11em"}
OFF = 0  # an optional integer shows 0 for "off" (None)


def _step(spec: FieldSpec) -> float:
    if spec.kind == "int":
        return 2 if spec.odd else 1
    if spec.hi is not None and spec.lo is not None and spec.hi - spec.lo <= 1:
        return 0.05 if spec.lo >= 0.01 or spec.lo == 0 else 10 ** math.floor(math.log10(max(spec.lo, 1e-12)) + 1)
    return 0.1


def widget_for(spec: FieldSpec, value: Any, layout: W.Layout | None = None) -> W.Widget:
    """The widget of one field, showing ``value`` (clamped into the field's range)."""
    common = {
        "description": spec.label,
        "tooltip": spec.help,
        "style": STYLE,
        "layout": layout or W.Layout(width="26em"),
    }
    if spec.kind == "choice":
        options = list(zip(spec.choice_labels, spec.choices)) if spec.choice_labels else list(spec.choices)
        return W.Dropdown(options=options, value=value if value in spec.choices else spec.default, **common)
    if spec.kind == "bool":
        return W.Checkbox(value=bool(value), indent=False, **common)
    if spec.kind == "text":
        return W.Text(value="" if value is None else str(value), **common)
    lo = spec.lo if spec.lo is not None else (-1e12 if spec.kind == "float" else -(2**31))
    hi = spec.hi if spec.hi is not None else (1e12 if spec.kind == "float" else 2**31 - 1)
    if spec.optional:
        lo = OFF
        common["tooltip"] = f"{spec.help} (0: off)"
    cls = W.BoundedIntText if spec.kind == "int" else W.BoundedFloatText
    shown = OFF if value is None else spec.clamp(value)
    return cls(value=shown, min=lo, max=hi, step=_step(spec), **common)


class Form:
    """Widgets for the fields of ``model`` (minus ``exclude``), filled from ``values``, capped by ``limits``."""

    def __init__(
        self,
        model: type[BaseModel],
        values: Mapping[str, Any] | None = None,
        *,
        limits: Limits | None = None,
        exclude: tuple[str, ...] = (),
        include: tuple[str, ...] | None = None,
        layout: W.Layout | None = None,
    ) -> None:
        self.model = model
        self.specs = {s.name: s for s in field_specs(model, limits=limits, exclude=exclude, include=include)}
        values = dict(values or {})
        self.widgets: dict[str, W.Widget] = {}
        for name, spec in self.specs.items():
            try:
                start = spec.clamp(values.get(name, spec.default))
            except ValueError:  # a damaged saved value: the default
                start = spec.default
            widget = widget_for(spec, start, W.Layout(**layout.get_state(["width"])) if layout else None)
            widget.add_class(f"wb-field-{name}")  # a stable handle for browser tests and custom CSS
            self.widgets[name] = widget
        self.box = W.VBox(list(self.widgets.values()))

    def __getitem__(self, name: str) -> W.Widget:
        return self.widgets[name]

    def __contains__(self, name: str) -> bool:
        return name in self.widgets

    def __iter__(self) -> Iterator[str]:
        return iter(self.widgets)

    def values(self) -> dict[str, Any]:
        """The form's values by field name (an optional field at 0 is None)."""
        out = {}
        for name, widget in self.widgets.items():
            value = widget.value
            if self.specs[name].optional and value == OFF:
                value = None
            out[name] = value
        return out

    def set(self, values: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """Set known fields, each clamped to its range; returns (notes on clamped values, names this form lacks).

        Every value is checked before any widget changes, so a bad value leaves the form as it was.
        """
        clean, notes, unknown = clamp_values(list(self.specs.values()), dict(values))
        widgets = [self.widgets[n] for n in clean]
        with _hold(widgets):
            for name, value in clean.items():
                self.widgets[name].value = OFF if value is None else value
        return notes, unknown

    def observe(self, callback: Callable[..., None]) -> None:
        for widget in self.widgets.values():
            widget.observe(callback, "value")


class _hold:
    """Several widgets' ``hold_sync()`` at once: one message per widget for several trait changes."""

    def __init__(self, widgets: list[W.Widget]) -> None:
        self.contexts = [w.hold_sync() for w in widgets]

    def __enter__(self) -> None:
        for c in self.contexts:
            c.__enter__()

    def __exit__(self, *exc: object) -> None:
        for c in reversed(self.contexts):
            c.__exit__(*exc)


class FormFields:
    """Mixin for panels built from forms: ``panel.epochs`` is the ``epochs`` widget of the first form that has one."""

    def _forms(self) -> list[Form]:
        """The panel's forms in lookup order; read them from ``self.__dict__`` (KeyError while being built)."""
        return []

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or "ctx" not in self.__dict__:
            raise AttributeError(name)
        try:
            forms = self._forms()
        except (AttributeError, KeyError):  # still being built
            raise AttributeError(name) from None
        for form in forms:
            if name in form:
                return form[name]
        raise AttributeError(f"{type(self).__name__} has no widget or attribute {name!r}")

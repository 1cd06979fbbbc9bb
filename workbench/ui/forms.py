"""Widgets generated from a configuration model: one :class:`Form` per pydantic settings class.

The widget type, range, step, label (words and unit) and tooltip (the help line) of every field
come from its declaration (:func:`workbench.forms.field_specs`), capped by the app's :class:`~workbench.limits.Limits`.
Description widths are computed from the labels, so the longest label of a form shows whole.
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

OFF = 0  # an optional integer shows 0 for "off" (None)
EM_PER_CHAR = 0.62  # average width of a character of the widgets' sans-serif font, in em (measured in Chromium ≈ 0.55)
INPUT_EM = {"int": 8.0, "float": 8.0, "text": 14.0}  # room for the value itself


def fit_em(text: str) -> float:
    """Width in em that shows ``text`` whole in the widgets' font (no "Poisson counting noise (RE…")."""
    return round(len(text) * EM_PER_CHAR + 1.0, 1)


def fit(widget: W.Widget, input_em: float = INPUT_EM["text"], description_em: float = 0.0) -> W.Widget:
    """Size a hand-made widget so its description and (for a dropdown) its longest option show whole."""
    label = max(description_em, fit_em(widget.description)) if widget.description else 0.0
    if isinstance(widget, W.Dropdown):
        input_em = max([input_em, *(fit_em(str(o)) + 2.5 for o in widget._options_labels)])
    widget.style.description_width = f"{label:g}em"
    widget.layout.width = f"{max(label + input_em, _em(widget.layout.width)):g}em"
    return widget


def label_em(specs: list[FieldSpec]) -> float:
    """One description width for a form: its longest label fits, and the boxes line up."""
    return max([fit_em(s.description) for s in specs if s.kind != "bool"], default=0.0)


def _tooltip(spec: FieldSpec) -> str:
    """A help line that explains, never the label again: the declared description, the range and pyreflect's name."""
    parts = [spec.help] if spec.help and spec.help.lower() != spec.description.lower() else []
    if spec.kind in ("int", "float") and spec.lo is not None and spec.hi is not None:
        parts.append(f"{spec.lo:.6g} to {spec.hi:.6g}{' ' + spec.unit if spec.unit else ''}")
    if spec.optional:
        parts.append("0: off")
    text = "; ".join(parts)
    return f"{text} (pyreflect: {spec.pyreflect})" if spec.pyreflect else text


def _step(spec: FieldSpec) -> float:
    if spec.kind == "int":
        return 2 if spec.odd else 1
    if spec.hi is not None and spec.lo is not None and spec.hi - spec.lo <= 1:
        return 0.05 if spec.lo >= 0.01 or spec.lo == 0 else 10 ** math.floor(math.log10(max(spec.lo, 1e-12)) + 1)
    return 0.1


def _em(width: str | None) -> float:
    return float(width[:-2]) if width and width.endswith("em") else 0.0


def widget_for(
    spec: FieldSpec, value: Any, layout: W.Layout | None = None, description_em: float | None = None
) -> W.Widget:
    """The widget of one field, showing ``value`` (clamped into the field's range).

    The label is the field's words and unit, the tooltip its help; the description width fits the
    label (``description_em``: a form's common width) and the widget is wide enough for both.
    """
    text = spec.description
    label = max(description_em or 0.0, fit_em(text))
    if spec.kind == "bool":  # the label sits right of the box
        need = fit_em(text) + 2.5
    elif spec.kind == "choice":
        shown = spec.choice_labels or tuple(map(str, spec.choices))
        need = label + max(fit_em(c) for c in shown) + 2.5  # + the dropdown's arrow
    else:
        need = label + INPUT_EM[spec.kind if spec.kind in INPUT_EM else "text"]
    width = max(need, _em(layout.width if layout is not None else None))
    common = {
        "description": text,
        "tooltip": _tooltip(spec),
        "style": {"description_width": "initial" if spec.kind == "bool" else f"{label:g}em"},
        "layout": W.Layout(width=f"{width:g}em"),
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
        description_em: float = 0.0,
    ) -> None:
        self.model = model
        self.specs = {s.name: s for s in field_specs(model, limits=limits, exclude=exclude, include=include)}
        values = dict(values or {})
        self.widgets: dict[str, W.Widget] = {}
        self.description_em = max(label_em(list(self.specs.values())), description_em)  # forms stacked together align
        for name, spec in self.specs.items():
            try:
                start = spec.clamp(values.get(name, spec.default))
            except ValueError:  # a damaged saved value: the default
                start = spec.default
            widget = widget_for(spec, start, layout, self.description_em)  # widget_for makes each its own Layout
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

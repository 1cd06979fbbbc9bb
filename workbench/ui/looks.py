"""Layouts and styles the Film stack's rows share (one widget model each instead of one per row), frozen."""

from __future__ import annotations

import ipywidgets as W
from ipywidgets.widgets.widget_bool import CheckboxStyle, ToggleButtonStyle
from ipywidgets.widgets.widget_description import DescriptionStyle
from ipywidgets.widgets.widget_string import LabelStyle, TextStyle
from traitlets import TraitError

BOUND_WIDTH = "9em"
NUMBER_WIDTH = "7.5em"


def frozen(widget: W.Widget) -> W.Widget:
    """A layout or style that several widgets share: changing it raises instead of changing all of them at once."""

    def refuse(_owner, proposal) -> None:
        raise TraitError(
            f"a shared {type(widget).__name__} cannot change ({proposal['trait'].name} → {proposal['value']!r}): "
            "give the widget a layout of its own to change it"
        )

    # a validator runs before a value is set (an observer would run after the change was made)
    widget._register_validator(refuse, [n for n in widget.keys if not n.startswith("_")])
    widget.shared = True  # tests/test_ui_layouts.py allows only these to be shared
    return widget


class Looks:
    """Layouts and styles the rows share: one widget model each instead of one per row.

    Every widget has a Layout and a style model of its own unless given one; the 32 parameter rows of a
    default stack made ~500 of the app's 1,064 widget models, each created in the kernel and sent to,
    built and laid out by the browser on every page load.  Only layouts no code changes are shared, and
    they are :func:`frozen`: a flagged row is marked by a CSS class instead, and its "widen bounds" button is
    made only when first needed.
    """

    def __init__(self) -> None:
        self.label = frozen(W.Layout(width="11em"))
        self.slider = frozen(W.Layout(width="16em"))
        self.vary = frozen(W.Layout(width="5em"))
        self.bound = frozen(W.Layout(width=BOUND_WIDTH))
        self.number = frozen(W.Layout(width=NUMBER_WIDTH))
        self.auto_width = frozen(W.Layout(width="auto"))
        self.row = frozen(W.Layout())
        self.icon_button = frozen(W.Layout(width="3em"))
        self.name = frozen(W.Layout(width="12em"))
        self.role = frozen(W.Layout(width="7em"))
        self.card = frozen(W.Layout(border_bottom="1px solid #ddd"))
        self.header = frozen(W.Layout())
        self.bound_style = frozen(DescriptionStyle(description_width="2.5em"))
        self.number_style = frozen(DescriptionStyle())
        self.slider_style = frozen(W.SliderStyle())
        self.check_style = frozen(CheckboxStyle())
        self.label_style = frozen(LabelStyle())
        self.button_style = frozen(W.ButtonStyle())
        self.toggle_style = frozen(ToggleButtonStyle())
        self.text_style = frozen(TextStyle())

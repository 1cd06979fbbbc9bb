"""Labels a scientist reads: words with units, a help line that explains, and room to show both whole.

Every generated form widget and every hand-made field of the Probe, Generate, Train, Sweep and Search
panels is checked: no code names (numCurves, q_min), the unit in brackets where the field has one, a
tooltip that is not the label again, and a description width that fits the label (the browser cut
"Poisson counting noise (REF_L-like)" to "Poisson counting noise (RE…" in a 24em box with an 11em label).
"""

from __future__ import annotations

import argparse
import re

import ipywidgets as W
import pytest

from workbench.cli import train as train_command
from workbench.data.generate import GeneratorConfig
from workbench.data.realism import Realism
from workbench.forms import field_specs
from workbench.models.settings import SETTINGS
from workbench.training import TrainConfig
from workbench.ui.context import AppContext
from workbench.ui.forms import Form
from workbench.ui.generate_panel import GeneratePanel
from workbench.ui.probe_panel import ProbePanel
from workbench.ui.search_panel import SearchPanel
from workbench.ui.stack_model import ProbeSettings
from workbench.ui.sweep_panel import SweepPanel
from workbench.ui.train_panel import MODEL_EXCLUDE, TRAIN_EXCLUDE, TrainPanel
from workbench.workflows.training import TrainRequest

EM_PER_CHAR = 0.6  # a lower bound on the widgets' average character width
BUTTON_EM = 148 / 13  # ipywidgets' default button width (148 px) in em of its 13 px font
CODE_NAME = re.compile(r"\b[a-z]+[A-Z][a-z]\w*|\b[a-z]+_[a-z_]+\b")  # numCurves, learningRate, q_min (not REF_L)
UNITS = {  # fields a scientist reads with a unit
    "q_min": "Å⁻¹",
    "q_max": "Å⁻¹",
    "batch_size": "curves",
    "early_stopping": "epochs",
    "checkpoint_every": "epochs",
    "kernel_size": "Q points",
}

FORMS = {
    "train": lambda: Form(TrainConfig, exclude=TRAIN_EXCLUDE),
    "request": lambda: Form(TrainRequest, include=("validation_split",)),
    "generate": lambda: Form(GeneratorConfig, exclude=("realism",)),
    "realism": lambda: Form(Realism, exclude=("background",)),
    "probe": lambda: Form(ProbeSettings),
    **{f"model {k}": (lambda cls=cls: Form(cls, exclude=MODEL_EXCLUDE)) for k, cls in SETTINGS.items()},
}


def _em(width: str) -> float:
    assert width.endswith("em"), width
    return float(width[:-2])


def _check_label(w: W.Widget, where: str) -> None:
    text = w.description
    assert not CODE_NAME.search(text), f"{where}: code name in {text!r}"
    needed = len(text) * EM_PER_CHAR
    if isinstance(w, W.Button):
        width = w.layout.width
        room = BUTTON_EM if width is None else (1e9 if width == "auto" else _em(width))
        assert room >= needed + (2 if w.icon else 0), f"{where}: button {text!r} is cut at {width}"
        return
    if isinstance(w, W.Checkbox):  # the label sits right of the box: the widget's width holds it
        assert _em(w.layout.width) >= needed + 1.5, f"{where}: {text!r} in {w.layout.width}"
    else:
        label = w.style.description_width
        assert label == "initial" or _em(label) >= needed, f"{where}: {text!r} in a {label} label"
    if isinstance(w, W.Dropdown) and w.options:
        longest = max(len(str(o)) for o in w._options_labels) * EM_PER_CHAR + 2  # + the arrow
        assert _em(w.layout.width) - _em(w.style.description_width) >= longest, f"{where}: options of {text!r} cut"
    assert w.tooltip and w.tooltip.strip().lower() != text.strip().lower(), f"{where}: tooltip of {text!r}"


@pytest.mark.parametrize("name", sorted(FORMS))
def test_every_form_field_reads_as_words_with_units_and_fits(name):
    form = FORMS[name]()
    for field, widget in form.widgets.items():
        spec = form.specs[field]
        _check_label(widget, f"{name}.{field}")
        if field in UNITS:
            assert f"({UNITS[field]})" in widget.description, widget.description
        if "Å" in spec.help:
            assert "Å" in widget.description, f"{field}: the help speaks of Å but the label has no unit"
        assert widget.tooltip != spec.description and spec.help in widget.tooltip


def test_pyreflect_names_stay_on_the_command_line():
    parser = train_command.add_parser(argparse.ArgumentParser().add_subparsers())
    options = {a.dest: a for a in parser._actions}
    assert "--learning-rate" in options["learning_rate"].option_strings
    assert "--kernel-size" in options["kernel_size"].option_strings
    assert "learning rate; pyreflect: learningRate" in options["learning_rate"].help
    num_curves = next(s for s in field_specs(GeneratorConfig) if s.name == "num_curves")
    assert (num_curves.description, num_curves.pyreflect) == ("number of curves", "numCurves")


def _fields(root: W.Widget) -> list[W.Widget]:
    out, todo = [], [root]
    while todo:
        w = todo.pop()
        todo.extend(c for c in getattr(w, "children", ()) if isinstance(c, W.Widget))
        if isinstance(w, W.widgets.widget_description.DescriptionWidget) and getattr(w, "description", ""):
            if not isinstance(w, (W.ToggleButton, W.IntProgress)):
                out.append(w)
    return out


def test_every_labelled_widget_of_the_panels_fits_and_explains(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panels = {
        "probe": ProbePanel(ctx),
        "generate": GeneratePanel(ctx),
        "train": TrainPanel(ctx),
        "sweep": SweepPanel(ctx),
        "search": SearchPanel(ctx),
    }
    for name, panel in panels.items():
        fields = _fields(panel)
        assert len(fields) >= 3, name
        for w in fields:
            _check_label(w, name)


def test_the_train_tab_shows_only_the_chosen_models_settings(tmp_path):
    panel = TrainPanel(AppContext(tmp_path / "ws", autosave_delay=0))
    for kind in SETTINGS:
        panel.model_kind.value = kind
        shown = [k for k, f in panel.model_forms.items() if f.box.layout.display != "none"]
        assert shown == [kind]
    panel.model_kind.value = "compact"
    assert panel.model_forms["parity_cnn"]["layers"].description == "convolution blocks"
    assert panel.model_forms["parity_cnn"].box.layout.display == "none"

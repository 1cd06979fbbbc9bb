"""Settings declared once: widgets and command-line options carry every field of the config models, with its limits."""

from __future__ import annotations

import argparse
import math

import ipywidgets as W
import pytest
from hypothesis import given
from hypothesis import strategies as st

from workbench.cli import train as train_command
from workbench.forms import FieldSpec, field_specs
from workbench.limits import Limits
from workbench.models.settings import SETTINGS, ParitySettings
from workbench.training import TrainConfig
from workbench.ui.context import AppContext
from workbench.ui.forms import Form
from workbench.ui.train_panel import MODEL_EXCLUDE, TRAIN_EXCLUDE, TrainPanel


def _train_parser() -> argparse.ArgumentParser:
    return train_command.add_parser(argparse.ArgumentParser().add_subparsers())


def test_train_form_has_every_field_with_its_limits():
    limits = Limits(max_epochs=7, max_batch_size=99)
    form = Form(TrainConfig, limits=limits, exclude=TRAIN_EXCLUDE)
    assert set(form) == set(TrainConfig.model_fields) - set(TRAIN_EXCLUDE)
    assert (form["epochs"].min, form["epochs"].max) == (1, 7)
    assert (form["batch_size"].min, form["batch_size"].max) == (1, 99)
    assert (
        form["batch_size"].description == "batch size (curves)" and form["learning_rate"].description == "learning rate"
    )
    assert "pyreflect: learningRate" in form["learning_rate"].tooltip  # pyreflect's name is in the help
    assert (form["learning_rate"].min, form["learning_rate"].max) == (1e-7, 1.0)
    assert list(form["optimizer"].options) == ["adam", "adamw", "sgd"]
    assert [v for _, v in form["schedule"].options] == ["none", "cosine", "step", "plateau"]
    assert form["schedule"].label == "constant"
    assert isinstance(form["seed"], W.BoundedIntText) and form["seed"].max == 2**31 - 1
    assert form["early_stopping"].value == 0 and form.values()["early_stopping"] is None  # optional: 0 is off
    assert form["momentum"].max < 1  # lt=1
    assert TrainConfig(**Form(TrainConfig, exclude=TRAIN_EXCLUDE).values()) == TrainConfig()  # defaults: the model's


@pytest.mark.parametrize("kind", sorted(SETTINGS))
def test_model_forms_and_options_carry_every_setting(kind):
    cls = SETTINGS[kind]
    form = Form(cls, exclude=MODEL_EXCLUDE)
    assert set(form) == set(cls.model_fields) - set(MODEL_EXCLUDE)
    for name in form:
        spec = form.specs[name]
        widget = form[name]
        if spec.kind in ("int", "float"):
            assert (widget.min, widget.max) == (spec.lo, spec.hi), name
    options = {a.dest for a in _train_parser()._actions}
    assert set(form) <= options


def test_command_line_options_come_from_the_config_fields():
    train = _train_parser()
    options = {a.dest: a for a in train._actions}
    assert set(TrainConfig.model_fields) - {"progress_every"} <= set(options)
    assert options["optimizer"].choices == ["adam", "adamw", "sgd"]
    assert "[1, 100000]" in options["epochs"].help and "pyreflect: batchSize" in options["batch_size"].help
    assert "batch size (curves)" in options["batch_size"].help
    args = train.parse_args(
        ["--data", "d", "--out", "o", "--epochs", "3", "--schedule", "cosine", "--kernel-size", "7"]
    )
    assert (args.epochs, args.schedule, args.kernel_size, args.batch_size) == (3, "cosine", 7, None)
    with pytest.raises(SystemExit):
        train.parse_args(["--data", "d", "--out", "o", "--optimizer", "lion"])


def test_threads_and_time_budget_are_settings_of_both_the_cli_and_the_train_panel(tmp_path):
    args = _train_parser().parse_args(["--data", "d", "--out", "o", "--threads", "1", "--minutes", "5"])
    request = train_command.request_from_args(args)
    assert (request.train.threads, request.train.minutes) == (1, 5.0)
    default = train_command.request_from_args(_train_parser().parse_args(["--data", "d", "--out", "o"]))
    assert default.train.threads is None and default.train.minutes is None
    with pytest.raises(ValueError, match="threads"):
        train_command.request_from_args(_train_parser().parse_args(["--data", "d", "--out", "o", "--threads", "0"]))
    panel = TrainPanel(AppContext(tmp_path / "ws", autosave_delay=0))
    assert panel.threads.description == "CPU threads" and panel.minutes.description == "time budget (min)"
    assert panel.train_config().threads is None and panel.train_config().minutes is None  # 0: chosen for the machine
    panel.threads.value, panel.minutes.value = 1, 2.5
    assert (panel.train_config().threads, panel.train_config().minutes) == (1, 2.5)


def test_the_panel_remembers_and_restores_generated_fields(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    panel = TrainPanel(ctx)
    panel.model_kind.value = "parity_cnn"
    panel.kernel_size.value, panel.early_stopping.value, panel.schedule.value = 9, 3, "cosine"
    again = TrainPanel(AppContext(tmp_path / "ws", autosave_delay=0))
    assert again.model_kind.value == "parity_cnn" and again.kernel_size.value == 9
    assert again.train_config().early_stopping == 3 and again.train_config().schedule == "cosine"
    assert again.model_config() == {"kind": "parity_cnn", "layers": 12, "kernel_size": 9, "dropout": 0.5}


def test_a_bad_saved_model_choice_does_not_break_the_train_tab(tmp_path):
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    ctx.update_settings("train", model="x", epochs=-5, optimizer="lion", seed="many")
    panel = TrainPanel(ctx)
    assert panel.model_kind.value == "compact" and panel.epochs.value == 1 and panel.optimizer.value == "adam"
    assert panel.seed.value == 0


@given(st.one_of(st.integers(-(10**9), 10**9), st.floats(allow_nan=False, allow_infinity=False, width=32)))
def test_clamped_values_stay_in_range_and_odd(value):
    spec = next(s for s in field_specs(ParitySettings) if s.name == "kernel_size")
    out = spec.clamp(value)
    assert isinstance(out, int) and spec.lo <= out <= spec.hi and out % 2 == 1


@given(st.one_of(st.text(max_size=8), st.none(), st.floats(), st.integers()))
def test_values_that_are_not_numbers_are_refused_by_name(value):
    spec = FieldSpec("learning_rate", "float", 1e-3, 1e-7, 1.0)
    try:
        out = spec.clamp(value)
    except ValueError as exc:
        assert "learning_rate" in str(exc)
    else:
        assert math.isfinite(out) and 1e-7 <= out <= 1.0


def test_an_infinite_value_for_an_integer_field_is_refused_by_name():
    spec = next(s for s in field_specs(TrainConfig) if s.name == "epochs")
    with pytest.raises(ValueError, match="epochs"):
        spec.clamp(float("inf"))

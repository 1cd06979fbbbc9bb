"""Film stack panel: one row per layer parameter (slider + number + bound editors) and a live preview.

The panel is a view of :class:`~workbench.ui.stack_model.StackModel`: widgets write into the model, the
model notifies, the panel redraws R(Q) (log scale) and the SLD profile in two FigureWidgets that
live as long as the panel.  Redraws run on a :class:`~workbench.ui.coalesce.Coalescer` worker: a
single change is drawn at once, and while one redraw is being computed the changes that arrive
(a slider drag) collapse into one redraw of the newest stack instead of a queue of stale ones.
Typing a number beyond a slider's range widens the slider, up to the hard physical limit of
:mod:`workbench.limits`; beyond it the value is clamped and the panel says so.  A value outside the
bounds it varies in (the sampling range; the value is the start and central value) is flagged at once:
the number box turns red, the panel names it, and the row offers "widen bounds"; Generate refuses
such a stack until the bounds include the value.  Reset asks for a second click and leaves the probe.
Numbers are shown to 6 significant digits (3.4700000000000006 shows as 3.47).
Headless twin: ``StackModel.set_value`` / ``reflectivity`` / ``sld_profile``.
"""

from __future__ import annotations

import html
import threading
import time
from typing import ClassVar

import ipywidgets as W

from ..limits import default_slider_range
from ..physics import FilmStack, Probe
from ..physics.stack import PARAMETER_FIELDS
from .coalesce import Coalescer
from .common import Panel, Status, panel_guard
from .context import AppContext
from .curve_pair import CurvePair
from .family_box import BlockBox, FamilyBox
from .looks import Looks
from .stack_model import LABELS, UNITS, applicable, compute_preview, short, shown

FLAG_BORDER = "2px solid #cf222e"
# A flagged row's number box turns red by its row's class, so every number box can share one Layout.
FLAG_CSS = f"<style>.wb-out-of-bounds .wb-number input {{ border: {FLAG_BORDER}; }}</style>"


HELP = {
    "sld": "scattering length density, the real part",
    "isld": "imaginary SLD: absorption",
    "thickness": "layer thickness (no effect for the substrate and the ambient)",
    "roughness": "RMS roughness of the interface on top of this layer",
}


class ParameterRow(W.HBox):
    """Slider + editable number + vary checkbox + min/max bound editors of one layer parameter."""

    def __init__(self, panel: StackPanel, i: int, par: str) -> None:
        self.panel, self.i, self.par = panel, i, par
        looks = panel.looks
        model = panel.ctx.stack
        value = model.value(i, par)
        bound = model.bound(i, par)
        lo, hi = default_slider_range(par, value, model.limits)
        if bound is not None:
            lo, hi = min(lo, bound[0]), max(hi, bound[1])
        step = 0.001 if par in ("sld", "isld") else 0.01
        enabled = applicable(par, i, model.n_layers)
        self.slider = W.FloatSlider(
            value=value,
            tooltip=f"drag to change the {LABELS[par]} and watch R(Q) and the SLD profile",
            min=lo,
            max=hi,
            step=step,
            readout=False,
            continuous_update=True,
            disabled=not enabled,
            layout=looks.slider,
            style=looks.slider_style,
            description_allow_html=False,
        )
        self.slider.add_class("wb-slider")
        self.number = W.FloatText(
            value=shown(value),
            step=step,
            disabled=not enabled,
            tooltip=f"{HELP[par]}, {UNITS[par]}: the start and central value",
            layout=looks.number,
            style=looks.number_style,
        )
        self.number.add_class("wb-number")
        self.vary = W.Checkbox(
            value=bound is not None and bound[1] > bound[0],
            indent=False,
            description="vary",
            tooltip="vary within min–max when generating and fitting (unticked: fixed at the value)",
            disabled=not enabled,
            layout=looks.vary,
            style=looks.check_style,
        )
        self.lo = W.FloatText(
            value=shown(bound[0] if bound else value),
            disabled=not enabled,
            layout=looks.bound,
            description="min",
            tooltip=f"lowest value sampled and fitted, {UNITS[par]}",
            style=looks.bound_style,
        )
        self.hi = W.FloatText(
            value=shown(bound[1] if bound else value),
            disabled=not enabled,
            layout=looks.bound,
            description="max",
            tooltip=f"highest value sampled and fitted, {UNITS[par]}",
            style=looks.bound_style,
        )
        self._widen_button: W.Button | None = None  # made when the value first leaves its bounds
        self._sync = False
        self.slider.observe(self._slider_changed, "value")
        self.number.observe(self._number_changed, "value")
        for w in (self.vary, self.lo, self.hi):
            w.observe(self._bound_changed, "value")
        label = W.Label(f"{LABELS[par]} ({UNITS[par]})", layout=looks.label, style=looks.label_style)
        self._fields = (label, self.slider, self.number, self.vary, self.lo, self.hi)
        super().__init__(self._fields, layout=looks.row)
        self.add_class(f"wb-row-{i}-{par}")
        self.flag()

    @property
    def what(self) -> str:
        """The parameter in words: "layer_2 thickness"."""
        return f"{self.panel.ctx.stack.layer(self.i).name} {LABELS[self.par]}"

    def flag(self) -> str | None:
        """Mark the row when its value lies outside the bounds it varies in; returns the message, or None."""
        out = self.panel.ctx.stack.outside(self.i, self.par)
        (self.add_class if out else self.remove_class)("wb-out-of-bounds")  # FLAG_CSS turns the number box red
        children = (*self._fields, self.widen) if out else self._fields
        if self.children != children:
            self.children = children
        return out.message if out else None

    def sync(self) -> None:
        """Show the model's value and bounds (changed elsewhere) without echoing them back."""
        model = self.panel.ctx.stack
        value, bound = model.value(self.i, self.par), model.bound(self.i, self.par)
        if shown(value) != self.number.value or value != self.slider.value:
            self.show(value)
        if bound is not None and (self.lo.value, self.hi.value) != (shown(bound[0]), shown(bound[1])):
            self._show_bounds(*bound)
        self.flag()

    def _show_bounds(self, lo: float, hi: float) -> None:
        self._sync = True
        try:
            self.lo.value, self.hi.value = shown(lo), shown(hi)
            self.slider.min, self.slider.max = min(self.slider.min, lo), max(self.slider.max, hi)
        finally:
            self._sync = False

    def _report(self, note: str) -> None:
        """The outcome of the latest edit replaces the panel's note; a value outside its bounds is warned about."""
        out = self.flag()
        if out:
            self.panel.status.warn(
                f"{out}: Generate refuses it until the bounds include it: press 'widen bounds' or type a value inside"
            )
        else:
            self.panel.status.info(note)

    def _slider_changed(self, change) -> None:
        if self._sync:
            return
        self._set(change["new"])

    def _number_changed(self, change) -> None:
        if self._sync:
            return
        self._set(change["new"], typed=True)

    @panel_guard
    def _set(self, value: float, typed: bool = False) -> None:
        model = self.panel.ctx.stack
        stored = model.set_value(self.i, self.par, value)
        self.show(stored)
        if typed and stored != value:
            hard = model.limits.parameter(self.par)
            self.flag()
            self.panel.status.warn(
                f"{self.what} {short(value)} {UNITS[self.par]} is outside the physical limit "
                f"{short(hard.lo)}–{short(hard.hi)} {UNITS[self.par]}; set to {short(stored)}"
            )
            return
        tied = len(model.linked(self.i, self.par)) - 1
        self._report(f"{self.what} = {short(stored)} {UNITS[self.par]}" + (f" (and {tied} tied)" if tied else ""))

    def show(self, value: float) -> None:
        """Put ``value`` into slider and number without echoing it back to the model."""
        self._sync = True
        try:
            s = self.slider
            s.max = max(s.max, value)
            s.min = min(s.min, value)
            s.value = value
            self.number.value = shown(value)
        finally:
            self._sync = False

    @property
    def status(self) -> Status:
        return self.panel.status

    @panel_guard
    def _bound_changed(self, change) -> None:
        if self._sync:
            return
        model = self.panel.ctx.stack
        unit = UNITS[self.par]
        if not self.vary.value:
            model.set_bound(self.i, self.par, None)
            self._report(f"{self.what} fixed at {short(model.value(self.i, self.par))} {unit}")
            return
        lo, hi = model.set_bound(self.i, self.par, self.lo.value, self.hi.value)
        self._show_bounds(lo, hi)
        self._report(f"{self.what} varies in {short(lo)}–{short(hi)} {unit}")

    @property
    def widen(self) -> W.Button:
        """The row's "widen bounds" button, shown while the value lies outside its bounds (made on first need)."""
        if self._widen_button is None:
            self._widen_button = W.Button(
                description="widen bounds",
                icon="arrows-h",
                tooltip="stretch min–max just enough to include the value",
                layout=self.panel.looks.auto_width,
                style=self.panel.looks.button_style,
            )
            self._widen_button.add_class("wb-widen")
            self._widen_button.on_click(self._widen)
        return self._widen_button

    @panel_guard
    def _widen(self, _=None) -> None:
        bounds = self.panel.ctx.stack.widen_bound(self.i, self.par)
        if bounds is not None:
            self._show_bounds(*bounds)
            self._report(f"{self.what} bounds widened to {short(bounds[0])}–{short(bounds[1])} {UNITS[self.par]}")


class LayerBox(W.VBox):
    """Header (collapse toggle, name, move up/down, remove) and the four parameter rows of one layer."""

    def __init__(self, panel: StackPanel, i: int, expanded: bool = True) -> None:
        self.panel, self.i = panel, i
        looks = panel.looks
        model = panel.ctx.stack
        n = model.n_layers
        block = model.block_of(i) is not None  # a block's period layer: moved and removed with its block
        role = "substrate" if i == 0 else "ambient" if i == n - 1 else "period layer" if block else "film layer"
        self.toggle = W.ToggleButton(
            value=expanded,
            icon="chevron-down" if expanded else "chevron-right",
            tooltip="collapse / expand",
            layout=looks.icon_button,
            style=looks.toggle_style,
        )
        self.name = W.Text(value=model.display_name(i), layout=looks.name, style=looks.text_style)
        inner = 0 < i < n - 1 and not block
        # the cards run substrate (top) to ambient (bottom): ↑ moves a card up the page, towards the substrate
        self.up = W.Button(
            icon="arrow-up",
            tooltip="move up, towards the substrate",
            disabled=not (inner and i > 1),
            layout=looks.icon_button,
            style=looks.button_style,
        )
        self.down = W.Button(
            icon="arrow-down",
            tooltip="move down, towards the ambient",
            disabled=not (inner and i + 1 < n - 1),
            layout=looks.icon_button,
            style=looks.button_style,
        )
        self.remove = W.Button(
            icon="trash",
            tooltip="remove this layer",
            disabled=not inner,
            layout=looks.icon_button,
            style=looks.button_style,
        )
        self.rows = [ParameterRow(panel, i, par) for par in PARAMETER_FIELDS]
        self.body = W.VBox(self.rows, layout=W.Layout(display="" if expanded else "none", margin="0 0 0 3em"))
        self.toggle.observe(self._toggled, "value")
        self.name.observe(self._renamed, "value")
        self.up.on_click(lambda _: panel.move(i, -1))
        self.down.on_click(lambda _: panel.move(i, +1))
        self.remove.on_click(lambda _: panel.remove(i))
        role_label = W.Label(role, layout=looks.role, style=looks.label_style)
        header = W.HBox([self.toggle, self.name, role_label, self.up, self.down, self.remove], layout=looks.header)
        super().__init__([header, self.body], layout=looks.card)
        self.add_class(f"wb-layer-{i}")

    def _toggled(self, change) -> None:
        self.body.layout.display = "" if change["new"] else "none"
        self.toggle.icon = "chevron-down" if change["new"] else "chevron-right"

    def _renamed(self, change) -> None:
        try:
            self.panel.ctx.stack.rename(self.i, change["new"])
        except Exception as exc:  # noqa: BLE001
            self.panel.status.error(str(exc))
        else:
            self.panel.status.info(f"layer {change['old']!r} renamed {self.panel.ctx.stack.display_name(self.i)!r}")

    def row(self, par: str) -> ParameterRow:
        return self.rows[PARAMETER_FIELDS.index(par)]


class StackPanel(Panel, W.VBox):
    """The film stack editor with a live R(Q) and SLD preview."""

    CHARTS: ClassVar[dict[str, str]] = {"film stack R(Q)": "rq", "film stack SLD": "sld"}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.status = Status()
        self.physics_note = W.HTML()  # the stack's physics warnings (Névot–Croce outside its range, ...)
        self.timing = W.HTML()
        self.curves = CurvePair(("R(Q)",), ("ρ (SLD)", "ρ'' (absorption)"))
        self.rq, self.sld = self.curves.rq, self.curves.sld
        for fig in (self.rq, self.sld):
            fig.layout.height = 360
        self.last_redraw_ms = 0.0  # compute + figure push of the last redraw
        self.last_latency_ms = 0.0  # from the change to its redraw sent (waiting for a busy worker included)
        self.redraws = 0
        self._draw_lock = threading.Lock()
        self.preview_job = Coalescer(
            self._draw,
            on_error=lambda exc: self.status.error(f"cannot compute the preview: {exc}"),
            name="workbench-stack-preview",
        )
        self.add = W.Button(description="Add layer", icon="plus")
        self.collapse = W.Button(description="Collapse all", icon="compress")
        self.expand = W.Button(description="Expand all", icon="expand")
        self.reset = W.Button(
            description="Reset to defaults",
            icon="undo",
            button_style="warning",
            tooltip="back to pyreflect's example stack and bounds (asks first; the probe stays)",
            layout=W.Layout(width="auto"),
        )
        self.confirm_reset = W.Button(
            description="Confirm reset", icon="check", button_style="danger", layout=W.Layout(width="auto")
        )
        self.cancel_reset = W.Button(description="Keep my stack", icon="times", layout=W.Layout(width="auto"))
        self.confirm_row = W.HBox(
            [
                W.HTML("Replace every layer and bound with pyreflect's example stack? The probe stays as it is."),
                self.confirm_reset,
                self.cancel_reset,
            ],
            layout=W.Layout(display="none"),
        )
        self.confirm_row.add_class("wb-confirm-reset")
        for button in (self.add, self.collapse, self.expand):
            button.layout.width = "auto"
        self.add.tooltip = "insert a layer just below the ambient"
        self.collapse.tooltip = "hide the parameter rows of every layer"
        self.expand.tooltip = "show the parameter rows of every layer"
        self.add.on_click(self._add)
        self.collapse.on_click(lambda _: self._expand_all(False))
        self.expand.on_click(lambda _: self._expand_all(True))
        self.reset.on_click(self._ask_reset)
        self.confirm_reset.on_click(self._reset)
        self.cancel_reset.on_click(self._cancel_reset)
        self.looks = Looks()  # shared by every row, across rebuilds of the layer cards
        self.layers_box = W.VBox()
        self.layers: list[LayerBox] = []  # every layer card, page order (a block's period layers once)
        self.boxes: dict[int, LayerBox] = {}  # by layer index
        self.family = FamilyBox(self)
        self._build_layers()
        charts = W.HBox([self.rq, self.sld], layout=W.Layout(width="100%"))
        toolbar = W.HBox([self.add, self.collapse, self.expand, self.reset])
        flag_css = W.HTML(FLAG_CSS, layout=self.looks.row)
        super().__init__(
            [
                flag_css,
                self.curves.views.chooser,
                charts,
                self.timing,
                self.physics_note,
                toolbar,
                self.confirm_row,
                self.family,
                self.status,
                self.layers_box,
            ]
        )
        self.add_class("wb-stack-panel")
        ctx.stack.observe(self._model_changed)
        outside = ctx.stack.outside_bounds()
        if ctx.restore_error:
            self.status.warn(ctx.restore_error)
        elif outside:
            self.status.warn(
                "; ".join(o.message for o in outside) + ": Generate refuses them until the bounds include them"
            )
        self.redraw()

    # ------------------------------------------------------------------ layers
    def _build_layers(self) -> None:
        expanded = {i: box.toggle.value for i, box in self.boxes.items()}
        model, cards, i = self.ctx.stack, [], 0
        self.boxes = {}
        while i < model.n_layers:
            span = model.block_of(i)
            cards.append(
                self.layer_box(i, expanded.get(i, True))
                if span is None
                else BlockBox(self, model.blocks.index(span), expanded)
            )
            i = i + 1 if span is None else span.end
        self.layers = list(self.boxes.values())
        self.layers_box.children = cards
        self.family.show_current()

    def layer_box(self, i: int, expanded: bool = True) -> LayerBox:
        """The card of layer ``i`` (a block's first repeat stands for all of them)."""
        self.boxes[i] = LayerBox(self, i, expanded)
        return self.boxes[i]

    def _expand_all(self, value: bool) -> None:
        for box in self.layers:
            box.toggle.value = value

    @panel_guard
    def _add(self, _=None) -> None:
        i = self.ctx.stack.add_layer()
        self.status.ok(f"added {self.ctx.stack.layer(i).name} below the ambient")

    @panel_guard
    def move(self, i: int, delta: int) -> None:
        """Move card ``i`` one place down the page (+1, towards the ambient) or up (−1); the note says where it went."""
        name = self.ctx.stack.layer(i).name
        j = self.ctx.stack.move_layer(i, delta)
        if j == i:
            self.status.warn(f"{name} cannot move further: the substrate and the ambient stay at the ends")
            return
        where = "up, towards the substrate" if j < i else "down, towards the ambient"
        self.status.ok(f"moved {name} {where}: now between {self._neighbours(j)}")

    def _neighbours(self, i: int) -> str:
        model = self.ctx.stack
        return f"{model.layer(i - 1).name} and {model.layer(i + 1).name}"

    @panel_guard
    def remove(self, i: int) -> None:
        name = self.ctx.stack.layer(i).name
        self.ctx.stack.remove_layer(i)
        self.status.ok(f"removed {name}")

    def _ask_reset(self, _=None) -> None:
        """First click: ask; nothing changes until "Confirm reset"."""
        self.confirm_row.layout.display = ""
        self.status.warn("Reset replaces the film stack and its bounds: press 'Confirm reset' or 'Keep my stack'")

    def _cancel_reset(self, _=None) -> None:
        self.confirm_row.layout.display = "none"
        self.status.info("reset cancelled: the film stack is unchanged")

    @panel_guard
    def _reset(self, _=None) -> None:
        self.confirm_row.layout.display = "none"
        self.ctx.stack.reset_stack()
        self.ctx.save_settings()  # a deliberate action: written at once, not after the autosave's quiet period
        self.status.ok("film stack and bounds reset to pyreflect's example; the probe is unchanged")

    def _model_changed(self, what: str) -> None:
        if what in ("layers", "reset"):
            self._build_layers()
        elif what in ("value", "bounds"):  # a fixed bound follows its value; flags follow both
            for box in self.layers:
                for row in box.rows:
                    row.sync()
        if what != "bounds":
            self.request_redraw()

    # ------------------------------------------------------------------ preview
    def _snapshot(self) -> tuple[FilmStack, Probe, float] | None:
        try:
            return self.ctx.stack.stack, self.ctx.stack.probe(), time.perf_counter()
        except Exception as exc:  # noqa: BLE001
            self.status.error(f"cannot compute the preview: {exc}")
            return None

    def request_redraw(self) -> None:
        """Redraw in the background; changes made while a redraw runs collapse into one more."""
        snapshot = self._snapshot()
        if snapshot is not None:
            self.preview_job.submit(snapshot)

    def redraw(self) -> None:
        """Recompute and push both charts now, in the calling thread."""
        snapshot = self._snapshot()
        if snapshot is None:
            return
        try:
            self._draw(snapshot)
        except Exception as exc:  # noqa: BLE001
            self.status.error(f"cannot compute the preview: {exc}")

    def wait_redrawn(self, timeout: float | None = 60.0) -> bool:
        """Block until the charts show the latest change (for scripts and tests)."""
        return self.preview_job.wait(timeout)

    def _draw(self, snapshot: tuple[FilmStack, Probe, float]) -> None:
        stack, probe, requested = snapshot
        with self._draw_lock:
            t0 = time.perf_counter()
            p = compute_preview(stack, probe)
            has_abs = bool((p.irho != 0).any())
            self.curves.show(
                rq={"R(Q)": (p.q, p.r)},
                sld={"ρ (SLD)": (p.z, p.rho), "ρ'' (absorption)": (p.z, p.irho) if has_abs else ([], [])},
                fresnel_stack=stack,  # R/R_F divides by this stack's bare substrate under its ambient
            )
            done = time.perf_counter()
            self.last_redraw_ms, self.last_latency_ms = (done - t0) * 1e3, (done - requested) * 1e3
            self.redraws += 1
            self.timing.value = (
                f"<small class='wb-redraw'>preview: {p.q.size} Q points, {p.z.size} z points, "
                f"computed and sent in {self.last_redraw_ms:.1f} ms</small>"
            )
            cautions = stack.physics_warnings()  # valid, but where the numbers are approximate
            self.physics_note.value = "".join(
                f"<div class='wb-physics-warning' style='color:#9a6700'>⚠ {html.escape(c)}</div>" for c in cautions
            )

    def row(self, i: int, par: str) -> ParameterRow:
        """The row of ``par`` of layer ``i`` (of a block's period layer for any of its repeats)."""
        return self.boxes[self.ctx.stack.first_repeat(i)].row(par)

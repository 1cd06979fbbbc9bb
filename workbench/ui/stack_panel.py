"""Film stack panel: one row per layer parameter (slider + number + bound editors) and a live preview.

The panel is a view of :class:`~workbench.ui.stack_model.StackModel`: widgets write into the model, the
model notifies, the panel redraws R(Q) (log scale) and the SLD profile in two FigureWidgets that
live as long as the panel.  Redraws run on a :class:`~workbench.ui.coalesce.Coalescer` worker: a
single change is drawn at once, and while one redraw is being computed the changes that arrive
(a slider drag) collapse into one redraw of the newest stack instead of a queue of stale ones.
Typing a number beyond a slider's range widens the slider, up to the hard physical limit of
:mod:`workbench.limits`; beyond it the value is clamped and the panel says so.
Headless twin: ``StackModel.set_value`` / ``reflectivity`` / ``sld_profile``.
"""

from __future__ import annotations

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
from .stack_model import applicable, compute_preview

UNITS = {"sld": "10⁻⁶ Å⁻²", "isld": "10⁻⁶ Å⁻²", "thickness": "Å", "roughness": "Å"}
LABELS = {"sld": "SLD", "isld": "iSLD", "thickness": "thickness", "roughness": "roughness"}
NUMBER_WIDTH = "7.5em"  # each number box gets its own Layout: a shared one hides them all together


class ParameterRow(W.HBox):
    """Slider + editable number + vary checkbox + min/max bound editors of one layer parameter."""

    def __init__(self, panel: StackPanel, i: int, par: str) -> None:
        self.panel, self.i, self.par = panel, i, par
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
            min=lo,
            max=hi,
            step=step,
            readout=False,
            continuous_update=True,
            disabled=not enabled,
            layout=W.Layout(width="16em"),
            description_allow_html=False,
        )
        self.slider.add_class("wb-slider")
        self.number = W.FloatText(value=value, step=step, disabled=not enabled, layout=W.Layout(width=NUMBER_WIDTH))
        self.number.add_class("wb-number")
        self.vary = W.Checkbox(
            value=bound is not None and bound[1] > bound[0],
            indent=False,
            description="vary",
            disabled=not enabled,
            layout=W.Layout(width="5em"),
        )
        self.lo = W.FloatText(
            value=bound[0] if bound else value,
            disabled=not enabled,
            layout=W.Layout(width=NUMBER_WIDTH),
            description="min",
            style={"description_width": "2.5em"},
        )
        self.hi = W.FloatText(
            value=bound[1] if bound else value,
            disabled=not enabled,
            layout=W.Layout(width=NUMBER_WIDTH),
            description="max",
            style={"description_width": "2.5em"},
        )
        self._sync = False
        self.slider.observe(self._slider_changed, "value")
        self.number.observe(self._number_changed, "value")
        for w in (self.vary, self.lo, self.hi):
            w.observe(self._bound_changed, "value")
        label = W.Label(f"{LABELS[par]} ({UNITS[par]})", layout=W.Layout(width="11em"))
        super().__init__([label, self.slider, self.number, self.vary, self.lo, self.hi])
        self.add_class(f"wb-row-{i}-{par}")

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
        if typed and stored != value:
            hard = model.limits.parameter(self.par)
            self.panel.status.warn(
                f"{model.layer(self.i).name}.{self.par} = {value:g} is outside the physical limit "
                f"[{hard.lo:g}, {hard.hi:g}]; set to {stored:g}"
            )
        self.show(stored)

    def show(self, value: float) -> None:
        """Put ``value`` into slider and number without echoing it back to the model."""
        self._sync = True
        try:
            s = self.slider
            s.max = max(s.max, value)
            s.min = min(s.min, value)
            s.value = value
            self.number.value = value
        finally:
            self._sync = False

    @property
    def status(self) -> Status:
        return self.panel.status

    @panel_guard
    def _bound_changed(self, change) -> None:
        model = self.panel.ctx.stack
        if not self.vary.value:
            model.set_bound(self.i, self.par, None)
            return
        lo, hi = model.set_bound(self.i, self.par, self.lo.value, self.hi.value)
        self._sync = True
        try:
            self.lo.value, self.hi.value = lo, hi
            self.slider.min, self.slider.max = min(self.slider.min, lo), max(self.slider.max, hi)
        finally:
            self._sync = False


class LayerBox(W.VBox):
    """Header (collapse toggle, name, move up/down, remove) and the four parameter rows of one layer."""

    def __init__(self, panel: StackPanel, i: int, expanded: bool = True) -> None:
        self.panel, self.i = panel, i
        model = panel.ctx.stack
        n = model.n_layers
        role = "substrate" if i == 0 else "ambient" if i == n - 1 else "film layer"  # the name says which
        self.toggle = W.ToggleButton(
            value=expanded,
            icon="chevron-down" if expanded else "chevron-right",
            tooltip="collapse / expand",
            layout=W.Layout(width="3em"),
        )
        self.name = W.Text(value=model.layer(i).name, layout=W.Layout(width="12em"))
        inner = 0 < i < n - 1
        # the cards run substrate (top) to ambient (bottom): ↑ moves a card up the page, towards the substrate
        self.up = W.Button(
            icon="arrow-up",
            tooltip="move up, towards the substrate",
            disabled=not (inner and i > 1),
            layout=W.Layout(width="3em"),
        )
        self.down = W.Button(
            icon="arrow-down",
            tooltip="move down, towards the ambient",
            disabled=not (inner and i + 1 < n - 1),
            layout=W.Layout(width="3em"),
        )
        self.remove = W.Button(
            icon="trash", tooltip="remove this layer", disabled=not inner, layout=W.Layout(width="3em")
        )
        self.rows = [ParameterRow(panel, i, par) for par in PARAMETER_FIELDS]
        self.body = W.VBox(self.rows, layout=W.Layout(display="" if expanded else "none", margin="0 0 0 3em"))
        self.toggle.observe(self._toggled, "value")
        self.name.observe(self._renamed, "value")
        self.up.on_click(lambda _: panel.move(i, -1))
        self.down.on_click(lambda _: panel.move(i, +1))
        self.remove.on_click(lambda _: panel.remove(i))
        header = W.HBox(
            [self.toggle, self.name, W.Label(role, layout=W.Layout(width="7em")), self.up, self.down, self.remove]
        )
        super().__init__([header, self.body], layout=W.Layout(border_bottom="1px solid #ddd"))
        self.add_class(f"wb-layer-{i}")

    def _toggled(self, change) -> None:
        self.body.layout.display = "" if change["new"] else "none"
        self.toggle.icon = "chevron-down" if change["new"] else "chevron-right"

    def _renamed(self, change) -> None:
        try:
            self.panel.ctx.stack.rename(self.i, change["new"])
        except Exception as exc:  # noqa: BLE001
            self.panel.status.error(str(exc))

    def row(self, par: str) -> ParameterRow:
        return self.rows[PARAMETER_FIELDS.index(par)]


class StackPanel(Panel, W.VBox):
    """The film stack editor with a live R(Q) and SLD preview."""

    CHARTS: ClassVar[dict[str, str]] = {"film stack R(Q)": "rq", "film stack SLD": "sld"}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.status = Status()
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
        self.reset = W.Button(description="Reset to defaults", icon="undo", button_style="warning")
        self.add.on_click(self._add)
        self.collapse.on_click(lambda _: self._expand_all(False))
        self.expand.on_click(lambda _: self._expand_all(True))
        self.reset.on_click(self._reset)
        self.layers_box = W.VBox()
        self.layers: list[LayerBox] = []
        self._build_layers()
        charts = W.HBox([self.rq, self.sld], layout=W.Layout(width="100%"))
        toolbar = W.HBox([self.add, self.collapse, self.expand, self.reset])
        super().__init__([charts, self.timing, toolbar, self.status, self.layers_box])
        self.add_class("wb-stack-panel")
        ctx.stack.observe(self._model_changed)
        if ctx.restore_error:
            self.status.warn(ctx.restore_error)
        self.redraw()

    # ------------------------------------------------------------------ layers
    def _build_layers(self) -> None:
        expanded = {i: box.toggle.value for i, box in enumerate(self.layers)}
        n = self.ctx.stack.n_layers
        self.layers = [LayerBox(self, i, expanded.get(i, True)) for i in range(n)]
        self.layers_box.children = self.layers

    def _expand_all(self, value: bool) -> None:
        for box in self.layers:
            box.toggle.value = value

    @panel_guard
    def _add(self, _=None) -> None:
        i = self.ctx.stack.add_layer()
        self.status.ok(f"added {self.ctx.stack.layer(i).name} below the ambient")

    @panel_guard
    def move(self, i: int, delta: int) -> None:
        self.ctx.stack.move_layer(i, delta)

    @panel_guard
    def remove(self, i: int) -> None:
        name = self.ctx.stack.layer(i).name
        self.ctx.stack.remove_layer(i)
        self.status.ok(f"removed {name}")

    @panel_guard
    def _reset(self, _=None) -> None:
        self.ctx.reset_settings()
        self.status.ok("stack, bounds and probe reset to the defaults")

    def _model_changed(self, what: str) -> None:
        if what in ("layers", "reset"):
            self._build_layers()
        elif what == "value":
            for i, box in enumerate(self.layers):
                for par in PARAMETER_FIELDS:
                    row = box.row(par)
                    v = self.ctx.stack.value(i, par)
                    if row.number.value != v:
                        row.show(v)
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
            )
            done = time.perf_counter()
            self.last_redraw_ms, self.last_latency_ms = (done - t0) * 1e3, (done - requested) * 1e3
            self.redraws += 1
            self.timing.value = (
                f"<small class='wb-redraw'>preview: {p.q.size} Q points, {p.z.size} z points, "
                f"computed and sent in {self.last_redraw_ms:.1f} ms</small>"
            )

    def row(self, i: int, par: str) -> ParameterRow:
        return self.layers[i].row(par)

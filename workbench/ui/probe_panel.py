"""Probe panel: Q min, Q max, Q points, resolution dQ/Q (FWHM), scale factor, background.

The widgets are generated from :class:`~workbench.ui.stack_model.ProbeSettings` (labels with units,
help as tooltips; pyreflect's qMin, qMax, numQPoints and qResolution named in the help).  Values are
clamped to :mod:`workbench.limits` limits; an inconsistent combination (Q max ≤ Q min) is reported
in the panel and the previous probe stays.  Headless twin: ``Probe.from_grid``.
"""

from __future__ import annotations

from dataclasses import replace

import ipywidgets as W

from ..forms import field_specs
from .common import Panel, Status, panel_guard
from .context import AppContext
from .forms import label_em, widget_for
from .stack_model import ProbeSettings

STEPS = {"q_min": 0.001, "q_max": 0.01, "num_q": 1, "q_resolution": 0.001, "scale": 0.01, "background": 1e-7}


class ProbePanel(Panel, W.VBox):
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        lim = ctx.limits
        ranges = {
            "q_min": (lim.q.lo, lim.q.hi),
            "q_max": (lim.q.lo, lim.q.hi),
            "num_q": (2, lim.max_q_points),
            "q_resolution": (0.0, lim.max_q_resolution),
            "scale": (lim.scale.lo, lim.scale.hi),
            "background": (lim.background.lo, lim.background.hi),
        }
        self.status = Status()
        self.fields: dict[str, W.Widget] = {}
        rows = []
        settings = ctx.stack.probe_settings
        specs = [replace(s, lo=ranges[s.name][0], hi=ranges[s.name][1]) for s in field_specs(ProbeSettings)]
        width = label_em(specs)
        for spec in specs:
            w = widget_for(spec, getattr(settings, spec.name), W.Layout(width="26em"), width)
            w.step = STEPS[spec.name]
            w.add_class(f"wb-probe-{spec.name}")
            w.observe(self._changed, "value")
            self.fields[spec.name] = w
            rows.append(w)
        self.summary = W.HTML()
        self._sync = False
        super().__init__(
            [
                W.HTML("<b>Probe</b>: the Q grid and the instrument resolution used by the preview and by generation"),
                *rows,
                self.summary,
                self.status,
            ]
        )
        ctx.stack.observe(self._model_changed)
        self._show_summary()

    @panel_guard
    def _changed(self, change) -> None:
        if self._sync:
            return
        values = {k: w.value for k, w in self.fields.items()}
        self.ctx.stack.set_probe(**values)
        self.status.ok("probe updated")

    def _model_changed(self, what: str) -> None:
        if what in ("probe", "reset"):
            self._sync = True
            try:
                for key, w in self.fields.items():
                    w.value = getattr(self.ctx.stack.probe_settings, key)
            finally:
                self._sync = False
            self._show_summary()

    def _show_summary(self) -> None:
        self.summary.value = f"<small>{self.ctx.stack.probe()!r}</small>"

"""Probe panel: qMin, qMax, numQPoints, qResolution (dQ/Q, FWHM), scale, background.

Values are clamped to :mod:`workbench.limits` limits; an inconsistent combination (qMax ≤ qMin)
is reported in the panel and the previous probe stays.  Headless twin: ``Probe.from_grid``.
"""

from __future__ import annotations

import ipywidgets as W

from .common import Panel, Status, panel_guard
from .context import AppContext

FIELDS = {
    "q_min": ("qMin (Å⁻¹)", W.BoundedFloatText, {"step": 0.001}),
    "q_max": ("qMax (Å⁻¹)", W.BoundedFloatText, {"step": 0.01}),
    "num_q": ("numQPoints", W.BoundedIntText, {"step": 1}),
    "q_resolution": ("qResolution (dQ/Q FWHM)", W.BoundedFloatText, {"step": 0.001}),
    "scale": ("scale", W.BoundedFloatText, {"step": 0.01}),
    "background": ("background", W.BoundedFloatText, {"step": 1e-7}),
}


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
        for key, (label, cls, kw) in FIELDS.items():
            lo, hi = ranges[key]
            w = cls(
                value=getattr(settings, key),
                min=lo,
                max=hi,
                description=label,
                style={"description_width": "14em"},
                layout=W.Layout(width="26em"),
                **kw,
            )
            w.add_class(f"wb-probe-{key}")
            w.observe(self._changed, "value")
            self.fields[key] = w
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

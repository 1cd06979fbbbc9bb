"""One chart view for an R(Q) curve and its SLD profile side by side, traces addressed by name.

The Film stack, Predict and Refine tabs all show "the data and the curves computed from a
profile" next to "the profiles"; this view builds both charts from the figure templates of
``plots/`` and updates them by trace name in one message per chart, so no panel depends on
the order in which its traces were added.  Each trace takes the colour and dash of its role
(``plots.style``: data, start, fit, prediction, truth), the same in every panel.

Every R(Q) chart offers R, R·Q⁴ and R/R_F (:mod:`workbench.plots.views`) through one chooser
(:class:`RQViews`): the chart keeps the R values it was given and redraws them in the chosen
view, so switching back gives the original numbers exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as W
import numpy as np

from ..plots.curves import profile_template, reflectivity_template
from ..plots.style import error_bars, trace_style, update_placeholder
from ..plots.views import VIEW_BUTTONS, VIEWS, FresnelReference, axis_title, view_factor, view_meta
from .chart_widget import ChartWidget

_TIPS = {
    "R": "reflectivity R(Q), log scale",
    "RQ4": "R·Q⁴: the Q⁻⁴ fall-off taken out, fringes flattened",
    "R/RF": "R / R_F: divided by the unsmeared Fresnel reflectivity of the bare substrate",
}


class RQViews:
    """The R / R·Q⁴ / R/R_F chooser of one R(Q) chart; R values go in, the chart shows them in the chosen view.

    Write the chart's R(Q) traces through :meth:`set_traces` and :meth:`add_scatter` (not the chart's own
    methods), so the untransformed values are kept (by trace uid) for the next redraw.
    """

    def __init__(self, chart: ChartWidget, reference: FresnelReference | None = None) -> None:
        self.chart = chart
        self.reference = reference
        self._raw: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}  # uid → (q, R, dR)
        self._lock = threading.RLock()  # the Film stack draws from a worker thread while a click redraws
        self.chooser = W.ToggleButtons(
            options=[(VIEW_BUTTONS[v], v) for v in VIEWS],
            value="R",
            description="R(Q) view",
            tooltips=[_TIPS[v] for v in VIEWS],
            tooltip="the R(Q) chart's y axis: R, R·Q⁴ or R over the substrate's Fresnel curve (also in its CSV)",
            style={"button_width": "auto", "description_width": "initial"},
        )
        self.chooser.add_class("wb-rq-view")
        self.chooser.observe(lambda _change: self.redraw(), "value")
        self._label()

    @property
    def view(self) -> str:
        return self.chooser.value

    def set_fresnel_reference(
        self, substrate_sld: float, substrate_isld: float = 0.0, ambient_sld: float = 0.0
    ) -> None:
        """The substrate and ambient R/R_F divides by (SLDs in 1e-6 Å⁻²); redraws when it changed and is shown."""
        reference = FresnelReference(float(substrate_sld), float(substrate_isld), float(ambient_sld))
        if reference == self.reference:
            return
        self.reference = reference
        if self.view == "R/RF":
            self.redraw()
        else:
            self._label()

    def _factor(self, q: np.ndarray) -> np.ndarray:
        if self.view == "R/RF" and self.reference is None:
            return np.full(q.shape, np.nan)  # nothing to divide by: draw no curve rather than a wrong one
        return view_factor(self.view, q, self.reference)

    def _label(self) -> None:
        title = axis_title(self.view)
        if self.view == "R/RF":
            ref = self.reference
            title += (
                " (substrate unknown)"
                if ref is None
                else f" (substrate {ref.substrate_sld:g}, ambient {ref.ambient_sld:g})"
            )
        self.chart.layout.yaxis.title.text = title
        self.chart.layout.meta = view_meta(self.view, self.reference)

    def _keep(self, trace: Any, q: Any, r: Any, dr: Any) -> tuple[np.ndarray, np.ndarray | None]:
        q, r = np.asarray(q, dtype=float), np.asarray(r, dtype=float)
        dr = None if dr is None or len(dr) == 0 else np.asarray(dr, dtype=float)
        self._raw[trace.uid] = (q, r, dr)
        f = self._factor(q)
        return r * f, None if dr is None else dr * f

    def set_traces(
        self, values: Mapping[str, Sequence[Any] | Mapping[str, Any]], reference: FresnelReference | None = None
    ) -> None:
        """:meth:`ChartWidget.set_traces` with R values (``dy``: dR), drawn in the current view, in one message.

        ``reference``: a new Fresnel reference for R/R_F, applied in the same message (the other kept traces redrawn).
        """
        with self._lock, self.chart.batch_update():
            if reference is not None and reference != self.reference:
                self.reference = reference
                if self.view == "R/RF":
                    self.redraw()
                self._label()
            shown: dict[str, Any] = {}
            for key, value in values.items():
                trace = self.chart.trace(key)
                if isinstance(value, Mapping):
                    y, dy = self._keep(trace, value["x"], value["y"], value.get("dy"))
                    shown[key] = {**value, "y": y, "dy": dy}
                else:
                    y, _ = self._keep(trace, value[0], value[1], None)
                    shown[key] = (value[0], y, *value[2:])
            self.chart.set_traces(shown)
        update_placeholder(self.chart)  # inside the batch above the chart still read its old data

    def add_scatter(self, x: Any, y: Any, **kwargs: Any) -> Any:
        """Add an R(Q) trace (a credible band's edge, a generated curve) drawn in the current view."""
        q, r = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        with self._lock:
            self.chart.add_scatter(x=q, y=r * self._factor(q), **kwargs)
            trace = self.chart.data[-1]
            self._raw[trace.uid] = (q, r, None)
        return trace

    def redraw(self) -> None:
        """Draw every kept trace in the current view and retitle the y axis (one message)."""
        with self._lock, self.chart.batch_update():
            live = {t.uid for t in self.chart.data}
            self._raw = {uid: v for uid, v in self._raw.items() if uid in live}  # traces removed since (old bands)
            for trace in self.chart.data:
                if trace.uid not in self._raw:
                    continue
                q, r, dr = self._raw[trace.uid]
                f = self._factor(q)
                trace.y = r * f
                if dr is not None:
                    trace.error_y = error_bars(dr * f)
            self._label()


class CurvePair:
    """``rq`` and ``sld`` charts; ``markers`` lists the R(Q) traces drawn as points (measured data).

    ``views`` is the R(Q) chart's view chooser; panels call :meth:`set_fresnel_reference` with their stack's
    substrate and ambient so R/R_F divides by the right Fresnel curve.
    """

    def __init__(
        self,
        rq_traces: Sequence[str],
        sld_traces: Sequence[str],
        *,
        rq_title: str = "Reflectivity",
        sld_title: str = "SLD profile",
        markers: Sequence[str] = (),
    ) -> None:
        self.rq = ChartWidget(reflectivity_template(tuple(rq_traces), rq_title))
        self.sld = ChartWidget(profile_template(tuple(sld_traces), sld_title))
        with self.rq.batch_update():
            for key in markers:
                self.rq.trace(key).update(**trace_style("data"))
        self.views = RQViews(self.rq)
        self.box = W.VBox([self.views.chooser, W.HBox([self.rq, self.sld])])

    @property
    def view(self) -> str:
        return self.views.view

    def set_fresnel_reference(
        self, substrate_sld: float, substrate_isld: float = 0.0, ambient_sld: float = 0.0
    ) -> None:
        """See :meth:`RQViews.set_fresnel_reference`."""
        self.views.set_fresnel_reference(substrate_sld, substrate_isld, ambient_sld)

    def set_fresnel_stack(self, stack: Any) -> None:
        """The Fresnel reference of a FilmStack: its substrate (first layer) under its ambient (last)."""
        ref = FresnelReference.of(stack)
        self.views.set_fresnel_reference(ref.substrate_sld, ref.substrate_isld, ref.ambient_sld)

    def add_rq(self, x: Any, y: Any, **kwargs: Any) -> Any:
        """Add a trace of R values to the R(Q) chart (a DREAM band's edge), drawn in the current view."""
        return self.views.add_scatter(x, y, **kwargs)

    def show(
        self,
        rq: Mapping[str, Sequence[Any] | Mapping[str, Any]] | None = None,
        sld: Mapping[str, Sequence[Any] | Mapping[str, Any]] | None = None,
        *,
        fresnel_stack: Any = None,
    ) -> None:
        """Set the named traces of either chart (see :meth:`ChartWidget.set_traces`); ``rq`` takes R values.

        A value is ``(x, y)``, ``(x, y, legend name)`` or ``{"x", "y", "dy", "name"}`` (``dy``: error bars).
        ``fresnel_stack``: a FilmStack whose substrate and ambient R/R_F divides by, set in the same message.
        """
        if rq or fresnel_stack is not None:
            reference = None if fresnel_stack is None else FresnelReference.of(fresnel_stack)
            self.views.set_traces(rq or {}, reference)
        if sld:
            self.sld.set_traces(sld)

    def clear(self, rq: Sequence[str] = (), sld: Sequence[str] = ()) -> None:
        """Empty the named traces (a stale fit, say)."""
        self.show({k: ([], []) for k in rq}, {k: ([], []) for k in sld})

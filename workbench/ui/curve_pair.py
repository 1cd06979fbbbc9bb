"""One chart view for an R(Q) curve and its SLD profile side by side, traces addressed by name.

The Film stack, Predict and Refine tabs all show "the data and the curves computed from a
profile" next to "the profiles"; this view builds both charts from the figure templates of
``plots/`` and updates them by trace name in one message per chart, so no panel depends on
the order in which its traces were added.  Each trace takes the colour and dash of its role
(``plots.style``: data, start, fit, prediction, truth), the same in every panel.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ipywidgets as W

from ..plots.curves import profile_template, reflectivity_template
from ..plots.style import trace_style
from .chart_widget import ChartWidget


class CurvePair:
    """``rq`` and ``sld`` charts; ``markers`` lists the R(Q) traces drawn as points (measured data)."""

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
        self.box = W.HBox([self.rq, self.sld])

    def show(
        self,
        rq: Mapping[str, Sequence[Any] | Mapping[str, Any]] | None = None,
        sld: Mapping[str, Sequence[Any] | Mapping[str, Any]] | None = None,
    ) -> None:
        """Set the named traces of either chart (see :meth:`ChartWidget.set_traces`).

        A value is ``(x, y)``, ``(x, y, legend name)`` or ``{"x", "y", "dy", "name"}`` (``dy``: error bars).
        """
        if rq:
            self.rq.set_traces(rq)
        if sld:
            self.sld.set_traces(sld)

    def clear(self, rq: Sequence[str] = (), sld: Sequence[str] = ()) -> None:
        """Empty the named traces (a stale fit, say)."""
        self.show({k: ([], []) for k in rq}, {k: ([], []) for k in sld})

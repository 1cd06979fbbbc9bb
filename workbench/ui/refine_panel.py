"""Refine panel: polish a prediction (or the film stack) into a fit, then DREAM bands for its uncertainty.

Choose the start (the predicted stack of a parameter model, or the Film stack panel's stack),
tick the free parameters and edit their bounds, run the bounded least-squares fit in a worker
thread with a live χ² convergence chart, read the result table with 1σ uncertainties, and run
bumps DREAM for posterior bands of R(Q) and the SLD profile.  Recorded as 'refine' runs.
Headless twins: :func:`workbench.analysis.refine.refine`, :func:`workbench.analysis.uncertainty.dream_bands`.
"""

from __future__ import annotations

import html
from contextlib import nullcontext
from typing import ClassVar

import ipywidgets as W
import numpy as np

from ..analysis.refine import PROBE_PARAMETERS, RefineResult, parameter_name, refine
from ..analysis.uncertainty import Bands, dream_bands
from ..events import Log, Progress, Record, Warning_
from ..physics import FilmStack, reflectivity, sld_profile
from ..plots.curves import convergence_template
from ..store.recorded import recorded_run
from .background import Job
from .chart_widget import ChartWidget
from .common import Panel, Status, panel_guard, table_html
from .context import AppContext
from .curve_pair import CurvePair


class FreeRow(W.HBox):
    def __init__(self, name: str, value: float, lo: float, hi: float, free: bool) -> None:
        self.pname = name
        self.free = W.Checkbox(value=free, description=name, indent=False, layout=W.Layout(width="18em"))
        self.value = W.HTML(f"<code>{value:.5g}</code>", layout=W.Layout(width="7em"))
        self.lo = W.FloatText(
            value=lo, description="min", style={"description_width": "2.5em"}, layout=W.Layout(width="11em")
        )
        self.hi = W.FloatText(
            value=hi, description="max", style={"description_width": "2.5em"}, layout=W.Layout(width="11em")
        )
        super().__init__([self.free, self.value, self.lo, self.hi])


class RefinePanel(Panel, W.VBox):
    CHARTS: ClassVar[dict[str, str]] = {
        "refinement convergence": "convergence",
        "refinement R(Q)": "rq",
        "refinement SLD": "sld",
    }

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        lim = ctx.limits
        style = {"description_width": "9em"}
        self.start_from = W.ToggleButtons(
            options=[("prediction", "prediction"), ("film stack", "stack")],
            value="prediction",
            description="start from",
        )
        self.load = W.Button(description="Load start", icon="download")
        self.rows_box = W.VBox()
        self.rows: list[FreeRow] = []
        self.max_nfev = W.BoundedIntText(value=200, min=1, max=5000, description="max evaluations", style=style)
        self.max_nfev.add_class("wb-max-nfev")
        self.run = W.Button(description="Refine", icon="play", button_style="primary")
        self.stop = W.Button(description="Stop", icon="stop", disabled=True)
        self.samples = W.BoundedIntText(
            value=min(4000, lim.max_dream_samples),
            min=100,
            max=lim.max_dream_samples,
            description="DREAM samples",
            style=style,
        )
        self.burn = W.BoundedIntText(value=100, min=0, max=10000, description="burn-in", style=style)
        self.dream = W.Button(description="Uncertainty (DREAM)", icon="area-chart", disabled=True)
        self.progress = W.IntProgress(value=0, min=0, max=1, description="DREAM", layout=W.Layout(width="30em"))
        self.status = Status()
        self.table = W.HTML()
        self.convergence = ChartWidget(convergence_template())
        self.curves = CurvePair(("data", "start", "fit"), ("start", "fit"), rq_title="Fit", markers=("data",))
        self.rq, self.sld = self.curves.rq, self.curves.sld
        self.job: Job | None = None
        self.data = None
        self.start_stack: FilmStack | None = None
        self.result: RefineResult | None = None
        self.bands: Bands | None = None
        self._iterations: list[tuple[int, float]] = []
        self._loaded = None  # the prediction the free-parameter rows were made from
        self.load.on_click(self._load)
        self.run.on_click(self._run)
        self.stop.on_click(self._stop)
        self.dream.on_click(self._dream)
        ctx.follow("prediction", lambda p: self.on_shown())
        super().__init__(
            [
                W.HTML("<b>Refine</b> a prediction against its data"),
                W.HBox([self.start_from, self.load]),
                W.HTML("<small>free parameters and their bounds</small>"),
                self.rows_box,
                self.max_nfev,
                W.HBox([self.run, self.stop]),
                self.status,
                W.HBox([self.convergence]),
                self.table,
                W.HBox([self.samples, self.burn, self.dream]),
                self.progress,
                self.curves.box,
            ]
        )
        self.add_class("wb-refine-panel")

    def on_shown(self) -> None:
        """Start from the current prediction when it is new (the bounds a user edited stay otherwise)."""
        prediction = self.ctx.prediction
        if prediction is None or prediction is self._loaded or (self.job is not None and self.job.running):
            return
        self._load()

    # ------------------------------------------------------------------ start
    @panel_guard
    def _load(self, _=None) -> None:
        prediction = self.ctx.prediction
        if prediction is None:
            raise ValueError("nothing to refine yet: make a prediction in the Predict panel first")
        self.data = prediction.measurement
        self._loaded = prediction
        use_prediction = self.start_from.value == "prediction" and prediction.stack is not None
        stack = prediction.stack if use_prediction else self.ctx.stack.stack
        self.start_stack = stack
        rows = []
        for b in stack.bounds:
            value = stack.get(b.i, b.par)
            lo, hi = min(b.lo, value), max(b.hi, value)
            if hi <= lo:
                continue
            rows.append(FreeRow(parameter_name(stack, b.i, b.par), value, lo, hi, True))
        rows.append(FreeRow(PROBE_PARAMETERS[0], 1.0, 0.5, 2.0, False))
        rows.append(FreeRow(PROBE_PARAMETERS[1], 0.0, 0.0, 1e-5, False))
        self.rows = rows
        self.rows_box.children = rows
        what = "the predicted stack" if use_prediction else "the film stack"
        note = (
            "" if use_prediction or self.start_from.value == "stack" else " (the model predicts a profile, not a stack)"
        )
        self.status.info(f"start: {what}{note}; data {self.data.source}, {len(self.data)} points")
        self._draw_start()

    def _draw_start(self) -> None:
        m = self.data.positive()
        probe = self.data.merge_duplicate_q().probe() if self.data.has_duplicate_q else self.data.probe()
        r0 = np.asarray(reflectivity(self.start_stack, probe))[0]
        z, rho, _ = sld_profile(self.start_stack)
        self._drop_bands()
        self.curves.show(
            rq={"data": (m.q, m.r), "start": (probe.q, r0), "fit": ([], [])},
            sld={"start": (z[0], rho[0]), "fit": ([], [])},
        )

    def free(self) -> tuple[list[str], dict[str, tuple[float, float]]]:
        names, bounds = [], {}
        for row in self.rows:
            if row.free.value:
                lo, hi = float(row.lo.value), float(row.hi.value)
                if not lo < hi:
                    raise ValueError(f"bounds of {row.pname}: min {lo:g} must be below max {hi:g}")
                names.append(row.pname)
                bounds[row.pname] = (lo, hi)
        if not names:
            raise ValueError("tick at least one free parameter")
        return names, bounds

    # ------------------------------------------------------------------ fit
    def _busy(self) -> bool:
        if self.job is not None and self.job.running:
            self.status.warn("a refinement is already running")
            return True
        return False

    @panel_guard
    def _run(self, _=None) -> None:
        if self._busy():
            return
        if self.data is None or self.start_stack is None:
            self._load()
            if self.data is None:
                return
        names, bounds = self.free()
        data, start, nfev = self.data, self.start_stack, int(self.max_nfev.value)
        registry = self.ctx.registry()
        self._iterations: list[tuple[int, float]] = []

        def work(reporter):
            params = {"free": names, "bounds": bounds, "data": data.source, "max_nfev": nfev}
            cm = recorded_run(registry, "refine", params=params, reporter=reporter) if registry else nullcontext(None)
            with cm as run:
                result = refine(data, start, free=names, bounds=bounds, max_nfev=nfev, reporter=reporter)
                if run is not None:
                    run.metrics.update(
                        chi2_per_point=result.chi2_per_point,
                        converged=result.converged,
                        **{f"{n}": float(v) for n, v in zip(result.names, result.values)},
                    )
            return result

        with self.convergence.batch_update():
            self.convergence.data[0].x, self.convergence.data[0].y = [], []
        self.table.value = ""
        self.run.disabled, self.stop.disabled, self.dream.disabled = True, False, True
        self.status.info(f"refining {len(names)} parameters…")
        self.job = Job(
            work,
            on_events=self._events,
            on_done=self._done,
            on_error=self._failed,
            max_rate=self.ctx.limits.max_updates_per_second,
            name="workbench-refine",
        ).start()

    def _stop(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.job.stop("stopped from the Refine panel")

    def _events(self, events) -> None:
        changed = False
        for e in events:
            if isinstance(e, Record) and e.name == "iteration":
                self._iterations.append((int(e.data["iteration"]), float(e.data["chi2"])))
                changed = True
            elif isinstance(e, Progress) and e.stage == "uncertainty":
                self.progress.max, self.progress.value = max(e.total, 1), e.done
            elif isinstance(e, Warning_):
                self.status.warn(e.message)
            elif isinstance(e, Log):
                self.status.info(e.message)
        if changed:
            it = self._iterations
            with self.convergence.batch_update():
                self.convergence.data[0].x = [i for i, _ in it]
                self.convergence.data[0].y = [c for _, c in it]

    def _idle(self) -> None:
        self.run.disabled, self.stop.disabled = False, True
        self.dream.disabled = self.result is None

    def _done(self, result: RefineResult) -> None:
        self.result = result
        self._idle()
        rows = [
            {"parameter": r["name"], "value": r["value"], "± 1σ": r["uncertainty"], "flag": result.flag(r["name"])}
            for r in result.table()
        ]
        left_out = f", {result.n_left_out} left out (no error bar)" if result.n_left_out else ""
        notes = result.notes()
        self.table.value = (
            f"<b>Result</b>: χ²/N = {result.chi2_per_point:.4g} (start χ² {result.start_chi2:.4g} → "
            f"{result.chi2:.4g}), {result.n_points} points{left_out}, {len(result.history)} iterations, "
            f"{result.seconds:.2f} s"
            + table_html(rows)
            + (
                "<ul class='wb-refine-notes'>" + "".join(f"<li>⚠ {html.escape(n)}</li>" for n in notes) + "</ul>"
                if notes
                else ""
            )
        )
        self.curves.show(rq={"fit": (result.q, result.r_fit)}, sld={"fit": result.profile})
        state = "converged" if result.converged else result.message
        # the fit did finish: the level stays "ok", and the text says what the numbers cannot tell
        self.status.ok("; ".join([f"refined: χ²/N {result.chi2_per_point:.4g}, {state}", *_short(result)]))
        self.ctx.announce(refined=result)
        self.ctx.runs_changed()

    def _failed(self, exc: BaseException) -> None:
        self._idle()
        if self.job is not None and self.job.cancelled:
            self.status.warn(f"stopped: {exc}")
        else:
            self.status.error(f"failed: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ uncertainty
    @panel_guard
    def _dream(self, _=None) -> None:
        if self._busy():
            return
        if self.result is None:
            raise ValueError("refine first: DREAM samples around the fitted stack")
        res, data = self.result, self.data
        _, bounds = self.free()
        free = {n: bounds[n] for n in res.names if n in bounds}
        samples = int(min(self.samples.value, self.ctx.limits.max_dream_samples))
        burn = int(self.burn.value)

        def work(reporter):
            return dream_bands(
                res.stack,
                data,
                free,
                scale=res.scale,
                background=res.background,
                samples=samples,
                burn=burn,
                seed=0,
                n_draws=200,
                reporter=reporter,
            )

        self.progress.value, self.progress.bar_style = 0, ""
        self.run.disabled, self.dream.disabled, self.stop.disabled = True, True, False
        self.status.info(f"DREAM: {samples} samples…")
        self.job = Job(
            work,
            on_events=self._events,
            on_done=self._bands_done,
            on_error=self._failed,
            max_rate=self.ctx.limits.max_updates_per_second,
            name="workbench-dream",
        ).start()

    def _drop_bands(self) -> None:
        """Remove the DREAM bands of an earlier fit (they are the traces tagged ``band``)."""
        for chart in (self.rq, self.sld):
            kept = tuple(t for t in chart.data if t.meta != "band")
            if len(kept) != len(chart.data):
                chart.data = kept

    def _bands_done(self, bands: Bands) -> None:
        self.bands = bands
        self._idle()
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        band = {
            "mode": "lines",
            "line": {"width": 0},
            "showlegend": True,
            "fillcolor": "rgba(31,119,180,0.2)",
            "meta": "band",
        }
        self._drop_bands()
        with self.rq.batch_update():
            self.rq.add_scatter(x=bands.q, y=bands.r_95[0], name="95 % band (low)", **{**band, "showlegend": False})
            self.rq.add_scatter(x=bands.q, y=bands.r_95[1], name="95 % band", fill="tonexty", **band)
        with self.sld.batch_update():
            self.sld.add_scatter(x=bands.z, y=bands.sld_95[0], name="95 % band (low)", **{**band, "showlegend": False})
            self.sld.add_scatter(x=bands.z, y=bands.sld_95[1], name="95 % band", fill="tonexty", **band)
        rows = [
            {"parameter": r["name"], "median": r["median"], "68 % low": r["lo68"], "68 % high": r["hi68"]}
            for r in bands.parameter_table
        ]
        self.table.value += "<b>DREAM posterior</b>" + table_html(rows)
        state = "converged" if bands.converged else "not converged (raise samples)"
        self.status.ok(f"DREAM bands from {bands.n_draws} draws ({state}) in {bands.seconds:.1f} s")


def _short(result: RefineResult) -> list[str]:
    """One-line summary of a fit's notes for the status bar ("1 point without an error bar left out", ...)."""
    out = []
    if result.n_left_out:
        out.append(f"{result.n_left_out} point{'s' if result.n_left_out != 1 else ''} without an error bar left out")
    if result.at_bound:
        out.append(f"at a bound: {', '.join(result.at_bound)} (widen the bound)")
    if result.undetermined:
        out.append(f"undetermined: {', '.join(result.undetermined)} (fix it or tighten its bounds)")
    return out

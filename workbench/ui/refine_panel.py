"""Refine panel: polish a prediction (or the film stack) into a fit, then DREAM bands for its uncertainty.

Choose the start (the prediction: a parameter model's stack, or for an SLD model the Film stack
panel's stack fitted to the predicted profile; or the Film stack itself), tick the free parameters
(those "vary" ticks in the Film stack) and edit their bounds, run the bounded least-squares fit in
a worker thread, or by default as a job process that outlives the page (:mod:`~workbench.ui.refine_job`),
with a live χ² convergence chart, read the verdict (from χ²/N, parameters at a
bound and undetermined σ) and the result table with 1σ uncertainties and units, and run bumps
DREAM for 68 %/95 % posterior bands of R(Q) and the SLD profile (:mod:`~workbench.ui.dream_box`: by
default a job process that outlives the page, which a page opened later attaches to).  Recorded as
'refine' and 'dream' runs, with the data file.  Headless twins: :func:`workbench.analysis.refine.refine`,
:func:`workbench.analysis.profile_fit.stack_from_profile`, :func:`workbench.analysis.uncertainty.dream_bands`.
"""

from __future__ import annotations

import html
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import ClassVar

import ipywidgets as W
import numpy as np

from ..analysis.corefine import Contrast, JointRefineResult, corefine
from ..analysis.export_refl1d import export_refl1d
from ..analysis.joint_export import export_joint_refl1d
from ..analysis.profile_fit import ProfileFit, sorted_profile, stack_from_profile
from ..analysis.refine import (
    DE_GENERATIONS,
    PROBE_PARAMETERS,
    RefineResult,
    parameter_label,
    refine,
    verdict,
    wide_sigma,
)
from ..analysis.uncertainty import Bands
from ..events import Log, Progress, Record, Warning_
from ..physics import FilmStack, reflectivity, sld_profile
from ..plots.curves import convergence_template
from ..store.recorded import recorded_run
from ..workflows.refinement import fit_metrics
from .background import Job
from .chart_widget import ChartWidget
from .common import Panel, Status, panel_guard, table_html
from .context import AppContext
from .contrasts_box import ContrastsBox, contrast_label
from .curve_pair import CurvePair
from .dream_box import DreamBox, drop_bands
from .refine_job import JOINT_HERE, RefineJobs


def _outward(lo: float, hi: float) -> tuple[float, float]:
    """``[lo, hi]`` rounded outwards to 4 significant digits (no "3.4700000000000006" in a bound field)."""

    def rounded(x: float, down: bool) -> float:
        if x == 0 or not math.isfinite(x):
            return x
        digits = 3 - math.floor(math.log10(abs(x)))
        r = round(x, digits)
        if (r > x) if down else (r < x):
            r = round(r + (-1 if down else 1) * 10.0**-digits, digits)
        return r

    return rounded(lo, True), rounded(hi, False)


class FreeRow(W.HBox):
    """One fit parameter: free tick (the name with its unit), start value, and its bounds."""

    def __init__(self, name: str, value: float, lo: float, hi: float, free: bool) -> None:
        self.pname = name
        self.free = W.Checkbox(
            value=free, description=parameter_label(name), indent=False, layout=W.Layout(width="21em")
        )
        self.value = W.HTML(f"<code>{value:.5g}</code>", layout=W.Layout(width="7em"))
        lo, hi = _outward(lo, hi)
        self.lo = W.FloatText(
            value=lo, description="min", style={"description_width": "2.5em"}, layout=W.Layout(width="11em")
        )
        self.hi = W.FloatText(
            value=hi, description="max", style={"description_width": "2.5em"}, layout=W.Layout(width="11em")
        )
        self.shared = W.Checkbox(
            value=not name.startswith("probe."),
            description="shared",
            tooltip="with several contrasts: one value for every curve (else one per curve)",
            indent=False,
            layout=W.Layout(width="7em", display="none"),
        )
        self.shared.add_class("wb-shared")
        super().__init__([self.free, self.value, self.lo, self.hi, self.shared])


class RefinePanel(Panel, W.VBox):
    CHARTS: ClassVar[dict[str, str]] = {
        "refinement convergence": "convergence",
        "refinement R(Q)": "rq",
        "refinement SLD": "sld",
    }

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
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
        self.method = W.ToggleButtons(
            options=[("least squares", "lsq"), ("global (DE)", "de"), ("DE + polish", "auto")],
            value="lsq",
            description="method",
            tooltips=[
                "bounded least squares from the start: fast and exact near a good start",
                "differential evolution over the bounds: finds the basin from a poor start (a thick film's fringes)",
                "differential evolution, then the least-squares polish from its best",
            ],
        )
        self.method.add_class("wb-refine-method")
        self.population = W.IntText(
            value=0,
            description="DE population",
            tooltip="members per generation; 0: 15 per free parameter (at least 20)",
            style=style,
        )
        self.generations = W.BoundedIntText(
            value=DE_GENERATIONS, min=1, max=100000, description="DE generations", style=style
        )
        self.de_settings = W.HBox([self.population, self.generations], layout=W.Layout(display="none"))
        self.method.observe(self._method_changed, "value")
        self.run = W.Button(description="Refine", icon="play", button_style="primary")
        self.stop = W.Button(description="Stop", icon="stop", disabled=True)
        self.export = W.Button(
            description="refl1d model",
            icon="file-code-o",
            disabled=True,
            tooltip="write the fit as a runnable refl1d model script with its data (all curves of a co-refinement)",
            layout=W.Layout(width="auto"),
        )
        self.export.add_class("wb-export-refl1d")
        self.export.on_click(self._export)
        self.status = Status()
        self.table = W.HTML()
        self.convergence = ChartWidget(convergence_template())
        self.curves = CurvePair(("data", "start", "fit"), ("start", "fit"), rq_title="Fit", markers=("data",))
        self.rq, self.sld = self.curves.rq, self.curves.sld
        self.contrasts_box = ContrastsBox(ctx.measurements, lambda: self.start_stack, self._contrasts_changed)
        self.joint: JointRefineResult | None = None
        self._generations = 0  # DE generations seen in the running fit (its least-squares steps follow them)
        self.job: Job | None = None
        self.data = None
        self.start_stack: FilmStack | None = None
        self.profile_fit: ProfileFit | None = None  # the start stack fitted to an SLD model's profile
        self.result: RefineResult | None = None
        self.bands: Bands | None = None
        self._iterations: list[tuple[int, float]] = []
        self._fit_note = ""  # said with the result (why a fit ran in this kernel)
        self.fits = RefineJobs(self)  # the fit as a job process: followed, attached, read back
        self.dreams = DreamBox(self)  # DREAM's widgets, its job process and its bands
        d = self.dreams
        self.samples, self.burn, self.dream, self.as_job = d.samples, d.burn, d.button, d.as_job
        self.progress, self.dream_status, self.dream_table = d.progress, d.status, d.table
        self._loaded = None  # the prediction the free-parameter rows were made from
        self._job_kind = ""  # "refine" or "dream": the job last started
        self.load.on_click(self._load)
        self.run.on_click(self._run)
        self.stop.on_click(self._stop)
        # a new prediction is loaded when the tab is shown (on_shown), not at once: fitting a stack to a
        # predicted profile takes seconds, which a Predict click should not wait for
        super().__init__(
            [
                W.HTML("<b>Refine</b> a prediction against its data"),
                W.HBox([self.start_from, self.load]),
                W.HTML("<small>free parameters and their bounds</small>"),
                self.rows_box,
                self.contrasts_box,
                W.HBox([self.method, self.max_nfev]),
                self.de_settings,
                W.HBox([self.run, self.stop]),
                self.status,
                W.HBox([self.convergence]),
                self.table,
                W.HBox([self.samples, self.burn, self.dream, self.export]),
                self.as_job,
                W.HBox([self.progress, self.dream_status]),
                self.dream_table,
                self.curves.box,
            ]
        )
        self.add_class("wb-refine-panel")
        self.fits.attach() or self.dreams.attach()

    def _method_changed(self, change) -> None:
        self.de_settings.layout.display = "none" if change["new"] == "lsq" else ""

    def _contrasts_changed(self) -> None:
        """Show the 'shared' ticks while there are several curves; draw each extra curve's start."""
        several = bool(self.contrasts_box.rows)
        for row in self.rows:
            row.shared.layout.display = "" if several else "none"
        if several and self.data is not None and self.start_stack is not None:
            try:
                self.contrasts_box.draw_starts(self._contrasts())
            except (OSError, ValueError) as exc:
                self.status.warn(f"contrast: {exc}")

    def _contrasts(self, scale: float = 1.0, background: float = 0.0) -> list[Contrast]:
        """This panel's curve first, then every extra contrast (each with its substrate and ambient SLDs)."""
        first = Contrast(self.data, self.start_stack, contrast_label(self.data.source), None, scale, background)
        return self.contrasts_box.contrasts(first)

    def on_shown(self) -> None:
        """Follow a fit or DREAM job started meanwhile; start from the current prediction when it is new (the bounds
        a user edited stay otherwise)."""
        self.fits.attach() or self.dreams.attach()
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
        film = self.ctx.stack.stack
        stack, what, level = self._start_stack(prediction, film)
        self.start_stack = stack
        varied = set(film.parameter_names())
        names = stack.parameter_names()
        tick_all = not varied.intersection(names)  # a start of another shape than the Film stack's
        rows = []
        for b, name in zip(stack.free_parameters, names):
            value = stack.get(b.i, b.par)
            rows.append(FreeRow(name, value, min(b.lo, value), max(b.hi, value), tick_all or name in varied))
        rows.append(FreeRow(PROBE_PARAMETERS[0], 1.0, 0.5, 2.0, False))
        rows.append(FreeRow(PROBE_PARAMETERS[1], 0.0, 0.0, 1e-5, False))
        self.rows = rows
        self.rows_box.children = rows
        self.joint = None
        self._contrasts_changed()
        self.result, self.bands = None, None
        self.table.value = ""
        self.dreams.reset()
        self.dream.disabled = True
        self.status.show(f"start: {what}; data {self.data.source}, {len(self.data)} points", level)
        self._draw_start()

    def _start_stack(self, prediction, film: FilmStack) -> tuple[FilmStack, str, str]:
        """The start stack, how it was made (for the status) and the status level."""
        self.profile_fit = None
        if self.start_from.value == "stack":
            return film, "the film stack", "info"
        if getattr(prediction, "stack", None) is not None:
            return prediction.stack, "the predicted stack", "info"
        profile = getattr(prediction, "profile", None)
        if profile is None:
            return film, "the film stack (the prediction has no profile)", "warn"
        if not film.free_parameters:
            return film, "the film stack (tick 'vary' on its parameters to fit it to the predicted profile)", "warn"
        try:
            fit = stack_from_profile(film, *sorted_profile(*profile))
        except ValueError as exc:
            return film, f"the film stack (the predicted profile could not be fitted: {exc})", "warn"
        self.profile_fit = fit
        what = f"stack fitted to the predicted profile (profile RMS {fit.rms:.2f} ×10⁻⁶ Å⁻²)"
        if fit.at_bound:
            shown = ", ".join(fit.at_bound[:3]) + (", …" if len(fit.at_bound) > 3 else "")
            what += f", {len(fit.at_bound)} parameter(s) at a Film stack bound ({shown})"
        return fit.stack, what, "info"

    def _draw_start(self) -> None:
        m = self.data.positive()
        probe = self.data.merge_duplicate_q().probe() if self.data.has_duplicate_q else self.data.probe()
        r0 = np.asarray(reflectivity(self.start_stack, probe))[0]
        z, rho, _ = sld_profile(self.start_stack)
        self._drop_bands()
        self.curves.set_fresnel_stack(self.start_stack)  # R/R_F divides by the start's substrate under its ambient
        self.curves.show(
            rq={"data": {"x": m.q, "y": m.r, "dy": m.dr}, "start": (probe.q, r0), "fit": ([], [])},
            sld={"start": (z[0], rho[0]), "fit": ([], [])},
        )

    def shared(self) -> list[str]:
        """Ticked parameters marked shared (used when several contrasts are fitted together)."""
        return [row.pname for row in self.rows if row.free.value and row.shared.value]

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
        if int(self.population.value) != 0 and int(self.population.value) < 5:
            raise ValueError(f"DE population must be 0 (automatic) or at least 5, got {self.population.value}")
        options = {
            "method": self.method.value,
            "population": int(self.population.value) or None,
            "generations": int(self.generations.value),
            "max_nfev": nfev,
        }
        # the probe's start (scale 1, background 0) moved into bounds that exclude it
        probe_start = {
            "scale": float(np.clip(1.0, *bounds.get("probe.scale", (1.0, 1.0)))),
            "background": float(np.clip(0.0, *bounds.get("probe.background", (0.0, 0.0)))),
        }
        contrasts = self._contrasts(**probe_start) if self.contrasts_box.rows else None
        shared = self.shared() if contrasts else None
        registry = self.ctx.registry()
        what = f"{len(contrasts)} curves, " if contrasts else ""
        doing = f"refining {what}{len(names)} parameters ({self.method.label})"
        self._fit_note = ""
        if self.as_job.value and registry is not None:
            request, why = (None, JOINT_HERE) if contrasts else self.fits.request(names, bounds, options, probe_start)
            if request is not None:
                run_id = self.fits.submit(request)
                self._clear_fit()
                self.status.info(f"{doing} as a job process…")
                self.fits.follow(run_id)
                return
            self._fit_note = f"in this kernel: {why}"

        def work(reporter):
            sources = [str(c.data.source) for c in contrasts] if contrasts else str(data.source)
            params = {"free": names, "bounds": bounds, "data": sources, **options}
            if contrasts:
                params["shared"] = shared
            name = f"fit of {', '.join(Path(s).name for s in ([sources] if isinstance(sources, str) else sources))}"
            cm = (
                recorded_run(registry, "refine", name=name, params=params, reporter=reporter)
                if registry
                else nullcontext(None)
            )
            with cm as run:
                if contrasts:
                    result = corefine(contrasts, free=names, shared=shared, bounds=bounds, reporter=reporter, **options)
                else:
                    result = refine(data, start, free=names, bounds=bounds, reporter=reporter, **probe_start, **options)
                if run is not None:
                    run.metrics.update(fit_metrics(result, data.source))
            return result

        self._clear_fit()
        self.run.disabled, self.stop.disabled, self.dream.disabled = True, False, True
        note = f" ({self._fit_note})" if self._fit_note else ""
        self.status.show(f"{doing}…{note}", "warn" if note else "info")
        self._job_kind = "refine"
        self.job = Job(
            work,
            on_events=self._events,
            on_done=self._done,
            on_error=self._failed,
            max_rate=self.ctx.limits.max_updates_per_second,
            name="workbench-refine",
        ).start()

    def _clear_fit(self) -> None:
        """No fit shown: an empty χ² chart, no table, bands or fit curves (a new fit starts)."""
        self._iterations, self._generations = [], 0
        self.convergence.set_traces({"chi2": ([], [])})
        self.table.value = ""
        self.dreams.reset()
        self.result, self.bands = None, None
        self._drop_bands()
        self.curves.clear(rq=("fit",), sld=("fit",))
        self.export.disabled = True

    @panel_guard
    def _stop(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.job.stop("stopped from the Refine panel")

    def _events(self, events) -> None:
        changed = False
        for e in events:
            if isinstance(e, Record) and e.name == "generation":  # DE: the best χ² of each generation
                self._generations = int(e.data["generation"])
                self._iterations.append((self._generations, float(e.data["chi2"])))
                changed = True
            elif isinstance(e, Record) and e.name == "iteration":  # least squares (after DE's generations)
                self._iterations.append((self._generations + int(e.data["iteration"]), float(e.data["chi2"])))
                changed = True
            elif isinstance(e, Progress) and e.stage == "uncertainty":
                self.progress.max, self.progress.value = max(e.total, 1), e.done
            elif isinstance(e, Warning_):
                self._job_status().warn(e.message)
            elif isinstance(e, Log):
                self._job_status().info(e.message)
        if changed:
            it = self._iterations
            self.convergence.set_traces({"chi2": ([i for i, _ in it], [c for _, c in it])})

    def _job_status(self) -> Status:
        """Where the running job speaks: the DREAM line beside its button, or the refinement status."""
        return self.dream_status if self._job_kind == "dream" else self.status

    def _idle(self) -> None:
        self.run.disabled, self.stop.disabled = False, True
        self.dream.disabled = self.export.disabled = self.result is None

    @panel_guard
    def _export(self, _=None) -> None:
        """The fit as a refl1d model folder in the workspace (``exports/refl1d-<curve>-<time>``), path said."""
        if self.result is None:
            raise ValueError("refine first: the refl1d model is the fitted stack")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        folder = self.ctx.workspace.root / "exports" / f"refl1d-{contrast_label(self.data.source)}-{stamp}"
        if self.joint is not None:
            datas = [c.data for c in self._contrasts()]
            if len(datas) != len(self.joint.contrasts):
                raise ValueError("the contrasts changed since the fit: refine again before exporting")
            script = export_joint_refl1d(folder, self.joint, datas)
        else:
            script = export_refl1d(folder, self.result, self.data, self.result.bounds)
        self.status.ok(f"refl1d model written: {script} (run it with `refl1d {script.name} --fit=dream`)")

    def _done(self, result: RefineResult | JointRefineResult) -> None:
        joint = result if isinstance(result, JointRefineResult) else None
        self.joint = joint
        self.result = joint.contrasts[0] if joint else result
        self._idle()
        wide = set(wide_sigma(result))
        rows = []
        for r in result.table():
            name = r["name"]
            lo, hi = result.bounds.get(name, (math.nan, math.nan))
            flag = result.flag(name)
            if name in wide:
                flag = ", ".join(filter(None, [flag, "σ exceeds the bound range"]))
            rows.append(
                {
                    "parameter": parameter_label(name) + (" (shared)" if joint and name in joint.shared else ""),
                    "value": f"{r['value']:.5g}",
                    "± 1σ": "—" if name in wide else f"{r['uncertainty']:.2g}",
                    "bounds": f"{lo:.4g} – {hi:.4g}",
                    "flag": flag,
                }
            )
        left_out = f", {result.n_left_out} left out (no error bar)" if result.n_left_out else ""
        notes = result.notes()
        level, words = verdict(result)
        color = "#1a7f37" if level == "ok" else "#9a6700"
        self.table.value = (
            f"<b>Result</b>: <span class='wb-verdict wb-{level}' style='color:{color}'>{html.escape(words)}</span><br>"
            f"χ²/N = {result.chi2_per_point:.4g} (start χ² {result.start_chi2:.4g} → "
            f"{result.chi2:.4g}), {result.n_points} points{left_out}, {len(result.history)} "
            f"{'generations and iterations' if result.method != 'lsq' else 'iterations'}, {result.seconds:.2f} s"
            + (
                "<br>per curve: "
                + ", ".join(f"{lb} χ²/N {c.chi2_per_point:.3g}" for lb, c in zip(joint.labels, joint.contrasts))
                if joint
                else ""
            )
            + table_html(rows)
            + (
                "<ul class='wb-refine-notes'>" + "".join(f"<li>⚠ {html.escape(n)}</li>" for n in notes) + "</ul>"
                if notes
                else ""
            )
        )
        first = self.result
        self.curves.show(rq={"fit": (first.q, first.r_fit)}, sld={"fit": first.profile})
        if joint:
            self.contrasts_box.show_fit(joint)
        what = f"{len(joint.contrasts)} curves" if joint else None
        text = f"refined {what or (Path(self.data.source).name if self.data is not None else 'the data')}: {words}"
        if result.n_left_out:
            text += f"; {result.n_left_out} point{'s' if result.n_left_out != 1 else ''} without an error bar left out"
        if self._fit_note:
            text += f" ({self._fit_note})"
        self.status.show(text, level)
        self.ctx.announce(refined=first)
        self.ctx.runs_changed()

    def _failed(self, exc: BaseException) -> None:
        self._idle()
        status = self._job_status()
        if getattr(self.job, "cancelled", False):
            status.warn(f"stopped: {exc}")
        else:
            status.error(f"failed: {type(exc).__name__}: {exc}")
        if status is self.dream_status:
            self.progress.bar_style = "danger"

    def _drop_bands(self) -> None:
        """Remove the DREAM bands of an earlier fit."""
        drop_bands(self.curves)

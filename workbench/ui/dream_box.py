"""The Refine panel's DREAM part: samples and burn-in, a progress bar, the 68/95 % bands and the posterior table.

DREAM takes minutes, so by default it runs as a job process (:func:`~workbench.batch.jobs.submit_job`
kind ``dream``): a :class:`~workbench.workflows.refinement.RefineRequest` with the data file(s), the
fitted stack, scale and background, the free bounds, samples, burn-in and seed 0, ``optimize=False``
(no refit: DREAM samples around the fit as given).  The job writes its bands into
``<workspace>/exports/dream-<curve>-<time>/bands`` (``Bands.to_csv``) with ``refinement.json``, records
DREAM's generations as steps, and goes on when the page closes; the panel follows it through the run
registry (:class:`~workbench.ui.background.FollowedJob`), a page opened later attaches to the newest
live dream job, and the bands come back with :meth:`~workbench.analysis.uncertainty.Bands.from_csv`.
Unticked, without a registry, or for a curve the job could not reload as it is here, DREAM runs in a
worker thread of this kernel (:func:`~workbench.analysis.uncertainty.dream_bands`).
"""

from __future__ import annotations

import json
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import ipywidgets as W
import numpy as np

from ..analysis.corefine import JointRefineResult
from ..analysis.refine import parameter_label
from ..analysis.uncertainty import Bands, dream_bands, dream_joint_bands
from ..batch.jobs import submit_job
from ..data.family import stack_from_meta, stack_meta
from ..data.measured import Measurement
from ..physics import PARAMETER_FIELDS
from ..plots.style import band_fill
from ..store.recorded import recorded_run
from ..store.registry import RunRow
from ..workflows.refinement import RefineRequest, dream_metrics, load_data
from .background import Job, follow_job, live_job
from .common import Status, guarded, table_html
from .contrasts_box import contrast_label
from .curve_pair import CurvePair

DREAM_MIN_SAMPLES = 100  # fewer posterior samples than this give no usable band
N_DRAWS = 200  # posterior draws turned into R(Q) and SLD curves for the bands
AS_JOB = "run as a separate process (goes on when this page is closed)"


class DreamBox:
    """DREAM's widgets and runs for a :class:`~workbench.ui.refine_panel.RefinePanel` (``host`` lays them out)."""

    def __init__(self, host: Any) -> None:  # the RefinePanel (not imported: it imports this module)
        self.host = host
        ctx = host.ctx
        lim = ctx.limits
        style = {"description_width": "9em"}
        self.samples = W.IntText(  # not Bounded: a value out of range is said, never silently changed
            value=min(4000, lim.max_dream_samples),
            description="DREAM samples",
            tooltip=f"posterior samples DREAM draws ({DREAM_MIN_SAMPLES}–{lim.max_dream_samples}); "
            f"the bands use {N_DRAWS} of them",
            style=style,
        )
        self.samples.add_class("wb-dream-samples")
        self.burn = W.BoundedIntText(value=100, min=0, max=10000, description="burn-in", style=style)
        self.button = W.Button(
            description="Uncertainty (DREAM)", icon="area-chart", disabled=True, layout=W.Layout(width="auto")
        )
        self.as_job = W.Checkbox(
            value=bool(ctx.panel_settings("refine").get("as_job", True)),
            description=AS_JOB,
            tooltip="the fit and DREAM as job processes any page, History or `workbench runs` can follow and stop; "
            "untick to run them inside this page's kernel",
            indent=False,
            layout=W.Layout(width="32em"),
        )
        self.as_job.add_class("wb-as-job")
        self.as_job.observe(lambda _: ctx.update_settings("refine", as_job=self.as_job.value), "value")
        self.progress = W.IntProgress(value=0, min=0, max=1, description="DREAM", layout=W.Layout(width="30em"))
        self.status = Status()
        self.status.add_class("wb-dream-status")
        self.table = W.HTML()
        self.last_run_id: str | None = None
        self._asked = 0
        self._note = ""  # said when the samples were brought into range
        self._sampled: Any = None  # the fit the followed job samples around (None: not this page's fit)
        self.button.on_click(self._click)

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """A new start or fit: no bands, no table, no DREAM line."""
        self.table.value, self.status.value = "", ""
        self.progress.value, self.progress.bar_style = 0, ""

    def samples_in_range(self) -> int:
        """The samples asked for, raised or lowered into the allowed range with a note saying so."""
        asked, top = int(self.samples.value), int(self.host.ctx.limits.max_dream_samples)
        samples = min(max(asked, DREAM_MIN_SAMPLES), top)
        if samples != asked:
            self.samples.value = samples
            why = f"the minimum is {DREAM_MIN_SAMPLES}" if asked < samples else f"the limit is {top}"
            moved = "raised" if asked < samples else "lowered"
            self._note = f"samples {moved} from {asked} to {samples}: {why}"
        else:
            self._note = ""
        return samples

    # ------------------------------------------------------------------ start
    @guarded(lambda self: self.host.status)
    def _click(self, _=None) -> None:
        host = self.host
        if host._busy():
            return
        if host.result is None:
            raise ValueError("refine first: DREAM samples around the fitted stack")
        res, joint = host.result, host.joint
        _, bounds = host.free()
        names = joint.contrasts[0].names if joint else res.names
        free = {n: bounds[n] for n in names if n in bounds}
        datas = [c.data for c in host._contrasts()] if joint else [host.data]
        if joint and len(datas) != len(joint.contrasts):
            raise ValueError("the contrasts changed since the fit: refine again before DREAM")
        samples = self._asked = self.samples_in_range()
        burn = int(self.burn.value)
        registry = host.ctx.registry()
        self.progress.value, self.progress.bar_style = 0, ""
        note = f" ({self._note})" if self._note else ""
        level = "warn" if note else "info"
        why_here = ""
        if self.as_job.value and registry is not None:
            request, why_here = self._request(res, joint, datas, free, samples, burn)
            if request is not None:
                self._sampled = res
                run_id = submit_job(host.ctx.workspace, "dream", request, limits=host.ctx.limits)
                self.status.show(f"DREAM: {samples} posterior samples as a job process…{note}", level)
                self._follow(run_id)
                return
        if why_here:
            note += f" (in this kernel: {why_here})"
            level = "warn"
        self.status.show(f"DREAM: {samples} posterior samples…{note}", level)
        self._in_kernel(res, joint, datas, free, samples, burn, registry)

    def _request(
        self,
        res: Any,
        joint: JointRefineResult | None,
        datas: list[Measurement],
        free: dict[str, tuple[float, float]],
        samples: int,
        burn: int,
    ) -> tuple[RefineRequest | None, str]:
        """The job's request, or (None, why) when the curves or the fit cannot travel to a job as they are here."""
        sources, convention, why = job_data(datas)
        if why:
            return None, why
        fits = joint.contrasts if joint else [res]
        if len({f.scale for f in fits}) > 1 or len({f.background for f in fits}) > 1:
            return None, "each curve has its own fitted scale or background, which a DREAM job cannot carry"
        base = fits[0].stack
        label = contrast_label(sources[0])
        stamp = time.strftime("%Y%m%d-%H%M%S")
        fields: dict[str, Any] = {
            "data": sources,
            "dq_convention": convention,
            "stack": stack_meta(base),
            "start": "the Refine panel's fit",
            "free": list(free),
            "bounds": free,
            "scale": fits[0].scale,
            "background": fits[0].background,
            "optimize": False,
            "dream_samples": samples,
            "burn": burn,
            "band_draws": N_DRAWS,
            "seed": 0,
            "out": self.host.ctx.workspace.root / "exports" / f"dream-{label}-{stamp}",
            "name": f"uncertainty of {Path(sources[0]).name}",
        }
        if joint:
            fields["share"] = list(joint.shared)
            fields["contrast"] = _per_curve_values(base, [f.stack for f in fits])
        return RefineRequest(**fields), ""

    def _in_kernel(self, res, joint, datas, free, samples, burn, registry) -> None:
        host, data = self.host, datas[0]

        def work(reporter):
            params = {"free": list(free), "bounds": free, "data": data.source, "samples": samples, "burn": burn}
            name = f"uncertainty of {Path(str(data.source)).name}"
            cm = (
                recorded_run(registry, "dream", name=name, params=params, reporter=reporter)
                if registry
                else nullcontext(None)
            )
            with cm as run:
                if joint:
                    out = dream_joint_bands(
                        joint, datas, samples=samples, burn=burn, seed=0, n_draws=N_DRAWS, reporter=reporter
                    )
                else:
                    out = dream_bands(
                        res.stack,
                        data,
                        free,
                        scale=res.scale,
                        background=res.background,
                        samples=samples,
                        burn=burn,
                        seed=0,
                        n_draws=N_DRAWS,
                        reporter=reporter,
                    )
                if run is not None:
                    first = out[0] if isinstance(out, list) else out
                    run.metrics.update({"data": Path(str(data.source)).name, **dream_metrics(first, samples)})
            return out

        self._busy_buttons()
        host._job_kind = "dream"
        host.job = Job(
            work,
            on_events=host._events,
            on_done=self.show_bands,
            on_error=host._failed,
            max_rate=host.ctx.limits.max_updates_per_second,
            name="workbench-dream",
        ).start()

    def _busy_buttons(self) -> None:
        host = self.host
        host.run.disabled, self.button.disabled, host.stop.disabled = True, True, False

    # ------------------------------------------------------------------ job processes
    def attach(self) -> str | None:
        """Follow the newest queued or running DREAM job of the workspace, if the panel runs nothing."""
        host = self.host
        run_id = None if host.job is not None and host.job.running else live_job(host.ctx.registry(), "dream")
        if run_id is None:
            return None
        if run_id != self.last_run_id:
            self._sampled = None  # started elsewhere: its fit is not necessarily this page's
        self.status.info(f"DREAM job {run_id} is running: following it…")
        self._follow(run_id)
        return run_id

    def _follow(self, run_id: str) -> None:
        host = self.host
        self.last_run_id = run_id
        self.progress.bar_style = ""
        self._busy_buttons()
        host._job_kind = "dream"
        host.ctx.runs_changed()  # History lists the new job, live
        host.job = follow_job(
            host.ctx,
            run_id,
            on_update=self._job_update,
            on_end=self._job_done,
            on_error=host._failed,
            name="workbench-dream-follow",
        )

    def _job_update(self, steps: list[dict], logs: list[dict], run: RunRow) -> None:
        for step in steps:
            if "generation" in step:
                self.progress.max = max(int(step.get("total") or 1), 1)
                self.progress.value = min(int(step["generation"]), self.progress.max)
        if run.status == "queued":
            position = self.host.ctx.registry().queue_position(run.id)
            self.status.info(
                f"DREAM job queued{f' (position {position})' if position else ''}: waits for a free job slot "
                f"({self.host.ctx.limits.max_concurrent_jobs} at once in this workspace)"
            )
        elif run.status == "running" and self.progress.value:
            self.status.info(
                f"DREAM as a job process (pid {run.pid}, run {run.id}): generation {self.progress.value} "
                f"of {self.progress.max}"
            )

    def _job_done(self, run: RunRow) -> None:
        host = self.host
        host.ctx.runs_changed()
        if run.status == "completed":
            out = Path(str(run.params.get("out") or ""))
            try:
                bands = bands_of_job(out)
            except (OSError, ValueError, KeyError) as exc:
                host._idle()
                self.progress.bar_style = "danger"
                self.status.error(f"DREAM job {run.id} ended but its bands could not be read: {exc}")
                return
            self._asked = int(run.params.get("samples") or 0)
            if self._sampled is None or self._sampled is not host.result:
                self._note = ""
                self._draw_job_fit(out)
            self.show_bands(bands)
        else:
            host._idle()
            self.progress.bar_style = "danger"
            if run.status == "stopped":
                self.status.warn(f"DREAM stopped: {run.error or 'stopped'}; no bands were written")
            else:
                self.status.error(f"DREAM failed: {run.error or 'the job process ended without saying why'}")

    def _draw_job_fit(self, out: Path) -> None:
        """The sampled fit from the job's own files, for a page that did not make it (opened later)."""
        curves = self.host.curves
        summary = json.loads((out / "refinement.json").read_text(encoding="utf-8"))
        labels = summary.get("labels")
        suffix = f"_{labels[0]}" if labels else ""
        fit = np.loadtxt(out / f"fit{suffix}.csv", delimiter=",", skiprows=1, ndmin=2)
        profile = np.loadtxt(out / f"profile{suffix}.csv", delimiter=",", skiprows=1, ndmin=2)
        stack = summary.get("stack") or (summary.get("contrasts") or [{}])[0].get("stack")
        if stack:
            curves.set_fresnel_stack(stack_from_meta(stack))
        shown = fit[:, 1] > 0
        curves.show(
            rq={
                "data": {"x": fit[shown, 0], "y": fit[shown, 1], "dy": fit[shown, 2]},
                "start": ([], []),
                "fit": (fit[:, 0], fit[:, 3]),
            },
            sld={"start": ([], []), "fit": (profile[:, 0], profile[:, 1])},
        )
        self._note = f"the fit drawn is the job's ({out.name}), not one refined in this page"

    # ------------------------------------------------------------------ results
    def show_bands(self, bands: Bands | list[Bands]) -> None:
        """Draw the bands (every contrast's chart too) and the posterior table; say how DREAM went."""
        host = self.host
        per_contrast = bands if isinstance(bands, list) else [bands]
        bands = per_contrast[0]
        host.bands = bands
        host._idle()
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        draw_bands(host.curves, bands)
        if len(per_contrast) > 1 and len(host.contrasts_box.rows) == len(per_contrast) - 1:
            host.contrasts_box.show_bands(per_contrast, draw_bands)
        rows = [
            {
                "parameter": parameter_label(r["name"]),
                "median": f"{r['median']:.5g}",
                "68 % interval": f"{r['lo68']:.5g} – {r['hi68']:.5g}",
                "95 % interval": f"{r['lo95']:.5g} – {r['hi95']:.5g}",
            }
            for r in bands.parameter_table
        ]
        self.table.value = "<b>DREAM posterior</b>" + table_html(rows)
        text = (
            f"DREAM: {self._asked} samples asked, {bands.n_posterior} posterior samples kept, "
            f"{bands.n_draws} of them drawn for the bands; {bands.seconds:.1f} s"
        )
        note = f"; {self._note}" if self._note else ""
        if bands.converged:
            self.status.ok(text + note)
        else:
            self.status.warn(f"{text}; not converged: raise samples or burn-in{note}")
        host.ctx.runs_changed()


def job_data(datas: list[Measurement]) -> tuple[list[str], str | None, str]:
    """(files, dQ convention, "") for curves a job can reload from their files exactly as they are here, or
    ([], None, why not) (a curve made in memory, a file that reloads differently)."""
    sources = [str(d.source) for d in datas]
    conventions = {d.dq_convention_of_file for d in datas if d.dq_convention_of_file in ("fwhm", "sigma")}
    convention = conventions.pop() if len(conventions) == 1 else None
    for data, source in zip(datas, sources):
        if not Path(source).is_file():
            return [], None, f"{Path(source).name} is not a file the job can read"
        try:
            again = load_data(source, convention)
        except ValueError as exc:
            return [], None, f"the job could not reload {Path(source).name}: {exc}"
        if not _same_curve(again.merge_duplicate_q(), data.merge_duplicate_q()):  # Predict merges stitched Q
            return [], None, f"{Path(source).name} reloads differently from the curve fitted here"
    return sources, convention, ""


def _same_curve(a: Measurement, b: Measurement) -> bool:
    """Whether two loads of a curve agree in every array (a job reloads the file the page fitted)."""
    for x, y in ((a.q, b.q), (a.r, b.r), (a.dr, b.dr), (a.dq_sigma, b.dq_sigma)):
        if (x is None) != (y is None) or (x is not None and (x.shape != y.shape or not np.array_equal(x, y))):
            return False
    return True


def _per_curve_values(base, stacks: list) -> dict[str, list[float]]:
    """LAYER.PAR → each curve's value, for every layer parameter that differs between the contrasts' stacks."""
    names = [layer.name for layer in base.layers]
    out: dict[str, list[float]] = {}
    for i, layer in enumerate(base.layers):
        key = layer.name if names.count(layer.name) == 1 else str(i)
        for par in PARAMETER_FIELDS:
            values = [s.get(i, par) for s in stacks]
            if len(set(values)) > 1:
                out[f"{key}.{par}"] = values
    return out


def bands_of_job(out: str | Path) -> Bands | list[Bands]:
    """The bands a DREAM job wrote into ``out`` (one curve: Bands; several: one per curve, in file order)."""
    out = Path(out)
    summary = json.loads((out / "refinement.json").read_text(encoding="utf-8"))
    said = summary.get("bands")
    if not said:
        raise ValueError(f"{out / 'refinement.json'} records no bands")

    def one(folder: Path, meta: dict) -> Bands:
        return Bands.from_csv(
            folder,
            parameter_table=meta.get("parameters") or [],
            n_posterior=int(meta.get("n_posterior") or 0),
            converged=bool(meta.get("converged", True)),
            seconds=float(meta.get("seconds") or 0.0),
        )

    if summary.get("labels"):
        return [one(out / "bands" / label, said[label]) for label in summary["labels"]]
    return one(out / "bands", said)


def drop_bands(curves: CurvePair) -> None:
    """Remove DREAM bands from a chart pair (they are the traces tagged ``band``)."""
    for chart in (curves.rq, curves.sld):
        kept = tuple(t for t in chart.data if t.meta != "band")
        if len(kept) != len(chart.data):
            chart.data = kept


def draw_bands(curves: CurvePair, bands: Bands) -> None:
    """68 %/95 % bands of R(Q) and of the SLD profile on a chart pair (traces tagged ``band``)."""
    drop_bands(curves)
    for chart, x, levels in (
        (curves.rq, bands.q, (("95 %", bands.r_95), ("68 %", bands.r_68))),
        (curves.sld, bands.z, (("95 %", bands.sld_95), ("68 %", bands.sld_68))),
    ):
        add = curves.add_rq if chart is curves.rq else chart.add_scatter  # R(Q) bands follow the R(Q) view
        with chart.batch_update():
            for level, (lo, hi) in levels:
                edge = {"mode": "lines", "line": {"width": 0}, "meta": "band", "legendgroup": level}
                add(x=x, y=lo, name=f"{level} band (low)", showlegend=False, **edge)
                add(x=x, y=hi, name=f"{level} band", fill="tonexty", fillcolor=band_fill(level), **edge)

"""Generate panel: a synthetic NR/SLD data set from the film stack's bounds.

numCurves, seed, sampling and the realism options; a progress bar, Cancel, timings, a preview of
a few generated curves and profiles, and the folder it was written to.  Recorded in the run
registry as a 'generate' run.  By default it runs as a job process
(:func:`~workbench.batch.jobs.submit_job`, like ``workbench generate --detach``) that goes on when the
page closes; a page opened later follows it (progress caught up from the registry) and Cancel stops
it.  Unticked, or without a registry, it runs in a worker thread of this kernel.
Headless twin: :func:`workbench.data.generate.generate_to_disk`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import ClassVar

import ipywidgets as W
import numpy as np

from ..batch.jobs import submit_job
from ..data.dataset import load_dataset
from ..data.family import stack_meta
from ..data.generate import GeneratorConfig, generate_to_disk
from ..data.realism import Realism
from ..events import Log, Progress, Timing, Warning_
from ..fileio import safe_name
from ..forms import field_specs
from ..plots.curves import profile_template, reflectivity_template
from ..store.recorded import recorded_run
from ..store.registry import RunRow
from .background import FollowedJob, Job, follow_job, live_job
from .chart_widget import ChartWidget
from .common import Panel, Status, panel_guard
from .context import AppContext
from .curve_pair import RQViews
from .forms import Form, FormFields, fit, fit_em, label_em

GENERATOR_FIELDS = ("num_curves", "seed", "sampling", "fixed_z_grid")
REALISM_FIELDS = ("counting_noise", "scale_error")
CONSISTENT_ROUGHNESS = 0.5  # the "roughness ≤ 0.5 × thinner neighbour" option


class GeneratePanel(FormFields, Panel, W.VBox):
    """The Generate tab; ``panel.num_curves``, ``panel.seed``, ... are generated from :class:`GeneratorConfig`."""

    CHARTS: ClassVar[dict[str, str]] = {"generated curves": "rq", "generated profiles": "sld"}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        saved = ctx.panel_settings("generate")
        realism = saved.get("realism") or {
            "counting_noise": saved.get("noise", False),
            "scale_error": saved.get("scale_error", 0.0),
        }
        label = max(
            label_em(field_specs(GeneratorConfig, include=GENERATOR_FIELDS)),
            label_em(field_specs(Realism, include=REALISM_FIELDS)),
            fit_em("data-set name"),
        )
        self.generator_form = Form(
            GeneratorConfig, saved, limits=ctx.limits, include=GENERATOR_FIELDS, description_em=label
        )
        self.realism_form = Form(Realism, realism, limits=ctx.limits, include=REALISM_FIELDS, description_em=label)
        self.consistent = W.Checkbox(
            value=bool(saved.get("consistent", False)),
            description="roughness ≤ 0.5 × thinner neighbour",
            tooltip="no interface rougher than half the thinner of the two layers it joins (physically consistent)",
            indent=False,
            layout=W.Layout(width=f"{fit_em('roughness ≤ 0.5 × thinner neighbour') + 2.5:g}em"),
        )
        self.name = fit(
            W.Text(
                value="",
                placeholder="folder name (default: dataset-<time>)",
                description="data-set name",
                tooltip="the folder in the workspace's datasets the curves are written to",
            ),
            input_em=18.0,
            description_em=label,
        )
        self.as_job = W.Checkbox(
            value=bool(saved.get("as_job", True)),
            description="run as a separate process (goes on when this page is closed)",
            tooltip="a job process any page, History or `workbench runs` can follow and stop; untick to generate "
            "inside this page's kernel",
            indent=False,
            layout=W.Layout(
                width=f"{fit_em('run as a separate process (goes on when this page is closed)') + 2.5:g}em"
            ),
        )
        self.as_job.add_class("wb-as-job")
        self.start = W.Button(
            description="Generate",
            icon="play",
            button_style="primary",
            tooltip="draw the curves from the film stack's bounds and the probe, and write the data set",
        )
        self.cancel = W.Button(description="Cancel", icon="stop", disabled=True, tooltip="stop; nothing is written")
        self.progress = W.IntProgress(
            value=0,
            min=0,
            max=1,
            description="curves",
            style={"description_width": f"{label:g}em"},
            layout=W.Layout(width=f"{label + 18:g}em"),
        )
        self.timings = W.HTML()
        self.output = W.HTML()
        self.status = Status()
        self.rq = ChartWidget(reflectivity_template((), "Generated curves"))
        self.sld = ChartWidget(profile_template((), "Generated profiles"))
        self.views = RQViews(self.rq)  # R, R·Q⁴ or R/R_F of the film stack's substrate (at its value)
        self.job: Job | FollowedJob | None = None
        self.last_run_id: str | None = None
        self.dataset = None
        self._stack = None  # the stack of the last generation
        self.start.on_click(self._start)
        self.cancel.on_click(self._cancel)
        for form in (self.generator_form, self.realism_form):
            form.observe(self._remember)
        self.consistent.observe(self._remember, "value")
        self.as_job.observe(self._remember, "value")
        form = W.VBox([self.generator_form.box, self.realism_form.box, self.consistent, self.name, self.as_job])
        super().__init__(
            [
                W.HTML("<b>Generate</b> a synthetic data set from the film stack's bounds and the probe"),
                form,
                W.HBox([self.start, self.cancel]),
                self.progress,
                self.status,
                self.timings,
                self.output,
                self.views.chooser,
                W.HBox([self.rq, self.sld]),
            ]
        )
        self.add_class("wb-generate-panel")
        self.attach()

    def _forms(self) -> list[Form]:
        return [self.__dict__["generator_form"], self.__dict__["realism_form"]]

    def _remember(self, _=None) -> None:
        self.ctx.update_settings(
            "generate",
            **self.generator_form.values(),
            realism=self.realism_form.values(),
            consistent=self.consistent.value,
            as_job=self.as_job.value,
        )

    def config(self) -> GeneratorConfig:
        """The generator settings from the widgets and the probe panel (clamped to the limits)."""
        p = self.ctx.stack.probe_settings
        values = self.generator_form.values()
        values["num_curves"] = int(min(max(values["num_curves"], 1), self.ctx.limits.max_curves))
        return GeneratorConfig(
            **values,
            q_min=p.q_min,
            q_max=p.q_max,
            num_q=p.num_q,
            q_resolution=p.q_resolution,
            consistent_roughness=CONSISTENT_ROUGHNESS if self.consistent.value else None,
            realism=Realism(**self.realism_form.values()),
        )

    @panel_guard
    def _start(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.status.warn("a generation is already running")
            return
        outside = self.ctx.stack.outside_bounds()
        if outside:  # the value is the start and central value: outside the sampled range it would mislead
            raise ValueError(
                "; ".join(o.message for o in outside)
                + ": widen the bounds in the Film stack ('widen bounds' in the row) or set a value inside them"
            )
        stack = self.ctx.stack.stack
        self._stack = stack  # the preview's R/R_F divides by its substrate
        if not stack.free_parameters:
            raise ValueError("the film stack has no parameter with a range (min < max): tick 'vary' on at least one")
        config = self.config()
        name = safe_name(self.name.value, f"dataset-{time.strftime('%Y%m%d-%H%M%S')}")
        out = self.ctx.workspace.datasets / name
        if (out / "dataset.json").exists():
            raise ValueError(f"a data set named {name!r} already exists in the workspace; choose another name")
        registry = self.ctx.registry()
        self.progress.max, self.progress.value = config.num_curves, 0
        self.progress.bar_style = ""
        self.timings.value = ""
        self.output.value = ""
        if self.as_job.value and registry is not None:
            request = {"out": str(out), "config": config.model_dump(mode="json"), "stack": stack_meta(stack)}
            self._follow(submit_job(self.ctx.workspace, "generate", request, limits=self.ctx.limits))
            return

        def work(reporter):
            params = {
                "generator": config.model_dump(mode="json"),
                "stack": {"layer_desc": stack.to_layer_desc(), "layer_bound": stack.to_layer_bound()},
            }
            if registry is None:
                return generate_to_disk(stack, config, out, reporter=reporter, progress=False)
            with recorded_run(registry, "generate", name=name, params=params, reporter=reporter) as run:
                folder = generate_to_disk(stack, config, out, reporter=reporter, progress=False)
                ds = load_dataset(folder)
                registry.register_dataset(ds.content_hash, folder, config.model_dump(mode="json"))
                registry.update_run(run.id, dataset_hash=ds.content_hash)
                run.metrics.update(curves=ds.n, seconds=ds.meta.get("generation_seconds"), path=str(folder))
            return folder

        self.status.info(f"generating {config.num_curves} curves…")
        self.start.disabled, self.cancel.disabled = True, False
        self.job = Job(
            work,
            on_events=self._events,
            on_done=self._done,
            on_error=self._failed,
            max_rate=self.ctx.limits.max_updates_per_second,
            name="workbench-generate",
        ).start()

    @panel_guard
    def _cancel(self, _=None) -> None:
        if self.job is not None and self.job.running:
            self.job.stop("cancelled from the Generate panel")
            self.status.warn("cancelling…")

    # ------------------------------------------------------------------ job processes
    def on_shown(self) -> None:
        """The tab was shown: follow a generation job started meanwhile (another page, the CLI)."""
        self.attach()

    def attach(self) -> str | None:
        """Follow the newest queued or running generation job of the workspace, if this panel follows nothing."""
        run_id = None if self.job is not None and self.job.running else live_job(self.ctx.registry(), "generate")
        if run_id is not None:
            self._follow(run_id)
        return run_id

    def _follow(self, run_id: str) -> None:
        """Show the job ``run_id`` live from the registry: its progress so far first, then as it goes."""
        self.last_run_id = run_id
        self._stack = None
        self.progress.bar_style = ""
        self.status.info(f"generating as a job process (run {run_id})…")
        self.start.disabled, self.cancel.disabled = True, False
        self.ctx.runs_changed()  # History lists the new job, live
        self.job = follow_job(
            self.ctx,
            run_id,
            on_update=self._job_update,
            on_end=self._job_done,
            on_error=self._failed,
            name="workbench-generate-follow",
        )

    def _job_update(self, steps: list[dict], logs: list[dict], run: RunRow) -> None:
        total = int((run.params.get("generator") or {}).get("num_curves") or 1)
        self.progress.max = max(total, 1)
        for step in steps:
            if "curves" in step:
                self.progress.value = min(int(step["curves"]), self.progress.max)
        if run.status == "queued":
            position = self.ctx.registry().queue_position(run.id)
            self.status.info(
                f"queued{f' (position {position})' if position else ''}: waits for a free job slot "
                f"({self.ctx.limits.max_concurrent_jobs} at once in this workspace)"
            )
        elif run.status == "running":
            self.status.info(
                f"generating {total} curves as a job process (pid {run.pid}): {self.progress.value} written"
            )

    def _job_done(self, run: RunRow) -> None:
        self._finish_buttons()
        self.ctx.runs_changed()
        if run.status == "completed":
            folder = Path(run.params.get("out") or run.metrics.get("path") or "")
            queued = float((run.job or {}).get("queued") or run.created)
            for t in self.ctx.registry().timings(run.id):
                self._events([Timing(t["stage"], t["what"], float(t["seconds"]), int(t["items"]))])
            self._show_dataset(folder, run.updated - queued)
        elif run.status == "stopped":
            self.progress.bar_style = "danger"
            self.status.warn(f"cancelled: nothing was written ({run.error or 'stopped'})")
        else:
            self.progress.bar_style = "danger"
            self.status.error(f"generation failed: {run.error or 'the job process ended without saying why'}")

    def _events(self, events) -> None:
        for e in events:
            if isinstance(e, Progress):
                self.progress.max, self.progress.value = max(e.total, 1), e.done
            elif isinstance(e, Timing):
                self.timings.value = (
                    f"<small>{e.what}: {e.items} curves in {e.seconds:.2f} s ({e.rate:,.0f} curves/s)</small>"
                )
            elif isinstance(e, Warning_):
                self.status.warn(e.message)
            elif isinstance(e, Log):
                self.status.info(e.message)

    def _finish_buttons(self) -> None:
        self.start.disabled, self.cancel.disabled = False, True

    def _done(self, folder) -> None:
        self._finish_buttons()
        self._show_dataset(Path(folder), self.job.seconds)

    def _show_dataset(self, folder: Path, seconds: float) -> None:
        ds = load_dataset(folder)
        self.dataset = ds
        self.progress.value = self.progress.max
        self.progress.bar_style = "success"
        self.output.value = (
            f"<span class='wb-output'>data set written to <code>{folder}</code> ({ds.n} curves, "
            f"hash {str(ds.content_hash)[:12]})</span>"
        )
        self.status.ok(f"generated {ds.n} curves in {seconds:.2f} s")
        self._preview(ds)
        self.ctx.announce(dataset=Path(folder))

    def _failed(self, exc: BaseException) -> None:
        self._finish_buttons()
        self.progress.bar_style = "danger"
        if isinstance(self.job, Job) and self.job.cancelled:
            self.status.warn(f"cancelled: nothing was written ({exc})")
        else:
            self.status.error(f"generation failed: {exc}")

    def _preview(self, ds) -> None:
        k = min(self.ctx.limits.max_preview_curves, ds.n)
        nr, sld = np.asarray(ds.nr[:k], dtype=float), np.asarray(ds.sld[:k], dtype=float)
        stack = self._stack or self.ctx.stack.stack
        with self.rq.batch_update():
            self.rq.data = []
            self.views.set_fresnel_reference(stack.substrate.sld, stack.substrate.isld, stack.ambient.sld)
            for i in range(k):
                self.views.add_scatter(x=nr[i, 0], y=nr[i, 1], mode="lines", name=f"curve {i}")
        with self.sld.batch_update():
            self.sld.data = []
            for i in range(k):
                self.sld.add_scatter(x=sld[i, 0], y=sld[i, 1], mode="lines", name=f"profile {i}")

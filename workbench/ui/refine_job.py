"""The Refine button's fit as a job process: its request, following it, attaching a later page, its result read back.

With the panel's "run as a separate process" tick (the one DREAM uses too) the fit of one curve runs
as a ``refine`` job (:func:`~workbench.batch.jobs.submit_job`): a
:class:`~workbench.workflows.refinement.RefineRequest` with the data file, the start stack, the free
parameters and their bounds, the method with its DE settings, max evaluations and the probe's start,
written into ``<workspace>/exports/fit-<curve>-<time>``.  It goes on when the page closes.  The panel
follows it through the run registry (:class:`~workbench.ui.background.FollowedJob`): the fit's
recorded steps (stage ``refine``: ``step``, ``chi2``) draw the live χ² chart, Stop stops the job, and
when it ends :func:`~workbench.workflows.refinement.load_result` reads the fit back as the
:class:`~workbench.analysis.refine.RefineResult` it was, shown exactly as a fit done in this kernel.
A page opened later follows the newest live one-curve refine job of the workspace.  Several curves
fitted together, and a curve the job could not reload as it is here, are fitted in this kernel.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..batch.jobs import submit_job
from ..data.family import stack_from_meta, stack_meta
from ..data.measured import Measurement
from ..store.registry import LIVE, RunRow
from ..workflows.refinement import RefineRequest, load_data, load_result
from .background import follow_job
from .contrasts_box import contrast_label
from .dream_box import job_data

JOINT_HERE = "curves fitted together run here (a joint fit's result cannot yet come back from a job)"


class RefineJobs:
    """A :class:`~workbench.ui.refine_panel.RefinePanel`'s fits as job processes (``host`` shows them)."""

    def __init__(self, host: Any) -> None:  # the RefinePanel (not imported: it imports this module)
        self.host = host
        self.last_run_id: str | None = None

    def request(
        self, names: list[str], bounds: dict[str, tuple[float, float]], options: dict[str, Any], probe: dict
    ) -> tuple[RefineRequest | None, str]:
        """The job's request for the panel's curve and start, or (None, why) when the curve cannot travel."""
        host = self.host
        sources, convention, why = job_data([host.data])
        if why:
            return None, why
        stamp = time.strftime("%Y%m%d-%H%M%S")
        request = RefineRequest(
            data=sources,
            dq_convention=convention,
            stack=stack_meta(host.start_stack),
            start="the Refine panel's start",
            free=names,
            bounds=bounds,
            scale=probe["scale"],
            background=probe["background"],
            seed=0,
            out=host.ctx.workspace.root / "exports" / f"fit-{contrast_label(sources[0])}-{stamp}",
            name=f"fit of {Path(sources[0]).name}",
            **options,
        )
        return request, ""

    def submit(self, request: RefineRequest) -> str:
        """Start the job; its run id (a bad request is a ValueError before anything is recorded)."""
        host = self.host
        return submit_job(host.ctx.workspace, "refine", request, limits=host.ctx.limits)

    def attach(self) -> str | None:
        """Follow the newest queued or running one-curve refine job of the workspace, if the panel runs nothing."""
        host = self.host
        if host.job is not None and host.job.running:
            return None
        registry = host.ctx.registry()
        if registry is None:
            return None
        live = [
            r
            for r in registry.list_runs(kind="refine")
            if r.status in LIVE and r.job is not None and len(_request_of(r).get("data") or []) == 1
        ]
        if not live:
            return None
        host.status.info(f"fit job {live[0].id} is running: following it…")
        host.convergence.set_traces({"chi2": ([], [])})
        host._iterations = []
        self.follow(live[0].id)
        return live[0].id

    def follow(self, run_id: str) -> None:
        host = self.host
        self.last_run_id = run_id
        host.run.disabled, host.dream.disabled, host.export.disabled, host.stop.disabled = True, True, True, False
        host._job_kind, host._fit_note = "refine", ""
        host.ctx.runs_changed()  # History lists the new job, live
        host.job = follow_job(
            host.ctx,
            run_id,
            on_update=self._update,
            on_end=self._end,
            on_error=host._failed,
            name="workbench-refine-follow",
        )

    def _update(self, steps: list[dict], logs: list[dict], run: RunRow) -> None:
        host = self.host
        new = [(int(e["step"]), float(e["chi2"])) for e in steps if e["stage"] == "refine" and "chi2" in e]
        if new:
            host._iterations = sorted({*host._iterations, *new})
            it = host._iterations
            host.convergence.set_traces({"chi2": ([i for i, _ in it], [c for _, c in it])})
        if run.status == "queued":
            position = host.ctx.registry().queue_position(run.id)
            host.status.info(
                f"fit job queued{f' (position {position})' if position else ''}: waits for a free job slot "
                f"({host.ctx.limits.max_concurrent_jobs} at once in this workspace)"
            )
        elif run.status == "running" and new:
            step, chi2 = host._iterations[-1]
            host.status.info(f"refining as a job process (pid {run.pid}, run {run.id}): step {step}, χ² {chi2:.5g}")

    def _end(self, run: RunRow) -> None:
        host = self.host
        host.ctx.runs_changed()
        if run.status != "completed":
            host._idle()
            if run.status == "stopped":
                host.status.warn(f"fit stopped: {run.error or 'stopped'}; no result (job {run.id})")
            else:
                host.status.error(f"fit failed: {run.error or 'the job process ended without saying why'}")
            return
        out = Path(str(run.params.get("out") or ""))
        try:
            data = self._data_of(run)
            result = load_result(out, data)
        except (OSError, ValueError, KeyError) as exc:
            host._idle()
            host.status.error(f"fit job {run.id} ended but its result could not be read: {exc}")
            return
        host._done(result)
        host.status.show(f"{host.status.text} (job {run.id}; files in {out})", host.status.level)

    def _data_of(self, run: RunRow) -> Measurement:
        """The fitted curve: the panel's own when it is the job's file, else the file reloaded (and drawn)."""
        host = self.host
        request = _request_of(run)
        source = Path(str((request.get("data") or [run.params.get("data")])[0]))
        data = host.data
        if data is not None and Path(str(data.source)).resolve() == source.resolve():
            return data
        data = load_data(source, request.get("dq_convention"))
        host.data, host.start_stack, host._loaded = data, None, None  # Refine again starts from a prediction
        shown = data.positive()
        if (stack := request.get("stack")) is not None:
            host.curves.set_fresnel_stack(stack_from_meta(stack))
        host.curves.show(
            rq={"data": {"x": shown.q, "y": shown.r, "dy": shown.dr}, "start": ([], []), "fit": ([], [])},
            sld={"start": ([], []), "fit": ([], [])},
        )
        return data


def _request_of(run: RunRow) -> dict:
    return (run.job or {}).get("request") or {}

"""The whole REF_L loop in the panels, as a person drives it (issue 20): the hand fit's family → film stack →
an ensemble of two prior-bounds models trained on the fly against the clock (one job) → a prediction of the
measured REF_L file with its bands and trust verdict, inside bounds typed in the Predict panel → a refinement
from the prediction that fits better.  No browser: the widgets' values and clicks, and the jobs waited for."""

from __future__ import annotations

import html
import shutil
import time

import numpy as np
import pytest

from workbench.ui.context import AppContext
from workbench.ui.predict_panel import PredictPanel
from workbench.ui.refine_panel import RefinePanel
from workbench.ui.stack_panel import StackPanel
from workbench.ui.train_panel import TrainPanel

REFL = "REFL_212592_reduced.txt"


def wait(job, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while job is not None and job.running and time.monotonic() < deadline:
        time.sleep(0.1)
    assert job is None or not job.running, "the job did not finish in time"
    time.sleep(0.2)  # the job's last callbacks (status, announce) run on its thread as it ends


def test_the_ref_l_loop_runs_in_the_panels(tmp_path, shared_data):
    real = shared_data / "real" / "ornl-ref-l-212592"
    ctx = AppContext(tmp_path / "ws", autosave_delay=0)
    shutil.copy(real / "manual_fit_spreadsheet.csv", ctx.workspace.root)  # uploaded in the Files tab
    shutil.copy(real / REFL, ctx.measured_dir)
    t0 = time.monotonic()

    # Film stack tab: the family from the hand fit, thickness ±20 %, SLD ±0.5
    stack = StackPanel(ctx)
    family = stack.family
    family.list_files()
    family.files.value = str(ctx.workspace.root / "manual_fit_spreadsheet.csv")
    assert "23 layers" in stack.status.text, stack.status.text
    family.ranges["thickness"].value, family.ranges["sld"].value = "20%", "0.5"
    family.use.click()
    assert stack.status.level == "ok", stack.status.text
    assert "23 layers" in family.summary.value and len(ctx.stack.stack.layers) == 23
    film = ctx.stack.stack
    b = film.bound(1, "thickness")
    assert (b.lo, b.hi) == pytest.approx((0.8 * film.layers[1].thickness, 1.2 * film.layers[1].thickness))

    # Train tab: an ensemble of two prior-bounds parameter models on the fly, against the clock, tiny budgets
    train = TrainPanel(ctx)
    train.model_kind.value = "param_bounds"
    assert train.on_the_fly.value and train.held_out.layout.display == ""
    train.held_out.value, train.batches_per_epoch.value = 64, 3
    train.batch_size.value, train.epochs.value, train.minutes.value = 16, 2, 0.05
    train.width.value, train.latent.value = 8, 32
    train.members.value = 2
    train.start.click()
    assert train.pause.disabled and not train.stop.disabled  # an ensemble stops, it does not pause
    wait(train.job, 240.0)
    assert train.status.level == "ok", train.status.text
    assert train.bundle is not None and "ensemble of 2 models trained in" in train.status.text
    assert "68 % band: covers" in train.metrics.value and "95 % band: covers" in train.metrics.value
    loss = train.loss.data[0]
    assert len(loss.x) >= 2 and np.all(np.isfinite(loss.y))  # both members' epochs on one chart
    assert list(loss.x) == list(range(1, len(loss.x) + 1))

    # Predict tab: the new model is chosen; its bounds box holds the training ranges
    predict = PredictPanel(ctx)
    assert predict.model.value == str(train.bundle)
    box = predict.bounds
    assert box.active and box.layout.display == "" and len(box.names) == len(film.free_parameters)
    name = "PEO_1.thickness" if "PEO_1.thickness" in box.names else box.names[0]
    lo, hi = box.family[box.names.index(name)]
    assert (box.lo[name].value, box.hi[name].value) == (lo, hi) and box.bounds() is None
    predict.source.value = "file"
    predict.measured.value = str(ctx.measured_dir / REFL)
    # bad bounds are named and nothing is predicted
    box.set(name, hi, lo)
    predict.run.click()
    assert predict.status.level == "error" and f"bounds of '{name}' must be finite with lo < hi" in predict.status.text
    assert predict.result is None
    box.set(name, lo - 10.0, hi)
    predict.run.click()
    assert predict.status.level == "error" and "outside the family's range" in predict.status.text
    assert f"[{lo:g}, {hi:g}]" in predict.status.text
    # narrowed bounds: the prediction lies inside them
    mid_lo, mid_hi = lo + 0.25 * (hi - lo), lo + 0.5 * (hi - lo)
    box.set(name, mid_lo, mid_hi)
    predict.run.click()
    assert predict.status.level == "ok", predict.status.text
    p = ctx.prediction
    assert mid_lo <= p.parameters[name] <= mid_hi and p.bounds == {name: [mid_lo, mid_hi]}
    assert "inside your prior bounds" in predict.metrics.value
    box.reset.click()  # back to the training ranges
    assert box.bounds() is None
    predict.run.click()
    assert predict.status.level == "ok", predict.status.text
    p = ctx.prediction
    assert lo <= p.parameters[name] <= hi and p.bounds is None
    # what a person sees: the status's χ²/N, the trust verdict with χ²/N and its N, both curves on the chart
    chi2 = p.metrics["chi2_per_point"]
    assert f"χ²/N {chi2:.3g}" in predict.status.text
    verdict = html.unescape(predict.trust.value)
    assert p.trust is not None and p.trust.words in verdict and f"χ²/N {chi2:.3g}" in verdict
    assert "points" in verdict and p.trust.level in ("ok", "warn")
    data, computed = predict.rq.data[0], predict.rq.data[1]
    assert len(data.x) > 300 and len(computed.y) == len(p.measurement.q) and np.all(np.array(computed.y) > 0)
    assert len(predict.sld.data[1].y) > 10 and p.stack is not None and len(p.stack.layers) == 23
    # the ensemble's bands: each parameter's 68 % and 95 % intervals, inside the training ranges
    assert p.bands is not None and p.bands.members == 2 and "Ensemble of 2 models" in predict.metrics.value
    assert "68 % interval" in predict.metrics.value and "95 % interval" in predict.metrics.value
    for row in p.bands.table():
        i = box.names.index(row["name"])
        assert box.family[i][0] <= row["lo95"] <= row["lo68"] <= row["value"] <= row["hi68"] <= row["hi95"]
        assert row["hi95"] <= box.family[i][1]

    # Refine tab: start from the prediction, refine scale, background and the film's thicknesses
    refine = RefinePanel(ctx)
    refine.on_shown()
    assert "start: the predicted stack" in refine.status.text, refine.status.text
    assert refine.start_stack == p.stack
    free = {"probe.scale", "probe.background"} | {r.pname for r in refine.rows if r.pname.endswith(".thickness")}
    for row in refine.rows:
        row.free.value = row.pname in free
    refine.max_nfev.value = 8 * (len(free) + 1)
    refine.run.click()
    wait(refine.job, 150.0)
    res = refine.result
    assert res is not None and refine.status.level in ("ok", "warn"), refine.status.text
    assert f"χ²/N = {res.chi2_per_point:.4g}" in refine.table.value
    assert res.chi2_per_point < chi2, (res.chi2_per_point, chi2)
    np.testing.assert_allclose(np.array(refine.rq.data[2].y), res.r_fit)
    print(f"REF_L loop in the panels: {time.monotonic() - t0:.1f} s; χ²/N {chi2:.3g} → {res.chi2_per_point:.3g}")

"""Predict panel: a model bundle applied to a test sample of a data set or to a measured file.

NR chart: the data (or ground truth) and the curve computed from the prediction; SLD chart:
ground truth and prediction; metrics (MSE, MAE, R² of the profile, log-R RMSE and χ²/N of the
curve); for a χ model, predicted against actual χ.  The prediction (data, predicted stack or
profile) is published for the Refine panel, and recorded as a 'predict' run in the History (model,
data set and sample or measured file, metrics under their stored keys).  On a measured file a
trust verdict (``wb-trust``, :mod:`workbench.analysis.trust`) says, in green or amber, whether the
predicted curve describes the data (χ²/N and its N), whether the curve lies inside the model's training
distribution and which parameters sit at a bound of the family.  Metrics show readable names
with units and a one-line meaning (``workbench.analysis.metrics.METRIC_LABELS``).  An ensemble
(:mod:`workbench.analysis.ensemble`) predicts its members' mean, draws its calibrated 68 %/95 % bands
on the SLD chart (traces tagged ``band``, the Refine panel's DREAM style) and gives each parameter
its intervals.  A prior-bounds model (``param_bounds``) predicts inside the ranges typed in the
prior-bounds box (:mod:`workbench.ui.bounds_box`; the ranges it was trained on by default; an ensemble of
such models clips its bands to them).  Headless twin:
:func:`predict_sample` and :func:`workbench.analysis.predict.predict_measurement`.
"""

from __future__ import annotations

import html
import json
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import ipywidgets as W
import numpy as np

from ..analysis.ensemble import EnsembleBands, coverage_lines, ensemble_bands
from ..analysis.metrics import metric_label, nr_metrics, parameter_unit, sld_metrics
from ..analysis.predict import Bounds, predict, predict_measurement, prior_bounds
from ..analysis.profile_fit import sorted_profile
from ..analysis.profile_nr import reflectivity_of_profile
from ..analysis.trust import Trust
from ..data.dataset import load_dataset
from ..data.measured import Measurement, load_measurement
from ..data.parameters import stacks_from_parameters
from ..physics import FilmStack, Probe, reflectivity, sld_profile
from ..physics.probe import DEFAULT_DQ_OVER_Q_FWHM
from ..plots.curves import _base
from ..plots.style import band_fill
from ..store.model_bundle import Ensemble, ModelBundle, is_ensemble, load_model
from ..store.recorded import RecordedRun, recorded_run
from ..training.chi_workflow import CHI_NAMES, chi_metrics, load_chi_scft, predict_chi
from .bounds_box import BoundsBox, plain_bounds
from .chart_widget import ChartWidget
from .common import Panel, Status, panel_guard, table_html
from .context import AppContext
from .curve_pair import CurvePair
from .train_panel import chi_data_allowed


@dataclass
class Prediction:
    """What a prediction produced; the Refine panel starts from it."""

    measurement: Measurement
    computed: np.ndarray
    profile: tuple[np.ndarray, np.ndarray]
    stack: FilmStack | None = None
    truth_profile: tuple[np.ndarray, np.ndarray] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, float] | None = None
    model: str = ""
    warning: str | None = None
    trust: Trust | None = None  # measured files: how far to trust the prediction
    bands: EnsembleBands | None = None  # an ensemble's bands of ρ (SLD models) or of the parameters
    bands_z: np.ndarray | None = None  # z of the profile bands, on the drawn profile's axis
    bands_note: str = ""  # how well the bands covered the ensemble's test split
    surface_z: float | None = None  # where the substrate surface lies on the drawn profile's z axis (None: unknown)
    bounds: dict[str, list[float]] | None = None  # prior bounds narrowed from the training ranges (param_bounds)


def _stack_profile(stack: FilmStack, n_z: int) -> tuple[np.ndarray, np.ndarray]:
    z, rho, _ = sld_profile(stack, n_points=n_z)
    return z[0] - z[0, 0], rho[0]  # data sets start each profile at z = 0


def predict_sample(
    bundle: ModelBundle | Ensemble, dataset: str | Path, index: int, bounds: Bounds | None = None
) -> Prediction:
    """Prediction for curve ``index`` of a data set, with its ground truth and metrics (headless).

    ``bounds``: a prior-bounds model's ranges, parameter name → [lo, hi] (the training ranges by default).
    """

    ds = load_dataset(dataset)
    if not 0 <= index < ds.n:
        raise ValueError(f"sample index {index} is out of range: the data set has curves 0..{ds.n - 1}")
    nr = np.asarray(ds.nr[index], dtype=np.float64)
    truth = np.asarray(ds.sld[index], dtype=np.float64)
    dq = ds.meta.get("probe", {}).get("dq_over_q", DEFAULT_DQ_OVER_Q_FWHM)
    probe = Probe(nr[0], dq_over_q=dq, dq_is_fwhm=True)
    dr = None if ds.dr is None else np.asarray(ds.dr[index], dtype=np.float64)
    m = Measurement(
        q=nr[0], r=nr[1], dr=dr, dq_sigma=probe.sigma, source=f"{ds.path.name}[{index}]", dq_convention_of_file="sigma"
    )
    pred = predict(bundle, nr[None], bounds)[0]
    stack, params = None, None
    if bundle.task == "nr_sld":
        profile = (pred[0], pred[1])
        computed = reflectivity_of_profile(pred[0][None], pred[1][None], probe)[0]
    else:
        stack = stacks_from_parameters(bundle.config, pred[None, :])[0]
        computed = np.asarray(reflectivity(stack, probe))[0]
        profile = _stack_profile(stack, truth.shape[1])
        names = bundle.config["data"]["parameters"]["names"]
        params = dict(zip(names, map(float, pred)))
    metrics = {**sld_metrics(truth[None], np.stack(profile)[None]), **nr_metrics(nr[1], computed, dr)}
    out = Prediction(m, computed, profile, stack, (truth[0], truth[1]), metrics, params, str(bundle.path))
    out.bounds = plain_bounds(bounds)
    return _with_bands(out, bundle, nr[1], 0.0)


def mark_surface(chart: ChartWidget, z: float | None) -> None:
    """A dotted vertical line at the substrate surface on an SLD chart (removed when ``z`` is None)."""
    dotted = {"dash": "dot", "color": "#6e7781"}
    line = {"type": "line", "x0": z, "x1": z, "yref": "paper", "y0": 0, "y1": 1, "line": dotted}
    label = {"x": z, "y": 1, "yref": "paper", "text": "substrate surface", "showarrow": False, "yanchor": "bottom"}
    with chart.batch_update():
        chart.layout.shapes = [line] if z is not None else []
        chart.layout.annotations = [a for a in chart.layout.annotations if a.text != "substrate surface"] + (
            [label] if z is not None else []
        )


def _with_bands(p: Prediction, bundle: ModelBundle | Ensemble, r: np.ndarray | None, shift: float) -> Prediction:
    """An ensemble's bands for the model-grid curve ``r`` (inside ``p.bounds``, a prior-bounds ensemble's);
    ``shift`` (Å) moves them onto the drawn profile's z."""
    if isinstance(bundle, Ensemble) and r is not None:
        p.bands = ensemble_bands(bundle, np.asarray(r)[None], bounds=p.bounds)
        p.bands_z = None if p.bands.z is None else p.bands.z[0] - shift
        lines = coverage_lines(bundle.calibration) or ["uncalibrated: Gaussian bands from the members' spread"]
        p.bands_note = f"Ensemble of {p.bands.members} models. " + "; ".join(lines)
    return p


def predict_file(
    bundle: ModelBundle | Ensemble, path: str | Path, dq_convention: str | None = None, bounds: Bounds | None = None
) -> Prediction:
    """Prediction for a measured file (headless); the curve is resampled onto the model's Q grid.

    ``bounds``: a prior-bounds model's ranges, parameter name → [lo, hi] (the training ranges by default).
    """

    m = load_measurement(path, dq_convention=dq_convention)
    m = m.merge_duplicate_q() if m.has_duplicate_q else m
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = predict_measurement(bundle, m, bounds)
    stack, params = None, None
    if result.profile is not None:
        profile = (result.profile[0], result.profile[1])
    else:
        stack = stacks_from_parameters(bundle.config, result.parameters[None, :])[0]
        profile = _stack_profile(stack, int(bundle.config["data"].get("sld_points", 900)))
        params = dict(zip(bundle.config["data"]["parameters"]["names"], map(float, result.parameters)))
    out = Prediction(
        m, result.computed, profile, stack, None, result.metrics, params, str(bundle.path), result.warning, result.trust
    )
    out.bounds = plain_bounds(bounds)
    if stack is not None:
        out.surface_z = -float(sld_profile(stack, n_points=2)[0][0, 0])  # the profile was moved to start at 0
    elif result.surface_shift is not None:
        out.surface_z = 0.0  # predict_measurement moved the profile so that the surface found is at z = 0
    return _with_bands(out, bundle, result.r_model, result.surface_shift or 0.0)


# the metrics the status line repeats, in words short enough for one line (the table has the full names)
STATUS_NAMES = {"sld_r2": "SLD R²", "log_r_rmse": "RMS log₁₀ R", "chi2_per_point": "χ²/N"}


def metrics_html(metrics: dict[str, Any]) -> str:
    """Metrics as a table of readable names with units; the one-line meaning shows on hover and the stored key
    (what the registry, the command line and notebooks use) in grey beside the name."""
    cell = "style='padding:2px 8px'"
    body = []
    for key, value in metrics.items():
        name, why = metric_label(key)
        shown = f"{value:.5g}" if isinstance(value, float) else html.escape(str(value))
        stored = f" <span style='color:#888;font-size:85%'>{html.escape(key)}</span>" if name != key else ""
        body.append(
            f"<tr><td {cell} title='{html.escape(why, quote=True)}'>{html.escape(name)}{stored}</td>"
            f"<td {cell}>{shown}</td><td {cell}><span style='color:#666'>{html.escape(why)}</span></td></tr>"
        )
    head = "".join(f"<th style='padding:2px 8px;text-align:left'>{c}</th>" for c in ("metric", "value", "meaning"))
    return f"<table class='wb-table'><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def trust_html(trust: Trust) -> str:
    """The trust verdict in its colour (green ok, amber warn, like the refinement's), then its numbers."""
    color = "#1a7f37" if trust.level == "ok" else "#9a6700"
    mark = "✓" if trust.level == "ok" else "⚠"
    return (
        f"<b>Trust</b>: <span class='wb-trust-verdict wb-{trust.level}' style='color:{color}'>{mark} "
        f"{html.escape(trust.words)}</span>"
    )


def parameter_rows(p: Prediction) -> list[dict[str, Any]]:
    """The predicted parameters' table rows; an ensemble's give the 68 % and 95 % intervals too."""
    rows = [{"parameter": k, "value": v, "unit": parameter_unit(k)} for k, v in (p.parameters or {}).items()]
    if p.bands is not None and p.bands.names:
        for row, band in zip(rows, p.bands.table()):
            row["± 68 %"] = (band["hi68"] - band["lo68"]) / 2
            row["68 % interval"] = f"{band['lo68']:.4g} – {band['hi68']:.4g}"
            row["95 % interval"] = f"{band['lo95']:.4g} – {band['hi95']:.4g}"
    return rows


def draw_profile_bands(chart: ChartWidget, z: np.ndarray | None, bands: EnsembleBands | None) -> None:
    """An ensemble's 68 %/95 % bands of ρ on the SLD chart (traces tagged ``band``); without bands, remove them."""
    kept = tuple(t for t in chart.data if t.meta != "band")
    if len(kept) != len(chart.data):
        chart.data = kept
    if bands is None or z is None:
        return
    with chart.batch_update():
        for level in ("95 %", "68 %"):
            lo, hi = (edge[0] for edge in bands.bands[level])
            edge = {"mode": "lines", "line": {"width": 0}, "meta": "band", "legendgroup": level}
            chart.add_scatter(x=z, y=lo, name=f"{level} band (low)", showlegend=False, **edge)
            chart.add_scatter(x=z, y=hi, name=f"{level} band", fill="tonexty", fillcolor=band_fill(level), **edge)


class PredictPanel(Panel, W.VBox):
    CHARTS: ClassVar[dict[str, str]] = {"prediction R(Q)": "rq", "prediction SLD": "sld"}

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        style = {"description_width": "9em"}
        self.model = W.Dropdown(options=[], description="model", style=style, layout=W.Layout(width="34em"))
        self.source = W.ToggleButtons(options=[("test sample", "sample"), ("measured file", "file")], value="sample")
        self.dataset = W.Dropdown(options=[], description="data set", style=style, layout=W.Layout(width="34em"))
        self.index = W.BoundedIntText(value=0, min=0, max=10**9, description="sample index", style=style)
        self.measured = W.Dropdown(options=[], description="measured file", style=style, layout=W.Layout(width="34em"))
        self.dq = W.Dropdown(
            options=[("as the file says", ""), ("FWHM", "fwhm"), ("1σ", "sigma")],
            value="",
            description="dQ column",
            style=style,
        )
        self.chi_folder = W.Text(
            value=ctx.panel_settings("train").get("chi_folder", ""),
            description="χ data folder",
            style=style,
            layout=W.Layout(width="34em"),
        )
        self.bounds = BoundsBox()  # a prior-bounds model's ranges; hidden for other models
        self.refresh = W.Button(icon="refresh", tooltip="refresh the lists", layout=W.Layout(width="3em"))
        self.run = W.Button(description="Predict", icon="magic", button_style="primary")
        self.status = Status()
        self.trust = W.HTML()  # the trust verdict of a prediction on a measured file, above the metrics
        self.trust.add_class("wb-trust")
        self.metrics = W.HTML()
        self.curves = CurvePair(
            ("data", "computed from the prediction"), ("ground truth", "prediction"), markers=("data",)
        )
        self.rq, self.sld = self.curves.rq, self.curves.sld
        self._chi: ChartWidget | None = None  # made for the first χ prediction (only χ models need it)
        self.result: Prediction | None = None
        self.refresh.on_click(lambda _: self.refresh_lists())
        self.run.on_click(self._predict)
        self.source.observe(self._layout, "value")
        self.model.observe(self._layout, "value")
        ctx.follow("bundle", lambda path: self.refresh_lists(select_model=path))
        ctx.follow("dataset", lambda path: self.refresh_lists())
        ctx.follow("measurement", lambda path: self.refresh_lists(select_measured=path))
        self.nr_box = self.curves.box
        self.chi_box = W.HBox()
        super().__init__(
            [
                W.HTML("<b>Predict</b> with a trained model"),
                W.HBox([self.model, self.refresh]),
                self.source,
                self.dataset,
                self.index,
                self.measured,
                self.dq,
                self.chi_folder,
                self.bounds,
                self.run,
                self.status,
                self.trust,
                self.metrics,
                self.nr_box,
                self.chi_box,
            ]
        )
        self.add_class("wb-predict-panel")
        for widget, name in ((self.model, "model"), (self.dataset, "dataset"), (self.measured, "measured")):
            widget.add_class(f"wb-predict-{name}")  # the choosers a person must see (a browser test looks)
        self.refresh_lists()

    @property
    def chi(self) -> ChartWidget:
        """The χ predicted-vs-actual chart, built when first needed."""
        if self._chi is None:
            self._chi = ChartWidget(
                _base(
                    title={"text": "χ: predicted vs actual"},
                    xaxis={"title": "actual χ"},
                    yaxis={"title": "predicted χ"},
                    height=360,
                )
            )
            self.chi_box.children = [self._chi]
            self.ctx.charts["prediction chi"] = self._chi
        return self._chi

    def on_shown(self) -> None:
        """Models, data sets and measurements added since, the current choices kept."""
        self.refresh_lists()

    def refresh_lists(self, select_model=None, select_measured=None) -> None:
        def fill(dropdown, paths, select):
            options = [(p.name, str(p)) for p in paths]
            values = [v for _, v in options]
            with dropdown.hold_sync():  # options and value in one message
                dropdown.options = options
                if select is not None and str(select) in values:
                    dropdown.value = str(select)
                elif dropdown.value is None and values:
                    dropdown.value = values[0]

        fill(self.model, self.ctx.models(), select_model)
        fill(self.dataset, self.ctx.datasets(), None)
        fill(self.measured, self.ctx.measurements(), select_measured)
        if select_measured is not None:
            self.source.value = "file"
        self._layout()
        if not self.model.options:  # a first visit: say what comes before this step
            self.status.info("No model yet: train one in the Train tab, or upload a model bundle in the Files tab.")
        elif self.status.text.startswith("No model yet"):
            self.status.info("")

    def _task(self) -> str | None:
        if not self.model.value:
            return None

        if is_ensemble(self.model.value):
            return "ensemble"  # of NR models; never χ
        try:
            return json.loads((Path(self.model.value) / "config.json").read_text())["task"]
        except Exception:  # noqa: BLE001
            return None

    def _layout(self, _=None) -> None:
        self.bounds.set_model(self.model.value)  # shows itself for a prior-bounds model only
        chi = self._task() == "chi"
        sample = self.source.value == "sample"
        show = [
            (self.source, not chi),
            (self.dataset, sample and not chi),
            (self.measured, not sample and not chi),
            (self.dq, not sample and not chi),
            (self.chi_folder, chi),
            (self.nr_box, not chi),
            (self.chi_box, chi),
        ]
        for w, visible in show:
            w.layout.display = "" if visible else "none"

    def clear(self) -> None:
        """Forget the last result before a new prediction: a failed one must not leave the previous on show."""
        self.result = None
        self.metrics.value = ""
        self.trust.value = ""
        self.curves.clear(rq=("data", "computed from the prediction"), sld=("ground truth", "prediction"))
        draw_profile_bands(self.sld, None, None)
        self.status.info("predicting…")

    @panel_guard
    def _predict(self, _=None) -> None:
        self.clear()
        if not self.model.value:
            raise ValueError("no model: train one in the Train panel or upload a bundle in the Files panel")
        bundle = load_model(self.model.value)
        if bundle.task == "chi":
            self._predict_chi(bundle)
            return
        bounds = self.bounds.bounds() if self.bounds.active else None
        if bounds:
            prior_bounds(bundle, bounds)  # checked before anything runs or is recorded: the error names the parameter
        if self.source.value == "sample":
            if not self.dataset.value:
                raise ValueError("no data set to take a test sample from")
            index = int(self.index.value)
            params = {"source": "test sample", "data": Path(self.dataset.value).name, "sample_index": index}
            with self._recorded(bundle, params, bounds) as run:
                result = predict_sample(bundle, self.dataset.value, index, bounds)
                self._record_result(run, result)
        else:
            if not self.measured.value:
                raise ValueError("no measured file: upload one in the Files panel")
            params = {"source": "measured file", "data": Path(self.measured.value).name}
            params["dq_column"] = self.dq.value or "as the file says"
            with self._recorded(bundle, params, bounds) as run:
                result = predict_file(bundle, self.measured.value, self.dq.value or None, bounds)
                self._record_result(run, result)
        self.show(result)
        self.ctx.announce(prediction=result)

    @contextmanager
    def _recorded(
        self, bundle: ModelBundle | Ensemble, params: dict[str, Any], bounds: Bounds | None = None
    ) -> Iterator[RecordedRun | None]:
        """Record the prediction as a 'predict' run (model, data set or file, sample index, prior bounds narrowed,
        metrics) in the History."""
        registry = self.ctx.registry()
        if registry is None:  # the dashboard still predicts; the History cannot show it
            yield None
            return
        path = str(bundle.path or self.model.value)
        model = bundle.name
        params = {"model_name": model, "model": path, **params, **({"bounds": plain_bounds(bounds)} if bounds else {})}
        what = params["data"] + (f"[{params['sample_index']}]" if "sample_index" in params else "")
        try:
            with recorded_run(registry, "predict", name=f"{what} with {model}", params=params, model=path) as run:
                yield run
        finally:
            self.ctx.runs_changed()

    @staticmethod
    def _record_result(run: RecordedRun | None, p: Prediction) -> None:
        if run is None:
            return
        run.metrics.update({k: float(v) for k, v in p.metrics.items() if isinstance(v, (int, float))})
        if p.parameters:
            run.metrics["predicted"] = dict(p.parameters)
        if p.warning:
            run.log(p.warning, "warning")
        if p.trust is not None:
            run.metrics["trust"] = p.trust.level
            run.log(f"trust: {p.trust.words}", "warning" if p.trust.level == "warn" else "info")

    def show(self, p: Prediction) -> None:
        self.result = p
        m = p.measurement.positive()
        tz, tr = p.truth_profile if p.truth_profile is not None else ([], [])
        self.curves.set_fresnel_stack(p.stack if p.stack is not None else self.ctx.stack.stack)  # R/R_F's substrate
        self.curves.show(
            rq={
                "data": {
                    "x": m.q,
                    "y": m.r,
                    "dy": m.dr,
                    "name": "ground truth" if p.truth_profile is not None else "data",
                },
                "computed from the prediction": (p.measurement.q, p.computed),
            },
            # drawn in z order: a network's predicted z row need not increase, and joined in row order
            # the line zigzags across the chart
            sld={"ground truth": (tz, tr), "prediction": sorted_profile(*p.profile)},
        )
        numbers = {k: float(v) for k, v in p.metrics.items() if isinstance(v, (int, float))}
        text = "<b>Metrics</b>" + metrics_html(numbers)
        draw_profile_bands(self.sld, p.bands_z, p.bands)
        mark_surface(self.sld, p.surface_z)
        if p.parameters:
            text += "<b>Predicted parameters</b>" + table_html(parameter_rows(p))
        if p.bounds:
            narrowed = ", ".join(f"{k} {lo:.4g}–{hi:.4g}" for k, (lo, hi) in p.bounds.items())
            text = f"<div class='wb-prior-bounds'>inside your prior bounds: {html.escape(narrowed)}</div>" + text
        if p.bands_note:
            text = f"<div class='wb-ensemble-bands'>{html.escape(p.bands_note)}</div>" + text
        if p.warning:
            text = f"<div style='color:#9a6700'>⚠ {html.escape(p.warning)}</div>" + text
        self.metrics.value = text
        self.trust.value = trust_html(p.trust) if p.trust is not None else ""
        summary = ", ".join(f"{STATUS_NAMES[k]} {p.metrics[k]:.3g}" for k in STATUS_NAMES if k in p.metrics)
        self.status.ok(f"predicted {Path(str(p.measurement.source)).name} with {Path(p.model).name}: {summary}")

    def _predict_chi(self, bundle: ModelBundle | Ensemble) -> None:
        folder = Path(self.chi_folder.value.strip() or ".").expanduser()
        if not chi_data_allowed(self.ctx, folder):
            raise ValueError(f"χ data must be a folder inside the workspace {self.ctx.workspace.root}")
        with self._recorded(bundle, {"source": "χ data folder", "data": folder.name}) as run:
            self._chi_result(bundle, folder, run)

    def _chi_result(self, bundle: ModelBundle, folder: Path, run: RecordedRun | None) -> None:
        _, profiles, chi, _, exp_sld = load_chi_scft(folder)
        source = {**bundle.normalization, "model": bundle.model}
        pred, flags = predict_chi(source, profiles)
        names = list(bundle.normalization.get("chi_names", CHI_NAMES))
        with self.chi.batch_update():
            self.chi.data = []
            for j, name in enumerate(names):
                self.chi.add_scatter(x=chi[:, j], y=pred[:, j], mode="markers", name=name, marker={"size": 4})
            lo, hi = float(min(chi.min(), pred.min())), float(max(chi.max(), pred.max()))
            self.chi.add_scatter(
                x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = actual", line={"dash": "dot", "color": "#888"}
            )
        metrics = chi_metrics(source, profiles, chi)
        rows = [{"χ": n, "MAE": metrics[n]["mae"], "RMSE": metrics[n]["rmse"], "R²": metrics[n]["r2"]} for n in names]
        exp_pred, exp_flags = predict_chi(source, exp_sld)
        exp_rows = [
            {
                "χ": n,
                "experiment.txt": float(exp_pred[0, j]),
                "flag": "outside training range" if exp_flags.chi[0, j] else "",
            }
            for j, n in enumerate(names)
        ]
        self.metrics.value = (
            "<b>All profiles in the folder</b>"
            + table_html(rows)
            + "<b>Experimental profile</b>"
            + table_html(exp_rows)
        )
        if run is not None:
            run.metrics.update({n: {k: float(metrics[n][k]) for k in ("mae", "rmse", "r2")} for n in names})
            run.metrics["experiment"] = {n: float(exp_pred[0, j]) for j, n in enumerate(names)}
            run.metrics["flagged_profiles"] = int(flags.any.sum())
        self.status.ok(f"χ predicted for {len(profiles)} profiles; {int(flags.any.sum())} flagged")

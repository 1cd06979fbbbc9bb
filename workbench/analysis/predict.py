"""Predictions from a model bundle: on data-set curves or on measured files, de-normalised.

An SLD model predicts the z row of a profile point by point like its ρ row, so the raw z row
jitters (issue 20: 382 of 899 steps went backwards, ~4 Å).  Every data set the workbench (and
pyreflect) generates has an evenly spaced z row, z_j = z_0 + j·Δz, so :func:`predict` replaces the
predicted z row by its least-squares straight line (:func:`uniform_z`): strictly increasing, and
the per-point errors average out instead of folding the profile back on itself.

A data set's profile starts at the left edge of refl1d's range, a few roughnesses below the
substrate's top, so its z = 0 is not a physical place.  :func:`predict_measurement` fits the
model's stack family to the predicted profile (:func:`~workbench.analysis.profile_fit.stack_from_profile`),
which finds where the substrate surface lies, and shifts the profile so that the surface is at
z = 0 (``MeasuredPrediction.surface_shift`` says by how much; z < 0 is the substrate).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.measured import Measurement, resample
from ..data.parameters import stacks_from_parameters
from ..data.preprocess import Normalizer, log_reflectivity
from ..models.inference import inference_module
from ..physics import FilmStack, reflectivity
from ..store.model_bundle import Ensemble, ModelBundle
from .metrics import nr_metrics
from .profile_fit import ProfileFit, stack_from_profile
from .profile_nr import reflectivity_of_profile
from .trust import Trust, assess, at_bounds, input_distance


def uniform_z(z: np.ndarray) -> np.ndarray:
    """Predicted z rows (N, nZ) replaced by their least-squares lines z_j = a + b·j, b > 0 (strictly increasing)."""
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    j = np.arange(z.shape[1], dtype=np.float64)
    jc = j - j.mean()
    slope = (z - z.mean(axis=1, keepdims=True)) @ jc / max(float(jc @ jc), 1.0)
    slope = np.maximum(slope, 1e-6)  # a model whose z row falls overall still gets an increasing axis
    start = z.mean(axis=1) - slope * j.mean()
    return start[:, None] + slope[:, None] * j[None, :]


def model_inputs(bundle: ModelBundle, r: np.ndarray) -> torch.Tensor:
    """Normalised network input from R (N, nQ) on the model's Q grid."""
    pre = bundle.normalization["preprocess"]
    x = (
        log_reflectivity(np.asarray(r, dtype=np.float64), pre["clip_min"])
        if pre["apply_log_transform"]
        else np.asarray(r)
    )
    return torch.as_tensor(Normalizer.from_dict(bundle.normalization["x"]).transform(x))


Bounds = Mapping[str, Sequence[float]]


def takes_bounds(bundle: ModelBundle | Ensemble) -> bool:
    """Whether the model reads prior bounds beside the curve (a ``param_bounds`` model)."""
    member = bundle.members[0] if isinstance(bundle, Ensemble) else bundle
    return (member.normalization.get("y") or {}).get("method") == "prior_bounds"


def prior_bounds(bundle: ModelBundle | Ensemble, given: Bounds | None = None) -> np.ndarray:
    """The prior ranges (P, 2) of a prior-bounds model: ``given`` (parameter name → [lo, hi]), else its family's.

    Every range must lie inside the family's range the model was trained on, with lo < hi; the errors
    name the parameter.
    """
    member = bundle.members[0] if isinstance(bundle, Ensemble) else bundle
    y = member.normalization.get("y") or {}
    if y.get("method") not in ("bounds", "prior_bounds"):
        raise ValueError("bounds apply to a layer-parameter model; this model predicts an SLD profile")
    names, family = list(y["names"]), np.asarray(y["bounds"], dtype=np.float64)
    out = family.copy()
    if not given:
        return out
    if not takes_bounds(bundle):
        raise ValueError(
            "this parameter model was trained for its family's fixed ranges and takes no bounds; train a prior-bounds "
            "model (--model param_bounds) to predict inside ranges you choose"
        )
    unknown = [k for k in given if k not in names]
    if unknown:
        raise ValueError(
            f"bounds given for {', '.join(map(repr, unknown))}: not a free parameter of the model "
            f"(its parameters: {', '.join(names)})"
        )
    for name, pair in given.items():
        try:
            lo, hi = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise ValueError(f"bounds of {name!r} must be two numbers [lo, hi]; got {pair!r}") from None
        i = names.index(name)
        f_lo, f_hi = family[i]
        slack = 1e-9 * (f_hi - f_lo)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo >= hi:
            raise ValueError(f"bounds of {name!r} must be finite with lo < hi; got [{lo:g}, {hi:g}]")
        if lo < f_lo - slack or hi > f_hi + slack:
            raise ValueError(
                f"bounds of {name!r} [{lo:g}, {hi:g}] lie outside the family's range [{f_lo:g}, {f_hi:g}] the model "
                "was trained on"
            )
        out[i] = max(lo, f_lo), min(hi, f_hi)
    return out


def _range_columns(bundle: ModelBundle, bounds: np.ndarray, n: int) -> torch.Tensor:
    """The network's range columns (n, 2P): the prior ranges as fractions of the family's ranges."""
    family = np.asarray(bundle.normalization["y"]["bounds"], dtype=np.float64)
    frac = (bounds - family[:, :1]) / (family[:, 1:] - family[:, :1])
    row = np.concatenate([frac[:, 0], frac[:, 1]]).astype(np.float32)
    return torch.as_tensor(np.repeat(row[None, :], n, axis=0))


@torch.no_grad()
def predict(bundle: ModelBundle | Ensemble, r: np.ndarray, bounds: Bounds | None = None) -> np.ndarray:
    """Physical predictions for R curves (N, nQ) or NR arrays (N, 2, nQ); of an ensemble, its members' mean.

    NR → SLD models give profiles (N, 2, nZ) (rows z from the profile start, evenly spaced
    (:func:`uniform_z`), ρ in 1e-6 Å⁻²);
    NR → parameter models give the free parameters (N, P) inside their bounds: a prior-bounds model
    inside ``bounds`` (parameter name → [lo, hi], see :func:`prior_bounds`; the family's by default).
    """
    if isinstance(bundle, Ensemble):  # the bands: workbench.analysis.ensemble
        return np.mean([predict(member, r, bounds) for member in bundle.members], axis=0)
    ranges = prior_bounds(bundle, bounds) if bounds or takes_bounds(bundle) else None
    r = np.asarray(r)
    if r.ndim == 3:
        r = r[:, 1, :]
    if r.ndim == 1:
        r = r[None, :]
    n_q = len(bundle.config["data"]["q"])
    if r.shape[1] != n_q:
        raise ValueError(f"the model expects curves on its {n_q}-point Q grid, got {r.shape[1]} points; resample first")
    device = next(bundle.model.parameters()).device
    x = model_inputs(bundle, r)
    if takes_bounds(bundle):
        x = torch.cat([x, _range_columns(bundle, ranges, len(x))], dim=1)
    x = x.to(device)
    if bundle.inference is None:
        bundle.inference = inference_module(bundle.model, x[:1])
    out = bundle.inference(x).cpu().numpy()
    y = bundle.normalization["y"]
    if y.get("method") == "prior_bounds":
        return ranges[:, 0] + out * (ranges[:, 1] - ranges[:, 0])
    if y.get("method") == "bounds":
        b = np.asarray(y["bounds"])
        return b[:, 0] + out * (b[:, 1] - b[:, 0])
    profiles = Normalizer.from_dict(y).inverse(out)
    if profiles.ndim == 3 and profiles.shape[1] == 2:
        profiles[:, 0, :] = uniform_z(profiles[:, 0, :])
    return profiles


def family_fit(bundle: ModelBundle, z: np.ndarray, rho: np.ndarray) -> tuple[FilmStack, ProfileFit] | None:
    """The bundle's stack family fitted to a predicted profile, and its template (None: no stack recorded, no fit)."""
    info = (bundle.config.get("data") or {}).get("stack") or {}
    if not info.get("layer_desc"):
        return None
    try:
        template = FilmStack.from_pyreflect(info["layer_desc"], info.get("layer_bound"))
        return template, stack_from_profile(template, z, rho, max_nfev=200)
    except ValueError:
        return None


def _surface(fit: ProfileFit | None, z: np.ndarray) -> float | None:
    surface = None if fit is None else -fit.z_offset
    return surface if surface is not None and z[0] < surface < z[-1] else None  # outside: the family does not fit


def substrate_surface(bundle: ModelBundle, z: np.ndarray, rho: np.ndarray) -> float | None:
    """Where the substrate's top lies on a predicted profile's z axis, from a fit of the bundle's stack family.

    None when the bundle records no stack (e.g. a pyreflect import), the fit fails, or it puts the
    surface outside the profile (a profile the family does not describe).
    """
    fitted = family_fit(bundle, z, rho)
    return _surface(None if fitted is None else fitted[1], z)


@dataclass
class MeasuredPrediction:
    q: np.ndarray  # the measurement's Q
    r: np.ndarray  # measured R
    dr: np.ndarray | None
    profile: np.ndarray | None  # (2, nZ) for SLD models
    parameters: np.ndarray | None  # (P,) for parameter models
    computed: np.ndarray  # R computed from the prediction at the measured Q, with its resolution
    outside: np.ndarray  # model Q points the measurement does not cover
    metrics: dict[str, float]  # χ²/N over the measured points inside the model's Q range
    warning: str | None
    surface_shift: float | None = None  # Å subtracted from the model's z so that the substrate surface is at z = 0
    trust: Trust | None = None  # how far to trust it: fit, place in the training distribution, bounds
    r_model: np.ndarray | None = None  # the measured R on the model's Q grid, as the network saw it


def predict_measurement(
    bundle: ModelBundle, measurement: Measurement, bounds: Bounds | None = None
) -> MeasuredPrediction:
    """Predict from a measured curve: resample onto the model's Q grid (warning where it is not covered).

    The result carries its :class:`~workbench.analysis.trust.Trust`: χ²/N on the measured points inside
    the model's Q range (those outside named and left out), the curve's distance to the training
    inputs, and the parameters predicted at a bound of the family (of ``bounds``, for a prior-bounds model).
    """
    ranges = prior_bounds(bundle, bounds) if bounds or takes_bounds(bundle) else None
    m = measurement.merge_duplicate_q() if measurement.has_duplicate_q else measurement
    q_model = np.asarray(bundle.config["data"]["q"])
    rs = resample(m, q_model)
    warning = None
    r_in = rs.r.copy()
    dr_in = None if rs.dr is None else rs.dr.copy()
    if rs.outside.any():
        inside = ~rs.outside
        r_in[rs.outside] = np.interp(q_model[rs.outside], q_model[inside], rs.r[inside])
        if dr_in is not None:
            dr_in[rs.outside] = np.interp(q_model[rs.outside], q_model[inside], rs.dr[inside])
        warning = (
            f"the measurement covers Q {m.q[0]:.4g}–{m.q[-1]:.4g} Å⁻¹ but the model was trained on "
            f"{q_model[0]:.4g}–{q_model[-1]:.4g} Å⁻¹: {int(rs.outside.sum())} of {q_model.size} model points were "
            "filled "
            "with the nearest measured values"
        )
        warnings.warn(warning, stacklevel=2)
    pred = predict(bundle, r_in[None, :], bounds)[0]
    probe = m.probe()
    surface = None
    if bundle.task == "nr_sld":
        computed = reflectivity_of_profile(pred[0][None], pred[1][None], probe)[0]
        fitted = family_fit(bundle, pred[0], pred[1])
        surface = _surface(None if fitted is None else fitted[1], pred[0])
        bound = [] if fitted is None else _fit_at_bound(*fitted)
        if surface is not None:
            pred = pred.copy()
            pred[0] -= surface
        profile, params = pred, None
    else:
        stack = stacks_from_parameters(bundle.config, pred[None, :])[0]
        computed = reflectivity(stack, probe)[0]
        profile, params = None, pred
        info = bundle.config["data"]["parameters"]
        bound = at_bounds(info["names"], pred, np.asarray(info["bounds"]) if ranges is None else ranges)
    in_range = (m.q >= q_model[0]) & (m.q <= q_model[-1])
    dr = None if m.dr is None else m.dr[in_range]
    metrics = nr_metrics(m.r[in_range], computed[in_range], dr)
    trust = assess(
        metrics.get("chi2_per_point"),
        int(in_range.sum()),
        _left_out(m.q, q_model),
        _distance(bundle, r_in, dr_in),
        bundle.normalization.get("input_distribution"),
        bound,
    )
    return MeasuredPrediction(
        m.q, m.r, m.dr, profile, params, computed, rs.outside, metrics, warning, surface, trust, r_in
    )


def _fit_at_bound(template: FilmStack, fit: ProfileFit) -> list[str]:
    """The family's parameters at a bound in the fit to the predicted profile, with their values and bounds."""
    bounds = np.array([[b.lo, b.hi] for b in template.free_parameters])
    return [f"{w} (fitted to the predicted profile)" for w in at_bounds(fit.names, fit.values, bounds)]


def _left_out(q: np.ndarray, q_model: np.ndarray) -> str | None:
    """The measured points outside the model's Q range, in words (None: there are none)."""
    below, above = q[q < q_model[0]], q[q > q_model[-1]]
    if not below.size and not above.size:
        return None
    parts = [
        f"{n} {side} {edge:.4g}"
        for n, side, edge in ((below.size, "below Q", q_model[0]), (above.size, "above Q", q_model[-1]))
        if n
    ]
    return (
        f"{below.size + above.size} measured points outside the model's Q range left out of χ²/N: "
        + " and ".join(parts)
        + " Å⁻¹"
    )


def _distance(bundle: ModelBundle, r: np.ndarray, dr: np.ndarray | None) -> float | None:
    """The measured curve's distance to the training inputs (None: the bundle stores no training distribution)."""
    dist = bundle.normalization.get("input_distribution")
    if not dist:
        return None
    x = model_inputs(bundle, r[None, :]).numpy().astype(np.float64)
    return float(input_distance(dist, x, _input_noise(bundle, r, dr))[0])


def _input_noise(bundle: ModelBundle, r: np.ndarray, dr: np.ndarray | None) -> np.ndarray | None:
    """The measurement's variance in the network's input units (log10 R, normalised), where it is known."""
    pre = bundle.normalization["preprocess"]
    x_norm = bundle.normalization["x"]
    method, stats = x_norm.get("method"), x_norm.get("stats") or {}
    if dr is None or not pre["apply_log_transform"] or method not in ("minmax", "zscore"):
        return None
    if method == "minmax":
        scale = np.ravel(np.asarray(stats["max"], dtype=np.float64) - np.asarray(stats["min"], dtype=np.float64))
    else:
        scale = np.ravel(np.asarray(stats["std"], dtype=np.float64))
    scale = np.where(scale > 0, scale, 1.0)  # one value (global) or one per Q point, as the normaliser divides
    rel = np.abs(dr) / np.maximum(r, pre["clip_min"])
    return (np.minimum(rel, 10.0) / (np.log(10.0) * scale)) ** 2

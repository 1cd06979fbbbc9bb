"""Metrics done right: in physical units, on the held-out test split, on a common z grid."""

from __future__ import annotations

import numpy as np

GOOD_CHI2 = 2.0  # χ²/N up to this: the model describes the data within about their error bars
POOR_CHI2 = 3.0  # χ²/N above this: a poor fit (systematic misfit, or error bars too small)


def r2_score(true: np.ndarray, pred: np.ndarray, axis=None) -> np.ndarray | float:
    """1 − SS_res / SS_tot (pooled over ``axis``; per column with ``axis=0``)."""
    true = np.asarray(true, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    ss_res = np.sum((true - pred) ** 2, axis=axis)
    ss_tot = np.sum((true - np.mean(true, axis=axis, keepdims=axis is not None)) ** 2, axis=axis)
    return 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, np.nan)


def profile_on_grid(z: np.ndarray, rho: np.ndarray, z_target: np.ndarray) -> np.ndarray:
    """ρ of each profile interpolated onto the matching target z row (constant beyond the ends)."""
    z, rho, z_target = (np.asarray(a, dtype=np.float64) for a in (z, rho, z_target))
    out = np.empty_like(z_target)
    for i in range(z.shape[0]):
        order = np.argsort(z[i])
        out[i] = np.interp(z_target[i], z[i][order], rho[i][order])
    return out


def sld_metrics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """MSE, MAE and R² of ρ (1e-6 Å⁻²) for (N, 2, nZ) profiles; the prediction is put on the true z grid."""
    rho_pred = profile_on_grid(pred[:, 0], pred[:, 1], true[:, 0])
    rho_true = np.asarray(true[:, 1], dtype=np.float64)
    err = rho_pred - rho_true
    return {
        "sld_mse": float(np.mean(err**2)),
        "sld_mae": float(np.mean(np.abs(err))),
        "sld_r2": float(r2_score(rho_true, rho_pred)),
    }


def nr_metrics(
    r_data: np.ndarray, r_model: np.ndarray, dr: np.ndarray | None = None, floor: float = 1e-10
) -> dict[str, float]:
    """log-R RMSE over points with R > 0, and χ²/N against dR where it is known."""
    r_data = np.asarray(r_data, dtype=np.float64)
    r_model = np.asarray(r_model, dtype=np.float64)
    ok = (r_data > 0) & (r_model > 0)
    out = {
        "log_r_rmse": float(np.sqrt(np.mean((np.log10(r_data[ok]) - np.log10(r_model[ok])) ** 2)))
        if ok.any()
        else float("nan")
    }
    if dr is not None:
        dr = np.maximum(np.asarray(dr, dtype=np.float64), floor)
        out["chi2_per_point"] = float(np.mean(((r_data - r_model) / dr) ** 2))
    return out


def parameter_metrics(true: np.ndarray, pred: np.ndarray, names: list[str]) -> dict[str, dict[str, float]]:
    """Per-parameter MAE (physical units) and R²."""
    mae = np.mean(np.abs(np.asarray(pred) - np.asarray(true)), axis=0)
    r2 = np.atleast_1d(r2_score(true, pred, axis=0))
    return {"mae": dict(zip(names, map(float, mae))), "r2": dict(zip(names, map(float, r2)))}


# Readable names for the metric keys above (the keys stay as they are in the registry, bundles and sweeps):
# key → (name with units, one line saying what it measures).
METRIC_LABELS: dict[str, tuple[str, str]] = {
    "sld_mse": (
        "SLD profile error (mean square, (10⁻⁶ Å⁻²)²)",
        "mean of (predicted ρ − true ρ)² over the depth points of the profile",
    ),
    "sld_mae": (
        "SLD profile error (mean absolute, 10⁻⁶ Å⁻²)",
        "mean of |predicted ρ − true ρ| over the depth points of the profile",
    ),
    "sld_r2": (
        "SLD profile R²",
        "1 − residual / total variance of ρ: 1 is a perfect profile, 0 no better than its mean",
    ),
    "log_r_rmse": (
        "R(Q) of the prediction vs data (RMS of log₁₀ R)",
        "root mean square of log₁₀ R(data) − log₁₀ R(computed); 0.1 is about 26 % apart on average",
    ),
    "computed_nr_log_r_rmse": (
        "R(Q) of the predicted profile vs data (RMS of log₁₀ R)",
        "R(Q) computed from each predicted SLD profile against the curve it came from; RMS of the log₁₀ difference",
    ),
    "chi2_per_point": (
        "χ²/N of the computed R(Q)",
        "mean of ((R data − R computed) / dR)² over the points: about 1 for a fit within the error bars",
    ),
    "computed_nr_chi2_per_point": (
        "χ²/N of R(Q) of the predicted profile",
        "mean of ((R data − R computed) / dR)² for the R(Q) computed from each predicted profile",
    ),
    "test_curves": ("test curves", "how many held-out curves the test metrics are computed on"),
    "train_loss": ("training loss (last epoch)", "the loss on the training split, in normalised units"),
    "val_loss": ("validation loss (last epoch)", "the loss on the validation split, in normalised units"),
    "best_val_loss": ("best validation loss", "the lowest validation loss of the run: the saved model's"),
    "epochs": ("epochs", "passes over the training split"),
    "converged": ("converged", "whether the optimiser stopped on its tolerance rather than its evaluation limit"),
    "start_chi2_per_point": ("χ²/N at the start", "χ²/N of the starting stack, before the fit"),
    "samples": ("posterior samples asked", "how many DREAM samples were asked for"),
    "posterior_samples": ("posterior samples kept", "DREAM samples left after the burn-in"),
    "band_draws": ("draws in the bands", "posterior draws turned into R(Q) and SLD curves for the bands"),
    "seconds": ("time (s)", "wall-clock seconds the run took"),
    "mae": ("mean absolute error", "mean of |predicted − true| over the test curves, in the parameter's units"),
    "r2": ("R²", "1 − residual / total variance: 1 is perfect, 0 no better than the mean"),
}


def metric_label(key: str) -> tuple[str, str]:
    """(readable name, one-line explanation) of a metric key, also a dotted one ("test.sld_r2", "mae.layer_1.sld").

    An unknown key is returned as it is with an empty explanation.
    """
    if key in METRIC_LABELS:
        return METRIC_LABELS[key]
    head, _, rest = key.partition(".")
    if rest:
        if head in METRIC_LABELS:  # per-parameter metrics: "mae.layer_1.sld"
            name, why = METRIC_LABELS[head]
            unit = parameter_unit(rest)
            return f"{rest}: {name}" + (f" ({unit})" if unit and head == "mae" else ""), why
        name, why = metric_label(rest)  # a split or stage prefix: "test.sld_r2"
        if why:
            return (name if rest.startswith(head) else f"{name} ({head})"), why
    return key, ""


PARAMETER_UNITS = {
    "thickness": "Å",
    "roughness": "Å",
    "sld": "10⁻⁶ Å⁻²",
    "isld": "10⁻⁶ Å⁻²",
    "background": "",
    "scale": "",
}


def parameter_unit(name: str) -> str:
    """The unit of a stack or probe parameter by its last name part ("layer_2.thickness" → "Å"); "" if unitless."""
    return PARAMETER_UNITS.get(name.rsplit(".", 1)[-1], "")

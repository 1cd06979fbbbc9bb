"""Metrics done right: in physical units, on the held-out test split, on a common z grid."""

from __future__ import annotations

import numpy as np


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

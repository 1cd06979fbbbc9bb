"""Fast SLD profiles for generation: many stacks at once, numba, written straight into float32.

Same profile as :func:`.profile.sld_profile_torch` (refl1d's ``smooth_profile``), evaluated at
``z_start[b] + j · z_step[b]`` for j < n.  erf is the vectorisable rational approximation
of Abramowitz & Stegun 7.1.26 built on :func:`.simd_math.vexp` (absolute error < 1.5e-7, below
float32 resolution of an SLD of a few units), so the loop over z runs as SIMD code.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from .simd_math import FASTMATH, vexp

_P = 0.3275911
_A1, _A2, _A3, _A4, _A5 = 0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_SQRT2 = math.sqrt(2.0)


@njit(inline="always", fastmath=FASTMATH, error_model="numpy")
def _blend(x: float) -> float:
    """½ (1 + erf(x)) for x = (z − z_i) / (√2 σ)."""
    ax = min(abs(x), 6.0)
    t = 1.0 / (1.0 + _P * ax)
    poly = t * (_A1 + t * (_A2 + t * (_A3 + t * (_A4 + t * _A5))))
    erf_abs = 1.0 - poly * vexp(-ax * ax)
    return 0.5 + 0.5 * (erf_abs if x >= 0.0 else -erf_abs)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="never")
def _erf_steps(out, lo, hi, contrast, z0, dz, off, w):
    for j in range(lo, hi):
        out[j] += contrast * _blend((z0 + j * dz - off) * w)


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="never")
def _one_profile(values, offsets, inv_width, z0, dz, out):
    """out[j] = values[0] + Σ_i (values[i+1] − values[i]) · blend((z_j − offsets[i]) · inv_width[i]).

    Beyond 6σ of an interface its blend is exactly 0 or 1 (|erf| = 1 − 2e-17), so erf is only
    evaluated inside that band and the step is added as a constant above it.
    """
    n = out.shape[0]
    for j in range(n):
        out[j] = values[0]
    for i in range(offsets.shape[0]):
        contrast = values[i + 1] - values[i]
        if contrast == 0.0:
            continue
        off = offsets[i]
        w = inv_width[i]
        half = 6.0 * _SQRT2 / w if w > 0.0 else 0.0  # 6σ
        lo = min(max(int(math.ceil((off - half - z0) / dz)), 0), n)
        hi = min(max(int(math.floor((off + half - z0) / dz)) + 1, lo), n)
        if w == 0.0:  # sharp interface: the band is the step itself
            lo = hi = min(max(int(math.ceil((off - z0) / dz)), 0), n)
            while lo > 0 and z0 + (lo - 1) * dz >= off:
                lo -= 1
            while lo < n and z0 + lo * dz < off:
                lo += 1
            hi = lo
        else:
            _erf_steps(out, lo, hi, contrast, z0, dz, off, w)
        for j in range(hi, n):
            out[j] += contrast


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True, nogil=True)
def _profiles(sld, thickness, roughness, z_start, z_step, rho_out):
    n_batch, n_layers = sld.shape
    n_points = rho_out.shape[1]
    for b in prange(n_batch):
        offsets = np.empty(n_layers - 1)
        inv_width = np.empty(n_layers - 1)
        scratch = np.empty(n_points)
        acc = 0.0
        for i in range(n_layers - 1):
            if i > 0:
                acc += thickness[b, i]
            offsets[i] = acc
            s = roughness[b, i]
            inv_width[i] = _INV_SQRT2 / s if s > 0.0 else 0.0
        _one_profile(sld[b], offsets, inv_width, z_start[b], z_step[b], scratch)
        for j in range(n_points):
            rho_out[b, j] = scratch[j]


def profile_range_numpy(thickness: np.ndarray, roughness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """refl1d's z range per stack: (left, right), 3σ beyond every interface and ≥ 10 Å beyond the ends."""
    inner = thickness[:, 1:-1]
    offsets = np.concatenate([np.zeros((thickness.shape[0], 1)), np.cumsum(inner, axis=1)], axis=1)
    left = np.minimum(-10.0, np.min(offsets - 3 * roughness, axis=1))
    right = np.maximum(offsets[:, -1] + 10.0, np.max(offsets + 3 * roughness, axis=1))
    return left, right


def sld_profiles_fast(
    sld: np.ndarray,
    thickness: np.ndarray,
    roughness: np.ndarray,
    z_start: np.ndarray,
    z_step: np.ndarray,
    n_points: int,
    out: np.ndarray | None = None,
    dtype=np.float32,
) -> np.ndarray:
    """ρ(z) of B stacks at ``z_start[b] + j·z_step[b]``, shape (B, n_points), written into ``out``."""
    sld = np.ascontiguousarray(sld, dtype=np.float64)
    thickness = np.ascontiguousarray(thickness, dtype=np.float64)
    roughness = np.ascontiguousarray(roughness, dtype=np.float64)
    z_start = np.ascontiguousarray(np.broadcast_to(z_start, (sld.shape[0],)), dtype=np.float64)
    z_step = np.ascontiguousarray(np.broadcast_to(z_step, (sld.shape[0],)), dtype=np.float64)
    if out is None:
        out = np.empty((sld.shape[0], n_points), dtype=dtype)
    _profiles(sld, thickness, roughness, z_start, z_step, out)
    return out

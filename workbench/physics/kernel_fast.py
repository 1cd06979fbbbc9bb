"""The fast path for generation: reflectivity of many stacks at once, fused with smearing.

Same physics as :mod:`.kernel_torch` (refl1d's conventions), no gradients, compiled with numba
and run in parallel over stacks.  What makes it fast (measured on 2 AVX2 cores):

* the Q loop is innermost and uses the polynomial exp/sincos of :mod:`.simd_math`, so it runs
  as SIMD code; ``math.exp/sin/cos`` would be scalar libm calls;
* a Parratt recursion carrying numerator and denominator needs no complex division per layer,
  and the Fresnel coefficient is r = (k_j − k_{j−1})² / (V_{j−1} − V_j), with no division at all;
* with no absorption each k is real or purely imaginary, and which one is fixed on Q intervals
  (split at each layer's critical edge), so each interval runs a loop in real arithmetic with
  just the two transcendental functions it needs; above a curve's highest edge, where most Q
  points are, that is one sqrt, one exp and one sincos per layer and Q.  Each loop is its own
  non-inlined function so that LLVM vectorises every one of them;
* resolution smearing is a fixed weighted sum (:class:`.resolution.ResolutionPlan`) applied to
  each curve while it is still in cache.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit, prange

from .simd_math import FASTMATH, vexp, vsincos

FOUR_PI_E6 = 4.0e-6 * math.pi
K2_FLOOR = 1e-30
BLOCK = 16  # stacks per work item: amortises scratch allocation


# Without absorption every k is either real or purely imaginary, and which one is fixed on Q
# intervals: k_j is imaginary exactly where k_z² < V_j.  So each interface step (layer j above
# layer j − 1) splits the Q range into at most three intervals, each handled by one of the four
# loops below with real arithmetic wherever it can, and only the transcendental functions that
# case needs: RR (both real: exp + sincos), RI (k real, k_below imaginary: sincos + exp),
# IR (sincos + sincos), II (exp + exp).  ``kabs`` holds |k| of the layer below, and is updated.
# s2 = −2σ², two_d = 2 × thickness of the layer below.


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="never")
def _step_rr(kz2, kabs, nr, ni, dr, di, vj, inv, s2, two_d):
    for q in range(kz2.shape[0]):
        k = math.sqrt(max(kz2[q] - vj, K2_FLOOR))
        kb = kabs[q]
        diff = k - kb
        r = diff * diff * inv * vexp(s2 * k * kb)
        s, c = vsincos(two_d * kb)
        xr = nr[q] * c - ni[q] * s
        xi = nr[q] * s + ni[q] * c
        nr[q] = r * dr[q] + xr
        ni[q] = r * di[q] + xi
        dr[q] = dr[q] + r * xr
        di[q] = di[q] + r * xi
        kabs[q] = k


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="never")
def _first_rr(kz2, kabs, nr, ni, dr, di, vj, inv, s2):
    """The substrate interface where both k are real: X = r, no phase (saves one sincos in seven)."""
    for q in range(kz2.shape[0]):
        k = math.sqrt(max(kz2[q] - vj, K2_FLOOR))
        kb = kabs[q]
        diff = k - kb
        nr[q] = diff * diff * inv * vexp(s2 * k * kb)
        ni[q] = 0.0
        dr[q] = 1.0
        di[q] = 0.0
        kabs[q] = k


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="never")
def _step_ri(kz2, kabs, nr, ni, dr, di, vj, inv, s2, two_d):
    for q in range(kz2.shape[0]):
        k = math.sqrt(max(kz2[q] - vj, K2_FLOOR))
        beta = kabs[q]
        r0r = (k * k - beta * beta) * inv
        r0i = -2.0 * k * beta * inv
        fs, fc = vsincos(s2 * k * beta)
        rr = r0r * fc - r0i * fs
        ri = r0r * fs + r0i * fc
        decay = vexp(-two_d * beta)
        xr = nr[q] * decay
        xi = ni[q] * decay
        ddr = dr[q]
        ddi = di[q]
        nr[q] = rr * ddr - ri * ddi + xr
        ni[q] = rr * ddi + ri * ddr + xi
        dr[q] = ddr + rr * xr - ri * xi
        di[q] = ddi + rr * xi + ri * xr
        kabs[q] = k


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="never")
def _step_ir(kz2, kabs, nr, ni, dr, di, vj, inv, s2, two_d):
    for q in range(kz2.shape[0]):
        kappa = math.sqrt(max(vj - kz2[q], K2_FLOOR))
        kb = kabs[q]
        r0r = (kb * kb - kappa * kappa) * inv
        r0i = -2.0 * kappa * kb * inv
        fs, fc = vsincos(s2 * kappa * kb)
        rr = r0r * fc - r0i * fs
        ri = r0r * fs + r0i * fc
        s, c = vsincos(two_d * kb)
        xr = nr[q] * c - ni[q] * s
        xi = nr[q] * s + ni[q] * c
        ddr = dr[q]
        ddi = di[q]
        nr[q] = rr * ddr - ri * ddi + xr
        ni[q] = rr * ddi + ri * ddr + xi
        dr[q] = ddr + rr * xr - ri * xi
        di[q] = ddi + rr * xi + ri * xr
        kabs[q] = kappa


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="never")
def _step_ii(kz2, kabs, nr, ni, dr, di, vj, inv, s2, two_d):
    for q in range(kz2.shape[0]):
        kappa = math.sqrt(max(vj - kz2[q], K2_FLOOR))
        beta = kabs[q]
        diff = kappa - beta
        r = -diff * diff * inv * vexp(-s2 * kappa * beta)
        decay = vexp(-two_d * beta)
        xr = nr[q] * decay
        xi = ni[q] * decay
        nr[q] = r * dr[q] + xr
        ni[q] = r * di[q] + xi
        dr[q] = dr[q] + r * xr
        di[q] = di[q] + r * xi
        kabs[q] = kappa


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _lossless(kz2, v, thickness, sigma2, inv_dv, kabs, nr, ni, dr, di):
    """Parratt recursion for a stack without absorption (every k real or imaginary)."""
    n_layers = v.shape[0]
    m = kz2.shape[0]
    for q in range(m):
        kabs[q] = math.sqrt(max(abs(kz2[q] - v[0]), K2_FLOOR))
        nr[q] = 0.0
        ni[q] = 0.0
        dr[q] = 1.0
        di[q] = 0.0
    edge_below = np.searchsorted(kz2, v[0], side="left")
    for j in range(1, n_layers):
        edge = np.searchsorted(kz2, v[j], side="left")
        vj = v[j]
        inv = inv_dv[j]
        s2 = -2.0 * sigma2[j - 1]
        two_d = 2.0 * thickness[j - 1] if j > 1 else 0.0
        lo = min(edge, edge_below)
        hi = max(edge, edge_below)
        if lo > 0:
            _step_ii(kz2[:lo], kabs[:lo], nr[:lo], ni[:lo], dr[:lo], di[:lo], vj, inv, s2, two_d)
        if hi > lo:
            if edge < edge_below:  # k real, k_below imaginary
                _step_ri(kz2[lo:hi], kabs[lo:hi], nr[lo:hi], ni[lo:hi], dr[lo:hi], di[lo:hi], vj, inv, s2, two_d)
            else:
                _step_ir(kz2[lo:hi], kabs[lo:hi], nr[lo:hi], ni[lo:hi], dr[lo:hi], di[lo:hi], vj, inv, s2, two_d)
        if hi < m:
            if j == 1:
                _first_rr(kz2[hi:], kabs[hi:], nr[hi:], ni[hi:], dr[hi:], di[hi:], vj, inv, s2)
            else:
                _step_rr(kz2[hi:], kabs[hi:], nr[hi:], ni[hi:], dr[hi:], di[hi:], vj, inv, s2, two_d)
        edge_below = edge


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="never")
def _complex_segment(kz2, v, vi, thickness, sigma2, inv_dv_r, inv_dv_i, kprev_r, kprev_i, nr, ni, dr, di):
    """Parratt recursion with complex k (below an edge, or absorbing layers)."""
    n_layers = v.shape[0]
    m = kz2.shape[0]
    for j in range(n_layers):
        vj = v[j]
        vij = vi[j]
        inv_r = inv_dv_r[j]
        inv_i = inv_dv_i[j]
        s2 = -2.0 * sigma2[j - 1] if j > 0 else 0.0
        two_d = 2.0 * thickness[j - 1] if j > 1 else 0.0
        for q in range(m):
            # k = sqrt(a + i b), b ≥ 0, decaying branch, without cancellation
            a = kz2[q] - vj
            if abs(a) + vij < K2_FLOOR:
                a = K2_FLOOR
            modulus = math.sqrt(a * a + vij * vij)
            t = math.sqrt(0.5 * (modulus + abs(a)))
            u = 0.5 * vij / t
            kr = t if a >= 0.0 else u
            ki = u if a >= 0.0 else t
            if j == 0:
                nr[q] = 0.0
                ni[q] = 0.0
                dr[q] = 1.0
                di[q] = 0.0
            else:
                br = kprev_r[q]
                bi = kprev_i[q]
                # r = (k − kb)² / (V_{j−1} − V_j + i(Vi_j − Vi_{j−1}))
                er = kr - br
                ei = ki - bi
                sr = er * er - ei * ei
                si = 2.0 * er * ei
                rr = sr * inv_r - si * inv_i
                ri = sr * inv_i + si * inv_r
                if s2 != 0.0:
                    # Névot–Croce factor exp(−2 σ² k kb)
                    pr = kr * br - ki * bi
                    pi_ = kr * bi + ki * br
                    mag = vexp(s2 * pr)
                    fs, fc = vsincos(s2 * pi_)
                    fr = mag * fc
                    fi = mag * fs
                    tr = rr * fr - ri * fi
                    ri = rr * fi + ri * fr
                    rr = tr
                # phase exp(2i kb d) = exp(−2 d Im kb) (cos + i sin)(2 d Re kb)
                decay = vexp(-two_d * bi)
                ps, pc = vsincos(two_d * br)
                pr2 = decay * pc
                pi2 = decay * ps
                xr = nr[q] * pr2 - ni[q] * pi2
                xi = nr[q] * pi2 + ni[q] * pr2
                ndr = dr[q]
                ndi = di[q]
                nr[q] = rr * ndr - ri * ndi + xr
                ni[q] = rr * ndi + ri * ndr + xi
                dr[q] = ndr + rr * xr - ri * xi
                di[q] = ndi + rr * xi + ri * xr
            kprev_r[q] = kr
            kprev_i[q] = ki


@njit(fastmath=True, error_model="numpy", cache=True, inline="never")
def _smear(rcalc, start, counts, weights, scale, background, out):
    """out[i] = scale · Σ_t weights[i, t] R(calc_q[start[i] + t]) + background.

    Full fastmath here: reassociating the sum lets LLVM vectorise the reduction.
    """
    for i in range(out.shape[0]):
        s0 = start[i]
        acc = 0.0
        for t in range(counts[i]):
            acc += weights[i, t] * rcalc[s0 + t]
        out[i] = scale * acc + background


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True, nogil=True)
def _batch(calc_q, sld, isld, thickness, roughness, start, counts, weights, scale, background, q_factor, identity, out):
    n_batch, n_layers = sld.shape
    m = calc_q.shape[0]
    kz2 = 0.25 * calc_q * calc_q
    n_blocks = (n_batch + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        v = np.empty(n_layers)
        vi = np.empty(n_layers)
        sigma2 = np.empty(max(n_layers - 1, 1))
        inv_r = np.empty(n_layers)
        inv_i = np.empty(n_layers)
        kprev_r = np.empty(m)
        kprev_i = np.empty(m)
        nr = np.empty(m)
        ni = np.empty(m)
        dr = np.empty(m)
        di = np.empty(m)
        rcalc = np.empty(m)
        shifted = np.empty(m)
        for b in range(blk * BLOCK, min((blk + 1) * BLOCK, n_batch)):
            kz2b = kz2
            if q_factor[b] != 1.0:
                f2 = q_factor[b] * q_factor[b]
                for q in range(m):
                    shifted[q] = kz2[q] * f2
                kz2b = shifted
            amb = sld[b, n_layers - 1]
            absorbing = False
            for j in range(n_layers):
                v[j] = FOUR_PI_E6 * (sld[b, j] - amb)
                vi[j] = FOUR_PI_E6 * isld[b, j] if j < n_layers - 1 else 0.0
                if vi[j] != 0.0:
                    absorbing = True
            for j in range(n_layers - 1):
                sigma2[j] = roughness[b, j] * roughness[b, j]
            inv_r[0] = 0.0
            inv_i[0] = 0.0
            for j in range(1, n_layers):
                dv_r = v[j - 1] - v[j]
                dv_i = vi[j] - vi[j - 1]
                den = dv_r * dv_r + dv_i * dv_i
                if den == 0.0:
                    inv_r[j] = 0.0
                    inv_i[j] = 0.0
                else:
                    inv_r[j] = dv_r / den
                    inv_i[j] = -dv_i / den
            if absorbing:
                _complex_segment(kz2b, v, vi, thickness[b], sigma2, inv_r, inv_i, kprev_r, kprev_i, nr, ni, dr, di)
            else:
                _lossless(kz2b, v, thickness[b], sigma2, inv_r, kprev_r, nr, ni, dr, di)
            sc = scale[b]
            bg = background[b]
            if identity:
                for q in range(m):
                    out[b, q] = sc * (nr[q] * nr[q] + ni[q] * ni[q]) / (dr[q] * dr[q] + di[q] * di[q]) + bg
            else:
                for q in range(m):
                    rcalc[q] = (nr[q] * nr[q] + ni[q] * ni[q]) / (dr[q] * dr[q] + di[q] * di[q])
                _smear(rcalc, start, counts, weights, sc, bg, out[b])


SERIAL_WORK = 32_768  # curves × calculation points below which one thread is faster


def reflectivity_fast(
    plan, sld, isld, thickness, roughness, scale=1.0, background=0.0, q_factor=1.0, out=None
) -> np.ndarray:
    """R(Q) for a batch of stacks on ``plan``'s Q points, float64, shape (B, nQ).

    ``sld``, ``isld``, ``thickness`` (B, L) and ``roughness`` (B, L − 1) are float arrays,
    substrate first; ``scale``, ``background`` and ``q_factor`` are scalars or (B,) arrays.
    ``q_factor`` evaluates curve b at Q·q_factor[b] (a misaligned angle); with a constant dQ/Q
    the resolution plan scales with it exactly.
    """
    sld = np.ascontiguousarray(sld, dtype=np.float64)
    isld = np.ascontiguousarray(isld, dtype=np.float64)
    thickness = np.ascontiguousarray(thickness, dtype=np.float64)
    roughness = np.ascontiguousarray(roughness, dtype=np.float64)
    n = sld.shape[0]
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (n,)).copy()
    background = np.broadcast_to(np.asarray(background, dtype=np.float64), (n,)).copy()
    q_factor = np.broadcast_to(np.asarray(q_factor, dtype=np.float64), (n,)).copy()
    if out is None:
        out = np.empty((n, plan.q.size))
    threads = numba.get_num_threads()
    # a few curves (a fit's Jacobian, a slider preview) finish in well under a millisecond on one
    # thread; waking the pool costs more than that, and many ms on a busy machine
    if n * plan.calc_q.size < SERIAL_WORK:
        numba.set_num_threads(1)
    try:
        _batch(
            plan.calc_q,
            sld,
            isld,
            thickness,
            roughness,
            plan.start,
            plan.counts,
            plan.weights,
            scale,
            background,
            q_factor,
            plan.identity,
            out,
        )
    finally:
        numba.set_num_threads(threads)
    return out

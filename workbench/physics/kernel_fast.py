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

Stacks the shared plan cannot resolve (``resolution.needs_own_rule``) are smeared with their own
adaptive Gauss–Kronrod rule in a second parallel pass (``_batch_adaptive``; ~1 ms per curve; its
first call compiles for ~50 s, once per installation, cached).  N and D of the recursion are
rescaled every 8 layers, so multilayers of any length stay finite (800 layers on 4,000 Q points:
0 NaN, 1.5e-11 from the torch engine; before: 5 NaN, and refnx gives 104).
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
# N and D grow by up to a factor 1 + |r X| per interface (≈ 2 for a strong contrast), so a 300-layer
# mirror reaches 1e90 and |D|² overflows at ~500 layers; every RESCALE_EVERY layers both are divided
# by |D_r| + |D_i| (R = |N/D|² is unchanged).  Stacks of up to 8 layers never take the extra pass.
RESCALE_EVERY = 8


@njit(fastmath=FASTMATH, error_model="numpy", cache=True, inline="never")
def _rescale(nr, ni, dr, di):
    for q in range(nr.shape[0]):
        inv = 1.0 / max(abs(dr[q]) + abs(di[q]), 1e-300)
        nr[q] *= inv
        ni[q] *= inv
        dr[q] *= inv
        di[q] *= inv


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
        if j % RESCALE_EVERY == 0:
            _rescale(nr, ni, dr, di)


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
        if j > 0 and j % RESCALE_EVERY == 0:
            _rescale(nr, ni, dr, di)


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


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _stack_constants(sld, isld, roughness, v, vi, sigma2, inv_r, inv_i):
    """Per-layer potentials (relative to the ambient), σ², and 1 / (V_{j−1} − V_j); True if any layer absorbs."""
    n_layers = sld.shape[0]
    amb = sld[n_layers - 1]
    absorbing = False
    for j in range(n_layers):
        v[j] = FOUR_PI_E6 * (sld[j] - amb)
        vi[j] = FOUR_PI_E6 * isld[j] if j < n_layers - 1 else 0.0
        if vi[j] != 0.0:
            absorbing = True
    for j in range(n_layers - 1):
        sigma2[j] = roughness[j] * roughness[j]
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
    return absorbing


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _curve(kz2, v, vi, thickness, sigma2, inv_r, inv_i, absorbing, kprev_r, kprev_i, nr, ni, dr, di, r_out):
    """|r|² at the (ascending) k_z² points of one stack, written into ``r_out``."""
    if absorbing:
        _complex_segment(kz2, v, vi, thickness, sigma2, inv_r, inv_i, kprev_r, kprev_i, nr, ni, dr, di)
    else:
        _lossless(kz2, v, thickness, sigma2, inv_r, kprev_r, nr, ni, dr, di)
    for q in range(kz2.shape[0]):
        r_out[q] = (nr[q] * nr[q] + ni[q] * ni[q]) / (dr[q] * dr[q] + di[q] * di[q])


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True, nogil=True)
def _batch(
    calc_q, sld, isld, thickness, roughness, start, counts, weights, scale, background, q_factor, identity, skip, out
):
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
            if skip[b]:
                continue
            absorbing = _stack_constants(sld[b], isld[b], roughness[b], v, vi, sigma2, inv_r, inv_i)
            kz2b = kz2
            if q_factor[b] != 1.0:
                f2 = q_factor[b] * q_factor[b]
                for k in range(m):
                    shifted[k] = kz2[k] * f2
                kz2b = shifted
            if absorbing:
                _complex_segment(kz2b, v, vi, thickness[b], sigma2, inv_r, inv_i, kprev_r, kprev_i, nr, ni, dr, di)
            else:
                _lossless(kz2b, v, thickness[b], sigma2, inv_r, kprev_r, nr, ni, dr, di)
            sc = scale[b]
            bg = background[b]
            if identity:
                for k in range(m):
                    out[b, k] = sc * (nr[k] * nr[k] + ni[k] * ni[k]) / (dr[k] * dr[k] + di[k] * di[k]) + bg
            else:
                for k in range(m):
                    rcalc[k] = (nr[k] * nr[k] + ni[k] * ni[k]) / (dr[k] * dr[k] + di[k] * di[k])
                _smear(rcalc, start, counts, weights, sc, bg, out[b])


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True, nogil=True)
def _batch_adaptive(which, sld, isld, thickness, roughness, scale, background, q_factor, q, sigma, ratio_q, ratio, out):
    """The stacks ``which`` of the batch, each smeared with its own adaptive rule (Q·f: Q and σ scaled by f)."""
    n_layers = sld.shape[1]
    for k in prange(which.shape[0]):
        b = which[k]
        v = np.empty(n_layers)
        vi = np.empty(n_layers)
        sigma2 = np.empty(max(n_layers - 1, 1))
        inv_r = np.empty(n_layers)
        inv_i = np.empty(n_layers)
        absorbing = _stack_constants(sld[b], isld[b], roughness[b], v, vi, sigma2, inv_r, inv_i)
        f = q_factor[b]
        qb = f * q
        sb = f * sigma
        x, w, rx = _adaptive_nodes(qb, sb, ratio_q, ratio, v, vi, thickness[b], sigma2, inv_r, inv_i, absorbing)
        _smear_nodes(
            x, w, rx, qb, sb, scale[b], background[b], v, vi, thickness[b], sigma2, inv_r, inv_i, absorbing, out[b]
        )


# ---------------------------------------------------------------------------------------------
# Adaptive quadrature for one stack (see resolution.py for when and why it is used).
# 15-point Gauss–Kronrod on panels; nodes t ascending in [−1, 1], the 7-point Gauss rule on the
# odd positions.  A panel beside a critical edge e is mapped Q = e ± ℓ s², which turns the √ kink
# of R at e into a smooth function of s.
_XGK = np.array(
    [
        0.991455371120812639206854697526329,
        0.949107912342758524526189684047851,
        0.864864423359769072789712788640926,
        0.741531185599394439863864773280788,
        0.586087235467691130294144845693013,
        0.405845151377397166906606412076961,
        0.207784955007898467600689403773245,
        0.0,
    ]
)
_WGK = np.array(
    [
        0.022935322010529224963732008058970,
        0.063092092629978553290700663189204,
        0.104790010322250183839876322541518,
        0.140653259715525918745189590510238,
        0.169004726639267902826583426598550,
        0.190350578064785409913256402421014,
        0.204432940075298892414161999234649,
        0.209482141084727828012999174891714,
    ]
)
_WG = np.array(
    [
        0.129484966168869693270611432679082,
        0.279705391489276667901467771423780,
        0.381830050505118944950369775488975,
        0.417959183673469387755102040816327,
    ]
)
_T15 = np.concatenate((-_XGK[:7], np.zeros(1), _XGK[6::-1]))
_W15 = np.concatenate((_WGK[:7], _WGK[7:8], _WGK[6::-1]))
_W7 = np.zeros(15)
_W7[1], _W7[3], _W7[5], _W7[7], _W7[9], _W7[11], _W7[13] = _WG[0], _WG[1], _WG[2], _WG[3], _WG[2], _WG[1], _WG[0]
N_SIGMA = 7.0  # the Gaussian is cut at ±7σ, as in resolution.build_plan
ADAPT_TOL = 1e-7  # accept a panel when |K15 − G7| ≤ ADAPT_TOL · |K15| (its true error is far smaller)
PANEL_SIGMA = 3.0  # initial panel length, in σ(Q) ...
PANEL_SIGMA_LOW = 1.0  # ... and below the highest critical edge (+ 10σ), where waveguide resonances live
PANEL_PERIODS = 2.0  # ... and at most this many periods of the fastest fringe, 2π / (2 Σd)
PHASE_JUMP = 1.5  # rad: a larger step of arg D between neighbouring nodes marks an unresolved resonance
MAX_DEPTH = 40


@njit(cache=True)
def _panel_nodes(a, b, kind, x, w, off):
    """The 15 nodes and K15 weights (with the Jacobian) of panel [a, b] into x/w[off:off + 15]."""
    ell = b - a
    for t in range(15):
        tt = _T15[t]
        if kind == 0:
            x[off + t] = 0.5 * (a + b) + 0.5 * ell * tt
            w[off + t] = 0.5 * ell * _W15[t]
        elif kind > 0:
            s = 0.5 * (tt + 1.0)
            x[off + t] = a + ell * s * s
            w[off + t] = ell * s * _W15[t]
        else:
            s = 0.5 * (1.0 - tt)
            x[off + t] = b - ell * s * s
            w[off + t] = ell * s * _W15[t]


@njit(cache=True)
def _grow(a, size):
    """A copy of the 2-D array ``a`` with room for at least ``size`` rows."""
    out = np.empty((max(2 * a.shape[0], size), a.shape[1]))
    out[: a.shape[0]] = a
    return out


@njit(cache=True)
def _adaptive_nodes(q, sigma, ratio_q, ratio, v, vi, thickness, sigma2, inv_r, inv_i, absorbing):
    """Nodes, quadrature weights and R of an adaptive rule for ∫ R dQ over the union of the ±7σ windows.

    Breakpoints at every critical edge of the stack; initial panels of ≤ PANEL_SIGMA σ (finer below
    the highest edge) and ≤ PANEL_PERIODS fringe periods; a panel is halved until its 7-point Gauss
    and 15-point Kronrod sums agree to ADAPT_TOL and arg D moves ≤ PHASE_JUMP between its nodes.
    """
    n_layers = v.shape[0]
    film = 0.0
    for j in range(1, n_layers - 1):
        film += thickness[j]
    max_step = PANEL_PERIODS * 2.0 * math.pi / (2.0 * film + 1e-9)
    edges = np.empty(n_layers)
    n_edges = 0
    for j in range(n_layers - 1):
        if v[j] > 0.0:
            edges[n_edges] = 2.0 * math.sqrt(v[j])
            n_edges += 1
    edges = np.sort(edges[:n_edges])
    top = edges[-1] if n_edges else 0.0
    # union of the windows
    smeared = sigma > 0
    lo = np.maximum(q[smeared] - N_SIGMA * sigma[smeared], 1e-3 * q[0])
    hi = q[smeared] + N_SIGMA * sigma[smeared]
    order = np.argsort(lo)
    seg_lo = np.empty(lo.shape[0])
    seg_hi = np.empty(lo.shape[0])
    n_seg = 0
    for i in order:
        if n_seg > 0 and lo[i] <= seg_hi[n_seg - 1]:
            seg_hi[n_seg - 1] = max(seg_hi[n_seg - 1], hi[i])
        else:
            seg_lo[n_seg] = lo[i]
            seg_hi[n_seg] = hi[i]
            n_seg += 1
    # initial panels: (a, b, kind) with kind +1 / −1 for an edge at the left / right end
    pend = np.empty((256, 3))
    n_pend = 0
    for g in range(n_seg):
        cuts = np.empty(n_edges + 2)
        cuts[0] = seg_lo[g]
        n_cut = 1
        for e in edges:
            if seg_lo[g] < e < seg_hi[g]:
                cuts[n_cut] = e
                n_cut += 1
        cuts[n_cut] = seg_hi[g]
        n_cut += 1
        for c in range(n_cut - 1):
            a0, b0 = cuts[c], cuts[c + 1]
            left_edge = c > 0
            right_edge = c < n_cut - 2
            first = n_pend
            x0 = a0
            while x0 < b0:
                sig_x = x0 * np.interp(x0, ratio_q, ratio)
                step = sig_x * (PANEL_SIGMA_LOW if x0 < top + 10.0 * sig_x else PANEL_SIGMA)
                step = min(step, max_step)
                x1 = b0 if x0 + 1.5 * step >= b0 else x0 + step
                if n_pend == pend.shape[0]:
                    pend = _grow(pend, n_pend + 1)
                pend[n_pend, 0] = x0
                pend[n_pend, 1] = x1
                pend[n_pend, 2] = 0.0
                n_pend += 1
                x0 = x1
            if left_edge and right_edge and n_pend - first == 1:
                mid = 0.5 * (a0 + b0)
                if n_pend == pend.shape[0]:
                    pend = _grow(pend, n_pend + 1)
                pend[first, 1] = mid
                pend[n_pend, 0] = mid
                pend[n_pend, 1] = b0
                pend[n_pend, 2] = 0.0
                n_pend += 1
            if left_edge:
                pend[first, 2] = 1.0
            if right_edge:
                pend[n_pend - 1, 2] = -1.0
    # rounds: evaluate every pending panel at once (their nodes are ascending), keep or halve
    done = np.empty((max(n_pend, 64), 3))
    done_r = np.empty((max(n_pend, 64), 15))
    n_done = 0
    depth = 0
    while n_pend > 0:
        m = 15 * n_pend
        x = np.empty(m)
        w = np.empty(m)
        for p in range(n_pend):
            _panel_nodes(pend[p, 0], pend[p, 1], int(pend[p, 2]), x, w, 15 * p)
        r = np.empty(m)
        den_r = np.empty(m)
        den_i = np.empty(m)
        _curve(
            0.25 * x * x,
            v,
            vi,
            thickness,
            sigma2,
            inv_r,
            inv_i,
            absorbing,
            np.empty(m),
            np.empty(m),
            np.empty(m),
            np.empty(m),
            den_r,
            den_i,
            r,
        )
        nxt = np.empty((2 * n_pend, 3))
        n_next = 0
        depth += 1
        for p in range(n_pend):
            k15 = 0.0
            g7 = 0.0
            for t in range(15):
                k15 += w[15 * p + t] * r[15 * p + t]
                g7 += w[15 * p + t] * r[15 * p + t] * _W7[t] / _W15[t]
            a, b, kind = pend[p, 0], pend[p, 1], pend[p, 2]
            # a resonance narrower than the node spacing: the denominator's phase jumps by ≈ π
            jump = 0.0
            for t in range(14):
                k = 15 * p + t
                re = den_r[k] * den_r[k + 1] + den_i[k] * den_i[k + 1]
                im = den_r[k] * den_i[k + 1] - den_i[k] * den_r[k + 1]
                jump = max(jump, abs(math.atan2(im, re)))
            converged = abs(k15 - g7) <= ADAPT_TOL * abs(k15) and jump <= PHASE_JUMP
            if converged or depth >= MAX_DEPTH or not math.isfinite(k15):
                if n_done == done.shape[0]:
                    done = _grow(done, n_done + 1)
                    done_r = _grow(done_r, n_done + 1)
                done[n_done, 0] = a
                done[n_done, 1] = b
                done[n_done, 2] = kind
                for t in range(15):
                    done_r[n_done, t] = r[15 * p + t]
                n_done += 1
            else:
                mid = 0.5 * (a + b)
                nxt[n_next, 0] = a
                nxt[n_next, 1] = mid
                nxt[n_next, 2] = kind if kind > 0 else 0.0
                nxt[n_next + 1, 0] = mid
                nxt[n_next + 1, 1] = b
                nxt[n_next + 1, 2] = kind if kind < 0 else 0.0
                n_next += 2
        pend = nxt
        n_pend = n_next
    order = np.argsort(done[:n_done, 0])
    x = np.empty(15 * n_done)
    w = np.empty(15 * n_done)
    r = np.empty(15 * n_done)
    for k in range(n_done):
        p = order[k]
        _panel_nodes(done[p, 0], done[p, 1], int(done[p, 2]), x, w, 15 * k)
        for t in range(15):
            r[15 * k + t] = done_r[p, t]
    return x, w, r


@njit(fastmath=FASTMATH, error_model="numpy", cache=True)
def _smear_nodes(x, w, r, q, sigma, scale, background, v, vi, thickness, sigma2, inv_r, inv_i, absorbing, out):
    """out[i] = scale · (Σ G_i w R / Σ G_i w over the nodes within ±7σ_i) + background; σ_i = 0: R(q_i)."""
    n_zero = 0
    for i in range(q.shape[0]):
        if sigma[i] > 0:
            lo = np.searchsorted(x, q[i] - N_SIGMA * sigma[i], side="left")
            hi = np.searchsorted(x, q[i] + N_SIGMA * sigma[i], side="right")
            inv = 1.0 / sigma[i]
            acc = 0.0
            norm = 0.0
            for k in range(lo, hi):
                u = (x[k] - q[i]) * inv
                g = w[k] * vexp(-0.5 * u * u)
                acc += g * r[k]
                norm += g
            out[i] = scale * acc / norm + background
        else:
            n_zero += 1
    if n_zero:
        idx = np.flatnonzero(sigma <= 0)
        qz = q[idx]
        rz = np.empty(n_zero)
        _curve(
            0.25 * qz * qz,
            v,
            vi,
            thickness,
            sigma2,
            inv_r,
            inv_i,
            absorbing,
            np.empty(n_zero),
            np.empty(n_zero),
            np.empty(n_zero),
            np.empty(n_zero),
            np.empty(n_zero),
            np.empty(n_zero),
            rz,
        )
        for k in range(n_zero):
            out[idx[k]] = scale * rz[k] + background


@njit(cache=True)
def stack_nodes(q, sigma, ratio_q, ratio, sld, isld, thickness, roughness):
    """The adaptive rule of one stack (nodes, weights, R at the nodes), for a per-stack ResolutionPlan."""
    n_layers = sld.shape[0]
    v = np.empty(n_layers)
    vi = np.empty(n_layers)
    sigma2 = np.empty(max(n_layers - 1, 1))
    inv_r = np.empty(n_layers)
    inv_i = np.empty(n_layers)
    absorbing = _stack_constants(sld, isld, roughness, v, vi, sigma2, inv_r, inv_i)
    return _adaptive_nodes(q, sigma, ratio_q, ratio, v, vi, thickness, sigma2, inv_r, inv_i, absorbing)


@njit(cache=True, inline="always")
def _sigma_at(x, knot_q, knot_s):
    """σ(x): linear between the knots, proportional to x beyond them (as resolution._SigmaKnots)."""
    if x <= knot_q[0]:
        return x * knot_s[0] / knot_q[0]
    if x >= knot_q[-1]:
        return x * knot_s[-1] / knot_q[-1]
    k = np.searchsorted(knot_q, x) - 1
    t = (x - knot_q[k]) / (knot_q[k + 1] - knot_q[k])
    return knot_s[k] + t * (knot_s[k + 1] - knot_s[k])


@njit(cache=True)
def own_rule_batch(sld, isld, thickness, knot_q, knot_s, q_lo, q_hi, phase_limit, sharpness_limit):
    """(B,) bool: see resolution.needs_own_rule (the same test, compiled: ~0.3 µs per stack)."""
    n_batch, n_layers = sld.shape
    out = np.zeros(n_batch, dtype=np.bool_)
    v = np.empty(n_layers)
    for b in range(n_batch):
        amb = sld[b, n_layers - 1]
        total = 0.0
        for j in range(n_layers):
            v[j] = FOUR_PI_E6 * (sld[b, j] - amb)
            if 0 < j < n_layers - 1:
                total += thickness[b, j]
        for j in range(n_layers - 1):
            vj = v[j]
            if vj <= 0.0:
                continue
            qc = 2.0 * math.sqrt(vj)
            if qc <= q_lo or qc >= q_hi:
                continue
            sig = _sigma_at(qc, knot_q, knot_s)
            if (j == 0 and isld[b, 0] > 0.0) or (j > 0 and thickness[b, j] * math.sqrt(qc * sig) > phase_limit):
                out[b] = True
                break
            # total · σ · e^B > limit  ⇔  B > log(limit / (total · σ))
            need = math.log(sharpness_limit / max(total * sig, 1e-300))
            barrier = 0.0
            for i in range(1, n_layers - 1):
                if v[i] > vj:
                    barrier += 2.0 * thickness[b, i] * math.sqrt(v[i] - vj)
            if barrier > need:
                out[b] = True
                break
    return out


SERIAL_WORK = 32_768  # curves × calculation points below which one thread is faster


def reflectivity_fast(
    plan, sld, isld, thickness, roughness, scale=1.0, background=0.0, q_factor=1.0, out=None, hard=None
) -> np.ndarray:
    """R(Q) for a batch of stacks on ``plan``'s Q points, float64, shape (B, nQ).

    ``sld``, ``isld``, ``thickness`` (B, L) and ``roughness`` (B, L − 1) are float arrays,
    substrate first; ``scale``, ``background`` and ``q_factor`` are scalars or (B,) arrays.
    ``q_factor`` evaluates curve b at Q·q_factor[b] (a misaligned angle); with a constant dQ/Q
    the resolution plan scales with it exactly.  ``hard`` (B,) bool: stacks smeared with their own
    adaptive rule instead of the plan (``plan.sigma`` then gives the resolution).
    """
    sld = np.ascontiguousarray(sld, dtype=np.float64)
    isld = np.ascontiguousarray(isld, dtype=np.float64)
    thickness = np.ascontiguousarray(thickness, dtype=np.float64)
    roughness = np.ascontiguousarray(roughness, dtype=np.float64)
    n = sld.shape[0]
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (n,)).copy()
    background = np.broadcast_to(np.asarray(background, dtype=np.float64), (n,)).copy()
    q_factor = np.broadcast_to(np.asarray(q_factor, dtype=np.float64), (n,)).copy()
    hard = np.zeros(n, dtype=np.bool_) if hard is None or plan.identity else np.asarray(hard, dtype=np.bool_)
    if out is None:
        out = np.empty((n, plan.q.size))
    threads = numba.get_num_threads()
    # a few curves (a fit's Jacobian, a slider preview) finish in well under a millisecond on one
    # thread; waking the pool costs more than that, and many ms on a busy machine
    if n * plan.calc_q.size < SERIAL_WORK and not hard.any():
        numba.set_num_threads(1)
    try:
        if not hard.all():
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
                hard,
                out,
            )
        if hard.any():
            ratio_q, ratio = plan.sigma_ratio()
            _batch_adaptive(
                np.flatnonzero(hard),
                sld,
                isld,
                thickness,
                roughness,
                scale,
                background,
                q_factor,
                plan.q,
                plan.sigma,
                ratio_q,
                ratio,
                out,
            )
    finally:
        numba.set_num_threads(threads)
    return out

"""Gaussian resolution smearing as a precomputed quadrature plan, or a stack's own adaptive rule.

The smeared curve is (G ∗ R)(Q_i) = ∫ R(Q') N(Q'; Q_i, σ_i) dQ', the Gaussian normalised over
Q' > 0 and cut at ±7σ (the weight beyond is 2·10⁻¹², so it is effectively untruncated; refnx
cuts at ±3.5σ and refl1d at ±3σ, which alone moves R by up to a few per cent near sharp features).

R is evaluated on a calculation grid and the integral is a fixed weighted sum, so the plan is
built once per probe and reused for every stack of a batch (and by the fused numba kernel).

The shared plan (:func:`build_plan`) is the trapezoid rule in one smooth variable T(Q), nodes at
T = integers, weights 1/T'(Q) (exact Jacobian, so no seams anywhere):

* T' = (D + c/σ(Q)) / 2π gives the spectral spacing 2π/(D + c/σ): away from critical edges R is
  analytic with fringes no faster than D (twice the film thickness), and the trapezoid rule then
  errs by ≈ exp(−c²/2); c = 6.  σ(Q) is linear between the data points, so ∫ dQ/σ is closed-form.
* at the substrate's critical edge R has a √ kink; an edge term (n/2)·∛s/(1 + s²)^⅙, s = (Q − Q_c)/W,
  adds n = 24 points within W = 4σ that cluster as (Q − Q_c) ∝ (T − T_c)³, which makes the kink
  a |T|^3.5 term, and a shift puts Q_c on a node.
  Measured on 300 default-family stacks against the adaptive rule: 3.7e-7 (the previous plan,
  graded region spliced into a stepped grid, erred by up to 1.2e-4 at the seam, 8–11σ above Q_c),
  with 323 calculation points and 5,140 weights for 308 Q points (previously 330 and 5,272).

Films with features the shared plan cannot see get their own adaptive rule (fast engine:
``kernel_fast._adaptive_nodes``; torch engine and fits: :func:`stack_plan`): 15-point
Gauss–Kronrod panels split at every critical edge of the stack (each edge panel mapped
Q = Q_c ± ℓs², which makes the kink smooth), ≤ 3σ and ≤ 2 fringe periods long (≤ 1σ below the
highest edge), halved until the 7- and 15-point sums agree to 1e-7 and the phase of the Parratt
denominator moves < 1.5 rad between neighbouring nodes (a resonance narrower than the node
spacing turns it by ≈ π).  :func:`needs_own_rule` decides which stacks: an absorbing substrate, a
film layer thick enough that its fringes crowd at its own edge (a 3,000 Å layer: R falls from 1
to 0 within 1e-4 Å⁻¹, 0.6σ, above it), or a stack where a waveguide resonance between evanescent
layers can be far narrower than σ (25 random layers: a dip of FWHM σ/300 that moves the smeared
curve by 1e-3).  Against a brute-force average of refnx's exact curve (4 seeded stacks per family,
benchmarks/bench_reflectivity.py) the previous plan was off by up to 11 % (1,500–3,000 Å layers),
17 % (25 layers) and 3.5e-4 (absorption up to isld 1); both engines are now within 2e-7 on every
family, at ~1 ms per curve for a stack on its own rule (≈ 20× the shared plan).  No stack of the
default family needs one.  Every weight is positive and each row sums to 1, so a smeared R is a
convex combination of R values: it never exceeds the largest R in its window (1 for a lossless
stack below its edge).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .kernel_fast import own_rule_batch, stack_nodes
from .probe import Probe

N_SIGMA = 7.0
SPECTRAL_MARGIN = 6.0
EDGE_WIDTH = 4.0  # scale W of the graded stretch around a critical edge, in σ at the edge
EDGE_POINTS = 24  # points the grading adds around each edge
# When a stack needs its own adaptive rule (see needs_own_rule): calibrated on 1,800 random stacks
# (3–12 layers, 5–1,200 Å, SLD −0.6…7, 30 % absorbing, air/D2O/Si ambients) and 1,500 of the
# default family against the adaptive rule: every stack below both limits is within 2e-5 of it on
# the shared plan (the default family: 3.6e-7, largest values 0.33 and 8 for the two measures).
PHASE_LIMIT = 0.4  # d·√(Q_c σ): the fringe phase a layer gains within one σ of its own critical edge
SHARPNESS_LIMIT = 30.0  # D σ e^B: film thickness × resolution over the width of a waveguide resonance


@dataclass(frozen=True)
class ResolutionPlan:
    """R_smeared[i] = Σ_t weights[i, t] · R(calc_q[start[i] + t])."""

    q: np.ndarray
    calc_q: np.ndarray
    start: np.ndarray
    weights: np.ndarray
    sigma: np.ndarray | None = None  # 1σ resolution at q (None: unsmeared)

    @property
    def identity(self) -> bool:
        return self.weights.shape[1] == 1 and self.calc_q.shape == self.q.shape

    @functools.cached_property
    def counts(self) -> np.ndarray:
        """Number of calc points each Q point uses (the rest of its row is zero padding)."""
        nonzero = self.weights != 0
        return (self.weights.shape[1] - np.argmax(nonzero[:, ::-1], axis=1)).astype(np.int64)

    def sigma_ratio(self) -> tuple[np.ndarray, np.ndarray]:
        """(Q, σ/Q) at the smeared points, for interpolating σ between them (one dummy point if none)."""
        sigma = np.zeros_like(self.q) if self.sigma is None else self.sigma
        smeared = sigma > 0
        if not smeared.any():
            return np.ones(1), np.zeros(1)
        return np.ascontiguousarray(self.q[smeared]), np.ascontiguousarray(sigma[smeared] / self.q[smeared])

    @property
    def taps(self) -> int:
        return int(self.weights.shape[1])

    def gather_index(self) -> np.ndarray:
        """Index array (nQ, taps) into calc_q, clipped where weights are zero padding."""
        idx = self.start[:, None] + np.arange(self.taps)[None, :]
        return np.minimum(idx, self.calc_q.size - 1)

    def apply(self, r_calc: np.ndarray) -> np.ndarray:
        """Smear a (B, len(calc_q)) numpy array of R onto the probe's Q points."""
        return np.einsum("bnt,nt->bn", r_calc[:, self.gather_index()], self.weights)

    def apply_torch(self, r_calc):
        """Smear a (B, len(calc_q)) torch tensor of R; differentiable."""
        import torch  # heavy (torch): imported on use

        idx = torch.as_tensor(self.gather_index(), device=r_calc.device)
        w = torch.as_tensor(self.weights, dtype=r_calc.dtype, device=r_calc.device)
        return (r_calc[:, idx] * w).sum(-1)


def identity_plan(q: np.ndarray) -> ResolutionPlan:
    q = np.asarray(q, dtype=np.float64)
    return ResolutionPlan(q=q, calc_q=q, start=np.arange(q.size), weights=np.ones((q.size, 1)), sigma=np.zeros_like(q))


def critical_edge(substrate_sld: float, ambient_sld: float) -> float | None:
    """Q of total reflection from the substrate, or None when there is none."""
    contrast = substrate_sld - ambient_sld
    return math.sqrt(16e-6 * math.pi * contrast) if contrast > 0 else None


def build_plan(
    probe: Probe,
    max_thickness: float,
    edges: Sequence[float] = (),
    *,
    margin: float = SPECTRAL_MARGIN,
) -> ResolutionPlan:
    """Quadrature plan for ``probe`` and films up to ``max_thickness`` Å thick.

    ``edges`` are critical-edge Q values where the grid is graded (the substrate's, shared by a
    batch); the first one in each stretch of the grid is a node.  Points with σ = 0 are taken as
    they are.
    """
    q, sigma = probe.q, probe.sigma
    if not probe.smeared:
        return identity_plan(q)
    if not math.isfinite(max_thickness) or max_thickness < 0:
        raise ValueError(f"max_thickness must be a finite thickness ≥ 0 Å, got {max_thickness}")
    smeared = sigma > 0
    knots = _SigmaKnots(q[smeared], sigma[smeared])
    lo = np.maximum(q - N_SIGMA * sigma, 1e-3 * q[0])
    hi = q + N_SIGMA * sigma
    nodes, deltas = [], []
    for seg_lo, seg_hi in _merge_intervals(lo[smeared], hi[smeared]):
        inside = sorted(e for e in edges if e is not None and seg_lo - EDGE_WIDTH * knots(e) < e < seg_hi)
        x, d = _mapped_grid(seg_lo, seg_hi, knots, max_thickness, margin, inside)
        nodes.append(x)
        deltas.append(d)
    nodes.append(q[~smeared])  # exact points: in the grid, but no weight in any smeared row
    deltas.append(np.zeros(int(np.sum(~smeared))))
    calc = np.concatenate(nodes)
    delta = np.concatenate(deltas)
    order = np.argsort(calc, kind="stable")
    return _weighted_plan(q, sigma, calc[order], delta[order])


class _SigmaKnots:
    """σ(Q) between the smeared points: linear in Q between them, ∝ Q beyond; and ∫ dQ/σ in closed form."""

    def __init__(self, q: np.ndarray, sigma: np.ndarray) -> None:
        self.q, self.s = np.asarray(q, float), np.asarray(sigma, float)
        self.slope = np.diff(self.s) / np.maximum(np.diff(self.q), 1e-300)
        pieces = self._piece(self.q[1:], np.arange(self.q.size - 1)) if self.q.size > 1 else np.zeros(0)
        self.cumulative = np.concatenate([[0.0], np.cumsum(pieces)])

    def __call__(self, x):
        """σ at ``x``."""
        x = np.asarray(x, float)
        inner = np.interp(x, self.q, self.s)
        return np.where(
            x < self.q[0], x * self.s[0] / self.q[0], np.where(x > self.q[-1], x * self.s[-1] / self.q[-1], inner)
        )

    def _piece(self, x: np.ndarray, k: np.ndarray) -> np.ndarray:
        """∫ dy/σ(y) from knot k to x inside piece k (σ = s_k + slope_k (y − q_k)); log1p keeps slope → 0 exact."""
        b = self.slope[k]
        z = (x - self.q[k]) / self.s[k]
        small = np.abs(b * z) < 1e-12
        return np.where(small, z, np.log1p(np.where(small, 0.0, b * z)) / np.where(small, 1.0, b))

    def inverse_integral(self, x):
        """∫ dy/σ(y) from the first knot to ``x``."""
        x = np.asarray(x, float)
        below = self.q[0] / self.s[0] * np.log(x / self.q[0])
        above = self.cumulative[-1] + self.q[-1] / self.s[-1] * np.log(x / self.q[-1])
        if self.q.size == 1:
            return np.where(x < self.q[0], below, above)
        k = np.clip(np.searchsorted(self.q, x, side="right") - 1, 0, self.q.size - 2)
        inner = self.cumulative[k] + self._piece(np.clip(x, self.q[0], self.q[-1]), k)
        return np.where(x < self.q[0], below, np.where(x > self.q[-1], above, inner))


def _mapped_grid(
    a: float, b: float, knots: _SigmaKnots, thickness: float, margin: float, edges: list[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes Q_k = T⁻¹(k) covering [a, b] and their trapezoid weights 1 / T'(Q_k).

    T(Q) = (D·Q + c ∫ dQ/σ) / 2π + Σ_edges E(Q) + shift: the first part gives the spectral spacing
    2π / (D + c/σ); each edge term E = (n/2) ∛s / (1 + s²)^⅙, s = (Q − Q_c)/W, adds n points that
    cluster as (Q − Q_c) ∝ (k − k_c)³ at the edge, and the shift puts the first edge on a node.
    T is smooth (analytic off the edges), so the rule is a trapezoid rule in a smooth variable.
    """
    widths = [EDGE_WIDTH * float(knots(e)) for e in edges]

    def t_of(x):
        t = (thickness * x + margin * knots.inverse_integral(x)) / (2.0 * math.pi)
        for e, w in zip(edges, widths):
            s = (x - e) / w
            t = t + 0.5 * EDGE_POINTS * np.cbrt(s) / (1.0 + s * s) ** (1.0 / 6.0)
        return t

    def dt_dx(x):
        d = (thickness + margin / knots(x)) / (2.0 * math.pi)
        for e, w in zip(edges, widths):
            s = (x - e) / w
            with np.errstate(divide="ignore"):
                d = d + 0.5 * EDGE_POINTS / (3.0 * w) * np.abs(s) ** (-2.0 / 3.0) / (1.0 + s * s) ** (7.0 / 6.0)
        return d

    shift = math.ceil(float(t_of(edges[0]))) - float(t_of(edges[0])) if edges else 0.0
    # bracket every node on a fine table of T, then bisect (T is increasing, steep only at edges)
    step = 2.0 * math.pi / (thickness + margin / float(knots(a)))
    pad = 4.0 * max(step, 2.0 * math.pi / (thickness + margin / float(knots(b))))
    first = max(a - pad, 0.5 * a)
    table_x = np.linspace(first, b + pad, 16 * int(math.ceil(float(t_of(b + pad) - t_of(first)))) + 64)
    if edges:
        table_x = np.union1d(table_x, np.asarray(edges))
    table_t = t_of(table_x) + shift
    ks = np.arange(math.floor(float(t_of(a)) + shift), math.ceil(float(t_of(b)) + shift) + 1, dtype=float)
    j = np.clip(np.searchsorted(table_t, ks), 1, table_x.size - 1)
    lo, hi = table_x[j - 1], table_x[j]
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        below = t_of(mid) + shift < ks
        lo = np.where(below, mid, lo)
        hi = np.where(below, hi, mid)
    x = 0.5 * (lo + hi)
    for e in edges:  # the edge nodes exactly (T' is infinite there: weight 0)
        k_e = np.flatnonzero(np.abs(x - e) <= 1e-9 * e)
        x[k_e] = e
    with np.errstate(divide="ignore"):
        delta = 1.0 / dt_dx(x)
    delta[~np.isfinite(delta)] = 0.0
    return x, delta


def needs_own_rule(probe: Probe, sld, isld, thickness) -> np.ndarray:
    """(B,) bool: stacks whose features the shared plan cannot resolve, so they get an adaptive rule.

    A stack needs one when a critical edge inside the smeared range belongs to
    * an absorbing substrate (the shared plan grades only a sharp substrate edge);
    * a film layer thick enough that its fringes crowd at its own edge: d·√(Q_c σ) > PHASE_LIMIT;
    * a layer below which a waveguide resonance can be much narrower than σ: with B the barrier
      exponent 2 Σ d √(V − V_c) of the layers that are evanescent just below that edge,
      (total thickness)·σ·e^B > SHARPNESS_LIMIT (the resonance width is ≈ 2π / (2D) · e^−B).
    """
    sld, isld, thickness = (np.ascontiguousarray(a, dtype=np.float64) for a in (sld, isld, thickness))
    sigma = probe.sigma
    smeared = sigma > 0
    if not smeared.any():
        return np.zeros(sld.shape[0], dtype=bool)
    q_lo = float(np.min(probe.q[smeared] - N_SIGMA * sigma[smeared]))
    q_hi = float(np.max(probe.q[smeared] + N_SIGMA * sigma[smeared]))
    knot_q, knot_s = np.ascontiguousarray(probe.q[smeared]), np.ascontiguousarray(sigma[smeared])
    return own_rule_batch(sld, isld, thickness, knot_q, knot_s, q_lo, q_hi, PHASE_LIMIT, SHARPNESS_LIMIT)


def stack_plan(probe: Probe, sld, isld, thickness, roughness) -> ResolutionPlan:
    """A plan for one stack from its own adaptive rule (the one the fast engine uses for such stacks).

    The nodes are where that stack's features are; the plan is exact for it and good for stacks
    near it (a fit keeps it while parameters move and rebuilds it at the optimum).
    """
    q, sigma = probe.q, probe.sigma
    if not probe.smeared:
        return identity_plan(q)
    smeared = sigma > 0
    ratio_q, ratio = q[smeared], sigma[smeared] / q[smeared]
    x, w, _ = stack_nodes(
        q,
        sigma,
        ratio_q,
        ratio,
        *(np.ascontiguousarray(a, dtype=np.float64) for a in (sld, isld, thickness, roughness)),
    )
    calc = np.concatenate([x, q[~smeared]])
    delta = np.concatenate([w, np.zeros(int(np.sum(~smeared)))])
    order = np.argsort(calc, kind="stable")
    return _weighted_plan(q, sigma, calc[order], delta[order])


def _weighted_plan(q: np.ndarray, sigma: np.ndarray, calc: np.ndarray, delta: np.ndarray) -> ResolutionPlan:
    """The plan that weights node t of Q point i by G_i(calc_t)·delta_t, normalised over ±7σ_i (σ_i = 0: R(q_i))."""
    smeared = sigma > 0
    starts = np.searchsorted(calc, np.where(smeared, q - N_SIGMA * sigma, q), side="left")
    stops = np.searchsorted(calc, np.where(smeared, q + N_SIGMA * sigma, q), side="right")
    stops = np.where(smeared, stops, starts + 1)
    taps = int(np.max(stops - starts))
    idx = starts[:, None] + np.arange(taps)[None, :]
    inside = idx < stops[:, None]
    idx = np.minimum(idx, calc.size - 1)
    safe_sigma = np.where(smeared, sigma, 1.0)
    w = np.exp(-0.5 * ((calc[idx] - q[:, None]) / safe_sigma[:, None]) ** 2) * delta[idx]
    w = np.where(inside, w, 0.0)
    w = np.where(smeared[:, None], w / np.where(smeared, w.sum(axis=1), 1.0)[:, None], 0.0)
    w[~smeared, 0] = 1.0
    return ResolutionPlan(q=q.copy(), calc_q=calc, start=starts.astype(np.int64), weights=w, sigma=sigma.copy())


def _merge_intervals(lo: np.ndarray, hi: np.ndarray) -> list[tuple[float, float]]:
    order = np.argsort(lo)
    merged: list[list[float]] = []
    for a, b in zip(lo[order], hi[order]):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([float(a), float(b)])
    return [(a, b) for a, b in merged]

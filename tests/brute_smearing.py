"""A brute-force Gaussian average of the exact curve, split at every critical edge of each stack.

Independent of the workbench: R comes from refnx's C ``abeles`` (the torch kernel when refnx is
missing), and the integral ∫ R(Q') N(Q'; Q_i, σ_i) dQ' over ±``width``·σ_i is Gauss–Legendre on
each piece between the critical edges that fall in the window — every layer whose SLD exceeds
the ambient's, substrate included.  Each piece is mapped with Q' = a + (b − a)(1 − cos πt)/2,
which makes a √ kink at either end analytic in t.  Nodes per piece grow with the piece's length
times the film's fringe frequency (2 × total thickness), so 3,000 Å layers are resolved too.
Waveguide resonances can be far narrower than σ (a 25-layer stack has a dip of FWHM σ/300 that
changes the smeared curve by 1e-3): below the highest edge R is scanned every 1e-4·σ, and every
dip or peak narrower than σ/20 becomes a breakpoint too, where the mapping packs nodes.
The Gaussian is cut at ±7σ like the workbench's (with R falling by 1e30 across a window, as for
roughness of 100 Å at 0.2 Å⁻¹, the cut is part of the definition).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from workbench.physics import StackArrays

FOUR_PI_E6 = 4e-6 * math.pi


def critical_edges(sld: np.ndarray, ambient: float) -> np.ndarray:
    """Q of every layer's critical edge (one stack; layers denser than the ambient)."""
    contrast = np.asarray(sld[:-1], dtype=float) - ambient
    return np.sort(np.sqrt(16e-6 * math.pi * contrast[contrast > 0]))


def to_refnx_layers(sld, isld, thickness, roughness) -> np.ndarray:
    """refnx's (L, 4) [thickness, sld, isld, roughness] array, fronting (ambient) first."""
    out = np.zeros((len(sld), 4))
    out[:, 0] = np.asarray(thickness)[::-1]
    out[:, 1] = np.asarray(sld)[::-1]
    out[:, 2] = np.asarray(isld)[::-1]
    out[0, 2] = 0.0  # the workbench (like refl1d) ignores the ambient's absorption
    out[1:, 3] = np.asarray(roughness)[::-1]
    return out


def exact_curve(x: np.ndarray, sld, isld, thickness, roughness) -> np.ndarray:
    """Unsmeared R at the points ``x`` of one stack: refnx's ``abeles``, or the torch kernel without refnx."""
    try:
        from refnx.reflect._creflect import abeles  # optional (bench extra): the independent kernel
    except ImportError:
        import torch  # heavy: only when refnx is missing

        from workbench.physics.kernel_torch import reflectivity_unsmeared

        t = [torch.as_tensor(np.asarray(v, dtype=float))[None] for v in (sld, isld, thickness, roughness)]
        return reflectivity_unsmeared(torch.as_tensor(x), *t).numpy()[0]
    return abeles(np.ascontiguousarray(x, dtype=float), to_refnx_layers(sld, isld, thickness, roughness))


PANEL = 32  # Gauss–Legendre nodes per panel; a piece gets as many panels as its length needs
_T, _W = np.polynomial.legendre.leggauss(PANEL)


def _pieces(a: float, b: float, edges: np.ndarray, per_unit: float, minimum: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights on [a, b], split at the edges inside, each piece cosine-mapped and composite GL."""
    cuts = np.concatenate([[a], edges[(edges > a) & (edges < b)], [b]])
    xs, ws = [], []
    for lo, hi in itertools.pairwise(cuts):
        # ``minimum`` nodes per window, shared by its pieces in proportion to their length (≥ 2 panels each)
        panels = max(2, math.ceil((minimum * (hi - lo) / (b - a) + per_unit * (hi - lo)) / PANEL))
        t = ((np.arange(panels)[:, None] + 0.5 * (_T[None, :] + 1.0)) / panels).ravel()
        w = np.tile(_W, panels) * 0.5 / panels
        xs.append(lo + (hi - lo) * 0.5 * (1.0 - np.cos(math.pi * t)))
        ws.append(w * (hi - lo) * 0.5 * math.pi * np.sin(math.pi * t))
    return np.concatenate(xs), np.concatenate(ws)


def narrow_features(sld, isld, thickness, roughness, lo: float, hi: float, step: float, widest: float) -> np.ndarray:
    """Q of the dips and peaks of R on [lo, hi] narrower than ``widest`` (FWHM), found on a grid of ``step``.

    A dip of depth Δ (in log R) and FWHM w has curvature ≈ 8Δ/w² at its centre: every stretch where
    |d² log R / dQ²| exceeds that of a 1e-3-deep dip of width ``widest`` is one feature, located at
    its extreme of log R.
    """
    found = []
    chunk = 500_000 * step
    limit = 8e-3 / widest**2
    for start in np.arange(lo, hi, chunk):
        x = np.arange(start, min(start + chunk, hi), step)
        if x.size < 5:
            continue
        log_r = np.log(np.maximum(exact_curve(x, sld, isld, thickness, roughness), 1e-300))
        curvature = np.abs(log_r[2:] - 2.0 * log_r[1:-1] + log_r[:-2]) / step**2
        sharp = np.flatnonzero(curvature > limit) + 1
        if sharp.size == 0:
            continue
        groups = np.split(sharp, np.flatnonzero(np.diff(sharp) > 1) + 1)
        for g in groups:
            seg = log_r[g]
            k = g[np.argmax(np.abs(seg - np.median(log_r[max(g[0] - 5, 0) : g[-1] + 6])))]
            found.append(x[k])
    return np.asarray(found)


def brute_smear(
    q: np.ndarray,
    sigma: np.ndarray,
    arrays: StackArrays,
    *,
    width: float = 7.0,
    minimum: int = 80,
    density: float = 3.0,
) -> np.ndarray:
    """Reference smeared R, shape (B, nQ), for numpy StackArrays; σ = 0 points are exact R."""
    q, sigma = np.asarray(q, float), np.asarray(sigma, float)
    out = np.empty((arrays.batch, q.size))
    smeared = sigma > 0
    for b in range(arrays.batch):
        sld, isld = arrays.sld[b], arrays.isld[b]
        thickness, roughness = arrays.thickness[b], arrays.roughness[b]
        edges = critical_edges(sld, float(sld[-1]))
        if edges.size and smeared.any():
            lo = max(float(np.min(q[smeared] - width * sigma[smeared])), 1e-6)
            top = min(1.5 * float(edges[-1]), float(np.max(q[smeared] + width * sigma[smeared])))
            step = 1e-4 * float(np.min(sigma[smeared]))
            widest = 0.05 * float(np.min(sigma[smeared] / q[smeared])) * lo
            if top > lo:
                features = narrow_features(sld, isld, thickness, roughness, lo, top, step, widest)
                edges = np.sort(np.concatenate([edges, features]))
        frequency = 2.0 * float(np.sum(thickness[1:-1])) + 50.0 * float(np.max(roughness, initial=0.0))
        xs, ws, owner = [], [], []
        for i, (qi, si) in enumerate(zip(q, sigma)):
            if si <= 0:
                xs.append(np.array([qi]))
                ws.append(np.array([1.0]))
                owner.append(np.array([i]))
                continue
            lo, hi = max(qi - width * si, 1e-3 * q[0]), qi + width * si
            x, w = _pieces(lo, hi, edges, density * frequency / math.pi, minimum)
            xs.append(x)
            ws.append(w * np.exp(-0.5 * ((x - qi) / si) ** 2))
            owner.append(np.full(x.size, i))
        x, w, own = np.concatenate(xs), np.concatenate(ws), np.concatenate(owner)
        order = np.argsort(x)  # refnx is faster on sorted Q, and any order gives the same values
        r = np.empty_like(x)
        r[order] = exact_curve(x[order], sld, isld, thickness, roughness)
        out[b] = np.bincount(own, weights=w * r, minlength=q.size) / np.bincount(own, weights=w, minlength=q.size)
    return out

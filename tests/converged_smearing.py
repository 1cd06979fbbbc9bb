"""A converged reference for Gaussian smearing, independent of the workbench's quadrature plan.

For each Q_i the integral ∫ R(Q') N(Q'; Q_i, σ_i) dQ' over ±10σ_i is done by Gauss–Legendre with
many nodes; where the window contains the substrate critical edge Q_c it is split there and each
side is mapped with Q' = Q_c ± s², which makes the integrand analytic in s (R has a √ kink at Q_c).
"""

from __future__ import annotations

import numpy as np
import torch

from workbench.physics.kernel_torch import reflectivity_unsmeared


def _gl(a: float, b: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(n)
    return 0.5 * (b - a) * x + 0.5 * (a + b), 0.5 * (b - a) * w


def converged_smear(q, sigma, arrays, edge: float | None, nodes: int = 600, width: float = 10.0) -> np.ndarray:
    """Reference smeared R (B, nQ) for numpy StackArrays ``arrays``."""
    all_x, all_w, owner = [], [], []
    for i, (qi, si) in enumerate(zip(q, sigma)):
        a, b = max(qi - width * si, 1e-9), qi + width * si
        pieces = []
        if edge is not None and a < edge < b:
            for lo, hi, sign in ((0.0, np.sqrt(edge - a), -1.0), (0.0, np.sqrt(b - edge), 1.0)):
                s, ws = _gl(lo, hi, nodes)
                pieces.append((edge + sign * s**2, ws * 2 * s))
        else:
            pieces.append(_gl(a, b, 2 * nodes))
        for x, w in pieces:
            g = np.exp(-0.5 * ((x - qi) / si) ** 2)
            all_x.append(x)
            all_w.append(w * g)
            owner.append(np.full(x.size, i))
    x = np.concatenate(all_x)
    w = np.concatenate(all_w)
    owner = np.concatenate(owner)
    t = arrays.map(torch.as_tensor)
    r = reflectivity_unsmeared(torch.as_tensor(x), t.sld, t.isld, t.thickness, t.roughness).numpy()
    num = np.zeros((r.shape[0], q.size))
    den = np.bincount(owner, weights=w, minlength=q.size)
    for b in range(r.shape[0]):
        num[b] = np.bincount(owner, weights=w * r[b], minlength=q.size)
    return num / den

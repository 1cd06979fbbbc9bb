"""R(Q) of an arbitrary SLD profile: the 'computed' curve of a predicted profile.

The profile (substrate side first) is cut into micro-slabs one z step thick with sharp
interfaces (the smoothing is already in the profile); the first point is the substrate and the
last the ambient.  Computed by the fast engine with the probe's resolution, so it can be laid
over the measured or ground-truth curve.
"""

from __future__ import annotations

import numpy as np

from ..physics import Probe, StackArrays, reflectivity


def profile_to_slabs(
    z: np.ndarray, rho: np.ndarray, irho: np.ndarray | None = None, max_slabs: int = 400
) -> StackArrays:
    """Micro-slab stacks (B, L) from profiles (B, nZ) on increasing z rows (resampled to ≤ max_slabs)."""
    z = np.atleast_2d(np.asarray(z, dtype=np.float64))
    rho = np.atleast_2d(np.asarray(rho, dtype=np.float64))
    irho = np.zeros_like(rho) if irho is None else np.atleast_2d(np.asarray(irho, dtype=np.float64))
    n_batch, n_z = rho.shape
    n = min(n_z, max_slabs)
    out_rho = np.empty((n_batch, n))
    out_irho = np.empty((n_batch, n))
    widths = np.empty(n_batch)
    for b in range(n_batch):
        zz = np.linspace(z[b, 0], z[b, -1], n)
        out_rho[b] = np.interp(zz, z[b], rho[b])
        out_irho[b] = np.interp(zz, z[b], irho[b])
        widths[b] = (z[b, -1] - z[b, 0]) / (n - 1)
    # layers: substrate (first point), n − 2 slabs, ambient (last point)
    thickness = np.repeat(widths[:, None], n, axis=1)
    thickness[:, 0] = thickness[:, -1] = 0.0
    return StackArrays(out_rho, np.maximum(out_irho, 0.0), thickness, np.zeros((n_batch, n - 1)))


def reflectivity_of_profile(z: np.ndarray, rho: np.ndarray, probe: Probe, irho: np.ndarray | None = None) -> np.ndarray:
    """R(Q) (B, nQ) of profiles on the probe's Q points, with its resolution."""
    return reflectivity(profile_to_slabs(z, rho, irho), probe, engine="fast")

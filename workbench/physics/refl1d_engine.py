"""refl1d as the reference engine: the same stack computed by refl1d's Experiment and QProbe.

This is how pyreflect computes its curves (one refl1d Experiment per stack).  It is slow
(≈ 2,000 curves/s) but it is the physics the field trusts; the tests hold our kernels to it.
"""

from __future__ import annotations

import numpy as np

from .probe import Probe
from .stack import FilmStack, StackArrays


def _experiment(sld, isld, thickness, roughness, probe: Probe, oversample: int | None):
    from refl1d.names import SLD, Experiment, QProbe, Slab  # heavy optional dependency (refl1d): imported on first use

    sigma = probe.sigma
    qprobe = QProbe(probe.q, sigma, intensity=probe.scale, background=probe.background)
    if oversample:
        qprobe.oversample(n=oversample, seed=1)
    n = len(sld)
    sample = None
    for j in range(n):
        interface = float(roughness[j]) if j < n - 1 else 0.0
        width = float(thickness[j]) if 0 < j < n - 1 else 0.0
        slab = Slab(
            material=SLD(name=f"L{j}", rho=float(sld[j]), irho=float(isld[j])), thickness=width, interface=interface
        )
        sample = slab if sample is None else sample | slab
    return Experiment(probe=qprobe, sample=sample)


def reflectivity_refl1d(
    stacks: FilmStack | StackArrays, probe: Probe, *, resolution: bool = True, oversample: int | None = None
) -> np.ndarray:
    """R(Q) of each stack by refl1d, shape (B, nQ).

    With ``resolution`` the probe's Gaussian dQ is applied the way refl1d does it: R is computed
    on the probe's Q points (plus ``oversample`` random points per Q if given), treated as
    piecewise linear, and integrated against the Gaussian truncated at ±3σ.
    """
    arrays = stacks.to_arrays() if isinstance(stacks, FilmStack) else stacks.map(np.asarray)
    out = np.empty((arrays.batch, probe.q.size))
    for b in range(arrays.batch):
        expt = _experiment(arrays.sld[b], arrays.isld[b], arrays.thickness[b], arrays.roughness[b], probe, oversample)
        _, r = expt.reflectivity(resolution=resolution and probe.smeared)
        out[b] = r
    return out


def sld_profile_refl1d(stack: FilmStack, dz: float = 0.1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """refl1d's ``smooth_profile``: z (Å, substrate interface at 0), ρ and ρ'' on a dz grid."""
    a = stack.to_arrays()
    expt = _experiment(a.sld[0], a.isld[0], a.thickness[0], a.roughness[0], Probe(dq_over_q=None), None)
    z, rho, irho = expt.smooth_profile(dz=dz)
    return np.asarray(z), np.asarray(rho), np.asarray(irho)

"""Batched, differentiable specular reflectivity of slab stacks in torch.

Parratt's recursion with Névot–Croce interfaces and absorption, evaluated for a batch of
stacks at once on any device, in float32 or float64.  It follows refl1d's conventions exactly:
the beam enters from the last layer (the ambient), whose imaginary SLD is ignored, and
k_j = √(k_z² − 4π·10⁻⁶ (ρ_j − ρ_ambient + i ρ''_j)) with the decaying branch.
"""

from __future__ import annotations

import math

import torch

FOUR_PI_E6 = 4.0e-6 * math.pi

# Smallest |k_z² − V| allowed: keeps k ≠ 0 so that r = (k_j − k_{j+1})/(k_j + k_{j+1}) is never 0/0
# and gradients stay finite exactly at a critical edge.  k = 1e-15 Å⁻¹ (f64) or 1e-9 Å⁻¹ (f32)
# changes R by far less than rounding does.
_K2_FLOOR = {torch.float64: 1e-30, torch.float32: 1e-18}


def complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def wavevectors(q: torch.Tensor, sld: torch.Tensor, isld: torch.Tensor) -> torch.Tensor:
    """k_z inside every layer, shape (B, L, M), with Im k ≥ 0 (the decaying solution)."""
    kz2 = (0.5 * q) ** 2
    contrast = FOUR_PI_E6 * (sld - sld[:, -1:])
    absorption = FOUR_PI_E6 * isld
    absorption = torch.cat([absorption[:, :-1], torch.zeros_like(absorption[:, -1:])], dim=1)
    real = kz2[None, None, :] - contrast[:, :, None]
    # + 0.0 turns a -0.0 imaginary part into +0.0 so that the square root picks the decaying branch.
    imag = absorption[:, :, None].expand_as(real) + 0.0
    floor = _K2_FLOOR[real.dtype]
    small = real.abs() + imag < floor
    real = torch.where(small, torch.full_like(real, floor), real)
    return torch.sqrt(torch.complex(real, imag))


def reflectivity_amplitude(
    q: torch.Tensor, sld: torch.Tensor, isld: torch.Tensor, thickness: torch.Tensor, roughness: torch.Tensor
) -> torch.Tensor:
    """Complex reflection amplitude r(Q), shape (B, M), for stacks given substrate first.

    ``q`` (M,) in Å⁻¹; ``sld``, ``isld``, ``thickness`` (B, L); ``roughness`` (B, L − 1), entry j
    being the interface between layers j and j + 1.  The result is the complex conjugate of
    refl1d's amplitude (refl1d uses the e^{−ikd} convention); |r|² is identical.
    """
    k = wavevectors(q, sld, isld)
    n_layers = sld.shape[1]
    x = None
    for j in range(1, n_layers):
        k_above, k_below = k[:, j], k[:, j - 1]
        sigma2 = (roughness[:, j - 1] ** 2)[:, None]
        r = (k_above - k_below) / (k_above + k_below) * torch.exp(-2.0 * k_above * k_below * sigma2)
        if x is None:
            x = r
        else:
            phase = torch.exp(2j * k_below * thickness[:, j - 1, None])
            xp = x * phase
            x = (r + xp) / (1.0 + r * xp)
    return x


def reflectivity_unsmeared(
    q: torch.Tensor, sld: torch.Tensor, isld: torch.Tensor, thickness: torch.Tensor, roughness: torch.Tensor
) -> torch.Tensor:
    """|r(Q)|², shape (B, M), no resolution, scale or background."""
    r = reflectivity_amplitude(q, sld, isld, thickness, roughness)
    return r.real**2 + r.imag**2

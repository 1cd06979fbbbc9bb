"""The SLD depth profile: the error-function-smoothed step profile of refl1d's ``smooth_profile``.

ρ(z) = ρ_substrate + Σ_i (ρ_{i+1} − ρ_i) · ½[1 + erf((z − z_i) / (√2 σ_i))], with z_i the
position of interface i (the substrate's top at z = 0, z increasing towards the ambient) and a
sharp step where σ_i = 0.  Batched, in torch, differentiable in every parameter.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .reflectivity import as_arrays

DEFAULT_PROFILE_POINTS = 900  # pyreflect's sldOutputPoints


def interface_positions(thickness: torch.Tensor) -> torch.Tensor:
    """z of each interface, (B, L − 1): 0 for the substrate's top, then cumulative thickness."""
    inner = thickness[:, 1:-1]
    zero = torch.zeros_like(thickness[:, :1])
    return torch.cat([zero, torch.cumsum(inner, dim=1)], dim=1)


def profile_range(thickness: torch.Tensor, roughness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """refl1d's z range: 3σ beyond every interface and at least 10 Å beyond the outer ones."""
    offsets = interface_positions(thickness)
    left = torch.minimum(torch.full_like(offsets[:, 0], -10.0), (offsets - 3 * roughness).min(dim=1).values)
    right = torch.maximum(offsets[:, -1] + 10.0, (offsets + 3 * roughness).max(dim=1).values)
    return left, right


def sld_profile_torch(
    sld: torch.Tensor,
    isld: torch.Tensor,
    thickness: torch.Tensor,
    roughness: torch.Tensor,
    z: torch.Tensor | None = None,
    n_points: int = DEFAULT_PROFILE_POINTS,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(z, ρ, ρ'') each (B, nZ).  ``z`` (nZ,) or (B, nZ); default: ``n_points`` over refl1d's range."""
    if z is None:
        left, right = profile_range(thickness.detach(), roughness.detach())
        t = torch.linspace(0.0, 1.0, n_points, dtype=sld.dtype, device=sld.device)
        z = left[:, None] + (right - left)[:, None] * t[None, :]
    else:
        z = torch.as_tensor(z, dtype=sld.dtype, device=sld.device)
        if z.ndim == 1:
            z = z[None, :].expand(sld.shape[0], -1)
    offsets = interface_positions(thickness)  # (B, I)
    rough = roughness[:, :, None]
    sharp = rough <= 0
    safe = torch.where(sharp, torch.ones_like(rough), rough)
    dz = z[:, None, :] - offsets[:, :, None]  # (B, I, nZ)
    smooth = 0.5 * (1.0 + torch.special.erf(dz / (math.sqrt(2.0) * safe)))
    blend = torch.where(sharp, (dz >= 0).to(sld.dtype), smooth)
    out = []
    for values in (sld, isld):
        contrast = (values[:, 1:] - values[:, :-1])[:, :, None]
        out.append(values[:, :1] + (contrast * blend).sum(dim=1))
    return z, out[0], out[1]


def sld_profile(stacks, z=None, n_points: int = DEFAULT_PROFILE_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SLD profiles of a FilmStack, a list of them or StackArrays, as numpy (z, ρ, ρ''), each (B, nZ)."""

    a = as_arrays(stacks).map(lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float64))
    zt, rho, irho = sld_profile_torch(a.sld, a.isld, a.thickness, a.roughness, z=z, n_points=n_points)
    return zt.numpy(), rho.numpy(), irho.numpy()

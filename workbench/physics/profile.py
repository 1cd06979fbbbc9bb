"""The SLD depth profile: the error-function-smoothed step profile of refl1d's ``smooth_profile``.

ρ(z) = ρ_substrate + Σ_i (ρ_{i+1} − ρ_i) · ½[1 + erf((z − z_i) / (√2 σ_i))], with z_i the
position of interface i (the substrate's top at z = 0, z increasing towards the ambient) and a
sharp step where σ_i = 0.

Two implementations of the same formula: :func:`sld_profile` in numpy and numba (exact ``erf``), what
charts, exports and analyses call; and :func:`sld_profile_torch`, batched and differentiable in every
parameter, for fits.  The numpy path is why a dashboard's Film stack chart draws without torch (≈ 2 s of a
kernel's start); torch is imported inside the torch functions, by whoever calls them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from .kernel_profile import profile_range_numpy
from .reflectivity import as_arrays, to_numpy

if TYPE_CHECKING:
    import torch

DEFAULT_PROFILE_POINTS = 900  # pyreflect's sldOutputPoints
_SQRT2 = math.sqrt(2.0)


@njit(cache=True, error_model="numpy")
def _profiles(values, offsets, roughness, z, out):  # pragma: no cover - compiled
    """out[b, j] = values[b, 0] + Σ_i (values[b, i+1] − values[b, i]) · blend_i(z[b, j]), the formula above."""
    n_batch, n_points = out.shape
    for b in range(n_batch):
        for j in range(n_points):
            acc = values[b, 0]
            for i in range(offsets.shape[1]):
                dz = z[b, j] - offsets[b, i]
                s = roughness[b, i]
                if s <= 0.0:
                    blend = 1.0 if dz >= 0.0 else 0.0
                else:
                    blend = 0.5 * (1.0 + math.erf(dz / (_SQRT2 * s)))
                acc += (values[b, i + 1] - values[b, i]) * blend
            out[b, j] = acc


def interface_positions_numpy(thickness: np.ndarray) -> np.ndarray:
    """z of each interface, (B, L − 1): 0 for the substrate's top, then cumulative thickness."""
    return np.concatenate([np.zeros((thickness.shape[0], 1)), np.cumsum(thickness[:, 1:-1], axis=1)], axis=1)


def sld_profile(stacks, z=None, n_points: int = DEFAULT_PROFILE_POINTS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SLD profiles of a FilmStack, a list of them or StackArrays, as numpy (z, ρ, ρ''), each (B, nZ).

    ``z`` (nZ,) or (B, nZ); default: ``n_points`` over refl1d's range (3σ beyond every interface, at least
    10 Å beyond the outer ones).
    """
    a = as_arrays(stacks).map(lambda x: np.ascontiguousarray(to_numpy(x)))
    offsets = interface_positions_numpy(a.thickness)
    if z is None:
        left, right = profile_range_numpy(a.thickness, a.roughness)
        t = np.linspace(0.0, 1.0, n_points)
        z = left[:, None] + (right - left)[:, None] * t[None, :]
    else:
        z = to_numpy(z)
        if z.ndim not in (1, 2) or (z.ndim == 2 and z.shape[0] not in (1, a.batch)):
            raise ValueError(f"z must have shape (nZ,) or ({a.batch}, nZ) for {a.batch} stacks, got {z.shape}")
        z = np.broadcast_to(z, (a.batch, z.shape[-1]))  # one grid for every stack, or one per stack
    z = np.ascontiguousarray(z)
    rho, irho = np.empty(z.shape), np.empty(z.shape)
    _profiles(a.sld, offsets, a.roughness, z, rho)
    _profiles(a.isld, offsets, a.roughness, z, irho)
    return z, rho, irho


def interface_positions(thickness: torch.Tensor) -> torch.Tensor:
    """z of each interface, (B, L − 1), in torch: 0 for the substrate's top, then cumulative thickness."""
    import torch  # heavy (≈ 2 s): only the differentiable profile needs it, never the dashboard's charts

    inner = thickness[:, 1:-1]
    zero = torch.zeros_like(thickness[:, :1])
    return torch.cat([zero, torch.cumsum(inner, dim=1)], dim=1)


def profile_range(thickness: torch.Tensor, roughness: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """refl1d's z range in torch: 3σ beyond every interface and at least 10 Å beyond the outer ones."""
    import torch  # heavy (≈ 2 s): only the differentiable profile needs it, never the dashboard's charts

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
    """(z, ρ, ρ'') each (B, nZ), differentiable.  ``z`` (nZ,) or (B, nZ); default: ``n_points`` over refl1d's range."""
    import torch  # heavy (≈ 2 s): only the differentiable profile needs it, never the dashboard's charts

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

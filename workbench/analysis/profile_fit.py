"""A film stack from an SLD profile: fit a template stack's free parameters to a predicted ρ(z).

An SLD model (the default "compact" kind) predicts a depth profile, not a stack, yet a refinement
needs a stack to start from.  :func:`stack_from_profile` fits the template's free parameters (its
bounds with lo < hi) to the profile by bounded least squares (scipy's ``trf``) of
``sld_profile(stack, z)`` against ρ, from a few starts (the template and the centre of the
bounds), and reports the RMS misfit in 10⁻⁶ Å⁻², so a caller can say how well a stack of that
shape describes the prediction.

Profiles of a data set start at z = 0 (pyreflect's convention: the left edge of refl1d's range, a few
roughnesses below the substrate's top), while a stack puts the substrate's top at z = 0; the fit
therefore also finds the offset between the two (``ProfileFit.z_offset``, Å: z_stack = z + offset).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import least_squares
from scipy.special import erf

from ..physics import PARAMETER_FIELDS, FilmStack, sld_profile
from ..physics.profile import profile_range


@dataclass
class ProfileFit:
    """The fitted stack, how well its profile matches (RMS, 10⁻⁶ Å⁻²) and the z offset of the given profile."""

    stack: FilmStack
    rms: float
    z_offset: float
    names: list[str]
    values: np.ndarray
    at_bound: list[str]
    starts: int
    converged: bool


def _checked_profile(z, rho) -> tuple[np.ndarray, np.ndarray]:
    """``z`` and ``rho`` as float arrays of one profile; ValueError names what is wrong."""
    z = np.asarray(z, dtype=np.float64).ravel() if np.ndim(z) <= 1 else None
    rho = np.asarray(rho, dtype=np.float64).ravel() if np.ndim(rho) <= 1 else None
    if z is None or rho is None:
        raise ValueError("the profile must be one curve: z and rho one-dimensional")
    if z.size != rho.size:
        raise ValueError(f"the profile's z has {z.size} points but rho has {rho.size}: they must match")
    if z.size < 4:
        raise ValueError(f"the profile has {z.size} points; at least 4 are needed to fit a stack")
    for name, a in (("z", z), ("rho", rho)):
        bad = ~np.isfinite(a)
        if bad.any():
            raise ValueError(f"the profile's {name} has {int(bad.sum())} non-finite value(s) (NaN or inf)")
    if not np.all(np.diff(z) > 0):
        raise ValueError("the profile's z must increase strictly from the substrate side")
    return z, rho


def sorted_profile(z, rho) -> tuple[np.ndarray, np.ndarray]:
    """A predicted profile sorted by z with repeated z dropped (a network's predicted z row need not increase)."""
    z, rho = np.asarray(z, dtype=float).ravel(), np.asarray(rho, dtype=float).ravel()
    if z.size != rho.size or not (np.all(np.isfinite(z)) and np.all(np.isfinite(rho))):
        return z, rho  # stack_from_profile says what is wrong
    order = np.argsort(z, kind="stable")
    z, rho = z[order], rho[order]
    keep = np.concatenate([[True], np.diff(z) > 0])
    return z[keep], rho[keep]


def stack_from_profile(
    template: FilmStack,
    z,
    rho,
    *,
    bounds: dict[str, tuple[float, float]] | None = None,
    fit_offset: bool = True,
    max_nfev: int = 400,
) -> ProfileFit:
    """Fit ``template``'s free parameters so that its SLD profile matches (z, rho).

    ``bounds`` (name "<layer>.<par>" → (lo, hi)) override the template's own; a template without
    any free parameter is an error.  ``fit_offset`` also fits where the substrate's top lies on the
    given z axis (a data set's profile starts at z = 0); without it z is taken in the stack's frame.
    """
    z, rho = _checked_profile(z, rho)
    free = template.free_parameters
    if not free:
        raise ValueError("the template stack has no free parameter (no bound with min < max) to fit to the profile")
    names = template.parameter_names(free)
    lo = np.array([b.lo for b in free], dtype=float)
    hi = np.array([b.hi for b in free], dtype=float)
    for k, name in enumerate(names):
        if bounds and name in bounds:
            lo[k], hi[k] = map(float, bounds[name])
            if not lo[k] < hi[k]:
                raise ValueError(f"bounds of {name}: min {lo[k]:g} must be below max {hi[k]:g}")
    base = template.to_arrays()
    model = _ProfileModel(
        {f: np.asarray(getattr(base, f), dtype=float)[0] for f in PARAMETER_FIELDS},
        [(b.par, b.i) for b in free],
        z,
        fit_offset,
    )
    span = float(z[-1] - z[0])
    if fit_offset:
        lo, hi = np.append(lo, -span), np.append(hi, span)
    n_par = len(free)

    def residuals(x: np.ndarray) -> np.ndarray:
        return model.profile(x) - rho

    x_template = np.clip([template.get(b.i, b.par) for b in free], lo[:n_par], hi[:n_par])
    x_centre = 0.5 * (lo[:n_par] + hi[:n_par])
    starts = []
    for x0 in (x_template, x_centre):
        if fit_offset:
            # the two conventions: z already in the stack's frame (offset 0) or starting at refl1d's left edge
            thickness, roughness = model.layers(x0)[2:]
            left = float(profile_range(torch.as_tensor(thickness[None]), torch.as_tensor(roughness[None]))[0][0])
            for off in (0.0, left):
                starts.append(np.append(x0, np.clip(off, -span, span)))
        else:
            starts.append(x0)
    best = None
    for x0 in starts:
        res = least_squares(
            residuals, x0, jac=model.jacobian, bounds=(lo, hi), method="trf", x_scale="jac", max_nfev=max_nfev
        )
        if best is None or res.cost < best.cost:
            best = res
    x = best.x
    stack = template
    for value, b in zip(x, free):
        stack = stack.with_value(b.i, b.par, float(value))
    offset = float(x[-1]) if fit_offset else 0.0
    rms = float(np.sqrt(np.mean((sld_profile(stack, z=z + offset)[1][0] - rho) ** 2)))  # the physics' own profile
    tol = 1e-3 * (hi - lo)
    at_bound = [n for k, n in enumerate(names) if x[k] - lo[k] <= tol[k] or hi[k] - x[k] <= tol[k]]
    return ProfileFit(
        stack=stack,
        rms=rms,
        z_offset=offset,
        names=names,
        values=x[:n_par].copy(),
        at_bound=at_bound,
        starts=len(starts),
        converged=bool(best.success),
    )


class _ProfileModel:
    """ρ(z) of the template with the free parameters ``x`` put in, and its exact Jacobian (numpy).

    The same error-function profile as :func:`workbench.physics.sld_profile`, written out so that
    the derivatives are closed-form: one evaluation is (interfaces × points) erf calls.
    """

    def __init__(self, base: dict[str, np.ndarray], slots: list[tuple[str, int]], z: np.ndarray, offset: bool):
        self.base, self.slots, self.z, self.offset = base, slots, z, offset

    def layers(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        parts = {f: self.base[f].copy() for f in PARAMETER_FIELDS}
        for value, (par, i) in zip(x, self.slots):
            parts[par][i] = value
        return parts["sld"], parts["isld"], parts["thickness"], parts["roughness"]

    def _terms(self, x: np.ndarray):
        sld, _, thickness, roughness = self.layers(x)
        positions = np.concatenate([[0.0], np.cumsum(thickness[1:-1])])  # interface i on top of layer i
        sigma = roughness  # (L − 1,): interface i on top of layer i
        shift = x[len(self.slots)] if self.offset else 0.0
        dz = self.z[None, :] + shift - positions[:, None]  # (I, nZ)
        sharp = sigma <= 0
        safe = np.where(sharp, 1.0, sigma)[:, None]
        u = dz / safe
        step = np.where(sharp[:, None], (dz >= 0).astype(float), 0.5 * (1.0 + erf(u / math.sqrt(2.0))))
        density = np.where(sharp[:, None], 0.0, np.exp(-0.5 * u**2) / math.sqrt(2.0 * math.pi) / safe)
        return sld, np.diff(sld), step, density, u

    def profile(self, x: np.ndarray) -> np.ndarray:
        sld, contrast, step, _, _ = self._terms(x)
        return sld[0] + contrast @ step

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """dρ/dx, (nZ, P): closed-form derivatives of the error-function steps."""
        sld, contrast, step, density, u = self._terms(x)
        d_position = -contrast[:, None] * density  # dρ/dz_i of each interface, (I, nZ)
        columns = []
        for par, i in self.slots:
            if par == "sld":
                col = (step[i - 1] if i > 0 else 1.0) - (step[i] if i < len(sld) - 1 else 0.0)
                col = col + np.zeros_like(self.z)
            elif par == "thickness":  # moves every interface above layer i
                col = d_position[i:].sum(axis=0)
            elif par == "roughness":
                col = -contrast[i] * density[i] * u[i]
            else:  # isld: no effect on ρ
                col = np.zeros_like(self.z)
            columns.append(col)
        if self.offset:
            columns.append(-d_position.sum(axis=0))
        return np.stack(columns, axis=1)

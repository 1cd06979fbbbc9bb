"""The three ways reflectometrists read an R(Q) curve: R, R·Q⁴ and R/R_F, as pure transforms of y and its error bars.

R·Q⁴ takes out the Q⁻⁴ Fresnel fall-off, so fringes flatten and high-Q detail stays visible; R/R_F divides by the
Fresnel reflectivity of the bare substrate (one sharp ambient→substrate interface), so only what the film adds is
left.  R_F is the *unsmeared* Fresnel curve, the textbook normalisation (and refnx's and refl1d's): dividing by a
resolution-smeared R_F would make the view depend on the probe, and the same data would look different on two
instruments.  Below the critical edge the unsmeared R_F is 1, so R/R_F there is R itself.  All three are drawn on
a log y axis (R·Q⁴ spans decades at low Q; R/R_F of a film is ~1 with fringes of a few decades at high Q).

Closed form, with the workbench's conventions (SLD in 1e-6 Å⁻², layers substrate first, ambient last, the beam in
the ambient)::

    k_a = Q/2,  k_s = sqrt(Q²/4 − 4π(ρ_s + iρ''_s − ρ_a)·1e-6),  R_F = |(k_a − k_s)/(k_a + k_s)|²

The sign of the imaginary part does not change |r|² (conjugating every k conjugates r).  The kernel agrees with it
for a two-layer stack without roughness or resolution (tests/test_views.py).  The transforms are exact
multiplications by a positive factor of Q, so error bars scale the same way and the inverse recovers R.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

View = Literal["R", "RQ4", "R/RF"]
VIEWS: tuple[str, ...] = ("R", "RQ4", "R/RF")
VIEW_LABELS: dict[str, str] = {"R": "R(Q)", "RQ4": "R·Q⁴ (Å⁻⁴)", "R/RF": "R / R_F"}
VIEW_BUTTONS: dict[str, str] = {"R": "R", "RQ4": "R·Q⁴", "R/RF": "R/R_F"}  # short names for a chooser


@dataclass(frozen=True)
class FresnelReference:
    """The bare substrate under the ambient that R/R_F divides by (SLDs in 1e-6 Å⁻²)."""

    substrate_sld: float
    substrate_isld: float = 0.0
    ambient_sld: float = 0.0

    def __post_init__(self) -> None:
        for name in ("substrate_sld", "substrate_isld", "ambient_sld"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise ValueError(f"Fresnel reference: {name} must be a finite number (1e-6 Å⁻²), got {value!r}")
        if self.substrate_isld < 0:
            raise ValueError(f"Fresnel reference: substrate_isld must be ≥ 0 (1e-6 Å⁻²), got {self.substrate_isld!r}")

    @classmethod
    def of(cls, stack: Any) -> FresnelReference:
        """The reference of a :class:`~workbench.physics.FilmStack`: its substrate (first) under its ambient (last)."""
        return cls(float(stack.substrate.sld), float(stack.substrate.isld), float(stack.ambient.sld))

    def reflectivity(self, q: Any) -> np.ndarray:
        """R_F(Q), unsmeared, for Q in Å⁻¹."""
        return fresnel(q, self.substrate_sld, self.substrate_isld, self.ambient_sld)

    def as_list(self) -> list[float]:
        return [self.substrate_sld, self.substrate_isld, self.ambient_sld]


def fresnel(q: Any, substrate_sld: float, substrate_isld: float = 0.0, ambient_sld: float = 0.0) -> np.ndarray:
    """Unsmeared Fresnel reflectivity of one sharp ambient→substrate interface at Q (Å⁻¹); 1 below the critical edge."""
    q = np.asarray(q, dtype=float)
    ka = (q / 2).astype(complex)
    ks = np.sqrt(q**2 / 4 - 4e-6 * np.pi * ((substrate_sld - ambient_sld) + 1j * substrate_isld) + 0j)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ka - ks) / (ka + ks)
    return np.abs(r) ** 2


def check_view(view: str) -> str:
    if view not in VIEWS:
        raise ValueError(f"unknown R(Q) view {view!r}; choose one of {', '.join(VIEWS)}")
    return view


def view_factor(view: str, q: Any, reference: FresnelReference | None = None) -> np.ndarray:
    """What R is multiplied by to draw it in ``view``: 1, Q⁴ or 1/R_F (``reference`` needed for R/RF)."""
    q = np.asarray(q, dtype=float)
    if check_view(view) == "R":
        return np.ones_like(q)
    if view == "RQ4":
        return q**4
    if reference is None:
        raise ValueError("the R/R_F view needs the substrate and ambient SLD (a Fresnel reference); none was given")
    return 1.0 / reference.reflectivity(q)


def to_view(
    view: str, q: Any, r: Any, dr: Any = None, reference: FresnelReference | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """R (and its error bars dR) drawn in ``view``: y = R·f(Q), dy = dR·f(Q)."""
    factor = view_factor(view, q, reference)
    y = np.asarray(r, dtype=float) * factor
    return y, None if dr is None else np.asarray(dr, dtype=float) * factor


def from_view(
    view: str, q: Any, y: Any, dy: Any = None, reference: FresnelReference | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The inverse of :func:`to_view`: R (and dR) from a curve drawn in ``view``."""
    factor = view_factor(view, q, reference)
    r = np.asarray(y, dtype=float) / factor
    return r, None if dy is None else np.asarray(dy, dtype=float) / factor


def axis_title(view: str) -> str:
    """The y-axis title of an R(Q) chart drawn in ``view``."""
    return VIEW_LABELS[check_view(view)]


def view_meta(view: str, reference: FresnelReference | None) -> dict[str, Any]:
    """What a figure's ``layout.meta`` carries so an export can say (and undo) the view it was drawn in."""
    return {"rq_view": check_view(view), "fresnel": None if reference is None else reference.as_list()}


def figure_view(fig: Any) -> tuple[str, FresnelReference | None]:
    """The view and Fresnel reference a figure was drawn in (``("R", None)`` for one that never said)."""
    meta = getattr(getattr(fig, "layout", None), "meta", None)
    if not isinstance(meta, dict) or meta.get("rq_view") not in VIEWS:
        return "R", None
    ref = meta.get("fresnel")
    return meta["rq_view"], None if ref is None else FresnelReference(*map(float, ref))

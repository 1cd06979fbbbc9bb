"""The probe: the Q grid, the instrument resolution, scale and background.

Resolution is Gaussian.  It is given either as a constant relative width dQ/Q or as a pointwise
dQ array, each with an explicit convention: FWHM (pyreflect's ``q_resolution``, refnx/Platypus
files, REF_L's "dQ [FWHM]") or 1σ (refl1d, ORSO).  Internally everything is 1σ:
σ = FWHM / (2 √(2 ln 2)) = FWHM / 2.3548.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.35482...

DEFAULT_Q_MIN = 0.0081
DEFAULT_Q_MAX = 0.1975
DEFAULT_NUM_Q = 308
DEFAULT_DQ_OVER_Q_FWHM = 0.0294855


class ProbeError(ValueError):
    """A probe setting is invalid; the message names which one and why."""


def q_grid(q_min: float = DEFAULT_Q_MIN, q_max: float = DEFAULT_Q_MAX, num: int = DEFAULT_NUM_Q) -> np.ndarray:
    """pyreflect's Q grid: ``num`` points log-spaced from ``q_min`` to ``q_max`` (Å⁻¹)."""
    if not (math.isfinite(q_min) and math.isfinite(q_max)):
        raise ProbeError(f"qMin and qMax must be finite, got {q_min}, {q_max}")
    if q_min <= 0:
        raise ProbeError(f"qMin must be > 0 Å⁻¹, got {q_min}")
    if q_max <= q_min:
        raise ProbeError(f"qMax must be greater than qMin, got qMin={q_min}, qMax={q_max}")
    if int(num) != num or num < 2:
        raise ProbeError(f"numQPoints must be an integer ≥ 2, got {num}")
    return np.logspace(np.log10(q_min), np.log10(q_max), int(num))


class Probe:
    """Where and how finely R(Q) is measured (or simulated).

    Parameters
    ----------
    q : Q points in Å⁻¹, strictly positive and increasing. Default: pyreflect's grid.
    dq_over_q : constant relative resolution; ``None`` or 0 for no smearing.
    dq : pointwise resolution (same length as ``q``); overrides ``dq_over_q``.
    dq_is_fwhm : whether ``dq_over_q``/``dq`` are FWHM (True) or 1σ (False).
    scale, background : R_measured = scale · (G ∗ R)(Q) + background.
    """

    def __init__(
        self,
        q: Sequence[float] | np.ndarray | None = None,
        *,
        dq_over_q: float | None = DEFAULT_DQ_OVER_Q_FWHM,
        dq: Sequence[float] | np.ndarray | None = None,
        dq_is_fwhm: bool = True,
        scale: float = 1.0,
        background: float = 0.0,
    ) -> None:
        q = q_grid() if q is None else np.array(q, dtype=np.float64).ravel()
        if q.size == 0:
            raise ProbeError("the Q array is empty")
        bad = np.flatnonzero(~np.isfinite(q))
        if bad.size:
            raise ProbeError(f"Q[{bad[0]}] is not finite ({q[bad[0]]})")
        bad = np.flatnonzero(q <= 0)
        if bad.size:
            raise ProbeError(f"Q must be > 0 Å⁻¹; Q[{bad[0]}] = {q[bad[0]]}")
        bad = np.flatnonzero(np.diff(q) <= 0)
        if bad.size:
            raise ProbeError(
                f"Q must be strictly increasing; Q[{bad[0] + 1}] = {q[bad[0] + 1]} ≤ Q[{bad[0]}] = {q[bad[0]]}"
            )
        for name, value in (("scale", scale), ("background", background)):
            if not math.isfinite(value):
                raise ProbeError(f"{name} must be finite, got {value}")
        if scale <= 0:
            raise ProbeError(f"scale must be > 0, got {scale}")

        self.q = q
        self.scale = float(scale)
        self.background = float(background)
        self.dq_is_fwhm = bool(dq_is_fwhm)
        factor = 1.0 / FWHM_PER_SIGMA if dq_is_fwhm else 1.0
        if dq is not None:
            dq = np.array(dq, dtype=np.float64).ravel()
            if dq.shape != q.shape:
                raise ProbeError(f"dQ has {dq.size} points but Q has {q.size}")
            bad = np.flatnonzero(~np.isfinite(dq) | (dq < 0))
            if bad.size:
                raise ProbeError(f"dQ must be finite and ≥ 0; dQ[{bad[0]}] = {dq[bad[0]]}")
            self.dq_over_q = None
            self.sigma = dq * factor
        else:
            ratio = 0.0 if dq_over_q is None else float(dq_over_q)
            if not math.isfinite(ratio) or ratio < 0:
                raise ProbeError(f"dQ/Q must be finite and ≥ 0, got {dq_over_q}")
            self.dq_over_q = ratio
            self.sigma = q * ratio * factor

    @classmethod
    def from_grid(
        cls,
        q_min: float = DEFAULT_Q_MIN,
        q_max: float = DEFAULT_Q_MAX,
        num_q: int = DEFAULT_NUM_Q,
        q_resolution: float = DEFAULT_DQ_OVER_Q_FWHM,
        scale: float = 1.0,
        background: float = 0.0,
    ) -> Probe:
        """pyreflect's settings: qMin, qMax, numQPoints, qResolution (dQ/Q, FWHM)."""
        return cls(
            q_grid(q_min, q_max, num_q), dq_over_q=q_resolution, dq_is_fwhm=True, scale=scale, background=background
        )

    @property
    def smeared(self) -> bool:
        return bool(np.any(self.sigma > 0))

    @property
    def constant_dq_over_q(self) -> bool:
        return self.dq_over_q is not None

    def unsmeared(self) -> Probe:
        """The same Q points, scale and background without resolution."""
        return Probe(self.q, dq_over_q=None, scale=self.scale, background=self.background)

    def __repr__(self) -> str:
        res = (
            f"dQ/Q={self.dq_over_q:.6g} {'FWHM' if self.dq_is_fwhm else '1σ'}"
            if self.dq_over_q is not None
            else "pointwise dQ"
        )
        span = f"{self.q[0]:.4g}–{self.q[-1]:.4g} Å⁻¹"
        return f"Probe({self.q.size} Q points {span}, {res}, scale={self.scale}, background={self.background})"

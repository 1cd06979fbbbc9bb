"""Measurement realism for synthetic curves: what a real instrument adds to a perfect R(Q).

Each effect is off by default, so default data sets keep pyreflect's noise-free physics:

* ``scale_error``: the absolute normalisation is off by a factor 1 + N(0, scale_error);
* ``background``: a flat background drawn per curve, log-uniform in [lo, hi] (or uniform when
  lo = 0), added before counting;
* ``q_shift``: a sample misalignment, Q_true = Q·(1 + N(0, q_shift)), reported on the nominal Q;
* ``counting_noise``: Poisson counts.  The expected count at point i is
  ``incident_counts · (Q_i/Q_min)^flux_exponent · R_i``: an instrument that opens its slits with
  angle (constant dQ/Q) gains flux ∝ Q², so dR/R grows far more slowly with Q than R falls,
  ranging from ~0.3 % near the critical edge to tens of per cent at the highest Q — the shape of
  REF_L error bars (1–3 % at the edge, ~5 % at 0.09 Å⁻¹, 40–50 % at 0.23 Å⁻¹ for run 212592).
  dR = √counts / norm (√1 / norm where nothing was counted).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Realism(BaseModel):
    """Which measurement effects to add, and how strong they are."""

    model_config = ConfigDict(extra="forbid")

    counting_noise: bool = Field(
        False,
        description="draw each R as Poisson counts, with error bars shaped like REF_L's (≈1 % at the edge)",
        json_schema_extra={"label": "Poisson counting noise (REF_L-like)"},
    )
    incident_counts: float = Field(
        1e5,
        gt=0,
        description="expected counts where R = 1 at the lowest Q (1e5 gives REF_L-like error bars)",
        json_schema_extra={"label": "incident counts"},
    )
    flux_exponent: float = Field(
        2.0,
        ge=0,
        le=4,
        description="incident flux grows as (Q/Q_min)^exponent (2: slits opened with angle)",
        json_schema_extra={"label": "flux exponent"},
    )
    background: tuple[float, float] | None = Field(
        None,
        description="a flat background drawn per curve from [lo, hi], added before counting",
        json_schema_extra={"label": "background range"},
    )
    scale_error: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="each curve's normalisation is off by a factor 1 + N(0, σ) (0: off)",
        json_schema_extra={"label": "scale error σ (relative)"},
    )
    q_shift: float = Field(
        0.0,
        ge=0,
        le=0.05,
        description="sample misalignment: the true Q is Q·(1 + N(0, σ)), reported on the nominal Q (0: off)",
        json_schema_extra={"label": "Q misalignment σ (relative)"},
    )

    @model_validator(mode="after")
    def _check(self) -> Realism:
        if self.background is not None:
            lo, hi = self.background
            if not (0 <= lo <= hi):
                raise ValueError(f"background range must satisfy 0 ≤ lo ≤ hi, got [{lo}, {hi}]")
        return self

    @property
    def active(self) -> bool:
        return self.counting_noise or self.background is not None or self.scale_error > 0 or self.q_shift > 0

    def extra_parameter_names(self) -> list[str]:
        """Per-curve instrument parameters recorded beside the stack parameters."""
        names = []
        if self.scale_error > 0:
            names.append("probe.scale")
        if self.background is not None:
            names.append("probe.background")
        if self.q_shift > 0:
            names.append("probe.q_factor")
        return names

    def draw_instrument(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """Per-curve scale, background and Q factor (always drawn in this order, for reproducibility)."""
        scale = 1.0 + self.scale_error * rng.standard_normal(n)
        if self.background is None:
            background = np.zeros(n)
        else:
            lo, hi = self.background
            u = rng.random(n)
            background = np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo))) if lo > 0 else lo + u * (hi - lo)
        q_factor = 1.0 + self.q_shift * rng.standard_normal(n)
        return {"probe.scale": scale, "probe.background": background, "probe.q_factor": q_factor}

    def count(self, rng: np.random.Generator, q: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Noisy R and its 1σ error dR from Poisson counts; ``r`` (n, nQ) is the expected curve."""
        norm = self.incident_counts * (q / q[0]) ** self.flux_exponent
        counts = rng.poisson(np.clip(r, 0.0, None) * norm)
        return counts / norm, np.sqrt(np.maximum(counts, 1)) / norm

"""Typed limits and defaults for everything a user can type: one source for widget ranges and validation.

A Voilà link can be opened by anyone the server lets in, so every value that arrives from a
browser is clamped to these limits before it reaches a computation.  The panels read their
slider ranges, maxima and upload size from here; tests and deployments override them with
``Limits(max_curves=...)`` or the ``WORKBENCH_LIMITS`` environment variable (a JSON object).
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ParameterName = Literal["sld", "isld", "thickness", "roughness"]


class Range(BaseModel):
    """A closed interval [lo, hi]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lo: float
    hi: float

    @model_validator(mode="after")
    def _ordered(self) -> Range:
        if not (math.isfinite(self.lo) and math.isfinite(self.hi)) or self.lo >= self.hi:
            raise ValueError(f"a range needs finite lo < hi, got [{self.lo}, {self.hi}]")
        return self

    def clamp(self, value: float) -> float:
        return min(max(float(value), self.lo), self.hi)

    def __contains__(self, value: float) -> bool:
        return self.lo <= value <= self.hi


class Limits(BaseModel):
    """Hard limits (physical or resource) on what the dashboard accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # hard physical limits of the layer parameters (units: 1e-6 Å⁻² and Å): typing beyond a
    # slider's range extends the slider up to these, never past them
    sld: Range = Range(lo=-10.0, hi=30.0)
    isld: Range = Range(lo=0.0, hi=30.0)
    thickness: Range = Range(lo=0.0, hi=10_000.0)
    roughness: Range = Range(lo=0.0, hi=1_000.0)
    max_layers: int = Field(30, ge=2, description="layers in a film stack, substrate and ambient included")
    # physical caps every typed film stack is held to (files, the command line, the panels alike); the per-layer
    # thickness above is the dashboard's, the total is the physics': beyond ~50 µm the fringes are far finer than
    # any instrument's resolution, and a 1e8 Å layer made generation run out of memory after 66 s
    max_total_thickness: float = Field(
        500_000.0, gt=0, description="sum of the inner layers' thicknesses (and of their upper bounds), Å: 50 µm"
    )

    # probe
    q: Range = Range(lo=1e-4, hi=2.0)
    max_q_points: int = Field(5000, ge=2)
    max_q_resolution: float = Field(0.5, gt=0, description="dQ/Q (FWHM)")
    scale: Range = Range(lo=1e-3, hi=1e3)
    background: Range = Range(lo=0.0, hi=1e-2)

    # jobs started from a browser
    max_curves: int = Field(200_000, ge=1, description="curves per generation from the browser")
    max_epochs: int = Field(1_000, ge=1, description="epochs per training run from the browser")
    max_batch_size: int = Field(4096, ge=1)
    max_dream_samples: int = Field(100_000, ge=100, description="DREAM posterior samples per uncertainty run")
    max_upload_bytes: int = Field(200 * 2**20, ge=1024, description="largest accepted upload")
    max_download_bytes: int = Field(100 * 2**20, ge=1024, description="largest file offered as a browser download")
    max_sld_points: int = Field(100_000, ge=2, description="points of an SLD profile (a model's output size)")

    # untrusted model bundles (uploads, the Hub): checked before anything is built or allocated.  pyreflect's CNN
    # has ≈ 155 M parameters (≈ 590 MB of float32); a 4.7 KB zip whose config asked for 1000 × 1000 cost 2.3 GB
    max_model_parameters: int = Field(200_000_000, ge=1000, description="parameters of a model read from a bundle")
    max_model_bytes: int = Field(1 << 30, ge=1024, description="size of a bundle's model.safetensors")
    max_model_dimension: int = Field(100_000, ge=16, description="any one size in a bundle's model config")
    max_json_bytes: int = Field(64 * 2**20, ge=1024, description="size of a bundle's JSON files")
    max_preview_curves: int = Field(5, ge=1, le=50, description="generated curves shown in the preview")

    # jobs in their own processes (workbench.batch.jobs): how many run at once per workspace (the rest wait, oldest
    # first), and the address space each may take (RLIMIT_AS, Linux/macOS; a job beyond it fails alone with a
    # MemoryError).  Address space, not resident memory: torch alone maps ≈ 1–2 GB it never touches
    max_concurrent_jobs: int = Field(2, ge=1, le=256, description="jobs of one workspace running at once")
    job_memory_mb: int = Field(0, ge=0, description="address space of one job process, MiB (0: no limit)")

    # live charts: pushes to the browser from a worker thread, per second
    max_updates_per_second: float = Field(5.0, gt=0, le=60)

    def parameter(self, par: str) -> Range:
        """The hard limit of a layer parameter ('sld', 'isld', 'thickness', 'roughness')."""
        if par not in ("sld", "isld", "thickness", "roughness"):
            raise ValueError(f"unknown layer parameter {par!r}; expected sld, isld, thickness or roughness")
        return getattr(self, par)

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults, overridden by the JSON object in ``$WORKBENCH_LIMITS`` when it is set (parsed once per value:
        every typed film stack asks)."""
        return _limits_of(os.environ.get("WORKBENCH_LIMITS", "").strip())


@functools.lru_cache(maxsize=8)
def _limits_of(text: str) -> Limits:
    if not text:
        return Limits()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"WORKBENCH_LIMITS must be a JSON object of limits, got {text[:80]!r}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"WORKBENCH_LIMITS must be a JSON object of limits, got {text[:80]!r}")
    return Limits(**data)


def default_slider_range(par: str, value: float, limits: Limits | None = None) -> tuple[float, float]:
    """A slider span around ``value`` that a user can explore without typing (inside the hard limit)."""
    hard = (limits or Limits()).parameter(par)
    if par == "sld":
        lo, hi = min(-1.0, value - 1.0), max(8.0, value + 1.0)
    elif par == "isld":
        lo, hi = 0.0, max(1.0, 2.0 * value)
    elif par == "thickness":
        lo, hi = 0.0, max(100.0, 2.0 * value)
    else:
        lo, hi = 0.0, max(30.0, 2.0 * value)
    return hard.clamp(lo), hard.clamp(hi)

"""Physics core: film stacks, probes, reflectivity kernels and SLD profiles.

Pure computation: never imports widgets or plotting.  Importing it does not import torch: the fast engine
and the SLD profile run on numpy and numba; ``reflectivity_torch`` and ``sld_profile_torch`` (differentiable)
import torch when called.
"""

from .probe import FWHM_PER_SIGMA, Probe, ProbeError, q_grid
from .profile import sld_profile, sld_profile_torch
from .reflectivity import ENGINES, as_arrays, reflectivity, reflectivity_torch
from .resolution import ResolutionPlan, build_plan, critical_edge
from .stack import PARAMETER_FIELDS, Bound, FilmStack, Layer, StackArrays, StackError

__all__ = [
    "ENGINES",
    "FWHM_PER_SIGMA",
    "PARAMETER_FIELDS",
    "Bound",
    "FilmStack",
    "Layer",
    "Probe",
    "ProbeError",
    "ResolutionPlan",
    "StackArrays",
    "StackError",
    "as_arrays",
    "build_plan",
    "critical_edge",
    "q_grid",
    "reflectivity",
    "reflectivity_torch",
    "sld_profile",
    "sld_profile_torch",
]

"""One entry point for R(Q): pick an engine, get the resolution plan, return the curves.

Engines:
  ``"fast"``   numba, float64, no gradients: generation and previews (≈150k curves/s on 2 cores);
  ``"torch"``  differentiable in every parameter, float32/float64, CPU or CUDA: fitting, training;
  ``"refl1d"`` refl1d's own Experiment, one stack at a time: the reference.

torch loads only when the torch engine runs (``reflectivity_torch``): the fast engine, what previews and
generation use, needs numpy and numba alone, so a dashboard draws its R(Q) chart without torch's ≈ 2 s import.

Smearing: stacks of a batch share one resolution plan per substrate edge; a stack with features
that plan cannot resolve (a 1,500 Å layer, a waveguide resonance) is smeared with its own adaptive
rule in both engines (``resolution.needs_own_rule``).
"""

from __future__ import annotations

import hashlib
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np

from .kernel_fast import reflectivity_fast
from .probe import Probe
from .refl1d_engine import reflectivity_refl1d
from .resolution import ResolutionPlan, build_plan, needs_own_rule, stack_plan
from .stack import FilmStack, StackArrays, StackError

if TYPE_CHECKING:
    import torch

Engine = Literal["fast", "torch", "refl1d"]
ENGINES: tuple[str, ...] = ("fast", "torch", "refl1d")
_THICKNESS_QUANTUM = 100.0  # plans are built for total thickness rounded up to this (Å), and reused


def as_arrays(stacks: FilmStack | Sequence[FilmStack] | StackArrays) -> StackArrays:
    """Normalise the accepted stack inputs to StackArrays."""
    if isinstance(stacks, StackArrays):
        return stacks
    if isinstance(stacks, FilmStack):
        return stacks.to_arrays()
    if isinstance(stacks, (list, tuple)) and all(isinstance(s, FilmStack) for s in stacks):
        return StackArrays.from_stacks(stacks)
    raise StackError(f"expected a FilmStack, a list of FilmStacks or StackArrays, got {type(stacks).__name__}")


def is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch (a tensor exists only once torch is loaded)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def to_numpy(x) -> np.ndarray:
    """``x`` (array-like or torch tensor, any device) as a float64 numpy array."""
    if is_tensor(x):
        return x.detach().cpu().numpy().astype(np.float64)
    return np.asarray(x, dtype=np.float64)


def _probe_key(probe: Probe) -> str:
    h = hashlib.sha1(probe.q.tobytes(), usedforsecurity=False)  # a cache key, not a secret
    h.update(probe.sigma.tobytes())
    return h.hexdigest()


_PLANS: dict[tuple, ResolutionPlan] = {}
_STACK_PLANS: dict[tuple, ResolutionPlan] = {}


def own_rule(probe: Probe, arrays: StackArrays) -> np.ndarray:
    """(B,) bool: the stacks of a batch that get their own adaptive rule (see resolution.needs_own_rule)."""
    return needs_own_rule(probe, to_numpy(arrays.sld), to_numpy(arrays.isld), to_numpy(arrays.thickness))


def cached_stack_plan(probe: Probe, sld, isld, thickness, roughness) -> ResolutionPlan:
    """:func:`resolution.stack_plan` for one stack (1-D arrays), cached: a slider or a fit asks again."""
    parts = [np.ascontiguousarray(to_numpy(x)) for x in (sld, isld, thickness, roughness)]
    key = (_probe_key(probe), *(x.tobytes() for x in parts))
    plan = _STACK_PLANS.get(key)
    if plan is None:
        plan = stack_plan(probe, *parts)
        if len(_STACK_PLANS) > 64:
            _STACK_PLANS.clear()
        _STACK_PLANS[key] = plan
    return plan


def plan_for(
    probe: Probe, arrays: StackArrays, own: np.ndarray | None = None
) -> list[tuple[np.ndarray, ResolutionPlan]]:
    """Resolution plans for a batch: one per distinct substrate critical edge, with the indices it serves.

    ``own`` (B,) bool marks stacks smeared with their own rule (:func:`needs_own_rule`): they do not
    size the shared plan's grid.
    """
    if not probe.smeared:
        plan = _cached_plan(probe, 0.0, None)
        return [(np.arange(arrays.batch), plan)]
    thickness = to_numpy(arrays.thickness)
    shared = thickness if own is None or own.all() else thickness[~own]
    total = float(np.max(np.sum(shared[:, 1:-1], axis=1))) if thickness.shape[1] > 2 else 0.0
    # |r|² also carries harmonics of the film thickness from multiple reflections: resolve 2D
    quantized = math.ceil(2.0 * max(total, 1.0) / _THICKNESS_QUANTUM) * _THICKNESS_QUANTUM
    sld, isld = to_numpy(arrays.sld), to_numpy(arrays.isld)
    contrast = sld[:, 0] - sld[:, -1]
    # an absorbing substrate has no sharp edge: the regular grid handles it (NaN = no edge)
    has_edge = (contrast > 0) & (isld[:, 0] == 0)
    edges = np.where(has_edge, np.round(np.sqrt(16e-6 * np.pi * np.abs(contrast)), 12), np.nan)
    unique, inverse = np.unique(edges, return_inverse=True, equal_nan=True)
    if unique.size == 1:
        return [(np.arange(arrays.batch), _cached_plan(probe, quantized, _edge(unique[0])))]
    return [(np.flatnonzero(inverse == g), _cached_plan(probe, quantized, _edge(e))) for g, e in enumerate(unique)]


def _edge(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _cached_plan(probe: Probe, thickness: float, edge: float | None) -> ResolutionPlan:
    key = (_probe_key(probe), thickness, edge)
    plan = _PLANS.get(key)
    if plan is None:
        plan = build_plan(probe, thickness, [] if edge is None else [edge])
        if len(_PLANS) > 256:
            _PLANS.clear()
        _PLANS[key] = plan
    return plan


def reflectivity(
    stacks: FilmStack | Sequence[FilmStack] | StackArrays,
    probe: Probe | None = None,
    *,
    engine: Engine = "fast",
    scale=None,
    background=None,
    q_factor=None,
    out: np.ndarray | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
):
    """R(Q) on the probe's Q points for one stack or a batch, shape (B, nQ).

    R = scale · (G ∗ |r|²)(Q) + background, with G the probe's Gaussian resolution.  ``scale``
    and ``background`` default to the probe's and may be per-stack arrays.  ``q_factor`` (fast
    engine only) evaluates stack b at Q·q_factor[b], a misaligned sample; ``out`` (fast engine) is
    a (B, nQ) float array, possibly a strided float32 view, to write into.  Returns numpy for
    the "fast" and "refl1d" engines and a torch tensor (differentiable) for "torch", in ``dtype`` (default
    float64) on ``device``.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    probe = Probe() if probe is None else probe
    arrays = as_arrays(stacks)
    scale = probe.scale if scale is None else scale
    background = probe.background if background is None else background

    if (q_factor is not None or out is not None) and engine != "fast":
        raise ValueError("q_factor and out are supported by the fast engine only")
    if engine == "refl1d":
        raw = reflectivity_refl1d(arrays.map(to_numpy), Probe(probe.q, dq=probe.sigma, dq_is_fwhm=False))
        sc = np.broadcast_to(to_numpy(scale), (arrays.batch,))[:, None]
        bg = np.broadcast_to(to_numpy(background), (arrays.batch,))[:, None]
        return sc * raw + bg

    if engine == "fast":
        a = arrays.map(to_numpy)
        if out is None:
            out = np.empty((a.batch, probe.q.size))
        elif out.shape != (a.batch, probe.q.size):
            raise ValueError(f"out must have shape {(a.batch, probe.q.size)}, got {out.shape}")
        sc = np.broadcast_to(to_numpy(scale), (a.batch,))
        bg = np.broadcast_to(to_numpy(background), (a.batch,))
        qf = np.broadcast_to(to_numpy(1.0 if q_factor is None else q_factor), (a.batch,))
        own = own_rule(probe, a)
        groups = plan_for(probe, a, own)
        if len(groups) == 1:
            plan = groups[0][1]
            return reflectivity_fast(plan, a.sld, a.isld, a.thickness, a.roughness, sc, bg, qf, out=out, hard=own)
        for idx, plan in groups:
            sub = a[idx]
            out[idx] = reflectivity_fast(
                plan, sub.sld, sub.isld, sub.thickness, sub.roughness, sc[idx], bg[idx], qf[idx], hard=own[idx]
            )
        return out

    return reflectivity_torch(arrays, probe, scale=scale, background=background, dtype=dtype, device=device)


def reflectivity_torch(
    arrays: StackArrays,
    probe: Probe,
    *,
    scale=1.0,
    background=0.0,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Differentiable R(Q), (B, nQ), in ``dtype`` (default float64); tensors that require grad keep their graph."""
    import torch  # heavy (≈ 2 s): only the differentiable engine needs it, never the fast engine's previews

    from .kernel_torch import reflectivity_unsmeared  # imports torch at its top: loaded with the torch engine only

    dtype = torch.float64 if dtype is None else dtype

    def tensor(x):
        if isinstance(x, torch.Tensor):
            return x.to(dtype=dtype, device=device if device is not None else x.device)
        return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

    a = arrays.map(tensor)
    dev = a.sld.device
    own = own_rule(probe, a)
    groups = [(idx[~own[idx]], plan) for idx, plan in plan_for(probe, a, own)]
    groups = [(idx, plan) for idx, plan in groups if idx.size]
    for b in np.flatnonzero(own):  # stacks with their own adaptive rule: one plan each
        groups.append((np.array([b]), cached_stack_plan(probe, a.sld[b], a.isld[b], a.thickness[b], a.roughness[b])))
    rows = []
    for idx, plan in groups:
        index = torch.as_tensor(idx, device=dev)
        sub = a.map(lambda x, index=index: x.index_select(0, index))
        calc_q = torch.as_tensor(plan.calc_q, dtype=dtype, device=dev)
        r = reflectivity_unsmeared(calc_q, sub.sld, sub.isld, sub.thickness, sub.roughness)
        rows.append((index, r if plan.identity else plan.apply_torch(r)))
    if len(rows) == 1:
        out = rows[0][1]
    else:
        # scatter each plan's rows back into batch order (differentiable)
        out = torch.empty((a.batch, probe.q.size), dtype=dtype, device=dev)
        out = out.index_put((torch.cat([i for i, _ in rows]),), torch.cat([r for _, r in rows]))
    sc = tensor(scale)
    bg = tensor(background)
    if sc.ndim:
        sc = sc[:, None]
    if bg.ndim:
        bg = bg[:, None]
    return sc * out + bg

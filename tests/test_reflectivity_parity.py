"""Our engines against refl1d, the reference the field trusts (float64, no resolution)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_stacks

from workbench.physics import FilmStack, Probe, StackArrays, reflectivity
from workbench.physics.refl1d_engine import reflectivity_refl1d

WIDE_Q = np.geomspace(0.002, 0.35, 400)


def _parity_cases() -> list[tuple[str, StackArrays]]:
    rng = np.random.default_rng(20261122)
    return [
        ("plain 5-layer", random_stacks(rng, 12, 5)),
        ("absorbing 6-layer", random_stacks(rng, 10, 6, absorbing=True)),
        ("zero roughness 7-layer", random_stacks(rng, 10, 7, sharp=True)),
        ("1500 Å layer", random_stacks(rng, 8, 5, thick=1500.0)),
        ("12 layers, absorbing, some sharp", random_stacks(rng, 10, 12, absorbing=True, sharp=True)),
    ]


CASES = _parity_cases()


def test_parity_covers_at_least_fifty_stacks():
    assert sum(a.batch for _, a in CASES) >= 50


@pytest.mark.parametrize("engine", ["fast", "torch"])
@pytest.mark.parametrize("name, arrays", CASES, ids=[c[0] for c in CASES])
def test_matches_refl1d_to_1e10_unsmeared(engine, name, arrays):
    probe = Probe(WIDE_Q, dq_over_q=None)
    ref = reflectivity_refl1d(arrays, probe, resolution=False)
    ours = reflectivity(arrays, probe, engine=engine)
    ours = ours.numpy() if isinstance(ours, torch.Tensor) else ours
    assert np.all(np.isfinite(ours))
    rel = np.max(np.abs(ours / ref - 1.0))
    assert rel <= 1e-10, f"{engine} vs refl1d on {name}: max relative error {rel:.2e}"


def test_default_stack_through_every_engine_agrees():
    stack, probe = FilmStack.default(), Probe(dq_over_q=None)
    curves = [np.asarray(reflectivity(stack, probe, engine=e)) for e in ("fast", "torch", "refl1d")]
    np.testing.assert_allclose(curves[0], curves[2], rtol=1e-12)
    np.testing.assert_allclose(curves[1], curves[2], rtol=1e-12)


def test_scale_and_background_apply_after_the_curve():
    stack = FilmStack.default()
    base = reflectivity(stack, Probe(dq_over_q=None))
    shifted = reflectivity(stack, Probe(dq_over_q=None, scale=0.9, background=2e-7))
    np.testing.assert_allclose(shifted, 0.9 * base + 2e-7, rtol=1e-13)
    per_curve = reflectivity([stack, stack], Probe(dq_over_q=None), scale=np.array([1.0, 2.0]), background=[0.0, 1e-6])
    np.testing.assert_allclose(per_curve[1], 2 * base[0] + 1e-6, rtol=1e-13)


def test_solid_liquid_cell_matches_refl1d():
    """Beam through silicon onto a film backed by D2O: the ambient is not air."""
    stack = FilmStack.from_pyreflect(
        [
            {"name": "D2O", "sld": 6.36, "roughness": 4.0},
            {"name": "lipid", "sld": -0.4, "thickness": 30.0, "roughness": 3.0},
            {"name": "SiO2", "sld": 3.47, "thickness": 15.0, "roughness": 2.0},
            {"name": "Si", "sld": 2.07},
        ]
    )
    probe = Probe(WIDE_Q, dq_over_q=None)
    ref = reflectivity_refl1d(stack.to_arrays(), probe, resolution=False)
    for engine in ("fast", "torch"):
        np.testing.assert_allclose(np.asarray(reflectivity(stack, probe, engine=engine)), ref, rtol=1e-10)
    # total reflection below the D2O edge relative to Si: Qc = sqrt(16π (6.36 − 2.07)e-6)
    qc = np.sqrt(16e-6 * np.pi * (6.36 - 2.07))
    assert np.allclose(ref[0, WIDE_Q < 0.98 * qc], 1.0, atol=1e-12)


def test_float32_torch_path_tracks_float64():
    stack, probe = FilmStack.default(), Probe()
    r64 = reflectivity(stack, probe, engine="torch", dtype=torch.float64)
    r32 = reflectivity(stack, probe, engine="torch", dtype=torch.float32)
    assert r32.dtype == torch.float32 and torch.all(torch.isfinite(r32))
    rel = (r32.double() / r64 - 1).abs().max().item()
    assert rel < 2e-4, rel


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_cuda_matches_cpu():
    stack, probe = FilmStack.default(), Probe()
    cpu = reflectivity(stack, probe, engine="torch")
    gpu = reflectivity(stack, probe, engine="torch", device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-12, atol=0)


def test_unknown_engine_is_rejected():
    with pytest.raises(ValueError, match="unknown engine 'abeles'; choose one of fast, torch, refl1d"):
        reflectivity(FilmStack.default(), engine="abeles")

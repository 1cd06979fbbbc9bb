"""Models: pyreflect parity (architecture, parameter count, its .pth files), the compact model, the registry."""

from __future__ import annotations

import pytest
import torch
from pyreflect_support import pyreflect_cnn_class

from workbench.models import build_model, count_parameters
from workbench.models.parity_cnn import ParityCNN, load_pyreflect_state_dict


def test_parity_cnn_has_pyreflects_parameter_count():
    assert count_parameters(ParityCNN(layers=12)) == 155_285_778  # ≈ 155 M, 91 % in one dense layer
    model = ParityCNN(layers=12)
    assert model.linear1.weight.numel() / count_parameters(model) > 0.91
    assert count_parameters(ParityCNN(layers=12)) == count_parameters(
        pyreflect_cnn_class()(layers=12, dropout_prob=0.5)
    )


def test_pyreflect_pth_loads_and_predicts_the_same(tmp_path):
    torch.manual_seed(1)
    theirs = pyreflect_cnn_class()(layers=4, dropout_prob=0.1)
    for m in theirs.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    path = tmp_path / "trained_nr_sld_model.pth"
    torch.save(theirs.state_dict(), path)
    ours = load_pyreflect_state_dict(path, layers=4, dropout=0.1)
    x = torch.rand(3, 1, 308)
    theirs.eval()
    ours.eval()
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-6)
    assert ours(x[:, 0, :]).shape == (3, 2, 900)


def test_not_a_pyreflect_file_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="not a pyreflect CNN state_dict"):
        load_pyreflect_state_dict(path)


def test_compact_model_is_over_ten_times_smaller_than_parity():
    compact = build_model({"kind": "compact"})
    assert count_parameters(ParityCNN(layers=6)) / count_parameters(compact) > 10
    assert compact(torch.rand(2, 308)).shape == (2, 2, 900)


def test_parameter_model_stays_inside_its_bounds():
    model = build_model({"kind": "param", "n_params": 5})
    out = model(torch.randn(4, 308) * 100)
    assert out.shape == (4, 5) and torch.all((out >= 0) & (out <= 1))


def test_registry_round_trips_configs_and_names_bad_ones():
    for config in (
        {"kind": "parity_cnn", "layers": 3, "kernel_size": 11},
        {"kind": "compact", "width": 8, "latent": 16},
    ):
        model = build_model(config)
        assert build_model(model.config).config == model.config
    with pytest.raises(ValueError, match="unknown model kind 'transformer'"):
        build_model({"kind": "transformer"})
    with pytest.raises(ValueError, match="bad settings for a compact model"):
        build_model({"kind": "compact", "depth": 3})
    with pytest.raises(ValueError, match="kernelSize must be a positive odd number"):
        ParityCNN(kernel_size=50)


def test_frozen_inference_module_predicts_like_the_model():
    from workbench.models.inference import LoweredModule, inference_module

    torch.manual_seed(0)
    model = build_model({"kind": "compact", "width": 8, "latent": 32}).eval()
    x = torch.rand(1, 308)
    frozen = inference_module(model, x)
    assert isinstance(frozen, LoweredModule) and not any(isinstance(m, torch.nn.BatchNorm1d) for m in frozen.modules())
    with torch.no_grad():
        torch.testing.assert_close(frozen(torch.rand(3, 308) * 0 + x), model(x).expand(3, -1, -1), rtol=1e-4, atol=1e-5)

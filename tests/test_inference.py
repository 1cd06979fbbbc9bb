"""The inference copy of a model (workbench.models.inference): same predictions, batch-norm folded, no warnings."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from workbench.models import build_model
from workbench.models.inference import LoweredModule, fold_batch_norms, inference_module

# the default compact models; the parity CNN with 4 layers and kernel 11 (its default: 12 layers, kernel 51)
CONFIGS = [
    {"kind": "compact"},
    {"kind": "param"},
    {"kind": "parity_cnn", "layers": 4, "kernel_size": 11},
]


def trained_looking(config: dict, seed: int = 0) -> nn.Module:
    """A model whose batch norms hold non-trivial statistics and affine weights, so folding changes the weights."""
    torch.manual_seed(seed)
    model = build_model(config)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.3, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model.eval()


def assert_matches(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Equal within 1e-5 relative (float32), relative to the output's scale for entries near zero."""
    assert actual.shape == expected.shape and actual.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-5 * float(expected.abs().max()))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c["kind"])
def test_inference_module_predicts_like_the_eager_model(config):
    model = trained_looking(config)
    gen = torch.Generator().manual_seed(1)
    batch = torch.randn(8, 308, generator=gen)
    fast = inference_module(model, batch[:1])
    assert isinstance(fast, LoweredModule)  # the fastest path was taken
    assert not any(isinstance(m, nn.BatchNorm1d) for m in fast.modules())  # every batch norm was folded
    with torch.no_grad():
        expected = model(batch)
    assert_matches(fast(batch), expected)
    assert_matches(fast(batch[:1]), expected[:1])  # a single curve
    assert_matches(fast(batch[:, None, :]), expected)  # (B, 1, nQ) input
    assert not fast(batch).requires_grad


def test_inference_module_leaves_the_model_alone():
    model = trained_looking({"kind": "compact"}).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fast = inference_module(model, torch.randn(1, 308))
    assert model.training and all(m.training for m in model.modules())
    assert not fast.training and not any(m.training for m in fast.modules())
    assert sum(isinstance(m, nn.BatchNorm1d) for m in model.modules()) == 9
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    model.eval()
    x = torch.randn(4, 308)
    with torch.no_grad():
        assert_matches(fast(x), model(x))


def test_building_and_running_it_warns_nothing():
    model = trained_looking({"kind": "compact"})
    x = torch.randn(2, 308)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # deprecations (torch.jit) included
        fast = inference_module(model, x[:1])
        fast(x)
        fast(x[:1])


def test_models_without_batch_norm_or_with_batch_statistics_are_run_eagerly():
    torch.manual_seed(0)
    chi = build_model({"kind": "chi"}).eval()
    x = torch.rand(5, 88)
    with torch.no_grad():
        assert_matches(inference_module(chi, x[:1])(x), chi(x))
    # batch norm without running statistics normalises each batch by itself: it cannot be folded
    net = nn.Sequential(nn.Conv1d(1, 4, 3), nn.BatchNorm1d(4, track_running_stats=False), nn.ReLU()).eval()
    folded = fold_batch_norms(net)
    assert isinstance(folded[1], nn.BatchNorm1d)
    x = torch.randn(3, 1, 20)
    with torch.no_grad():
        assert_matches(inference_module(net, x[:1])(x), net(x))


def test_a_model_the_folding_would_break_falls_back_to_the_unfolded_copy():
    class IndexesItsSequential(nn.Module):  # calls its batch norm by position: folding removes it
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv1d(1, 4, 3, bias=False), nn.BatchNorm1d(4))

        def forward(self, x):
            return self.body[1](self.body[0](x))

    model = IndexesItsSequential()
    with torch.no_grad():
        model.body[1].running_mean.uniform_(-1, 1)
    model.eval()
    x = torch.randn(2, 1, 16)
    fast = inference_module(model, x[:1])
    assert isinstance(fast.model.body[1], nn.BatchNorm1d)
    with torch.no_grad():
        assert_matches(fast(x), model(x))


class _NotLowered(nn.Module):
    """A model without a ``lowered`` method: the chain keeps its own forward (children folded all the same)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(1, 4, 3, padding=1), nn.BatchNorm1d(4), nn.ReLU())
        self.out = nn.Linear(4 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x[:, None, :]).flatten(1)) * 2


def test_a_model_of_unknown_make_keeps_its_forward_and_still_folds():
    torch.manual_seed(2)
    model = _NotLowered().eval()
    with torch.no_grad():
        model.features[1].running_var.uniform_(0.5, 2.0)
        x = torch.randn(3, 8)
        expected = model(x)
    fast = inference_module(model, x[:1])
    assert isinstance(fast, LoweredModule) and not any(isinstance(m, nn.BatchNorm1d) for m in fast.modules())
    assert_matches(fast(x), expected)

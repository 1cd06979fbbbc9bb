"""Low-latency inference: an eager copy of a model in eval mode, batch-norm folded into its convolutions.

TODO measured numbers.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_NORM_OF_CONV = {nn.Conv1d: nn.BatchNorm1d, nn.Conv2d: nn.BatchNorm2d, nn.Conv3d: nn.BatchNorm3d}


class InferenceModule(nn.Module):
    """``model(x)`` in eval mode under ``torch.inference_mode`` (outputs are inference tensors: no autograd)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self.model(x)


def _eval_copy(module: nn.Module) -> nn.Module:
    """A copy of the module tree in eval mode sharing every parameter and buffer with ``module``."""
    new = copy.copy(module)
    object.__setattr__(new, "_parameters", dict(module._parameters))
    object.__setattr__(new, "_buffers", dict(module._buffers))
    object.__setattr__(new, "_modules", {k: None if m is None else _eval_copy(m) for k, m in module._modules.items()})
    object.__setattr__(new, "training", False)
    return new


def _foldable(conv: nn.Module | None, norm: nn.Module | None) -> bool:
    """Whether ``norm`` normalises with running statistics that can be folded into ``conv``'s weights."""
    return (
        type(conv) in _NORM_OF_CONV and type(norm) is _NORM_OF_CONV[type(conv)]
        and norm.track_running_stats and norm.running_mean is not None and norm.running_var is not None
    )


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """Fold, in place, each ConvNd followed by its BatchNormNd into one convolution; returns ``model`` (eval mode).

    Only pairs inside containers that run their children in order are folded: ``nn.Sequential``, and
    ``nn.ModuleList`` as the parity CNN iterates it (:func:`inference_module` checks the result anyway).
    The spent BatchNorm, and eval-mode no-ops (Identity, Dropout), leave a Sequential altogether and
    become ``nn.Identity`` in a ModuleList: fewer module calls per forward pass.
    """
    for module in list(model.modules()):
        if not isinstance(module, (nn.Sequential, nn.ModuleList)):
            continue
        children = module._modules
        names = list(children)
        for a, b in zip(names, names[1:], strict=False):
            if _foldable(children[a], children[b]):
                with torch.no_grad():
                    children[a] = fuse_conv_bn_eval(children[a], children[b])
                children[b] = nn.Identity()
        if isinstance(module, nn.Sequential):
            for name in names:
                if isinstance(children[name], (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
                    del children[name]
    return model.eval()


def inference_module(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A module computing ``model(x)`` in eval mode for inputs shaped like ``example``, without autograd.

    ``model`` itself is left as it is.  The copy shares all weights but the folded convolutions with
    ``model``: build a new one after changing the weights.  Falls back to the unfolded eval copy when
    the folded one does not reproduce ``model`` on ``example``.
    """
    reference = InferenceModule(_eval_copy(model))
    folded = InferenceModule(fold_batch_norms(_eval_copy(model)))
    try:
        if torch.allclose(folded(example), reference(example), rtol=1e-4, atol=1e-5):
            return folded
    except Exception:  # noqa: BLE001 - a failing folded copy means: use the eager model
        pass
    return reference

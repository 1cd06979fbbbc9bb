"""Low-latency CPU inference: a traced, frozen TorchScript copy of a model in eval mode.

Freezing folds batch-norm into the convolutions and removes the Python overhead between the
few dozen small operations of a single-curve forward pass (compact model on this machine's CPU:
~2 ms eager → ~1.1 ms frozen).  Falls back to the eager model when tracing is not possible.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn


def inference_module(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A frozen TorchScript module computing ``model(x)`` for inputs shaped like ``example``."""
    model = model.eval()
    if next(model.parameters()).device.type != "cpu":
        return model
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit deprecation notices
            frozen = torch.jit.freeze(torch.jit.trace(model, example))
            if not torch.allclose(frozen(example), model(example), rtol=1e-4, atol=1e-5):
                return model
        return frozen
    except Exception:  # noqa: BLE001 - any tracing failure means: use the eager model
        return model

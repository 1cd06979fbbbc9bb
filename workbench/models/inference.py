"""Low-latency inference: a model's forward pass as a chain of plain torch calls, batch-norm folded.

Each ConvNd → BatchNormNd pair becomes one convolution (``torch.nn.utils.fusion.fuse_conv_bn_eval``), and
the eval copy is then *lowered*: every module becomes a closure calling torch's C functions directly
(``torch.conv1d``, ``torch._C._nn.linear``, ...) with its weights bound, so a forward pass pays neither
``nn.Module.__call__`` nor each module's Python ``forward`` per layer.  Standard layers are lowered here;
a model of our own says how its ``forward`` composes its children in a ``lowered(lower)`` method, and any
module without one keeps its own ``forward`` (correct, only slower).  The chain runs under
``torch.inference_mode``; :func:`inference_module` checks it against the eager model on an example and
falls back to the folded module, then to the plain eval copy, where it differs.

This replaces a traced, frozen TorchScript copy: ``torch.jit.trace``/``freeze`` are deprecated in torch
2.13 and warn.  ``benchmarks/bench_inference.py`` measures the three side by side (eager, this, the old
TorchScript copy) in rotation on one thread; see the benchmark README for the figures.

Tried and not taken:

- ``torch.compile`` (inductor): ~60 s to compile on first use, no faster than TorchScript once compiled,
  and it emits a ``torch.jit.script_method`` DeprecationWarning itself.
- ``torch.export`` (1.8–4 s to export): its ``.module()`` is slower than the folded eager copy (input guards,
  pytree), its bare graph module no faster.
- ``torch.fx`` symbolic tracing: as fast as the lowered chain, but ``fx.Tracer`` patches ``nn.Module.__call__``
  for the whole process while it traces, which breaks any model running in another thread at that moment
  (the UI trains in worker threads).
"""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Callable

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
        type(conv) in _NORM_OF_CONV
        and type(norm) is _NORM_OF_CONV[type(conv)]
        and norm.track_running_stats
        and norm.running_mean is not None
        and norm.running_var is not None
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
        for a, b in itertools.pairwise(names):
            if _foldable(children[a], children[b]):
                with torch.no_grad():
                    children[a] = fuse_conv_bn_eval(children[a], children[b])
                children[b] = nn.Identity()
        if isinstance(module, nn.Sequential):
            for name in names:
                if isinstance(children[name], (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d)):
                    del children[name]
    return model.eval()


Step = Callable[[torch.Tensor], torch.Tensor]
Lower = Callable[[nn.Module], Step]

_CONV = {nn.Conv1d: torch.conv1d, nn.Conv2d: torch.conv2d, nn.Conv3d: torch.conv3d}
_ACTIVATIONS: dict[type[nn.Module], Step] = {
    nn.ReLU: torch.relu,
    nn.Sigmoid: torch.sigmoid,
    nn.Tanh: torch.tanh,
    nn.SiLU: torch._C._nn.silu,
}


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


def _chain(steps: list[Step]) -> Step:
    def run(x: torch.Tensor) -> torch.Tensor:
        for step in steps:
            x = step(x)
        return x

    return run


def lower(module: nn.Module) -> Step:
    """``module``'s forward pass (eval mode) as a closure over plain torch calls; see the module notes."""
    kind = type(module)
    own = getattr(module, "lowered", None)
    if own is not None:
        return own(lower)
    if kind is nn.Sequential:
        steps = [lower(m) for m in module if not isinstance(m, (nn.Identity, nn.modules.dropout._DropoutNd))]
        return _chain(steps) if steps else _identity
    if kind in _CONV and module.padding_mode == "zeros" and isinstance(module.padding, tuple):
        return functools.partial(
            _CONV[kind],
            weight=module.weight.detach(),
            bias=None if module.bias is None else module.bias.detach(),
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
        )
    if kind is nn.Linear:
        bias = None if module.bias is None else module.bias.detach()
        return functools.partial(torch._C._nn.linear, weight=module.weight.detach(), bias=bias)
    if kind in _ACTIVATIONS:
        return _ACTIVATIONS[kind]
    if kind is nn.GELU:
        return functools.partial(torch._C._nn.gelu, approximate=module.approximate)
    if kind is nn.AvgPool1d:
        return functools.partial(
            torch.avg_pool1d,
            kernel_size=module.kernel_size,
            stride=module.stride,
            padding=module.padding,
            ceil_mode=module.ceil_mode,
            count_include_pad=module.count_include_pad,
        )
    if kind is nn.Flatten:
        return functools.partial(torch.flatten, start_dim=module.start_dim, end_dim=module.end_dim)
    if kind is nn.Identity or isinstance(module, nn.modules.dropout._DropoutNd):
        return _identity  # dropout does nothing in eval mode
    return module.forward  # unknown: its own forward, children through nn.Module.__call__


class LoweredModule(nn.Module):
    """``model(x)`` as the lowered chain of :func:`lower`, under ``torch.inference_mode``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model  # holds the (folded) weights the chain refers to
        self.eval()
        self._step = lower(self.model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return self._step(x)


def inference_module(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """A module computing ``model(x)`` in eval mode without autograd, batch-norm folded (see the module notes).

    ``model`` itself is left as it is (training mode included).  The copy shares all weights but the folded
    convolutions with ``model``: build a new one after changing the weights.  ``example``, an input
    (one curve is enough), checks the folded copy: where it does not reproduce ``model``, or fails, the
    unfolded eval copy is returned instead.
    """
    reference = InferenceModule(_eval_copy(model))
    expected = reference(example)
    candidates = (
        lambda: LoweredModule(fold_batch_norms(_eval_copy(model))),
        lambda: InferenceModule(fold_batch_norms(_eval_copy(model))),
    )
    for build in candidates:
        try:
            fast = build()
            if torch.allclose(fast(example), expected, rtol=1e-4, atol=1e-5):
                return fast
        except Exception:  # noqa: BLE001, S112 - a copy that fails means: try the next, plainer one
            continue
    return reference

"""Build any model from its JSON config: the only way bundles and checkpoints create models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from .chi import ChiModel
from .compact import CompactNR2SLD, ParamRegressor
from .parity_cnn import ParityCNN
from .prior_bounds import PriorBoundsRegressor

KINDS: dict[str, Callable[..., nn.Module]] = {
    "parity_cnn": ParityCNN,
    "compact": CompactNR2SLD,
    "param": ParamRegressor,
    "param_bounds": PriorBoundsRegressor,
    "chi": ChiModel,
}
MODEL_KINDS = tuple(KINDS)


def build_model(config: dict[str, Any]) -> nn.Module:
    """A fresh model from ``config`` (as stored in ``model.config``); errors name the bad key."""
    kinds = KINDS
    kind = config.get("kind")
    if kind not in kinds:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(sorted(kinds))}")
    kwargs = {k: v for k, v in config.items() if k != "kind"}
    try:
        return kinds[kind](**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad settings for a {kind} model: {exc}") from exc


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

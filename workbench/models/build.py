"""Build any model from its JSON config: the only way bundles and checkpoints create models."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn
from .compact import CompactNR2SLD, ParamRegressor
from .parity_cnn import ParityCNN
from .chi import ChiModel


def _kinds() -> dict[str, Callable[..., nn.Module]]:
    kinds: dict[str, Callable[..., nn.Module]] = {"parity_cnn": ParityCNN, "compact": CompactNR2SLD, "param": ParamRegressor}
    try:

        kinds["chi"] = ChiModel
    except ImportError:  # pragma: no cover - the χ model module is optional while it is being built
        pass
    return kinds


MODEL_KINDS = ("parity_cnn", "compact", "param", "chi")


def build_model(config: dict[str, Any]) -> nn.Module:
    """A fresh model from ``config`` (as stored in ``model.config``); errors name the bad key."""
    kinds = _kinds()
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

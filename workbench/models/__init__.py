"""Torch models: pyreflect-parity CNN, the compact default, the parameter regressor, the χ model.

Every model is built from a JSON-able config (``model.config``) through :func:`build_model`, so a
bundle on disk is safetensors weights plus that config: nothing is ever unpickled.  The package's
names load :mod:`.build` (and torch) on first use: ``models.settings`` alone needs no torch.
"""

from typing import Any

__all__ = ["MODEL_KINDS", "build_model", "count_parameters"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import build  # torch: loaded when a model name is first used, not with models.settings

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

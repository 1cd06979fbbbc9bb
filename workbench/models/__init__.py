"""Torch models: pyreflect-parity CNN, the compact default, the parameter regressor, the χ model.

Every model is built from a JSON-able config (``model.config``) through :func:`build_model`, so a
bundle on disk is safetensors weights plus that config: nothing is ever unpickled.
"""

from .build import MODEL_KINDS, build_model, count_parameters

__all__ = ["MODEL_KINDS", "build_model", "count_parameters"]

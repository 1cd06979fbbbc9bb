"""pyreflect's own code for parity tests (PyPI pyreflect-nr, installed with --no-deps by the test command).

Its package imports sklearn, typer and refl1d at the top; only the files that are needed are loaded.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import pytest


def _pyreflect_file(relative: str, module_name: str) -> types.ModuleType:
    spec = importlib.util.find_spec("pyreflect")
    if spec is None or spec.submodule_search_locations is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("pyreflect-nr is not installed (pip install --no-deps pyreflect-nr)")
        pytest.skip("pyreflect-nr is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def pyreflect_cnn_class():
    """pyreflect's CNN class (its file only imports torch.nn)."""
    return _pyreflect_file("models/cnn.py", "pyreflect_cnn").CNN


def pyreflect_data_processor():
    """pyreflect's data_processor module: normalisation, reshaping, de-normalisation.

    Its top-level ``from sklearn.model_selection import train_test_split`` is only used for data
    splits, which these tests do not call; sklearn is not a workbench dependency, so a module without
    that function stands in when sklearn is absent.
    """
    if importlib.util.find_spec("sklearn") is not None:
        return _pyreflect_file("input/data_processor.py", "pyreflect_data_processor")
    sklearn = types.ModuleType("sklearn")
    sklearn.model_selection = types.ModuleType("sklearn.model_selection")
    sklearn.model_selection.train_test_split = None
    sys.modules["sklearn"], sys.modules["sklearn.model_selection"] = sklearn, sklearn.model_selection
    try:
        return _pyreflect_file("input/data_processor.py", "pyreflect_data_processor")
    finally:  # nothing else in the session may mistake the stand-in for sklearn
        del sys.modules["sklearn"], sys.modules["sklearn.model_selection"]

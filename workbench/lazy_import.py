"""Modules whose code runs at their first use, not when something imports them.

Plotly's widget module imports ``nbformat`` when it loads, only to check its version when a figure is shown
through a notebook renderer, which the panels never do; ``nbformat`` in turn imports ``jsonschema`` and
``rfc3987_syntax``, which compiles a grammar at import: 1–2.5 s of a dashboard kernel's start for nothing.

The standard library's ``importlib.util.LazyLoader`` does not help here: ``import_module`` reads the module's
``__spec__``, and any attribute access makes a LazyLoader module run.  A deferred module here holds the
import system's own attributes (``__spec__``, ``__path__``, ...) from the start and runs its code at the first
access to anything else, after which it is the ordinary module.  Importing one of its submodules
(``from nbformat.v4 import ...``) first runs the package itself, as an ordinary import would: a finder at the
head of ``sys.meta_path`` sees to it (without it the submodule would run before its package's ``__init__``,
and ``nbformat``'s circular imports fail).
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import types
from typing import Any

_lock = threading.RLock()


class _Deferred(types.ModuleType):
    def __getattr__(self, name: str) -> Any:  # only for attributes the module does not hold yet
        _run(self)
        return getattr(self, name)


def _run(module: types.ModuleType) -> None:
    """Run a deferred module's code now (once; it then is the ordinary module)."""
    with _lock:
        if type(module) is _Deferred:
            object.__setattr__(module, "__class__", types.ModuleType)
            module.__spec__.loader.exec_module(module)


class _RunParentFirst:
    """A meta-path finder that finds nothing: it runs a deferred package before any of its submodules loads."""

    @staticmethod
    def find_spec(fullname: str, path: Any = None, target: Any = None) -> None:
        if "." in fullname:
            parent = sys.modules.get(fullname.partition(".")[0])
            if type(parent) is _Deferred:
                _run(parent)
        return None


def defer_import(name: str) -> bool:
    """Register the top-level module ``name`` to run at its first use unless it is loaded already.

    Returns whether it was deferred (False: already imported, or not installed).
    """
    if name in sys.modules or "." in name:
        return False
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        return False
    module = importlib.util.module_from_spec(spec)
    module.__class__ = _Deferred
    with _lock:
        if not any(isinstance(f, _RunParentFirst) for f in sys.meta_path):
            sys.meta_path.insert(0, _RunParentFirst())
    sys.modules[name] = module
    return True

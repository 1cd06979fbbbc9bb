"""One training engine for every model (events, stop/pause/resume, checkpoints).

The names below load the trainer (and torch) on first use; :mod:`.config` alone needs no torch.
"""

from typing import Any

__all__ = ["Task", "TrainConfig", "TrainResult", "Trainer", "resolve_device"]


def __getattr__(name: str) -> Any:
    if name == "Task":
        from ..models.task import Task  # torch: loaded on first use

        return Task
    if name in __all__:
        from . import trainer  # torch: loaded on first use, not with training.config

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

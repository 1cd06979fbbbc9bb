"""One training engine for every model (events, stop/pause/resume, checkpoints)."""

from ..models.task import Task
from .trainer import TrainConfig, Trainer, TrainResult, resolve_device

__all__ = ["Task", "TrainConfig", "TrainResult", "Trainer", "resolve_device"]

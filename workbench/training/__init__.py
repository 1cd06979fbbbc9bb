"""One training engine for every model (events, stop/pause/resume, checkpoints)."""

from .trainer import Task, TrainConfig, Trainer, TrainResult, resolve_device

__all__ = ["Task", "TrainConfig", "TrainResult", "Trainer", "resolve_device"]

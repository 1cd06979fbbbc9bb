"""Workflows: one entry point per job for every surface (CLI, panels, notebooks, sweeps).

Above ``training/``, ``analysis/`` and ``store/``: a workflow runs the computation, writes what it
produced through ``store/`` and records the run in the registry, so no surface does any of that
by itself.
"""

from .training import TrainingOutcome, TrainRequest, resume_training, run_training

__all__ = ["TrainRequest", "TrainingOutcome", "resume_training", "run_training"]

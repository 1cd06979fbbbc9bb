"""The loss a model is trained with: shared by the models that need their own (the χ model) and the trainer."""

from __future__ import annotations

import torch
from torch import nn


class Task:
    """The loss of a model on a batch.  Subclasses add regularisers (a VAE's KL term, ...)."""

    name = "mse"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(model(x), y)

    def eval_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(model, x, y)

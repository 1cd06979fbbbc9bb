"""NR + prior bounds → layer parameters: one model for a whole family of parameter ranges (reflectorch's idea).

Besides the curve, the network reads the range each free parameter is known to lie in, as fractions
of the family's full range (lower and upper edge, in [0, 1]), and predicts each parameter's place
inside that GIVEN range (sigmoid, in [0, 1]).  A scientist who knows a thickness to ±5 Å narrows
the range at prediction time; the model was trained on random sub-ranges, so it needs no retraining.

The input is one tensor, (B, nQ + 2P): the normalised curve followed by the P lower and the P upper
edges, so the one trainer, the batch norms' folding and the inference copy treat it like any model.
"""

from __future__ import annotations

import torch
from torch import nn

from .compact import Lower, ResidualEncoder, Step, activation


class PriorBoundsRegressor(nn.Module):
    """(B, nQ + 2P) curve and prior ranges → (B, P) positions inside those ranges, in [0, 1]."""

    kind = "param_bounds"

    def __init__(
        self,
        n_q: int = 308,
        n_params: int = 19,
        width: int = 32,
        stages: int = 4,
        latent: int = 256,
        dropout: float = 0.1,
        stem_stride: int = 2,
        act: str = "relu",
        min_width: float = 0.1,
    ):
        super().__init__()
        if n_q < 1 or n_params < 1:
            raise ValueError(f"n_q and n_params must be ≥ 1; got n_q={n_q}, n_params={n_params}")
        if not 0 < min_width <= 1:
            raise ValueError(f"min_width must be in (0, 1] (a fraction of the family's range); got {min_width}")
        self.config = {
            "kind": self.kind,
            "n_q": n_q,
            "n_params": n_params,
            "width": width,
            "stages": stages,
            "latent": latent,
            "dropout": dropout,
            "stem_stride": stem_stride,
            "act": act,
            "min_width": float(min_width),  # the training's narrowest range: read by the data stream, not here
        }
        self.n_q, self.n_params = n_q, n_params
        self.encoder = ResidualEncoder(n_q, width, stages, latent, dropout, stem_stride, act)
        self.head = nn.Sequential(
            nn.Linear(latent + 2 * n_params, latent), activation(act), nn.Linear(latent, latent), activation(act)
        )
        self.out = nn.Linear(latent, n_params)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The curve (B, nQ) and the ranges (B, 2P) of an input row."""
        if x.ndim != 2 or x.shape[1] != self.n_q + 2 * self.n_params:
            raise ValueError(
                f"a prior-bounds model takes (batch, {self.n_q} Q points + {2 * self.n_params} range edges); "
                f"got shape {tuple(x.shape)}"
            )
        return x[:, : self.n_q], x[:, self.n_q :]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        curve, ranges = self.split(x)
        return torch.sigmoid(self.out(self.head(torch.cat([self.encoder(curve), ranges], dim=1))))

    def lowered(self, lower: Lower) -> Step:
        """:meth:`forward` as plain torch calls (workbench.models.inference)."""
        encoder, head, out, n_q = lower(self.encoder), lower(self.head), lower(self.out), self.n_q
        return lambda x: torch.sigmoid(out(head(torch.cat([encoder(x[:, :n_q]), x[:, n_q:]], dim=1))))

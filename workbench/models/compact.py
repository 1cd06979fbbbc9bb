"""The compact default models: a residual 1D CNN encoder with pooling and small heads.

NR → SLD (``CompactNR2SLD``) and NR → layer parameters (``ParamRegressor``) share the encoder:
a stem convolution, residual stages each halving the Q resolution, and a linear map to a latent
vector.  Two orders of magnitude fewer weights than the parity CNN, whose single dense layer
holds 91 % of its 155 M parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

Step = Callable[[torch.Tensor], torch.Tensor]
Lower = Callable[[nn.Module], Step]

# ReLU is the default: on one CPU thread GELU's erf costs ~35 % of a single-curve forward pass
# (1.9 → 1.2 ms with TorchScript); the inference copy folds BatchNorm into the convolutions.
ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}


def activation(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}") from None


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel_size: int = 5, act: str = "relu"):
        super().__init__()
        pad = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv1d(c_in, c_out, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(c_out),
            activation(act),
            nn.Conv1d(c_out, c_out, kernel_size, padding=pad, bias=False),
            nn.BatchNorm1d(c_out),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv1d(c_in, c_out, 1, bias=False)
        self.act = activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.skip(x))

    def lowered(self, lower: Lower) -> Step:
        """:meth:`forward` as plain torch calls (workbench.models.inference)."""
        body, skip, act = lower(self.body), lower(self.skip), lower(self.act)
        return lambda x: act(body(x) + skip(x))


class ResidualEncoder(nn.Module):
    """(B, nQ) normalised log R → (B, latent)."""

    def __init__(
        self,
        n_q: int = 308,
        width: int = 32,
        stages: int = 4,
        latent: int = 256,
        dropout: float = 0.1,
        stem_stride: int = 2,
        act: str = "relu",
    ):
        super().__init__()
        # a strided stem halves the work of every later layer
        self.stem = nn.Sequential(
            nn.Conv1d(1, width, 7, stride=stem_stride, padding=3, bias=False), nn.BatchNorm1d(width), activation(act)
        )
        blocks = []
        c, length = width, (n_q + 2 * 3 - 7) // stem_stride + 1
        for s in range(stages):
            c_out = width * (s + 1)
            blocks += [ResidualBlock(c, c_out, act=act), nn.AvgPool1d(2, ceil_mode=True)]
            c, length = c_out, math.ceil(length / 2)
        self.stages = nn.Sequential(*blocks)
        self.project = nn.Sequential(nn.Flatten(), nn.Linear(c * length, latent), activation(act), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim == 2:
            x = x[:, None, :]
        return self.project(self.stages(self.stem(x)))

    def lowered(self, lower: Lower) -> Step:
        """:meth:`forward` as plain torch calls (workbench.models.inference)."""
        stem, stages, project = lower(self.stem), lower(self.stages), lower(self.project)
        return lambda x: project(stages(stem(x[:, None, :] if x.ndim == 2 else x)))


class CompactNR2SLD(nn.Module):
    """NR → SLD profile (B, 2, nZ) in the normalised units of the training targets."""

    kind = "compact"

    def __init__(
        self,
        n_q: int = 308,
        n_z: int = 900,
        width: int = 16,
        stages: int = 4,
        latent: int = 256,
        dropout: float = 0.1,
        stem_stride: int = 8,
        act: str = "relu",
    ):
        super().__init__()
        self.config = {
            "kind": self.kind,
            "n_q": n_q,
            "n_z": n_z,
            "width": width,
            "stages": stages,
            "latent": latent,
            "dropout": dropout,
            "stem_stride": stem_stride,
            "act": act,
        }
        self.n_z = n_z
        self.encoder = ResidualEncoder(n_q, width, stages, latent, dropout, stem_stride, act)
        self.head = nn.Linear(latent, 2 * n_z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x)).reshape(-1, 2, self.n_z)

    def lowered(self, lower: Lower) -> Step:
        """:meth:`forward` as plain torch calls (workbench.models.inference)."""
        encoder, head, n_z = lower(self.encoder), lower(self.head), self.n_z
        return lambda x: head(encoder(x)).reshape(-1, 2, n_z)


class ParamRegressor(nn.Module):
    """NR → the sampled stack parameters, as fractions of their bounds in [0, 1] (sigmoid)."""

    kind = "param"

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
    ):
        super().__init__()
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
        }
        self.encoder = ResidualEncoder(n_q, width, stages, latent, dropout, stem_stride, act)
        self.head = nn.Linear(latent, n_params)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.encoder(x)))

    def lowered(self, lower: Lower) -> Step:
        """:meth:`forward` as plain torch calls (workbench.models.inference)."""
        encoder, head = lower(self.encoder), lower(self.head)
        return lambda x: torch.sigmoid(head(encoder(x)))

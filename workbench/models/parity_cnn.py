"""pyreflect's NR → SLD CNN, layer for layer, so its trained ``state_dict`` files load as they are.

``layers`` Conv1d blocks (kernel ``kernel_size``, same padding) with channels growing from 1 to
256 in equal steps (pyreflect's rounding), each followed by BatchNorm, ReLU and dropout that
alternates element-wise and channel-wise (pyreflect's SpatialDropout1D); then one Linear from
256 × nQ to 2 × nZ, reshaped to (2, nZ), with no output activation.  The module names
(``layers.<i>``, ``linear1``) are pyreflect's, which is what makes its ``.pth`` files load.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Step = Callable[[torch.Tensor], torch.Tensor]


class SpatialDropout1d(nn.Dropout1d):
    """Drops whole channels of a (B, C, T) tensor (pyreflect's SpatialDropout1D)."""


class ParityCNN(nn.Module):
    kind = "parity_cnn"

    def __init__(self, layers: int = 12, kernel_size: int = 51, dropout: float = 0.5, n_q: int = 308, n_z: int = 900):
        super().__init__()
        if layers < 1:
            raise ValueError(f"layers must be ≥ 1, got {layers}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernelSize must be a positive odd number (same padding), got {kernel_size}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.config = {
            "kind": self.kind,
            "layers": layers,
            "kernel_size": kernel_size,
            "dropout": dropout,
            "n_q": n_q,
            "n_z": n_z,
        }
        self.n_z = n_z
        pad = kernel_size // 2
        self.layers = nn.ModuleList()
        addition = 255 / layers
        curr = 1.0
        for i in range(layers - 1):
            c_in, c_out = int(curr + 0.5), int(curr + addition + 0.5)
            self.layers.append(nn.Conv1d(c_in, c_out, kernel_size, padding=pad))
            self.layers.append(nn.BatchNorm1d(c_out))
            self.layers.append(nn.ReLU(True))
            self.layers.append(SpatialDropout1d(dropout) if i % 2 == 1 else nn.Dropout(dropout))
            curr += addition
        self.layers.append(nn.Conv1d(int(curr + 0.5), 256, kernel_size, padding=pad))
        self.layers.append(nn.BatchNorm1d(256))
        self.layers.append(nn.ReLU(True))
        self.layers.append(nn.Dropout(dropout))
        self.linear1 = nn.Linear(256 * n_q, n_z * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, nQ) or (B, nQ) normalised log R → (B, 2, nZ) normalised (z, ρ)."""
        if x.ndim == 2:
            x = x[:, None, :]
        for layer in self.layers:
            x = layer(x)
        return self.linear1(x.reshape(x.shape[0], -1)).reshape(-1, 2, self.n_z)

    def lowered(self, lower: Callable[[nn.Module], Step]) -> Step:
        """:meth:`forward` as plain torch calls (workbench.models.inference)."""
        layers, linear, n_z = lower(nn.Sequential(*self.layers)), lower(self.linear1), self.n_z

        def step(x: torch.Tensor) -> torch.Tensor:
            x = layers(x[:, None, :] if x.ndim == 2 else x)
            return linear(x.reshape(x.shape[0], -1)).reshape(-1, 2, n_z)

        return step


def load_pyreflect_state_dict(path, *, layers: int = 12, dropout: float = 0.5, kernel_size: int = 51) -> ParityCNN:
    """A ParityCNN holding the weights of a pyreflect ``.pth`` file (``torch.load(weights_only=True)``)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "linear1.weight" not in state:
        raise ValueError(f"{path}: not a pyreflect CNN state_dict (no 'linear1.weight')")
    out_features, in_features = state["linear1.weight"].shape
    convs = sorted(
        int(k.split(".")[1]) for k in state if k.startswith("layers.") and k.endswith(".weight") and state[k].ndim == 3
    )
    if len(convs) != layers:
        layers = len(convs)
    kernel_size = int(state[f"layers.{convs[0]}.weight"].shape[-1])
    model = ParityCNN(
        layers=layers, kernel_size=kernel_size, dropout=dropout, n_q=in_features // 256, n_z=out_features // 2
    )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path}: state_dict does not match pyreflect's CNN (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model

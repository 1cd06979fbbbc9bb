"""SLD profile → Flory–Huggins χ parameters: an autoencoder (or VAE) with an MLP on its latent code.

The architecture follows pyreflect's χ workflow: a dense encoder (88 → 500 → 300 → 200 → 72 →
latent 16), a mirrored decoder ending in a sigmoid (the profiles are min-max scaled to [0, 1]),
and a small MLP (latent → 36 → 12 → 3) from the code to the scaled χ.  Two things are done
right here: the VAE's KL term is part of the loss (pyreflect computed it and never used it), and
encoder, decoder and MLP train together in one loss (:class:`ChiTask`), so the latent code is
shaped by χ as well as by reconstruction.  Inference uses the deterministic code (the mean).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import nn

from .task import Task


def _dense(sizes: Sequence[int]) -> list[nn.Module]:
    """Linear + ReLU for each consecutive pair of ``sizes``."""
    layers: list[nn.Module] = []
    for a, b in pairwise(sizes):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return layers


class ChiModel(nn.Module):
    """Scaled SLD profiles (B, n_points) → scaled χ (B, n_chi), through an (V)AE latent code."""

    kind = "chi"

    def __init__(
        self,
        n_points: int = 88,
        n_chi: int = 3,
        hidden: Sequence[int] = (500, 300, 200, 72),
        latent: int = 16,
        vae_beta: float = 0.0,
        mlp_hidden: Sequence[int] = (36, 12),
        whiten: int = 0,
    ) -> None:
        super().__init__()
        hidden, mlp_hidden = [int(h) for h in hidden], [int(h) for h in mlp_hidden]
        if n_points < 1 or n_chi < 1 or latent < 1 or any(h < 1 for h in hidden + mlp_hidden):
            raise ValueError(
                f"n_points, n_chi, latent and every hidden size must be ≥ 1; got n_points={n_points}, n_chi={n_chi}, "
                f"latent={latent}, hidden={hidden}, mlp_hidden={mlp_hidden}"
            )
        if not 0 <= whiten <= n_points:
            raise ValueError(
                f"whiten must be between 0 (off) and n_points={n_points} principal components; got {whiten}"
            )
        if vae_beta < 0:
            raise ValueError(f"vae_beta must be ≥ 0 (0 = plain autoencoder); got {vae_beta}")
        self.config = {
            "kind": self.kind,
            "n_points": int(n_points),
            "n_chi": int(n_chi),
            "hidden": hidden,
            "latent": int(latent),
            "vae_beta": float(vae_beta),
            "mlp_hidden": mlp_hidden,
            "whiten": int(whiten),
        }
        self.vae_beta = float(vae_beta)
        self.whiten = int(whiten)
        if self.whiten:  # fixed PCA projection, fitted on the training rows by set_whitening()
            self.register_buffer("pca_mean", torch.zeros(n_points))
            self.register_buffer("pca_proj", torch.zeros(n_points, self.whiten))
            self.register_buffer("pca_ready", torch.zeros((), dtype=torch.bool))
        n_in = self.whiten or n_points
        self.encoder = nn.Sequential(*_dense([n_in, *hidden]))
        width = hidden[-1] if hidden else n_in
        self.mu = nn.Linear(width, latent)
        self.logvar = nn.Linear(width, latent) if vae_beta > 0 else None
        back = [latent, *reversed(hidden)]
        self.decoder = nn.Sequential(*_dense(back), nn.Linear(back[-1], n_points), nn.Sigmoid())
        self.mlp = nn.Sequential(*_dense([latent, *mlp_hidden]), nn.Linear(([latent, *mlp_hidden])[-1], n_chi))

    @property
    def is_vae(self) -> bool:
        return self.logvar is not None

    def set_whitening(self, mean: torch.Tensor, components: torch.Tensor, scale: torch.Tensor) -> None:
        """Fix the input projection: (x − mean) onto ``components`` (k, P), divided by ``scale`` (k,)."""
        if not self.whiten:
            raise ValueError("this χ model was built with whiten=0; it has no input projection to set")
        if tuple(components.shape) != (self.whiten, self.pca_mean.numel()) or scale.numel() != self.whiten:
            raise ValueError(
                f"whitening needs components of shape ({self.whiten}, {self.pca_mean.numel()}) and {self.whiten} "
                f"scales; got {tuple(components.shape)} and {scale.numel()}"
            )
        with torch.no_grad():
            self.pca_mean.copy_(mean)
            self.pca_proj.copy_((components / scale.clamp_min(1e-12)[:, None]).T)
            self.pca_ready.fill_(True)

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the dense encoder sees: ``x``, or its whitened principal components."""
        if not self.whiten:
            return x
        if not bool(self.pca_ready):
            raise RuntimeError(
                "the χ model's whitening has not been fitted (set_whitening) nor loaded from its weights"
            )
        return (x - self.pca_mean) @ self.pca_proj

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(mu, logvar) of the latent code; logvar is None for the plain autoencoder."""
        h = self.encoder(self.encoder_input(x))
        return self.mu(h), (self.logvar(h) if self.logvar is not None else None)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.decoder(code)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The profile rebuilt from the deterministic code (scaled units, in [0, 1])."""
        return self.decode(self.encode(x)[0])

    def chi_from_code(self, code: torch.Tensor) -> torch.Tensor:
        return self.mlp(code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scaled χ from the deterministic code (the mean): what inference uses."""
        return self.chi_from_code(self.encode(x)[0])


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, σ²) ‖ N(0, 1)) summed over latent dimensions, averaged over the batch."""
    return (-0.5 * (1.0 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


class ChiTask(Task):
    """Loss = reconstruction MSE + vae_beta · KL + chi_weight · χ MSE (vae_beta from the model).

    Training samples the code with the reparameterisation trick (VAE only), so reconstruction and
    χ see the noise and the KL term really shapes the encoder; evaluation uses the mean code.
    ``y`` holds the scaled χ; the reconstruction target is ``x`` itself.
    """

    name = "chi"

    def __init__(self, chi_weight: float = 1.0) -> None:
        if chi_weight < 0:
            raise ValueError(f"chi_weight must be ≥ 0; got {chi_weight}")
        self.chi_weight = float(chi_weight)

    def terms(self, model: ChiModel, x: torch.Tensor, y: torch.Tensor, *, sample: bool) -> dict[str, torch.Tensor]:
        """The loss and its parts: ``reconstruction``, ``kl`` (0 for the autoencoder), ``chi``."""
        mu, logvar = model.encode(x)
        code = mu
        kl = mu.new_zeros(())
        if logvar is not None:
            kl = kl_divergence(mu, logvar)
            if sample:
                code = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        rec = nn.functional.mse_loss(model.decode(code), x)
        chi = nn.functional.mse_loss(model.chi_from_code(code), y)
        total = rec + model.vae_beta * kl + self.chi_weight * chi
        return {"loss": total, "reconstruction": rec, "kl": kl, "chi": chi}

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.terms(model, x, y, sample=True)["loss"]  # type: ignore[arg-type]

    def eval_loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.terms(model, x, y, sample=False)["loss"]  # type: ignore[arg-type]

"""A parameter model's loss with the SLD profile in it: what the predicted stack looks like, not only its numbers.

A parameter model trained on the squared error of its parameters (as fractions of their ranges) spends itself
equally on every parameter, also on those the curve barely constrains: in a 20-layer film, a thickness
whose layer has almost the contrast of its neighbours.  The profile term adds the mean squared difference
between the SLD profiles of the predicted and the true stack (on one z grid that holds every profile of the
family, in 10⁻⁶ Å⁻²), so a parameter counts as much as it changes the profile, and with it the curve.  The
profiles come from :func:`~workbench.physics.profile.sld_profile_torch`: a few hundred error functions per
interface, cheap beside the network (the curves themselves, through the reflectivity kernel with its
resolution, cost ~9× the training throughput: benchmarks/README.md).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.family import tie_columns
from ..data.generate import shared_z_range
from ..models.task import Task
from ..physics.profile import sld_profile_torch
from ..physics.stack import FilmStack

_FIELDS = ("sld", "isld", "thickness", "roughness")
PROFILE_POINTS = 256  # z points of the loss's profiles: finer than any interface of a physical film needs


class ProfileTask(Task):
    """Parameter MSE + ``weight`` × SLD-profile MSE of the stacks that predicted and true fractions describe.

    ``columns``: the stack's bound indices the model predicts (its free parameters, ties' followers left out),
    in the model's output order.  A tie's followers take their leader's fraction of their own range, as the
    sampler draws them; fixed parameters keep the stack's value.
    """

    name = "mse+profile"

    def __init__(self, stack: FilmStack, columns: list[int], weight: float) -> None:
        base = stack.to_arrays()
        self.base = {k: torch.as_tensor(np.asarray(getattr(base, k)), dtype=torch.float32) for k in _FIELDS}
        all_bounds = list(stack.bounds)
        lo = np.array([b.lo for b in all_bounds])
        span = np.array([b.hi - b.lo for b in all_bounds])
        predicted = {c: j for j, c in enumerate(columns)}
        source = dict(predicted)  # bound index → the predicted column whose fraction it takes
        for group in tie_columns(stack):
            leader = next((c for c in group if c in predicted), None)
            if leader is not None:
                for c in group:
                    source.setdefault(c, predicted[leader])
        self.targets = {}  # field → (layer indices, predicted columns, lo, span)
        for par in _FIELDS:
            picked = [(all_bounds[c].i, j, lo[c], span[c]) for c, j in source.items() if all_bounds[c].par == par]
            if picked:
                i, j, low, width = zip(*picked)
                self.targets[par] = (
                    torch.tensor(i),
                    torch.tensor(j),
                    torch.tensor(low, dtype=torch.float32),
                    torch.tensor(width, dtype=torch.float32),
                )
        left, right = shared_z_range(stack)
        self.z = torch.linspace(left, right, PROFILE_POINTS)
        self.weight = float(weight)

    def profiles(self, fractions: torch.Tensor) -> torch.Tensor:
        """SLD profiles (B, PROFILE_POINTS) of the stacks whose predicted columns hold ``fractions`` (B, P)."""
        n, dev = fractions.shape[0], fractions.device
        arrays = {}
        for par, t in self.base.items():
            values = t.to(dev).expand(n, -1)
            if par in self.targets:
                i, j, low, width = (a.to(dev) for a in self.targets[par])
                values = values.index_copy(1, i, low + fractions[:, j] * width)
            arrays[par] = values
        z = self.z.to(dev)
        _, rho, _ = sld_profile_torch(arrays["sld"], arrays["isld"], arrays["thickness"], arrays["roughness"], z=z)
        return rho

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pred = model(x)
        out = nn.functional.mse_loss(pred, y)
        if self.weight:
            out = out + self.weight * nn.functional.mse_loss(self.profiles(pred), self.profiles(y))
        return out


def profile_task(stack: FilmStack, columns: list[int], weight: float) -> Task | None:
    """The loss of a parameter model of ``stack``: with the profile term when ``weight`` > 0, else None (plain MSE)."""
    return ProfileTask(stack, columns, weight) if weight > 0 else None

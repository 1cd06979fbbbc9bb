"""A parameter model's profile term: it draws the same profiles the generator does (ties included), it is in
the loss the model trains on, and a resumed run keeps it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.data.family import SampleFamily, tie_columns
from workbench.data.generate import GeneratorConfig, generate
from workbench.data.sampling import apply_parameters
from workbench.physics import FilmStack
from workbench.physics.profile import sld_profile
from workbench.training.on_the_fly import OnTheFly, resume_on_the_fly, train_on_the_fly
from workbench.training.profile_loss import ProfileTask
from workbench.training.trainer import TrainConfig

SMALL = {"sld_points": 60, "num_q": 80}


def tied_family() -> FilmStack:
    """Si / SiOx / 3 × [PEO | dPS] / air, every PEO layer one SLD, thicknesses swelling together."""
    return SampleFamily.from_dict(
        {
            "name": "tied multilayer",
            "layers": [
                {"name": "Si", "sld": 2.07, "roughness": 3},
                {"name": "SiOx", "sld": 3.47, "thickness": 12, "roughness": 3},
                {
                    "repeat": 3,
                    "layers": [
                        {"name": "PEO", "sld": 0.6, "thickness": 33},
                        {"name": "dPS", "sld": 6.0, "thickness": 40},
                    ],
                },
                {"name": "air"},
            ],
            "ranges": {"thickness": "20%", "sld": 0.5, "roughness": 5},
            "ties": ["PEO_*.sld", {"together": ["PEO_*.thickness", "dPS_*.thickness"]}],
        }
    ).expand()


@pytest.mark.parametrize("make", [FilmStack.default, tied_family])
def test_the_profiles_are_those_of_the_generated_stacks(make):
    stack = make()
    data = generate(stack, GeneratorConfig(num_curves=40, seed=3, **SMALL))
    followers = {c for group in tie_columns(stack) for c in group[1:]}
    cols = [c for c, b in enumerate(stack.bounds) if b.hi > b.lo and c not in followers]  # what a model predicts
    bounds = np.array([(stack.bounds[c].lo, stack.bounds[c].hi) for c in cols])
    task = ProfileTask(stack, cols, weight=1.0)
    fractions = (data.params[:, cols] - bounds[:, 0]) / (bounds[:, 1] - bounds[:, 0])
    drawn = task.profiles(torch.as_tensor(fractions, dtype=torch.float32)).numpy()
    _, expected, _ = sld_profile(apply_parameters(stack, data.params), z=task.z.numpy())
    assert (len(cols) < len(stack.free_parameters)) == bool(tie_columns(stack))  # followers are not predicted
    np.testing.assert_allclose(drawn, expected, atol=2e-4 * np.abs(expected).max())


def test_the_loss_adds_the_weighted_profile_difference():
    stack = FilmStack.default()
    cols = list(range(len(stack.bounds)))
    cols = [c for c in cols if stack.bounds[c].hi > stack.bounds[c].lo]
    task, plain = ProfileTask(stack, cols, weight=2.0), ProfileTask(stack, cols, weight=0.0)
    gen = torch.Generator().manual_seed(0)
    y, guess = torch.rand(8, len(cols), generator=gen), torch.rand(8, len(cols), generator=gen)
    model = lambda x: guess  # noqa: E731 - a "model" that always predicts the same stacks
    profile_mse = torch.mean((task.profiles(guess) - task.profiles(y)) ** 2)
    assert float(plain.loss(model, y, y)) == pytest.approx(float(torch.mean((guess - y) ** 2)))
    assert float(task.loss(model, y, y)) == pytest.approx(float(plain.loss(model, y, y) + 2 * profile_mse), rel=1e-5)
    assert float(task.loss(lambda x: y, y, y)) == 0.0  # the true stacks: nothing to learn


def test_a_parameter_model_trains_with_it_and_a_resumed_run_keeps_it(tmp_path):
    torch.set_num_threads(1)
    fly = OnTheFly.of(
        tied_family(),
        generator=GeneratorConfig(**SMALL),
        batches_per_epoch=4,
        fit_curves=64,
        val_curves=64,
        test_curves=64,
    )
    tiny = {"width": 8, "stages": 2, "latent": 16}

    def train(weight: float, epochs: int = 2):
        config = TrainConfig(epochs=epochs, batch_size=16, profile_weight=weight, checkpoint_every=1)
        return train_on_the_fly(
            fly, target="params", model=tiny, train=config, checkpoint_path=tmp_path / f"{weight}.ckpt"
        )

    on, off = train(3.0), train(0.0)
    assert isinstance(on.trainer.task, ProfileTask) and on.trainer.task.weight == 3.0
    assert not isinstance(off.trainer.task, ProfileTask)
    assert on.bundle_contents["train"]["profile_weight"] == 3.0  # the model card says how it was trained
    assert on.metrics != off.metrics  # the loss changed what was learnt
    resumed = resume_on_the_fly(tmp_path / "3.0.ckpt", epochs=3)
    assert isinstance(resumed.trainer.task, ProfileTask) and resumed.trainer.task.weight == 3.0
    assert resumed.result.finished and len(resumed.result.history) == 3

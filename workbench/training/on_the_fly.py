"""On-the-fly training: every batch freshly generated from a sample family, so a model never sees a curve twice.

The curves form one endless seeded stream: curve ``i`` is curve ``i`` of a ``uniform`` data set
generated with the same stack, generator settings and seed (the sampler and the noise are seeded per
block of :data:`~workbench.data.sampling.BLOCK` curves), and batch ``g`` of the run (epoch × batches
per epoch + batch) is curves ``[g·B, (g+1)·B)``.  So the same seed gives the same batches whatever
the producer's timing, and a paused run resumes at exactly the batch it stopped at.

A background thread (the producer) computes whole blocks with the fast engine — numba's kernels
release the GIL, so it runs beside torch — and hands them, already preprocessed, through a bounded
queue.  Curves far out in the stream (from :data:`FIXED_START`) form the fixed sets, generated once:
the normalisation set (the normalisers are fitted on it as on a stored data set's training split;
it is also the "train (eval)" probe), the validation set and the test set.  Preprocessing and the
bundle are exactly those of the stored data-set path (:func:`~workbench.training.nr_workflow.prepare`),
so a bundle trained either way predicts the same way.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..data.dataset import Dataset, dataset_hash
from ..data.family import stack_from_meta, stack_meta
from ..data.generate import GeneratorConfig, compute_chunk
from ..data.preprocess import PreprocessConfig
from ..data.sampling import BLOCK, ParameterSampler
from ..events import Reporter
from ..models import build_model
from ..physics.stack import FilmStack, StackError
from .checkpoint import load_checkpoint
from .nr_workflow import (
    Outcome,
    Prepared,
    Target,
    _finish,
    default_model_config,
    loss_task,
    prepare,
    resumed_profile_weight,
)
from .prior_bounds import KIND as PRIOR_BOUNDS
from .prior_bounds import SubRangeSampler, positions, prepare_ranged, range_inputs
from .trainer import STAGE, TrainConfig, Trainer, TrainResult

ENDLESS = 2**62  # curves in the stream: never reached
FIXED_START = 2**52  # first curve of the fixed sets (normalisation, validation, test); a multiple of BLOCK


class OnTheFly(BaseModel):
    """What an on-the-fly run draws its curves from: the film stack (a sample family, ties included) and the grid."""

    model_config = ConfigDict(extra="forbid")

    stack: dict[str, Any] = Field(
        description="the generation stack as a data set records it: layer_desc, layer_bound, ties, family"
    )
    generator: GeneratorConfig = Field(
        default_factory=GeneratorConfig,
        description="Q grid, resolution, SLD points, realism and roughness cap; num_curves, sampling and seed are "
        "not used (the stream is endless, uniform, seeded by the training seed)",
    )
    batches_per_epoch: int = Field(
        200, ge=1, le=10_000_000, description="fresh batches per epoch (an epoch: between two validations)"
    )
    fit_curves: int = Field(
        4096, ge=16, le=1_000_000, description="curves the normalisers are fitted on (also the train-loss probe)"
    )
    val_curves: int = Field(2048, ge=16, le=1_000_000, description="fixed validation curves")
    test_curves: int = Field(2048, ge=16, le=1_000_000, description="fixed test curves")
    prefetch: int = Field(4, ge=1, le=64, description="blocks of 1024 curves the producer may compute ahead")

    @field_validator("stack")
    @classmethod
    def _valid_stack(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            stack = stack_from_meta(value)
        except (KeyError, TypeError, StackError, ValueError) as exc:
            raise ValueError(f"the on-the-fly stack is not valid: {exc}") from None
        if not stack.free_parameters:
            raise ValueError("the on-the-fly stack has no varying parameter: give it ranges")
        return value

    @classmethod
    def of(cls, stack: FilmStack, **kwargs: Any) -> OnTheFly:
        """Settings for ``stack`` (a :class:`~workbench.data.family.FamilyStack` keeps its ties and family)."""
        return cls(stack=stack_meta(stack), **kwargs)

    def film(self) -> FilmStack:
        return stack_from_meta(self.stack)

    def stream_config(self, seed: int) -> GeneratorConfig:
        return self.generator.model_copy(update={"seed": int(seed), "sampling": "uniform", "num_curves": 1})


def _curves(stack: FilmStack, config: GeneratorConfig, sampler: ParameterSampler, start: int, n: int):
    """NR, SLD and the parameter table of stream curves [start, start + n); ``start`` a multiple of BLOCK."""
    values, arrays = sampler.sample(start, start + n)
    return compute_chunk(stack, config, values, arrays, start)


def _fixed_parts(settings: OnTheFly) -> list[tuple[str, int, int]]:
    """(split name, first stream curve, curves) of the normalisation, validation and test sets."""
    sizes = {"train": settings.fit_curves, "val": settings.val_curves, "test": settings.test_curves}
    parts, start = [], FIXED_START
    for key, n in sizes.items():
        parts.append((key, start, n))
        start += math.ceil(n / BLOCK) * BLOCK
    return parts


def fixed_sets(
    settings: OnTheFly, seed: int, sampler: ParameterSampler | None = None
) -> tuple[Dataset, dict[str, np.ndarray]]:
    """The normalisation, validation and test curves as one in-memory data set, and their index split."""
    stack, config = settings.film(), settings.stream_config(seed)
    sampler = sampler or ParameterSampler(stack, ENDLESS, config.seed, "uniform", config.consistent_roughness)
    parts: list[dict[str, np.ndarray]] = []
    split, row = {}, 0
    for key, start, n in _fixed_parts(settings):
        parts.append(_curves(stack, config, sampler, start, n))
        split[key] = np.arange(row, row + n, dtype=np.int64)
        row += n
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    names = sampler.names + config.realism.extra_parameter_names()
    meta = {
        "generator": config.model_dump(mode="json"),
        "stack": stack_meta(stack),
        "probe": {
            "q_min": config.q_min,
            "q_max": config.q_max,
            "num_q": config.num_q,
            "dq_over_q": config.q_resolution,
            "dq_convention": "FWHM",
        },
        "seed": config.seed,
        "parameter_names": names,
        "on_the_fly": True,
    }
    ds = Dataset(arrays["nr"], arrays["sld"], arrays["params"], arrays.get("dr"), meta)
    ds.meta["content_hash"] = dataset_hash(ds)
    return ds, split


class CurveStream:
    """Preprocessed training batches from a producer thread, in stream order whatever its timing."""

    def __init__(self, settings: OnTheFly, seed: int, prep: Prepared, target: Target) -> None:
        self.stack, self.config = settings.film(), settings.stream_config(seed)
        config = self.config
        self.sampler = ParameterSampler(self.stack, ENDLESS, config.seed, "uniform", config.consistent_roughness)
        self.prep, self.target, self.prefetch = prep, target, settings.prefetch
        self.produced = 0  # curves computed by the producer
        self.produce_seconds = 0.0  # its time computing them
        self.wait_seconds = 0.0  # the trainer's time waiting for them
        self.consumed = 0
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ producer
    def start(self, curve: int) -> None:
        """Start producing at stream curve ``curve`` (the next batch's first)."""
        self.close()
        self._queue: queue.Queue = queue.Queue(maxsize=self.prefetch)
        self._halt = threading.Event()
        self._next = curve
        self._buffer: tuple[np.ndarray, np.ndarray] | None = None
        self._offset = 0
        self._skip = curve % BLOCK  # the first block's curves before ``curve`` (a resumed run)
        first_block = curve // BLOCK
        self._thread = threading.Thread(
            target=self._produce, args=(first_block, self._queue, self._halt), name="workbench-on-the-fly", daemon=True
        )
        self._thread.start()

    def _produce(self, block: int, out: queue.Queue, halt: threading.Event) -> None:
        try:
            while not halt.is_set():
                t0 = time.perf_counter()
                item = self._features(self._block(block))
                self.produce_seconds += time.perf_counter() - t0
                self.produced += BLOCK
                block += 1
                self._hand_over(out, halt, item)
        except Exception as exc:  # noqa: BLE001 - any failure is handed to the trainer, which raises it
            self._hand_over(out, halt, exc)

    @staticmethod
    def _hand_over(out: queue.Queue, halt: threading.Event, item: Any) -> None:
        while not halt.is_set():
            try:
                out.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _block(self, block: int) -> dict[str, np.ndarray]:
        return _curves(self.stack, self.config, self.sampler, block * BLOCK, BLOCK)

    def _features(self, data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        y_source = data["sld"] if self.target == "sld" else data["params"]
        return self.prep.x.transform(data["nr"]), self.prep.y.transform(y_source)

    def close(self) -> None:
        if self._thread is not None:
            self._halt.set()
            self._thread.join()
            self._thread = None

    # ------------------------------------------------------------ consumer
    def take(self, curve: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Stream curves [curve, curve + n): they must follow the previous batch (or the start)."""
        if curve != self._next:
            raise RuntimeError(f"on-the-fly batches must be taken in order: expected curve {self._next}, got {curve}")
        xs, ys = [], []
        need = n
        while need:
            if self._buffer is None or self._offset >= len(self._buffer[0]):
                self._refill()
            x, y = self._buffer
            a, b = self._offset, min(len(x), self._offset + need)
            xs.append(x[a:b])
            ys.append(y[a:b])
            need -= b - a
            self._offset = b
        self._next = curve + n
        self.consumed += n
        return np.concatenate(xs), np.concatenate(ys)

    def _refill(self) -> None:
        t0 = time.perf_counter()
        item = self._queue.get()
        self.wait_seconds += time.perf_counter() - t0
        if isinstance(item, BaseException):
            raise item
        self._buffer, self._offset, self._skip = item, self._skip, 0

    def stats(self) -> dict[str, Any]:
        rate = self.produced / self.produce_seconds if self.produce_seconds else None
        return {
            "curves_produced": self.produced,
            "curves_trained": self.consumed,
            "produced_per_s": None if rate is None else round(rate, 1),
            "trainer_waited_s": round(self.wait_seconds, 3),
        }


class RangedCurveStream(CurveStream):
    """The stream of the prior-bounds model: every curve drawn inside its own sub-range, which goes in beside it."""

    def __init__(self, settings: OnTheFly, seed: int, prep: Prepared, target: Target) -> None:
        super().__init__(settings, seed, prep, target)
        self.sampler = ranged_sampler(self.stack, self.config, prep.normalization["y"]["min_width"])
        self.columns = prep.normalization["y"]["columns"]

    def _block(self, block: int) -> dict[str, np.ndarray]:
        data = super()._block(block)
        data["ranges"] = self.sampler.ranges(block * BLOCK, (block + 1) * BLOCK)
        return data

    def _features(self, data: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        own = data["ranges"][:, self.columns, :]
        low, high = self.sampler.physical(data["ranges"])
        curves = self.prep.x.curves.transform(data["nr"])
        x = np.concatenate([curves, range_inputs(own)], axis=1).astype(np.float32)
        cols = self.columns
        return x, positions(data["params"][:, cols], low[:, cols], high[:, cols])


def ranged_sampler(stack: FilmStack, config: GeneratorConfig, min_width: float) -> SubRangeSampler:
    return SubRangeSampler(stack, ENDLESS, config.seed, "uniform", config.consistent_roughness, float(min_width))


class OnTheFlyTrainer(Trainer):
    """The one trainer with its training batches from a :class:`CurveStream` (validation on the fixed sets)."""

    stream: CurveStream | None = None
    per_epoch: int = 1

    def batches_per_epoch(self) -> int:
        return self.per_epoch

    def describe_data(self) -> str:
        return f"fresh curves (on the fly, {self.per_epoch} batches of {self.config.batch_size} per epoch)"

    def _epoch_order(self, epoch: int) -> np.ndarray:
        return np.empty(0, dtype=np.int64)  # batches come from the stream, in order

    def train_batch(self, order: np.ndarray, epoch: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        bs = self.config.batch_size
        x, y = self.stream.take((epoch * self.per_epoch + b) * bs, bs)
        return torch.as_tensor(x).to(self.device), torch.as_tensor(y).to(self.device)

    def fit(self) -> TrainResult:
        st, bs = self.state, self.config.batch_size
        self.stream.start((st.epoch * self.per_epoch + st.batch) * bs)
        try:
            result = super().fit()
        finally:
            self.stream.close()
        stats = self.stream.stats()
        trained = stats["curves_trained"]
        self.reporter.log(
            STAGE,
            f"on the fly: {trained} fresh curves trained ({trained / max(result.seconds, 1e-9):.0f}/s), produced at "
            f"{stats['produced_per_s']} curves/s; the trainer waited {stats['trainer_waited_s']} s for them",
        )
        return result


def _context(settings: OnTheFly, target: Target, ds: Dataset, prep: Prepared, name: str | None) -> dict[str, Any]:
    ref = {"path": None, "content_hash": ds.content_hash, "curves": ds.n, "on_the_fly": True}
    return {
        "target": target,
        "dataset": ref,
        "normalization": prep.normalization,
        "name": name,
        "on_the_fly": settings.model_dump(mode="json"),
    }


def _trainer_parts(
    settings: OnTheFly, target: Target, pre: PreprocessConfig, model_config: dict[str, Any] | None = None
) -> tuple[Dataset, Prepared]:
    if (model_config or {}).get("kind") != PRIOR_BOUNDS:
        ds, split = fixed_sets(settings, pre.seed)
        return ds, prepare(ds, target, pre, split)
    if target != "params":
        raise ValueError(f"the prior-bounds model ({PRIOR_BOUNDS}) predicts layer parameters: use target 'params'")
    min_width = model_config.get("min_width", 0.1)
    sampler = ranged_sampler(settings.film(), settings.stream_config(pre.seed), min_width)
    ds, split = fixed_sets(settings, pre.seed, sampler)
    fractions = np.concatenate([sampler.ranges(start, start + n) for _, start, n in _fixed_parts(settings)])
    return ds, prepare_ranged(ds, pre, split, fractions, min_width)


def train_on_the_fly(
    settings: OnTheFly,
    *,
    target: Target = "sld",
    model: dict[str, Any] | None = None,
    train: TrainConfig | None = None,
    preprocess: PreprocessConfig | None = None,
    checkpoint_path: str | Path | None = None,
    reporter: Reporter | None = None,
    name: str | None = None,
) -> Outcome:
    """Train an NR → SLD or NR → parameters model on fresh curves of ``settings.stack``, seeded by ``train.seed``."""
    train = train or TrainConfig()
    model_config = default_model_config(target, model)
    pre = (preprocess or train.preprocess(kind=model_config["kind"])).model_copy(update={"seed": train.seed})
    reporter = reporter or Reporter()
    t0 = time.perf_counter()
    ds, prep = _trainer_parts(settings, target, pre, model_config)
    reporter.log(STAGE, f"fixed normalisation/validation/test curves: {ds.n} in {time.perf_counter() - t0:.1f} s")
    n_q, n_z = ds.nr.shape[2], ds.sld.shape[2]
    if model_config["kind"] in ("param", PRIOR_BOUNDS):
        model_config.update(n_q=n_q, n_params=len(prep.names))
    else:
        model_config.update(n_q=n_q, n_z=n_z)
    torch.manual_seed(train.seed)
    net = build_model(model_config)
    trainer = OnTheFlyTrainer(
        net,
        prep.x,
        prep.y,
        prep.split,
        train,
        task=loss_task(target, model_config["kind"], ds, prep, train.profile_weight),
        reporter=reporter,
        checkpoint_path=checkpoint_path,
        context=_context(settings, target, ds, prep, name),
    )
    return _run(trainer, settings, ds, prep, target, name)


def resume_on_the_fly(
    checkpoint_path: str | Path, *, reporter: Reporter | None = None, epochs: int | None = None
) -> Outcome:
    """Continue a paused on-the-fly run at the batch it reached (its settings are in the checkpoint)."""
    _, meta, _ = load_checkpoint(checkpoint_path)
    context = meta["context"]
    if "on_the_fly" not in context:
        raise ValueError(f"{checkpoint_path} is not an on-the-fly run's checkpoint; resume it on its data set")
    settings = OnTheFly(**context["on_the_fly"])
    pre = PreprocessConfig(**context["normalization"]["preprocess"])
    target = context["target"]
    ds, prep = _trainer_parts(settings, target, pre, meta["model_config"])
    task = loss_task(target, meta["model_config"]["kind"], ds, prep, resumed_profile_weight(meta))
    trainer = OnTheFlyTrainer.resume(checkpoint_path, prep.x, prep.y, task=task, reporter=reporter, epochs=epochs)
    return _run(trainer, settings, ds, prep, target, context.get("name"))


def _run(
    trainer: OnTheFlyTrainer, settings: OnTheFly, ds: Dataset, prep: Prepared, target: Target, name: str | None
) -> Outcome:
    trainer.per_epoch = settings.batches_per_epoch
    ranged = prep.normalization["y"].get("method") == "prior_bounds"
    stream = RangedCurveStream if ranged else CurveStream
    trainer.stream = stream(settings, prep.normalization["preprocess"]["seed"], prep, target)
    result = trainer.fit()
    out = _finish(trainer, result, ds, prep, name)
    if out.bundle_contents is not None:
        train = out.bundle_contents["train"]
        stream = trainer.stream.config.model_dump(mode="json", exclude={"num_curves", "chunk_size"})
        train["on_the_fly"] = {
            **settings.model_dump(mode="json", exclude={"stack", "generator"}),
            "generator": stream,  # as used: uniform, the training seed
            **trainer.stream.stats(),
        }
        out.bundle_contents["data"]["on_the_fly"] = True
    return out

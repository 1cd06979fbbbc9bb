"""One training engine for every model: events, stop / pause / resume, checkpoints.

The trainer sees a model, a loss (``Task``) and two arrays, inputs ``x`` and targets ``y``, with
index arrays for the train/validation/test split.  Listeners get batch progress, one ``epoch``
record per epoch (train loss as it was during the epoch, train loss re-measured in eval mode so
that dropout does not make validation look better than training, validation loss, learning
rate, seconds), log lines and warnings.

* stop: the run ends after the current batch; no checkpoint is written.
* pause: a checkpoint is written at once (mid-epoch, with the batch reached) and the run ends;
  :meth:`Trainer.resume` continues exactly there, on the same split, with the same shuffling.
* periodic checkpoints every ``checkpoint_every`` epochs; every write is atomic.
* time budget (``minutes``): the run ends at the first batch boundary after the budget; a partial
  epoch is validated like a whole one (its record carries ``partial``, the fraction done) and the run
  counts as finished (status ``time-limit``, the reason in :attr:`TrainResult.stop_reason`).  Time
  trained before a pause counts: a resumed run gets what was left of the budget.
* cosine schedule: the learning rate falls along a half cosine, set before every batch, from
  ``learning_rate`` to 0 at whichever end comes first, the last epoch or the time budget.  A run given
  only minutes (the usual on-the-fly training) thus anneals to its deadline instead of stopping at a
  high rate; measured on the default stack, this is worth more than more data (benchmarks/README).
* best weights: a run that finishes (completed, early-stopped, time-limit) always ends with the
  weights of its best validation epoch (:attr:`TrainResult.kept_epoch`), not those of its last.
* threads: torch's CPU threads are set for the run (``threads``, or :func:`machine_threads`) and
  restored afterwards.  On the 2-core machine with other work running, torch's default two threads
  took ~1.05 s per batch and one thread ~0.1 s (issue 20): oversubscribed cores cost 10×.
"""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from ..events import Cancelled, Reporter
from ..models import build_model
from ..models.task import Task
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig

STAGE = "train"


def machine_threads() -> int:
    """Torch CPU threads for a run that asks for none: 1 on ≤ 2 cores, else the cores the load leaves idle.

    Idle cores: those this process may use less the 1-minute load average (rounded up), at least 1,
    and never more than ``torch.get_num_threads()`` (so ``OMP_NUM_THREADS`` and a caller's
    ``torch.set_num_threads`` still cap it).
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    if cores <= 2:
        return 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return max(1, min(torch.get_num_threads(), cores - math.ceil(load)))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but no CUDA device is visible; use 'auto' or 'cpu'")
    return device


@dataclass
class TrainResult:
    status: Literal["completed", "early-stopped", "time-limit", "stopped", "paused"]
    epochs_done: int
    history: list[dict[str, float]]
    best_epoch: int | None
    best_val_loss: float | None
    checkpoint: Path | None = None
    seconds: float = 0.0
    stop_reason: str = ""  # why the run ended, in words
    kept_epoch: int | None = None  # the epoch whose weights the model holds at the end (finished runs)
    threads: int = 0  # torch CPU threads the run used

    FINISHED = ("completed", "early-stopped", "time-limit")  # a model worth saving

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED

    def summary(self) -> dict[str, Any]:
        """How the run went, for the run record and the model card: the epoch whose weights were kept, why it ended."""
        return {
            "status": self.status,
            "epochs_done": self.epochs_done,
            "kept_epoch": self.kept_epoch,
            "best_val_loss": self.best_val_loss,
            "stop_reason": self.stop_reason,
            "threads": self.threads,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class _State:
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches completed in the current epoch
    history: list[dict[str, float]] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int | None = None
    stale: int = 0
    seconds: float = 0.0  # training time before this run started (restored from a checkpoint)


class Trainer:
    """Train ``model`` on (x[split['train']], y[split['train']]) with validation on split['val']."""

    def __init__(
        self,
        model: nn.Module,
        x: np.ndarray,
        y: np.ndarray,
        split: dict[str, np.ndarray],
        config: TrainConfig,
        *,
        task: Task | None = None,
        reporter: Reporter | None = None,
        checkpoint_path: str | Path | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        if len(split.get("train", [])) == 0:
            raise ValueError("the training split is empty")
        if len(x) != len(y):
            raise ValueError(f"inputs have {len(x)} samples but targets have {len(y)}")
        self.config = config
        self.device = resolve_device(config.device)
        self.model = model.to(self.device)
        self.x, self.y = x, y
        self.split = {k: np.asarray(v, dtype=np.int64) for k, v in split.items()}
        self.task = task or Task()
        self.reporter = reporter or Reporter()
        self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
        self.context = dict(context or {})
        self.state = _State()
        self.best_weights: dict[str, torch.Tensor] | None = None
        self._saved_at: tuple[int, int] | None = None  # (epoch, batch) of the last checkpoint this trainer wrote
        self._run_start: float | None = None  # when the running fit() began; None outside fit()
        torch.manual_seed(config.seed)
        self.optimizer = self._make_optimizer()
        self.scheduler = self._make_scheduler()

    # ------------------------------------------------------------ controls
    def stop(self, reason: str = "stopped by user") -> None:
        self.reporter.stop.stop(reason)

    def pause(self) -> None:
        """Checkpoint at the next batch boundary and return (the reporter's pause signal)."""
        self.reporter.pause.set()

    # ------------------------------------------------------------ setup
    def _make_optimizer(self) -> torch.optim.Optimizer:
        c, params = self.config, self.model.parameters()
        if c.optimizer == "adam":
            return torch.optim.Adam(params, lr=c.learning_rate, weight_decay=c.weight_decay)
        if c.optimizer == "adamw":
            return torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=c.weight_decay)
        return torch.optim.SGD(params, lr=c.learning_rate, momentum=c.momentum, weight_decay=c.weight_decay)

    def _make_scheduler(self):
        """An epoch-wise torch scheduler; None for "none" and for "cosine", which :meth:`_anneal` sets per batch."""
        c = self.config
        if c.schedule == "step":
            return torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=max(1, c.epochs // 3), gamma=0.3)
        if c.schedule == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(self.optimizer, factor=0.5, patience=2)
        return None

    def spent(self) -> float:
        """Seconds of training so far, those before a pause included."""
        running = 0.0 if self._run_start is None else time.perf_counter() - self._run_start
        return self.state.seconds + running

    def _anneal(self, epoch: int, b: int, n_batches: int, budget: float | None) -> None:
        """The cosine schedule's rate for batch ``b`` of ``epoch``: down to 0 at the last epoch or the budget."""
        c = self.config
        progress = (epoch * n_batches + b) / (c.epochs * n_batches)
        if budget:
            progress = max(progress, self.spent() / budget)
        lr = 0.5 * c.learning_rate * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def _batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        order = np.argsort(idx)  # memory-mapped arrays read fastest in index order
        xb = torch.as_tensor(np.asarray(self.x[idx[order]], dtype=np.float32))
        yb = torch.as_tensor(np.asarray(self.y[idx[order]], dtype=np.float32))
        inverse = torch.as_tensor(np.argsort(order))
        return xb[inverse].to(self.device), yb[inverse].to(self.device)

    # hooks a trainer on another source of training batches overrides (training/on_the_fly.py)
    def batches_per_epoch(self) -> int:
        return max(1, math.ceil(len(self.split["train"]) / self.config.batch_size))

    def describe_data(self) -> str:
        return f"{len(self.split['train'])} samples"

    def train_batch(self, order: np.ndarray, epoch: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``b`` of ``epoch``: rows of the epoch's shuffled ``order`` of the training split."""
        bs = self.config.batch_size
        return self._batch(order[b * bs : (b + 1) * bs])

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng(np.random.SeedSequence([self.config.seed, 11, epoch]))
        return rng.permutation(self.split["train"])

    @torch.no_grad()
    def evaluate(self, indices: np.ndarray, batch_size: int = 512) -> float:
        """Mean loss over ``indices`` in eval mode."""
        if len(indices) == 0:
            return float("nan")
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        for s in range(0, len(indices), batch_size):
            xb, yb = self._batch(indices[s : s + batch_size])
            total += float(self.task.eval_loss(self.model, xb, yb)) * len(xb)
            count += len(xb)
        self.model.train(was_training)
        return total / count

    # ------------------------------------------------------------ training
    def fit(self) -> TrainResult:
        """Train until the epochs, early stopping, the time budget, stop or pause end the run."""
        threads = self.config.threads or machine_threads()
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            result = self._fit(threads)
        finally:
            self.state.seconds, self._run_start = self.spent(), None
            torch.set_num_threads(before)
        result.threads = threads
        return result

    def _fit(self, threads: int) -> TrainResult:
        c, st = self.config, self.state
        t_start = self._run_start = time.perf_counter()
        budget = None if c.minutes is None else 60.0 * c.minutes
        train_idx = self.split["train"]
        n_batches = self.batches_per_epoch()
        probe = np.random.default_rng(c.seed).choice(
            train_idx, size=min(len(train_idx), max(len(self.split.get("val", [])), 256)), replace=False
        )
        how = "as asked" if c.threads else "chosen for the machine"
        self.reporter.log(
            STAGE,
            f"training {type(self.model).__name__} on {self.describe_data()}, {n_batches} batches/epoch, device "
            f"{self.device}, {threads} CPU thread{'s' if threads > 1 else ''} ({how})"
            + (f", time budget {c.minutes:g} min" if budget else ""),
        )
        status: str = "completed"
        reason = f"completed all {c.epochs} epochs"
        try:
            while st.epoch < c.epochs:
                epoch = st.epoch
                t0 = time.perf_counter()
                self.model.train()
                order = self._epoch_order(epoch)
                running, seen = 0.0, 0
                out_of_time = False
                for b in range(st.batch, n_batches):
                    self.reporter.check_stop()
                    if self.reporter.pause.is_set():
                        return self._paused(t_start)
                    if seen and budget is not None and self.spent() >= budget:
                        out_of_time = True
                        break
                    if c.schedule == "cosine":
                        self._anneal(epoch, b, n_batches, budget)
                    xb, yb = self.train_batch(order, epoch, b)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss = self.task.loss(self.model, xb, yb)
                    if not torch.isfinite(loss):
                        self.reporter.warn(STAGE, f"non-finite loss at epoch {epoch + 1}, batch {b + 1}; batch skipped")
                        continue
                    loss.backward()
                    self.optimizer.step()
                    running += float(loss.detach()) * len(xb)
                    seen += len(xb)
                    st.batch = b + 1
                    if (b + 1) % c.progress_every == 0 or b + 1 == n_batches:
                        self.reporter.progress(STAGE, epoch * n_batches + b + 1, c.epochs * n_batches, "batches")
                record = {
                    "epoch": epoch + 1,
                    "train_loss": running / max(seen, 1),
                    "train_loss_eval": self.evaluate(probe),
                    "val_loss": self.evaluate(self.split.get("val", np.array([], dtype=np.int64))),
                    "lr": float(self.optimizer.param_groups[0]["lr"]),
                    "seconds": time.perf_counter() - t0,
                }
                if out_of_time:
                    record["partial"] = st.batch / n_batches
                batches_done = st.batch
                st.history.append(record)
                st.epoch, st.batch = epoch + 1, 0
                self.reporter.record(STAGE, "epoch", **record)
                self.reporter.timing(STAGE, f"epoch {epoch + 1}", record["seconds"], seen)
                stale = self._after_epoch(record)
                elapsed = self.spent()
                if budget is not None and (out_of_time or (elapsed >= budget and st.epoch < c.epochs and not stale)):
                    where = (
                        f"in epoch {epoch + 1} after {batches_done} of {n_batches} batches"
                        if out_of_time
                        else f"after epoch {epoch + 1}"
                    )
                    status = "time-limit"
                    reason = f"time budget of {c.minutes:g} min reached ({elapsed:.0f} s) {where} of {c.epochs}"
                    self.reporter.log(STAGE, reason)
                    break
                if stale:
                    status, reason = "early-stopped", f"early stopping: no improvement for {st.stale} epochs"
                    break
                if self.checkpoint_path and st.epoch % c.checkpoint_every == 0 and st.epoch < c.epochs:
                    self._checkpoint()
        except Cancelled as exc:
            self.reporter.log(STAGE, f"stopped: {exc}")
            return TrainResult(
                "stopped",
                st.epoch,
                st.history,
                st.best_epoch,
                self._best(),
                None,
                time.perf_counter() - t_start,
                stop_reason=str(exc),
            )
        kept = self._keep_best()
        return TrainResult(
            status,
            st.epoch,
            st.history,
            st.best_epoch,
            self._best(),
            None,
            time.perf_counter() - t_start,
            stop_reason=reason,
            kept_epoch=kept,
        )

    def _keep_best(self) -> int:
        """End with the best validation epoch's weights (whatever stopped the run); returns that epoch."""
        st = self.state
        if self.best_weights is None or st.best_epoch is None or st.best_epoch == st.epoch:
            return st.epoch
        self.model.load_state_dict(self.best_weights)
        last = st.history[-1]["val_loss"] if st.history else float("nan")
        self.reporter.log(
            STAGE,
            f"kept the best weights: epoch {st.best_epoch} (validation loss {st.best_val:.4g}; "
            f"the last epoch's {last:.4g})",
        )
        return st.best_epoch

    def _best(self) -> float | None:
        return None if math.isinf(self.state.best_val) else self.state.best_val

    def _after_epoch(self, record: dict[str, float]) -> bool:
        """Scheduler, best weights, early stopping; True when training should end."""
        st, c = self.state, self.config
        val = record["val_loss"] if not math.isnan(record["val_loss"]) else record["train_loss_eval"]
        if self.scheduler is not None:
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(val)
            else:
                self.scheduler.step()
        if val < st.best_val:
            st.best_val, st.best_epoch, st.stale = val, st.epoch, 0
            self.best_weights = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
        else:
            st.stale += 1
        if c.early_stopping is not None and st.stale >= c.early_stopping:
            self.reporter.log(STAGE, f"early stopping: no improvement for {st.stale} epochs")
            return True
        return False

    def _paused(self, t_start: float) -> TrainResult:
        self.reporter.pause.clear()
        path = self.checkpoint_path
        if path is None:
            self.reporter.warn(STAGE, "paused without a checkpoint path: nothing was saved, the run cannot be resumed")
        else:
            self._checkpoint()
            self.reporter.log(
                STAGE, f"paused at epoch {self.state.epoch + 1}, batch {self.state.batch}; checkpoint {path}"
            )
        st = self.state
        return TrainResult(
            "paused", st.epoch, st.history, st.best_epoch, self._best(), path, time.perf_counter() - t_start
        )

    # ------------------------------------------------------------ checkpoints
    def _checkpoint(self) -> None:
        """Write the checkpoint and tell listeners (a ``checkpoint`` record), so a killed run can be resumed.

        A pause right after a periodic checkpoint finds nothing new to write and keeps that file.
        """
        position = (self.state.epoch, self.state.batch)
        if position == self._saved_at and self.checkpoint_path.is_file():
            return
        path = self.save(self.checkpoint_path)
        self._saved_at = position
        self.reporter.record(STAGE, "checkpoint", epoch=self.state.epoch, batch=self.state.batch, path=str(path))

    def save(self, path: str | Path) -> Path:
        st = self.state
        meta = {
            "model_config": getattr(self.model, "config", {}),
            "train_config": self.config.model_dump(mode="json"),
            "epoch": st.epoch,
            "batch": st.batch,
            "history": st.history,
            "best_val": None if math.isinf(st.best_val) else st.best_val,
            "best_epoch": st.best_epoch,
            "stale": st.stale,
            "seconds": self.spent(),
            "context": self.context,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
        }
        extra = {f"split_{k}": torch.as_tensor(v) for k, v in self.split.items()}
        extra["torch_rng"] = torch.get_rng_state()
        return save_checkpoint(
            path, self.model, self.optimizer, meta, best_state=self.best_weights, extra_tensors=extra
        )

    @classmethod
    def resume(
        cls,
        path: str | Path,
        x: np.ndarray,
        y: np.ndarray,
        *,
        task: Task | None = None,
        reporter: Reporter | None = None,
        model_factory: Callable[[dict[str, Any]], nn.Module] | None = None,
        epochs: int | None = None,
        device: str | None = None,
    ) -> Trainer:
        """A trainer restored from a checkpoint, ready to continue with :meth:`fit`."""

        groups, meta, optim_state = load_checkpoint(path)
        model = (model_factory or build_model)(meta["model_config"])
        model.load_state_dict(groups["model"])
        split = {k[len("split_") :]: v.numpy() for k, v in groups["extra"].items() if k.startswith("split_")}
        config = TrainConfig(**meta["train_config"])
        updates = {}
        if epochs is not None:
            updates["epochs"] = epochs
        if device is not None:
            updates["device"] = device
        if updates:
            config = config.model_copy(update=updates)
        trainer = cls(
            model, x, y, split, config, task=task, reporter=reporter, checkpoint_path=path, context=meta.get("context")
        )
        if optim_state is not None:
            trainer.optimizer.load_state_dict(optim_state)
        if trainer.scheduler is not None and meta.get("scheduler"):
            trainer.scheduler.load_state_dict(meta["scheduler"])
        st = trainer.state
        st.epoch, st.batch, st.history = meta["epoch"], meta["batch"], list(meta["history"])
        st.best_val = meta["best_val"] if meta["best_val"] is not None else math.inf
        st.best_epoch, st.stale = meta["best_epoch"], meta["stale"]
        st.seconds = float(meta.get("seconds") or 0.0)
        trainer.best_weights = groups["best"] or None
        if "torch_rng" in groups["extra"]:
            torch.set_rng_state(groups["extra"]["torch_rng"])
        return trainer

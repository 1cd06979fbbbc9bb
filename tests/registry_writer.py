"""A registry writer process for the concurrency test (a light module: spawned children import it, not torch)."""

from __future__ import annotations

from workbench.events import Record
from workbench.store.recorded import recorded_run
from workbench.store.registry import Registry

WRITERS, RUNS, EPOCHS = 4, 3, 25


def writer(db: str, worker: int) -> None:
    """Record RUNS runs of EPOCHS epochs and log lines each, then register a model per run (all active)."""
    reg = Registry(db)
    for r in range(RUNS):
        with recorded_run(reg, "sweep", name=f"w{worker}-r{r}", params={"worker": worker, "run": r}) as run:
            for epoch in range(1, EPOCHS + 1):
                run.reporter.emit(
                    Record("train", "epoch", {"epoch": epoch, "train_loss": 1.0 / epoch, "val_loss": 0.5})
                )
                run.reporter.log("train", f"worker {worker} run {r} epoch {epoch}")
            run.metrics["worker"] = worker
        reg.register_model(
            f"w{worker}",
            None,
            target="sld",
            path=f"p{worker}-{r}",
            metrics={},
            dataset_hash=None,
            run_id=run.id,
            active=True,
        )

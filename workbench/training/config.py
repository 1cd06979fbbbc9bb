"""Training settings, declared once for the Train panel, the CLI and saved settings; no torch here.

The dashboard checks a returning user's saved Train settings against these fields when it opens, before
anyone asks to train: kept apart from the trainer (which imports torch, ~2 s) so that check stays cheap.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ..data.preprocess import PreprocessConfig

# TrainConfig.scaling → PreprocessConfig's (normalization, per_point)
SCALINGS = {"minmax": ("minmax", False), "standard": ("zscore", True)}


class TrainConfig(BaseModel):
    """Training settings; pyreflect's names are the labels, ``limit`` names the :class:`~workbench.limits.Limits` cap.

    The Train panel's widgets and ``workbench train``'s options are generated from these fields
    (:mod:`workbench.forms`): a setting is added here and nowhere else.
    """

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["adam", "adamw", "sgd"] = Field(
        "adam", description="how the weights are updated: Adam, AdamW (decoupled weight decay) or SGD with momentum"
    )
    learning_rate: float = Field(
        1e-3,
        gt=0,
        le=10,
        description="step size of the optimizer: too large diverges, too small learns slowly (often 1e-4 to 1e-2)",
        json_schema_extra={"label": "learning rate", "pyreflect": "learningRate", "min": 1e-7, "max": 1.0},
    )
    batch_size: int = Field(
        32,
        ge=1,
        le=65536,
        description="training curves per optimizer step: larger is smoother and faster per epoch",
        json_schema_extra={
            "label": "batch size",
            "unit": "curves",
            "pyreflect": "batchSize",
            "limit": "max_batch_size",
        },
    )
    epochs: int = Field(
        10,
        ge=1,
        le=100000,
        description="passes over the training split",
        json_schema_extra={"label": "epochs", "pyreflect": "epochs", "limit": "max_epochs"},
    )
    weight_decay: float = Field(
        0.0,
        ge=0,
        le=1,
        description="L2 penalty on the weights against overfitting (decoupled for AdamW; 0: none)",
        json_schema_extra={"label": "weight decay"},
    )
    momentum: float = Field(
        0.9,
        ge=0,
        lt=1,
        description="fraction of the previous step carried into the next; used by SGD only",
        json_schema_extra={"label": "momentum (SGD only)"},
    )
    schedule: Literal["none", "cosine", "step", "plateau"] = Field(
        "none",
        description="how the learning rate changes over the epochs",
        json_schema_extra={
            "label": "learning-rate schedule",
            "choice_labels": {
                "none": "constant",
                "cosine": "cosine decay",
                "step": "step decay",
                "plateau": "reduce on plateau",
            },
        },
    )
    scaling: Literal["auto", "minmax", "standard"] = Field(
        "auto",
        description=(
            "how log R (and an SLD model's profiles) are scaled for the network: min–max — all points together into "
            "[0, 1], pyreflect's way; standard — each Q (and z) point to mean 0 and spread 1 over the training "
            "curves, so the high-Q fringes weigh as much as the critical edge; auto — standard for the compact "
            "NR → SLD model, min–max for parameter models and pyreflect's CNN"
        ),
        json_schema_extra={
            "label": "scaling",
            "choice_labels": {
                "auto": "auto (per model)",
                "minmax": "min–max (pyreflect)",
                "standard": "standard, per point",
            },
        },
    )
    profile_weight: float = Field(
        1.0,
        ge=0,
        le=1000,
        description=(
            "parameter models: weight of the SLD-profile term in the loss (the mean squared difference between the "
            "predicted and the true stack's SLD profiles), so that each parameter counts as much as it changes the "
            "film; 0: the parameters' squared error only. Not used by SLD models or the prior-bounds model"
        ),
        json_schema_extra={"label": "profile weight"},
    )
    minutes: float | None = Field(
        None,
        gt=0,
        le=10080,
        description=(
            "wall-clock budget: training ends at the first batch boundary after this many minutes, validates "
            "that partial epoch and keeps the best weights (unset or 0: no budget)"
        ),
        json_schema_extra={"label": "time budget", "unit": "min", "min": 0.01},
    )
    early_stopping: int | None = Field(
        None,
        ge=1,
        le=10000,
        description="stop when the validation loss has not improved for this many epochs; the best weights are kept",
        json_schema_extra={"label": "early-stopping patience", "unit": "epochs"},
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**31 - 1,
        description="seed of the weight initialisation and the shuffling: the same seed repeats a run",
        json_schema_extra={"label": "random seed"},
    )
    device: str = Field(
        "auto",
        description="where the model trains: auto (a CUDA GPU when present), cpu, cuda, cuda:1, ...",
        json_schema_extra={"label": "device"},
    )
    threads: int | None = Field(
        None,
        ge=1,
        le=1024,
        description=(
            "CPU threads torch uses for this run; unset (0): chosen for the machine — 1 on a machine with 2 cores "
            "or fewer, else the cores the 1-minute load average leaves idle, never more than torch's own setting"
        ),
        json_schema_extra={"label": "CPU threads"},
    )
    checkpoint_every: int = Field(
        5,
        ge=1,
        le=100000,
        description="how often a checkpoint is written that Resume and History can continue from",
        json_schema_extra={"label": "checkpoint every", "unit": "epochs"},
    )
    progress_every: int = Field(
        10,
        ge=1,
        le=100000,
        description="how often the progress bar and the log are updated",
        json_schema_extra={"label": "progress every", "unit": "batches"},
    )

    def scaling_for(self, kind: str | None) -> str:
        """The scaling a model of ``kind`` trains with: ``auto`` resolved (standard for "compact", else min–max).

        Measured side by side (benchmarks/README.md, 3 minutes on the fly, the compact model's 16-channel stride-8
        defaults): default-stack test SLD R² 0.969 with standard against 0.961 with min–max; on the REF_L curve
        its profile scores χ²/N 54 (the old 32-channel min–max default: 98).  Standard needs the spread floor
        (``STD_FLOOR``).  A parameter model of the REF_L hand-fit family started at χ²/N 41 with standard against
        26 with min–max, so parameter models keep min–max; pyreflect's CNN keeps pyreflect's.
        """
        if self.scaling != "auto":
            return self.scaling
        return "standard" if kind == "compact" else "minmax"

    def preprocess(
        self, validation_split: float | None = None, seed: int | None = None, kind: str | None = None
    ) -> PreprocessConfig:
        """What a ``kind`` model trains with: its scaling, the split seeded by ``seed`` (default: the run's)."""
        method, per_point = SCALINGS[self.scaling_for(kind)]
        v = validation_split
        split = {} if v is None else {"split": (1 - 2 * v, v, v)}
        return PreprocessConfig(
            normalization=method, per_point=per_point, seed=self.seed if seed is None else seed, **split
        )


class SplitSettings(BaseModel):
    """How a data set is split: the field every training request shares with the Train panel's form."""

    validation_split: float = Field(
        0.1,
        gt=0,
        lt=0.5,
        description="fraction of the curves held out to validate each epoch, and as many again for the final test",
        json_schema_extra={"label": "validation fraction", "pyreflect": "validationSplit"},
    )

"""The architecture settings a user chooses, per model kind, declared once.

Sizes fixed by the data (``n_q``, ``n_z``, ``n_params``, ``n_points``) are not settings: the
training workflow fills them in.  The Train panel's model widgets and ``workbench train``'s
architecture options are generated from these fields (:mod:`workbench.forms`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _width(default: int) -> Any:
    return Field(
        default,
        ge=4,
        le=256,
        description="feature channels of the first stage: more learns finer detail, more slowly",
        json_schema_extra={"label": "channels (first stage)"},
    )


def _stem_stride(default: int) -> Any:
    return Field(
        default,
        ge=1,
        le=8,
        description="step of the first convolution along Q: 2 halves the input at once, 8 keeps one point in eight",
        json_schema_extra={"label": "first-convolution stride"},
    )


class CompactSettings(_Settings):
    """The compact residual CNN (NR → SLD profile).

    16 channels and a first stride of 8 train ~5× more curves per second than 32 and 2 on one CPU thread, and
    on the fly that wins: default-stack test SLD R² 0.961 against 0.926 after 3 minutes (benchmarks/README.md).
    """

    kind: Literal["compact"] = "compact"
    stages: int = Field(
        4,
        ge=1,
        le=8,
        description="residual stages of the encoder; each halves the Q axis and doubles the channels",
        json_schema_extra={"label": "encoder stages"},
    )
    width: int = _width(16)
    latent: int = Field(
        256,
        ge=4,
        le=1024,
        description="how many numbers a curve is encoded into before the output is decoded",
        json_schema_extra={"label": "latent size"},
    )
    dropout: float = Field(
        0.1,
        ge=0,
        le=0.9,
        description="probability a unit is left out in each training step, against overfitting",
        json_schema_extra={"label": "dropout"},
    )
    stem_stride: int = _stem_stride(8)
    act: Literal["relu", "gelu", "silu"] = Field(
        "relu",
        description="nonlinearity between layers (ReLU folds into the convolutions and runs fastest)",
        json_schema_extra={"label": "activation", "choice_labels": {"relu": "ReLU", "gelu": "GELU", "silu": "SiLU"}},
    )


class ParamSettings(CompactSettings):
    """The parameter regressor (NR → layer parameters): the compact encoder with a parameter head."""

    kind: Literal["param"] = "param"  # type: ignore[assignment]
    # the compact model's narrow defaults do not carry over: with 16 channels and a first stride of 4 the REF_L
    # hand-fit family's parameter model put every parameter at a bound (benchmarks/README.md)
    width: int = _width(32)
    stem_stride: int = _stem_stride(2)


class ParamBoundsSettings(ParamSettings):
    """The prior-bounds parameter model: curve and each parameter's range in, position inside that range out."""

    kind: Literal["param_bounds"] = "param_bounds"  # type: ignore[assignment]
    min_width: float = Field(
        0.1,
        gt=0,
        le=1,
        description="narrowest prior range it trains on, as a fraction of the family's range (ranges drawn from "
        "this to the full range)",
        json_schema_extra={"label": "narrowest prior range"},
    )


class ParitySettings(_Settings):
    """pyreflect's CNN, layer for layer (its checkpoints load)."""

    kind: Literal["parity_cnn"] = "parity_cnn"
    layers: int = Field(
        12,
        ge=1,
        le=24,
        description="convolution blocks of pyreflect's CNN: more sees longer-range structure, trains slower",
        json_schema_extra={"label": "convolution blocks", "pyreflect": "layers"},
    )
    kernel_size: int = Field(
        51,
        ge=1,
        le=101,
        description="width of each convolution along Q (odd, so the output keeps the input's length)",
        json_schema_extra={"label": "kernel size", "unit": "Q points", "pyreflect": "kernelSize", "odd": True},
    )
    dropout: float = Field(
        0.5,
        ge=0,
        le=0.9,
        description="probability a unit is left out in each training step, against overfitting",
        json_schema_extra={"label": "dropout", "pyreflect": "dropout"},
    )


class ChiSettings(_Settings):
    """The (V)AE + MLP of the SLD → χ workflow."""

    kind: Literal["chi"] = "chi"
    latent: int = Field(
        16,
        ge=1,
        le=1024,
        description="how many numbers the autoencoder compresses a profile into",
        json_schema_extra={"label": "latent size"},
    )
    vae_beta: float = Field(
        0.0,
        ge=0,
        le=10,
        description="weight of the VAE's KL term (0: plain autoencoder)",
        json_schema_extra={"label": "VAE β (KL weight)"},
    )
    whiten: int = Field(
        16,
        ge=0,
        le=1024,
        description="principal components the profiles are projected on before encoding (0: off)",
        json_schema_extra={"label": "PCA components"},
    )
    hidden: list[int] = Field(
        [500, 300, 200, 72], description="sizes of the encoder's layers", json_schema_extra={"label": "encoder layers"}
    )
    mlp_hidden: list[int] = Field(
        [36, 12], description="sizes of the layers of the χ head", json_schema_extra={"label": "χ head layers"}
    )


SETTINGS: dict[str, type[_Settings]] = {
    "compact": CompactSettings,
    "param": ParamSettings,
    "param_bounds": ParamBoundsSettings,
    "parity_cnn": ParitySettings,
    "chi": ChiSettings,
}


def model_settings(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` checked against its kind's settings (unknown keys and bad values name themselves)."""
    kind = config.get("kind")
    if kind not in SETTINGS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(SETTINGS)}")
    try:
        SETTINGS[kind](**config)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise ValueError(f"model {where}: {err['msg']}") from None
    return dict(config)

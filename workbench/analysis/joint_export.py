"""A co-refinement as one runnable refl1d model: one experiment per contrast, shared parameters as one Parameter.

Each contrast's part is the single-curve script's model text (``export_refl1d._model_body``) inside a
function ``contrast_<k>(Q, R, dR, dQ)``; a shared parameter is fitted once: the first contrast's
Parameter object is assigned to the same slot of every other contrast (refl1d then computes each
experiment with it), and ``problem = FitProblem([experiment_1, ...])`` sums the χ².  As for one curve,
the script text is the one definition: ``joint_refl1d_model`` executes it to give DREAM the same problem.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.measured import Measurement
from ..fileio import write_text_atomic
from .corefine import SEPARATOR, JointRefineResult
from .export_refl1d import _IMPORTS, DEFAULT_OVERSAMPLE, ModelInputs, _comment, _model_body, data_text, model_inputs
from .refine import RefineError

MODEL_FILE = "model.py"


def data_file(k: int) -> str:
    """The data file of contrast ``k`` (0-based) in an exported folder."""
    return f"data_{k + 1}.txt"


@dataclass
class JointRefl1dModel:
    """The joint bumps problem, each contrast's inputs, and the fitted Parameter objects in the result's name order."""

    problem: Any
    experiments: list[Any]
    inputs: list[ModelInputs]
    names: list[str]
    parameters: list[Any]

    @property
    def order(self) -> np.ndarray:
        """Column of each joint name in ``problem.getp()``."""
        ids = [id(p) for p in self.problem.parameters]
        return np.array([ids.index(id(p)) for p in self.parameters])


def _local(joint_name: str, label: str) -> str | None:
    """The contrast-local name of a joint parameter that belongs to contrast ``label`` alone, else None."""
    owner, sep, local = joint_name.partition(SEPARATOR)
    return local if sep and owner == label else None


def joint_inputs(result: JointRefineResult, datas: Sequence[Measurement]) -> list[ModelInputs]:
    """Each contrast's script inputs: the first owns the shared parameters, every contrast its own ones."""
    if len(datas) != len(result.contrasts):
        raise RefineError(f"got {len(datas)} curves for a co-refinement of {len(result.contrasts)} contrasts")
    out = []
    for k, (fit, data, label) in enumerate(zip(result.contrasts, datas, result.labels)):
        free = {}
        for name, bounds in result.bounds.items():
            local = name if name in result.shared and k == 0 else _local(name, label)
            if local is not None:
                free[local] = bounds
        if not free:  # every parameter of this contrast is shared: its script only reads its data
            full = model_inputs(
                fit.stack,
                data,
                {result.shared[0]: result.bounds[result.shared[0]]},
                scale=fit.scale,
                background=fit.background,
            )
            free_none = ModelInputs(full.q, full.r, full.dr, full.dq, [], [], np.zeros(0), np.zeros(0), [])
            out.append(free_none)
            continue
        out.append(model_inputs(fit.stack, data, free, scale=fit.scale, background=fit.background))
    return out


def _slot_text(target: tuple[int | None, str], k: int) -> str:
    i, path = target
    return f"probe_{k + 1}.{path}" if i is None else f"layers_{k + 1}[{i}].{path}"


def _shared_targets(result: JointRefineResult, inputs: Sequence[ModelInputs]) -> dict[str, tuple[int | None, str]]:
    """Where each shared parameter lives in the first contrast's model (its refl1d target)."""
    first = inputs[0]
    return {name: first.targets[first.names.index(name)] for name in result.shared}


def joint_script_text(
    result: JointRefineResult,
    inputs: Sequence[ModelInputs],
    *,
    oversample: int | None,
    load_data: bool,
) -> str:
    """The joint model's text; ``load_data`` reads each contrast from its data file, else expects Qk, Rk, ... arrays."""
    parts = [_IMPORTS]
    for k, (fit, inp, label) in enumerate(zip(result.contrasts, inputs, result.labels)):
        body = _model_body(fit.stack, inp, fit.scale, fit.background, oversample, problem=False)
        parts.append(
            f"\n\ndef contrast_{k + 1}(Q, R, dR, dQ):\n"
            f'    """Contrast {_comment(label)}: {inp.q.size} data points."""\n'
            + textwrap.indent(body.rstrip() + "\nreturn experiment, layers, probe\n", "    ")
        )
    parts.append("\n")
    for k, label in enumerate(result.labels):
        if load_data:
            parts.append(
                f"# contrast {_comment(label)}: {data_file(k)} columns Q (Å⁻¹), R, dR (1σ), dQ (1σ, NOT FWHM)\n"
                f"Q, R, dR, dQ = np.loadtxt({data_file(k)!r}, unpack=True, ndmin=2)\n"
                f"experiment_{k + 1}, layers_{k + 1}, probe_{k + 1} = contrast_{k + 1}(Q, R, dR, dQ)\n"
            )
        else:
            n = k + 1
            parts.append(
                f"experiment_{n}, layers_{n}, probe_{n} = contrast_{n}(Q{n}, R{n}, dR{n}, dQ{n})  # {_comment(label)}\n"
            )
    targets = _shared_targets(result, inputs)
    if targets:
        parts.append("\n# shared parameters: the first contrast's Parameter in every other contrast\n")
        for name, target in targets.items():
            for k in range(1, len(inputs)):
                parts.append(f"{_slot_text(target, k)} = {_slot_text(target, 0)}  # {_comment(name)}\n")
    experiments = ", ".join(f"experiment_{k + 1}" for k in range(len(inputs)))
    parts.append(f"\nproblem = FitProblem([{experiments}])\n")
    return "".join(parts)


def joint_refl1d_script(
    result: JointRefineResult, datas: Sequence[Measurement], *, oversample: int | None = DEFAULT_OVERSAMPLE
) -> str:
    """A runnable refl1d script of the co-refinement, reading ``data_1.txt``, ``data_2.txt``, ... beside it."""
    inputs = joint_inputs(result, datas)
    head = (
        f'"""Joint refl1d model exported by the workbench: {len(inputs)} contrasts '
        f"({', '.join(_comment(label) for label in result.labels)}), {len(result.names)} free parameters of which "
        f"{len(result.shared)} shared.\n\nRun it with e.g. `refl1d {MODEL_FILE} --fit=dream --samples=100000 "
        f'--store=T1`.\n"""\n'
    )
    return head + joint_script_text(result, inputs, oversample=oversample, load_data=True)


def joint_refl1d_model(
    result: JointRefineResult, datas: Sequence[Measurement], *, oversample: int | None = DEFAULT_OVERSAMPLE
) -> JointRefl1dModel:
    """The joint script's problem built in memory (data arrays in place of the files)."""
    inputs = joint_inputs(result, datas)
    scope: dict[str, Any] = {}
    for k, inp in enumerate(inputs):
        n = k + 1
        scope.update({f"Q{n}": inp.q.copy(), f"R{n}": inp.r.copy(), f"dR{n}": inp.dr.copy(), f"dQ{n}": inp.dq.copy()})
    code = joint_script_text(result, inputs, oversample=oversample, load_data=False)
    # our own generated text: every user string enters as a repr() literal or an escaped comment
    exec(compile(code, "<workbench joint refl1d model>", "exec"), scope)  # noqa: S102
    parameters = []
    for name in result.names:
        if name in result.shared:
            k, local = 0, name
        else:
            label, _, local = name.partition(SEPARATOR)
            k = result.labels.index(label)
        target = inputs[k].targets[inputs[k].names.index(local)]
        obj = scope[f"probe_{k + 1}"] if target[0] is None else scope[f"layers_{k + 1}"][target[0]]
        for attr in target[1].split("."):
            obj = getattr(obj, attr)
        parameters.append(obj)
    experiments = [scope[f"experiment_{k + 1}"] for k in range(len(inputs))]
    return JointRefl1dModel(scope["problem"], experiments, inputs, list(result.names), parameters)


def export_joint_refl1d(
    folder: str | os.PathLike,
    result: JointRefineResult,
    datas: Sequence[Measurement],
    *,
    oversample: int | None = DEFAULT_OVERSAMPLE,
) -> Path:
    """Write ``data_<k>.txt`` for every contrast and ``model.py`` into ``folder``; returns the script's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = joint_inputs(result, datas)
    for k, inp in enumerate(inputs):
        write_text_atomic(folder / data_file(k), data_text(inp))
    write_text_atomic(folder / MODEL_FILE, joint_refl1d_script(result, datas, oversample=oversample))
    return folder / MODEL_FILE

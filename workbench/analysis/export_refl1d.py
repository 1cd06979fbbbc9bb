"""A fitted stack as a runnable refl1d model: the script a scientist takes to refl1d/bumps, and that model in memory.

The script text is the one definition of the refl1d model.  ``refl1d_script`` writes it;
``refl1d_model`` executes that same text (with the data arrays in place of the file) so that a
DREAM run inside the workbench (``uncertainty.dream_bands``) and ``refl1d model.py --fit=dream``
on the exported folder sample exactly the same problem.

Conventions carried over from ``physics/refl1d_engine.py``: slabs substrate first, ambient last
(the beam comes from the last one), ``interface`` of slab i = our roughness of layer i (the
interface on top of it), substrate and ambient thickness 0, ambient interface 0; QProbe's dQ is 1σ.
Parameter names map as ``<layer>.sld → material.rho``, ``.isld → material.irho``,
``.thickness → thickness``, ``.roughness → interface``, ``probe.scale → probe.intensity``,
``probe.background → probe.background``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.measured import Measurement
from ..fileio import write_text_atomic
from ..physics import FilmStack
from .refine import RefineError, RefineResult, build_problem

DATA_FILE = "data.txt"
MODEL_FILE = "model.py"
DEFAULT_OVERSAMPLE = 10
_TARGETS = {
    "sld": "material.rho",
    "isld": "material.irho",
    "thickness": "thickness",
    "roughness": "interface",
    "probe.scale": "intensity",
    "probe.background": "background",
}


@dataclass
class ModelInputs:
    """What the script is made of: data columns (dR floored, dQ 1σ) and the free parameters resolved."""

    q: np.ndarray
    r: np.ndarray
    dr: np.ndarray
    dq: np.ndarray
    names: list[str]
    targets: list[tuple[int | None, str]]  # (layer index or None for the probe, attribute path)
    lo: np.ndarray
    hi: np.ndarray
    slots: list[tuple[str, int]]  # refine's (field, layer index) of each name; (probe.*, -1) for the probe


@dataclass
class Refl1dModel:
    """The refl1d problem built from the script, and its fitted Parameter objects in ``names`` order."""

    problem: Any  # bumps FitProblem
    experiment: Any  # refl1d Experiment
    inputs: ModelInputs
    parameters: list[Any] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return self.inputs.names

    @property
    def order(self) -> np.ndarray:
        """Column of each name in ``problem.getp()`` (bumps orders fitted parameters its own way)."""
        ids = [id(p) for p in self.problem.parameters]
        return np.array([ids.index(id(p)) for p in self.parameters])


def model_inputs(
    stack: FilmStack,
    data: Measurement,
    free: Mapping[str, tuple[float, float]],
    *,
    scale: float = 1.0,
    background: float = 0.0,
) -> ModelInputs:
    """Resolve names and bounds the way ``refine`` does (same dR floor, same default dQ)."""
    if not free:
        raise RefineError("nothing to sample: give at least one free parameter with its (lo, hi) range")
    p = build_problem(data, stack, free=list(free), bounds=dict(free), scale=scale, background=background)
    last = len(stack.layers) - 1
    targets: list[tuple[int | None, str]] = []
    for name, (what, i) in zip(p.names, p.slots):
        if i < 0:
            targets.append((None, _TARGETS[what]))
            continue
        if (what == "thickness" and i in (0, last)) or (what in ("roughness", "isld") and i == last):
            raise RefineError(
                f"{name}: has no effect in refl1d (semi-infinite substrate/ambient, or the ambient's "
                "interface or absorption); free an inner layer's parameter instead"
            )
        targets.append((i, _TARGETS[what]))
    return ModelInputs(p.q, p.r, p.dr, p.probe.sigma, list(p.names), targets, p.lo, p.hi, list(p.slots))


def _comment(text: str) -> str:
    """User text made safe for a ``#`` comment: newlines and control characters escaped."""
    return repr(str(text))[1:-1]


def _target_text(target: tuple[int | None, str]) -> str:
    i, path = target
    return f"probe.{path}" if i is None else f"layers[{i}].{path}"


def _model_body(
    stack: FilmStack,
    inputs: ModelInputs,
    scale: float,
    background: float,
    oversample: int | None,
    problem: bool = True,
) -> str:
    """The model part of the script: expects numpy arrays Q, R, dR, dQ and the refl1d names in scope.

    Ends with ``problem = FitProblem(experiment)``, or with ``experiment`` when ``problem`` is False
    (one contrast of a joint model).
    """
    lines = [f"probe = QProbe(Q, dQ, R=R, dR=dR, intensity={float(scale)!r}, background={float(background)!r})"]
    if oversample:
        lines += [
            "# refl1d smears R computed on the data points only (linear in between), which misses fringe minima",
            "# when the points are sparser than the resolution; n - 1 extra random points per Q (fixed seed)",
            "# fix that (raise n for thick films: per-cent errors at the deepest minima shrink as n grows)",
            f"probe.oversample({int(oversample)}, seed=1)",
        ]
    lines += [
        "",
        "# substrate first, ambient last (the beam comes from the last slab); thickness and interface",
        "# (the rms roughness of the interface on top of the slab) in Å, rho/irho in 1e-6 Å⁻²",
        "layers = [",
    ]
    last = len(stack.layers) - 1
    for j, layer in enumerate(stack.layers):
        width = float(layer.thickness) if 0 < j < last else 0.0
        interface = float(layer.roughness) if j < last else 0.0
        role = " (substrate)" if j == 0 else " (ambient)" if j == last else ""
        lines.append(
            f"    Slab(SLD(name={layer.name!r}, rho={float(layer.sld)!r}, irho={float(layer.isld)!r}), "
            f"thickness={width!r}, interface={interface!r}),  # {j}{role}"
        )
    lines += [
        "]",
        "sample = " + " | ".join(f"layers[{j}]" for j in range(last + 1)),
        "",
        "# fitted parameters and their ranges (workbench name in the comment)",
    ]
    for name, target, lo, hi in zip(inputs.names, inputs.targets, inputs.lo, inputs.hi):
        lines.append(f"{_target_text(target)}.range({float(lo)!r}, {float(hi)!r})  # {_comment(name)}")
    lines += ["", "experiment = Experiment(probe=probe, sample=sample)"]
    lines += ["problem = FitProblem(experiment)", ""] if problem else [""]
    return "\n".join(lines)


_IMPORTS = "import numpy as np\nfrom refl1d.names import SLD, Experiment, FitProblem, QProbe, Slab\n"


def refl1d_script(
    stack: FilmStack,
    data: Measurement,
    *,
    free: Mapping[str, tuple[float, float]],
    scale: float = 1.0,
    background: float = 0.0,
    data_file: str = DATA_FILE,
    oversample: int | None = DEFAULT_OVERSAMPLE,
    inputs: ModelInputs | None = None,
) -> str:
    """A runnable refl1d model script (plain Python) for ``stack`` fitted to ``data``; ends with ``problem``."""
    inputs = inputs or model_inputs(stack, data, free, scale=scale, background=background)
    head = (
        f'"""refl1d model exported by the workbench: {len(stack.layers)} layers, {len(inputs.names)} free '
        f"parameters, {inputs.q.size} data points.\n\nRun it with e.g. `refl1d {MODEL_FILE} --fit=dream "
        f'--samples=100000 --store=T1` (or load it with bumps.fitproblem.load_problem).\n"""\n'
    )
    load = (
        f"# {data_file} columns: Q (Å⁻¹), R, dR (1σ absolute error), dQ (1σ Gaussian resolution, NOT FWHM)\n"
        f"Q, R, dR, dQ = np.loadtxt({data_file!r}, unpack=True, ndmin=2)\n\n"
    )
    return head + _IMPORTS + "\n" + load + _model_body(stack, inputs, scale, background, oversample)


def refl1d_model(
    stack: FilmStack,
    data: Measurement,
    *,
    free: Mapping[str, tuple[float, float]],
    scale: float = 1.0,
    background: float = 0.0,
    oversample: int | None = DEFAULT_OVERSAMPLE,
) -> Refl1dModel:
    """The exported script's problem, built in memory by executing the same model text."""
    inputs = model_inputs(stack, data, free, scale=scale, background=background)
    scope: dict[str, Any] = {"Q": inputs.q.copy(), "R": inputs.r.copy(), "dR": inputs.dr.copy(), "dQ": inputs.dq.copy()}
    code = _IMPORTS + _model_body(stack, inputs, scale, background, oversample)
    # our own generated text: every user string enters as a repr() literal or an escaped comment
    exec(compile(code, "<workbench refl1d model>", "exec"), scope)  # noqa: S102
    parameters = []
    for i, path in inputs.targets:
        obj = scope["probe"] if i is None else scope["layers"][i]
        for attr in path.split("."):
            obj = getattr(obj, attr)
        parameters.append(obj)
    return Refl1dModel(scope["problem"], scope["experiment"], inputs, parameters)


def data_text(inputs: ModelInputs) -> str:
    """The 4-column data file, full float64 precision."""
    lines = ["# Q (1/Angstrom)  R  dR (1 sigma)  dQ (1 sigma Gaussian resolution, not FWHM)"]
    lines += [
        f"{q:.17g} {r:.17g} {dr:.17g} {dq:.17g}" for q, r, dr, dq in zip(inputs.q, inputs.r, inputs.dr, inputs.dq)
    ]
    return "\n".join(lines) + "\n"


def export_refl1d(
    folder: str | os.PathLike,
    result_or_stack: RefineResult | FilmStack,
    data: Measurement,
    free: Mapping[str, tuple[float, float]],
    *,
    scale: float | None = None,
    background: float | None = None,
    oversample: int | None = DEFAULT_OVERSAMPLE,
) -> Path:
    """Write ``data.txt`` and ``model.py`` into ``folder`` (created if needed); returns the script's path.

    A RefineResult supplies the fitted stack, scale and background (explicit arguments override).
    """
    if isinstance(result_or_stack, RefineResult):
        stack = result_or_stack.stack
        scale = result_or_stack.scale if scale is None else scale
        background = result_or_stack.background if background is None else background
    else:
        stack = result_or_stack
    scale = 1.0 if scale is None else float(scale)
    background = 0.0 if background is None else float(background)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    inputs = model_inputs(stack, data, free, scale=scale, background=background)
    script = refl1d_script(
        stack, data, free=free, scale=scale, background=background, oversample=oversample, inputs=inputs
    )
    write_text_atomic(folder / DATA_FILE, data_text(inputs))
    write_text_atomic(folder / MODEL_FILE, script)
    return folder / MODEL_FILE

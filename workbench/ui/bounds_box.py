"""The Predict panel's prior bounds: the ranges a prior-bounds model (``param_bounds``) predicts inside.

A prior-bounds model reads, beside the curve, the range each free parameter is known to lie in
(:mod:`workbench.models.prior_bounds`).  :class:`BoundsBox` shows one row per parameter, low and high
edge, filled with the family's ranges the model was trained on; a scientist narrows the rows they know
better and predicts.  Only the narrowed rows are handed on (:meth:`BoundsBox.bounds`), and
:func:`workbench.analysis.predict.prior_bounds` checks them: lo < hi and inside the training range, the
error naming the parameter.  Headless twin: ``workbench predict --bounds``.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import ipywidgets as W
import numpy as np

from ..analysis.metrics import parameter_unit
from ..store.model_bundle import is_ensemble, read_ensemble_info


def prior_ranges(folder: str | Path | None) -> tuple[list[str], np.ndarray] | None:
    """(parameter names, training ranges (P, 2)) of a prior-bounds model or ensemble folder; None for other models.

    Reads ``normalization.json`` only (of the first member for an ensemble): choosing a model loads no weights.
    """
    if not folder:
        return None
    try:
        folder = Path(folder)
        if is_ensemble(folder):
            folder = folder / read_ensemble_info(folder)["members"][0]
        y = json.loads((folder / "normalization.json").read_text()).get("y") or {}
        if y.get("method") != "prior_bounds":
            return None
        return list(y["names"]), np.asarray(y["bounds"], dtype=np.float64).reshape(-1, 2)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # an unreadable bundle: the prediction itself says what is wrong


def plain_bounds(bounds: Mapping[str, Sequence[float]] | None) -> dict[str, list[float]] | None:
    """Bounds as plain name → [lo, hi] floats (what a run record and a Prediction keep); None for none."""
    return {k: [float(v) for v in pair] for k, pair in bounds.items()} if bounds else None


class BoundsBox(W.VBox):
    """One row per free parameter (low, high), defaulting to the training ranges; hidden for other models."""

    def __init__(self) -> None:
        self.folder: str | None = None
        self.names: list[str] = []
        self.family = np.empty((0, 2))
        self.lo: dict[str, W.FloatText] = {}
        self.hi: dict[str, W.FloatText] = {}
        self.title = W.HTML()
        self.reset = W.Button(description="training ranges", icon="undo")
        self.reset.tooltip = "put every row back to the range the model was trained on"
        self.reset.add_class("wb-bounds-reset")
        self.rows = W.VBox(layout=W.Layout(max_height="18em", overflow="auto", border="1px solid #ddd"))
        self.reset.on_click(lambda _: self.restore())
        super().__init__([W.HBox([self.title, self.reset]), self.rows], layout=W.Layout(display="none"))
        self.add_class("wb-predict-bounds")

    @property
    def active(self) -> bool:
        """Whether the chosen model reads prior bounds (the box is shown and its bounds are used)."""
        return bool(self.names)

    def set_model(self, folder: str | None) -> None:
        """Rows for ``folder``'s parameters and training ranges (a new model only: typed bounds stay otherwise)."""
        if folder == self.folder:
            return
        self.folder = folder
        found = prior_ranges(folder)
        self.names, self.family = ([], np.empty((0, 2))) if found is None else found
        self.lo, self.hi, rows = {}, {}, []
        for name, (f_lo, f_hi) in zip(self.names, self.family):
            unit = parameter_unit(name)
            self.lo[name] = W.FloatText(value=float(f_lo), layout=W.Layout(width="9em"))
            self.hi[name] = W.FloatText(value=float(f_hi), layout=W.Layout(width="9em"))
            note = W.HTML(f"<small style='color:#666'>trained on {f_lo:.5g} – {f_hi:.5g} {html.escape(unit)}</small>")
            label = W.Label(f"{name}" + (f" ({unit})" if unit else ""), layout=W.Layout(width="16em"))
            rows.append(W.HBox([label, self.lo[name], W.Label("to"), self.hi[name], note]))
        self.rows.children = rows
        self.title.value = (
            f"<b>Prior bounds</b> <small>the range each of the {len(self.names)} parameters is known to lie in; "
            "the model predicts inside them (default: the ranges it was trained on)</small>"
        )
        self.layout.display = "" if self.names else "none"

    def restore(self) -> None:
        """Every row back to the model's training range."""
        for name, (f_lo, f_hi) in zip(self.names, self.family):
            self.lo[name].value, self.hi[name].value = float(f_lo), float(f_hi)

    def set(self, name: str, lo: float, hi: float) -> None:
        """Type one parameter's bounds (a notebook or test does what a person does in the row)."""
        if name not in self.lo:
            raise ValueError(f"{name!r} is not a parameter of this model (its parameters: {', '.join(self.names)})")
        self.lo[name].value, self.hi[name].value = float(lo), float(hi)

    def bounds(self) -> dict[str, list[float]] | None:
        """The rows that differ from the training ranges, name → [lo, hi] (None: all as trained, or no bounds)."""
        out = {
            name: [float(self.lo[name].value), float(self.hi[name].value)]
            for name, (f_lo, f_hi) in zip(self.names, self.family)
            if (self.lo[name].value, self.hi[name].value) != (f_lo, f_hi)
        }
        return out or None

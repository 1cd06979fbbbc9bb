"""Layer parameters as a table: which columns of a data set vary, and film stacks from predicted values.

The parameter model predicts the free columns (bounds with lo < hi) scaled to [0, 1]; training
takes the columns from :func:`free_parameter_columns` and prediction turns values back into film
stacks with :func:`stacks_from_parameters`, fixed parameters at their bound.  With ties (a sample
family's data set) only each tie's first member is a column to predict; the other members follow it
(the same value, or the same fraction of their range for ``together`` ties).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..physics.stack import FilmStack
from .dataset import Dataset


def free_parameter_columns(ds: Dataset) -> tuple[list[int], list[str], np.ndarray]:
    """Columns of the parameter table that vary (stack bounds with lo < hi), their names and bounds."""
    bound_list = ds.meta.get("stack", {}).get("layer_bound")
    if ds.params is None or bound_list is None:
        raise ValueError(f"{ds.path}: the data set has no parameter table with bounds (needed for a parameter model)")
    followers = {m for t in ds.meta["stack"].get("ties") or [] for m in t["members"][1:]}
    cols, names, bounds = [], [], []
    for col, (b, name) in enumerate(zip(bound_list, ds.parameter_names)):
        lo, hi = b["bounds"]
        if hi > lo and name not in followers:
            cols.append(col)
            names.append(name)
            bounds.append((lo, hi))
    return cols, names, np.asarray(bounds, dtype=np.float64)


def stacks_from_parameters(bundle_config: dict[str, Any], values: np.ndarray) -> list[FilmStack]:
    """Film stacks from predicted free-parameter values (N, P), fixed parameters at their bound value."""
    stack_info = bundle_config["data"]["stack"]
    base = FilmStack.from_pyreflect(stack_info["layer_desc"], stack_info["layer_bound"])
    names = bundle_config["data"]["parameters"]["names"]
    by_name = {f"{base.layers[b.i].name}.{b.par}": b for b in base.bounds}
    stacks = []
    for row in np.atleast_2d(values):
        s = base
        for b in base.bounds:
            if b.fixed:
                s = s.with_value(b.i, b.par, b.lo)
        for name, v in zip(names, row):
            b = by_name[name]
            s = s.with_value(b.i, b.par, float(np.clip(v, b.lo, b.hi)))
        for tie in stack_info.get("ties") or []:
            lead = by_name[tie["members"][0]]
            value = s.get(lead.i, lead.par)
            fraction = (value - lead.lo) / (lead.hi - lead.lo)
            for name in tie["members"][1:]:
                b = by_name[name]
                s = s.with_value(b.i, b.par, value if tie["mode"] == "same" else b.lo + fraction * (b.hi - b.lo))
        stacks.append(s)
    return stacks

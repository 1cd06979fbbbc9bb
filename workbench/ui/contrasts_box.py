"""Extra contrasts for the Refine panel: more measured curves of the same film, co-refined with shared parameters.

Each row is one more curve (a measured file of the workspace) with the SLDs that differ in its
measurement, the substrate's (the backing: D2O, H2O, a contrast-matched mixture) and the ambient's;
each has its own R(Q) and SLD chart.  The panel fits all curves at once with
:func:`workbench.analysis.corefine.corefine` when at least one row is present.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import ipywidgets as W
import numpy as np

from ..analysis.corefine import Contrast, JointRefineResult
from ..analysis.uncertainty import Bands
from ..data.measured import Measurement, load_measurement
from ..physics import FilmStack, reflectivity, sld_profile
from .curve_pair import CurvePair


def contrast_label(source: str | Path) -> str:
    """A curve's label in a co-refinement: its file name without suffix (no ':', which names per-curve parameters)."""
    return Path(str(source)).stem.replace(":", "_") or "curve"


class ContrastRow(W.VBox):
    """One more curve: the file, the SLDs that differ in its measurement, and its own charts."""

    def __init__(self, files: Sequence[Path], start: FilmStack, on_remove: Callable[[ContrastRow], None]) -> None:
        style = {"description_width": "8em"}
        self.file = W.Dropdown(
            options=[(p.name, str(p)) for p in files], description="curve", style=style, layout=W.Layout(width="26em")
        )
        self.dq = W.Dropdown(
            options=[("as the file says", ""), ("FWHM", "fwhm"), ("1σ", "sigma")],
            value="",
            description="dQ column",
            style=style,
            layout=W.Layout(width="18em"),
        )
        self.substrate_sld = W.FloatText(
            value=start.substrate.sld,
            description=f"{start.substrate.name} SLD",
            tooltip="the substrate's (backing's) SLD in this measurement, 10⁻⁶ Å⁻²",
            style=style,
            layout=W.Layout(width="16em"),
        )
        self.ambient_sld = W.FloatText(
            value=start.ambient.sld,
            description=f"{start.ambient.name} SLD",
            tooltip="the ambient's SLD in this measurement, 10⁻⁶ Å⁻²",
            style=style,
            layout=W.Layout(width="16em"),
        )
        self.remove = W.Button(icon="trash", tooltip="remove this curve", layout=W.Layout(width="3em"))
        self.remove.on_click(lambda _: on_remove(self))
        self.curves = CurvePair(("data", "fit"), ("fit",), rq_title="Contrast", markers=("data",))
        for w in (self.file, self.substrate_sld, self.ambient_sld, self.remove):
            w.add_class("wb-contrast-input")
        super().__init__(
            [W.HBox([self.file, self.dq, self.substrate_sld, self.ambient_sld, self.remove]), self.curves.box]
        )
        self.add_class("wb-contrast-row")

    def stack(self, start: FilmStack) -> FilmStack:
        """The start stack with this measurement's substrate and ambient SLDs."""
        last = len(start.layers) - 1
        return start.with_value(0, "sld", float(self.substrate_sld.value)).with_value(
            last, "sld", float(self.ambient_sld.value)
        )

    def measurement(self) -> Measurement:
        if not self.file.value:
            raise ValueError("a contrast row has no curve: upload measured files in the Files tab")
        return load_measurement(self.file.value, dq_convention=self.dq.value or None)

    def draw_start(self, data: Measurement, stack: FilmStack) -> None:
        """The data and the start stack's curve, before a fit."""
        m = data.positive()
        probe = data.merge_duplicate_q().probe() if data.has_duplicate_q else data.probe()
        r = np.asarray(reflectivity(stack, probe))[0]
        z, rho, _ = sld_profile(stack)
        self.curves.set_fresnel_stack(stack)
        self.curves.rq.layout.title.text = f"Contrast {contrast_label(data.source)}"
        self.curves.show(
            rq={"data": {"x": m.q, "y": m.r, "dy": m.dr}, "fit": (probe.q, r, "start")}, sld={"fit": (z[0], rho[0])}
        )


class ContrastsBox(W.VBox):
    """Rows of extra curves, an Add button, and what co-refinement means in one line."""

    def __init__(self, files: Callable[[], list[Path]], start: Callable[[], FilmStack | None], on_change) -> None:
        self._files, self._start, self._on_change = files, start, on_change
        self.rows: list[ContrastRow] = []
        self.add = W.Button(description="Add a contrast", icon="plus", tooltip="co-refine another curve of this film")
        self.add.add_class("wb-add-contrast")
        self.note = W.HTML()
        self.rows_box = W.VBox()
        self.add.on_click(self._add)
        super().__init__([W.HBox([self.add, self.note]), self.rows_box])
        self.add_class("wb-contrasts")

    def _add(self, _=None) -> None:
        start = self._start()
        files = self._files()
        if start is None:
            self.note.value = "<small>load a start first</small>"
            return
        if not files:
            self.note.value = (
                "<small>no measured file in this workspace: upload the other contrasts in the Files tab</small>"
            )
            return
        self.rows.append(ContrastRow(files, start, self._remove))
        self._changed()

    def _remove(self, row: ContrastRow) -> None:
        self.rows.remove(row)
        self._changed()

    def _changed(self) -> None:
        self.rows_box.children = self.rows
        self.note.value = (
            "<small>co-refinement: every curve is fitted at once; a <i>shared</i> parameter takes one value for "
            "all curves, the others one per curve</small>"
            if self.rows
            else ""
        )
        self._on_change()

    def clear(self) -> None:
        self.rows = []
        self._changed()

    def contrasts(self, first: Contrast) -> list[Contrast]:
        """``first`` (the panel's own curve) and one Contrast per row, each with its stack and data."""
        out = [first]
        for row in self.rows:
            data = row.measurement()
            stack = row.stack(first.stack)
            out.append(Contrast(data, stack, contrast_label(data.source), None, first.scale, first.background))
        labels = [c.label for c in out]
        if len(set(labels)) != len(labels):
            raise ValueError(f"each curve must be a different file, got {', '.join(labels)}")
        return out

    def draw_starts(self, contrasts: Sequence[Contrast]) -> None:
        for row, c in zip(self.rows, contrasts[1:]):
            row.draw_start(c.data, c.stack)

    def show_fit(self, result: JointRefineResult) -> None:
        """Each row's curve with its fitted R(Q) and SLD profile (the first contrast is the panel's own chart)."""
        for row, fit, label in zip(self.rows, result.contrasts[1:], result.labels[1:]):
            row.curves.set_fresnel_stack(fit.stack)
            row.curves.show(
                rq={"fit": (fit.q, fit.r_fit, f"fit χ²/N {fit.chi2_per_point:.3g}")}, sld={"fit": fit.profile}
            )
            row.curves.rq.layout.title.text = f"Contrast {label}"

    def show_bands(self, bands: Sequence[Bands], draw: Callable[[CurvePair, Bands], None]) -> None:
        for row, b in zip(self.rows, bands[1:]):
            draw(row.curves, b)

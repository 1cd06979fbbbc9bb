"""The Film stack tab's sample family: build one from a hand fit or a stack file, and show its repeated blocks.

:class:`FamilyBox` is the "Sample family" section: a source (a workspace file or a typed path: a hand-fit
spreadsheet, a ``refinement.json`` or a pyreflect/JSON/YAML stack), ranges for every layer (thickness ± %,
SLD ±, roughness ± in Å), ties written one a line (``same: PEO_*.sld``) and optionally a run of layers folded
into a repeated block; "Use as film stack" makes the tab's layers, bounds and charts the family's expanded
stack, and the Film stack keeps its ties and blocks from then on (:meth:`StackModel.set_family`).
:class:`BlockBox` is one repeated block in the layer list: its count, and its period's layers edited once.
Both take the :class:`~workbench.ui.stack_panel.StackPanel` they sit in (its context, status and layer cards).
Headless twin: :func:`workbench.data.family.load_source`, :class:`SampleFamily` and ``StackModel.set_family``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import ipywidgets as W

from ..data.family import FamilyError, Range, SampleFamily, load_source, parse_tie_text
from .common import panel_guard, readable_from_browser

SOURCE_SUFFIXES = (".csv", ".json", ".yaml", ".yml")
RANGES = (
    ("thickness", "thickness ± (% or Å)", "20%"),
    ("sld", "SLD ± (10⁻⁶ Å⁻²)", "0.5"),
    ("roughness", "roughness ± (Å)", "5"),
)
NO_BLOCK = ("no repeated block", "")
MAX_FILES = 200


def workspace_sources(root: Path) -> list[Path]:
    """Hand fits and stack files in the workspace (.csv, .json, .yaml, .yml), hidden folders skipped."""
    found = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if path.suffix.lower() in SOURCE_SUFFIXES and not any(p.startswith(".") for p in rel.parts):
            found.append(path)
            if len(found) >= MAX_FILES:
                break
    return [p for p in found if p.is_file() and p.name != "settings.json"]


class FamilyBox(W.VBox):
    """The "Sample family" section: source, ranges, ties, an optional repeated block, "Use as film stack"."""

    def __init__(self, panel: Any) -> None:
        self.panel, self.ctx, self.status = panel, panel.ctx, panel.status
        wide = {"description_width": "12em"}
        self.files = W.Dropdown(description="workspace file", style=wide, layout=W.Layout(width="36em"))
        self.files.tooltip = "a hand fit or stack file in the workspace (upload one in the Files tab)"
        self.refresh = W.Button(
            icon="refresh", tooltip="list the workspace's files again", layout=W.Layout(width="3em")
        )
        self.path = W.Text(
            description="source",
            placeholder="path of a hand-fit .csv, a refinement.json or a stack .yaml/.json",
            style=wide,
            layout=W.Layout(width="48em"),
        )
        self.name = W.Text(value="sample family", description="family name", style=wide, layout=W.Layout(width="30em"))
        self.ranges = {
            par: W.Text(value=default, description=label, style=wide, layout=W.Layout(width="22em"))
            for par, label, default in RANGES
        }
        for par, text in self.ranges.items():
            text.tooltip = f"how far every layer's {par} varies: 20% (± relative), 0.5 (± absolute) or 0 (fixed)"
        self.ties = W.Textarea(
            description="ties",
            placeholder="one a line: same: PEO_*.sld   or   together: PEO_*.thickness, dPS_*.thickness",
            style=wide,
            layout=W.Layout(width="48em", height="5em"),
        )
        self.ties.tooltip = "same: one value for all; together: one draw, each at the same fraction of its range"
        self.fold_first = W.Dropdown(options=[NO_BLOCK], description="repeated block from", style=wide)
        self.fold_first.tooltip = "fold layers from this one into one block N × [period]"
        self.fold_size = W.BoundedIntText(value=2, min=1, max=30, description="layers per period", style=wide)
        self.fold_count = W.BoundedIntText(value=2, min=1, max=30, description="count", style=wide)
        for w in (self.fold_size, self.fold_count):
            w.layout = W.Layout(width="18em")
        self.use = W.Button(description="Use as film stack", icon="check", button_style="primary")
        self.use.layout = W.Layout(width="auto")
        self.use.tooltip = "replace the film stack's layers and bounds with the family's expanded stack"
        self.use.add_class("wb-family-use")
        self.summary = W.HTML()
        self.summary.add_class("wb-family-summary")
        self.refresh.on_click(lambda _: self.list_files())
        self.files.observe(self._file_chosen, "value")
        self.path.observe(self._path_changed, "value")
        self.use.on_click(self._use)
        body = W.VBox(
            [
                W.HTML(
                    "<small>Build the generation stack from a hand fit: ranges around every layer's value, ties "
                    "between parameters, a repeated block; then use it as the film stack.</small>"
                ),
                W.HBox([self.files, self.refresh]),
                self.path,
                self.name,
                *self.ranges.values(),
                self.ties,
                W.HBox([self.fold_first, self.fold_size, self.fold_count]),
                self.use,
            ]
        )
        self.accordion = W.Accordion([body], titles=("Sample family",), selected_index=None)
        super().__init__([self.accordion, self.summary])
        self.add_class("wb-family-box")
        self.list_files()
        self.show_current()

    def list_files(self) -> None:
        root = self.ctx.workspace.root
        files = workspace_sources(root)
        self.files.options = [("choose…", ""), *((str(p.relative_to(root)), str(p)) for p in files)]
        self.files.value = ""

    def _file_chosen(self, change) -> None:
        if change["new"]:
            self.path.value = change["new"]

    def _source(self) -> Path:
        text = self.path.value.strip()
        if not text:
            raise FamilyError("choose a source first: a hand-fit .csv, a refinement.json or a stack .yaml/.json")
        path = Path(text).expanduser()
        path = path if path.is_absolute() else self.ctx.workspace.root / path
        if not readable_from_browser(self.ctx.workspace.root, path):
            raise FamilyError(
                f"{path.name}: only files in the workspace ({self.ctx.workspace.root}) or the example data are read "
                "from here; upload the file in the Files tab"
            )
        return path

    @panel_guard
    def _path_changed(self, change) -> None:
        self.fold_first.options, self.fold_first.value = [NO_BLOCK], ""
        if not change["new"].strip():
            return
        path = self._source()
        stack, source = load_source(path)
        names = [x.name for x in stack.layers]
        self.fold_first.options = [NO_BLOCK, *((n, n) for n in names[1:-1])]
        if self.name.value in ("", "sample family") or self.name.value.startswith("family of "):
            self.name.value = f"family of {path.stem}"
        self.status.info(f"{source}: {len(names)} layers, {' | '.join(names)}")

    def family(self) -> SampleFamily:
        """The family the widgets describe (raises FamilyError naming what is wrong)."""
        stack, source = load_source(self._source())
        ranges = {par: Range.parse(w.value, f"{par} range") for par, w in self.ranges.items()}
        ties = parse_tie_text(self.ties.value)
        name = self.name.value.strip() or "sample family"
        family = SampleFamily.from_stack(stack, name=name, source=source, ranges=ranges, ties=ties)
        if self.fold_first.value:
            family = family.fold(self.fold_first.value, int(self.fold_size.value), int(self.fold_count.value))
        return family

    @panel_guard
    def _use(self, _=None) -> None:
        family = self.family()
        stack = self.ctx.stack.set_family(family)
        self.ctx.save_settings()  # a deliberate action: written at once
        self.status.ok(
            f"film stack: {family.summary()}; {len(stack.free_parameters)} varying parameters drawn as "
            f"{stack.drawn_parameters}"
        )

    def show_current(self) -> None:
        """Say which family the film stack is (or that it is a plain stack)."""
        model = self.ctx.stack
        if model.family is None:
            self.summary.value = ""
            return
        try:
            record = model.family_record()
            edited, record.overrides = len(record.overrides), {}
            text = record.summary() + (f"; {edited} layers with bounds of their own" if edited else "")
        except (FamilyError, ValueError) as exc:
            text = f"{model.family.name!r} ({exc})"
        self.summary.value = f"<small>sample family: {html.escape(text)}</small>"


class BlockBox(W.VBox):
    """A repeated block as one card: its repeat count and its period's layers, each edited once for every repeat."""

    def __init__(self, panel: Any, b: int, expanded: dict[int, bool]) -> None:
        self.panel, self.b, self.status = panel, b, panel.status
        model = panel.ctx.stack
        span = model.blocks[b]
        self.count = W.BoundedIntText(
            value=span.count,
            min=1,
            max=model.limits.max_layers,
            description="repeats",
            tooltip="how many times the period repeats (the stack's layer count follows)",
            layout=W.Layout(width="10em"),
        )
        self.count.add_class("wb-block-count")
        self.period = [panel.layer_box(span.start + j, expanded.get(span.start + j, True)) for j in range(span.size)]
        title = W.HTML(f"<b>repeated block</b> {span.count} × [{html.escape(' | '.join(span.bases))}]")
        note = W.HTML("<small>each layer below is every repeat's: edit once, applied to all</small>")
        body = W.VBox(self.period, layout=W.Layout(margin="0 0 0 1.5em"))
        super().__init__([W.HBox([title, self.count, note]), body], layout=W.Layout(border="1px solid #8c959f"))
        self.add_class(f"wb-block-{b}")
        self.count.observe(self._count_changed, "value")

    @panel_guard
    def _count_changed(self, change) -> None:
        model = self.panel.ctx.stack
        span = model.blocks[self.b]
        if change["new"] == span.count:
            return
        try:
            n = model.set_block_count(self.b, int(change["new"]))
        except Exception:
            self.count.value = span.count  # the widget shows the count the stack has
            raise
        self.status.ok(f"repeated block: {change['new']} × [{' | '.join(span.bases)}]; the stack has {n} layers")

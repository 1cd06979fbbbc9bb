"""The loop's steps in one strip above the tabs, each ticked off once this workspace has done it.

A first-time visitor sees where to begin and what comes next (Film stack → Generate → Train → Predict →
Refine); a returning one sees what the workspace already holds.  Each step is a button that opens its tab.
"""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as W

from .context import AppContext

STEPS: tuple[tuple[str, str, str], ...] = (
    ("stack", "Film stack", "describe the film: layers, their values and the bounds to sample"),
    ("generate", "Generate", "simulate a training set of curves and profiles from the stack's bounds"),
    ("train", "Train", "train a model that turns a curve into a profile or layer parameters"),
    ("predict", "Predict", "predict a test curve or a measured file with a trained model"),
    ("refine", "Refine", "polish the prediction into a fit with uncertainties"),
)


class LoopSteps(W.HBox):
    """One button per step: ✓ and green once done here, the first step not done highlighted as 'next'."""

    def __init__(self, ctx: AppContext, open_tab: Callable[[str], None]) -> None:
        self.ctx = ctx
        self.buttons: dict[str, W.Button] = {}
        for key, title, help_text in STEPS:
            button = W.Button(description=title, tooltip=help_text, layout=W.Layout(width="auto"))
            button.add_class(f"wb-step-{key}")
            button.on_click(lambda _, k=key: open_tab(k))
            self.buttons[key] = button
        self.note = W.HTML()
        children: list[W.Widget] = []
        for key, button in self.buttons.items():
            children += [button] + ([W.HTML("→")] if key != STEPS[-1][0] else [])
        super().__init__([*children, self.note], layout=W.Layout(align_items="center", flex_flow="row wrap"))
        self.add_class("wb-loop-steps")
        for trait in ("dataset", "bundle", "runs_version"):
            ctx.follow(trait, lambda _: self.refresh())
        self.refresh()

    def done(self) -> dict[str, bool]:
        """Which steps this workspace has done: a data set, a model, a completed prediction and refinement."""
        registry = self.ctx.registry()
        kinds = registry.kinds_done() if registry is not None else set()
        return {
            "stack": True,  # there is always a stack: the default one or the user's
            "generate": bool(self.ctx.datasets()),
            "train": bool(self.ctx.models()),
            "predict": "predict" in kinds,
            "refine": "refine" in kinds,
        }

    def refresh(self) -> None:
        done = self.done()
        upcoming = next((key for key, _, _ in STEPS if not done[key]), None)
        with self.hold_sync():
            for key, button in self.buttons.items():
                button.icon = "check" if done[key] else ""
                button.button_style = "success" if done[key] else ("info" if key == upcoming else "")
        titles = {k: t for k, t, _ in STEPS}
        text = f"next: <b>{titles[upcoming]}</b>" if upcoming else "the whole loop is done here"
        self.note.value = f"<small>{text}</small>"

"""The Workbench: every panel in one tabbed app, sharing one context (workspace, stack, selections).

Shown by ``notebooks/workbench.ipynb`` in JupyterLab and as a Voilà dashboard
(``workbench start``).  The notebook's UI parameters can also come from a Voilà URL query string
(``?tab=train&epochs=5``): :func:`apply_query_string` reads ``QUERY_STRING`` in the kernel and
overrides the parameters named in :data:`URL_PARAMETERS`, converted to their types and validated.
Anyone the server lets in can open a link, so where files go (``workspace``, ``summary_path``)
is never taken from the URL: those are papermill-only parameters.

Importing this module and building the app loads only what the Film stack tab needs (numpy, numba, the
chart): each panel's module is imported when its tab is first shown, since most of them pull in torch,
pandas or scipy's optimizers (≈ 4 s of a dashboard kernel's start; ``tests/test_lazy_import.py``).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs

import ipywidgets as W

from ..limits import Limits
from .context import AppContext
from .loop_steps import LoopSteps

TABS = ("stack", "probe", "generate", "train", "predict", "refine", "sweep", "search", "files", "history")
TITLES = ("Film stack", "Probe", "Generate", "Train", "Predict", "Refine", "Sweep", "Search", "Files", "History")
URL_PARAMETERS = ("tab", "num_curves", "epochs", "model")
"""The only notebook parameters a URL query string may set: UI choices, never paths."""


class _UrlChoices(Mapping[str, tuple[str, ...]]):
    """``tab`` among the tabs, ``model`` among the Train tab's model kinds, read from that tab's module when a
    link first names a model (the module imports torch)."""

    def __getitem__(self, name: str) -> tuple[str, ...]:
        if name == "tab":
            return TABS
        if name == "model":
            from .train_panel import TARGET  # imports torch: only for a link that names a model

            return ("", *TARGET)
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(("tab", "model"))

    def __len__(self) -> int:
        return 2


URL_CHOICES: Mapping[str, tuple[str, ...]] = _UrlChoices()
"""The values a URL may give the choice parameters ("" for model: the saved choice)."""


class Workbench(W.Tab):
    """All panels as tabs; ``wb.stack``, ``wb.train``, ... give the panels for scripting and tests.

    Panels are built when their tab is first shown (or first accessed), so a page starts with the
    widgets and kernel work of one tab only.
    """

    def __init__(
        self,
        workspace: Any = None,
        *,
        limits: Limits | None = None,
        tab: str = "stack",
        settings: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.ctx = AppContext(workspace, limits=limits)
        for panel, values in (settings or {}).items():
            self.ctx.panel_settings(panel).update(values)
        self._panels: dict[str, W.Widget] = {}
        self._slots = [W.VBox([W.HTML("<i>loading…</i>")]) for _ in TABS]
        super().__init__(children=self._slots, titles=TITLES)
        self.add_class("wb-app")
        self.observe(self._shown, "selected_index")
        self.select(tab)
        self.panel(TABS[self.selected_index or 0])
        self.steps = LoopSteps(self.ctx, self.select)
        self.page = W.VBox([self.steps, self])
        """What the dashboard notebook shows: the loop's steps above the tabs."""

    def _shown(self, change) -> None:
        if change["new"] is not None:
            self.panel(TABS[change["new"]]).on_shown()

    def panel(self, name: str) -> W.Widget:
        """The panel of a tab, built on first use."""
        if name in self._panels:
            return self._panels[name]
        ctx = self.ctx
        panel = self._build(name)
        panel.add_class(f"wb-{name}-panel")
        self._panels[name] = panel
        ctx.charts.update(panel.charts())  # Predict's χ chart registers itself when first made
        panel.on_shown()
        if "files" in self._panels:
            self._panels["files"].refresh_lists()
        self._slots[TABS.index(name)].children = [panel]
        return panel

    def _build(self, name: str) -> W.Widget:
        """A new panel for the tab ``name``; its module is imported here, when the tab is first shown or used."""
        # Each import below is deferred to the tab's first use: most panels pull in torch, pandas or scipy's
        # optimizers, which the first tab (the Film stack) does not need.
        ctx = self.ctx
        if name == "stack":
            from .stack_panel import StackPanel  # deferred to first use (see above)

            return StackPanel(ctx)
        if name == "probe":
            from .probe_panel import ProbePanel  # deferred to first use (see above)

            return ProbePanel(ctx)
        if name == "generate":
            from .generate_panel import GeneratePanel  # deferred to first use: the generator's kernels

            return GeneratePanel(ctx)
        if name == "train":
            from .train_panel import TrainPanel  # deferred to first use: torch

            return TrainPanel(ctx)
        if name == "predict":
            from .predict_panel import PredictPanel  # deferred to first use: torch, scipy.optimize

            return PredictPanel(ctx)
        if name == "refine":
            from .refine_panel import RefinePanel  # deferred to first use: torch, scipy.stats

            return RefinePanel(ctx)
        if name == "files":
            from .files_panel import FilesPanel  # deferred to first use: torch (model bundles)

            return FilesPanel(ctx)
        if name == "sweep":
            from .sweep_panel import SweepPanel  # deferred to first use: dask, papermill

            return SweepPanel(ctx)
        if name == "search":
            return self._search_panel(ctx)
        if name == "history":
            from .history_panel import HistoryPanel  # deferred to first use: torch (resume, predict)

            return HistoryPanel(ctx, resume=self._resume)
        raise KeyError(f"unknown tab {name!r}; expected one of {', '.join(TABS)}")

    stack = property(lambda self: self.panel("stack"))
    probe = property(lambda self: self.panel("probe"))
    generate = property(lambda self: self.panel("generate"))
    train = property(lambda self: self.panel("train"))
    predict = property(lambda self: self.panel("predict"))
    refine = property(lambda self: self.panel("refine"))
    files = property(lambda self: self.panel("files"))
    history = property(lambda self: self.panel("history"))
    sweep = property(lambda self: self.panel("sweep"))
    search = property(lambda self: self.panel("search"))

    def visit(self, tab: str = "stack", settings: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        """Bring an app built earlier up to date for its visitor: saved settings, ``settings``, then ``tab``.

        A preheated Voilà kernel builds the app before anyone asks for the page; when a visitor claims it,
        this restores what other pages saved meanwhile, applies the link's UI settings (``{"train": {"epochs":
        5}}``) to the panels not built yet (and through ``apply_settings`` to those already built) and shows
        ``tab``.
        """
        self.ctx.reload_if_changed()
        for name, values in (settings or {}).items():
            if values:
                self.ctx.panel_settings(name).update(values)
        train, generate = dict((settings or {}).get("train") or {}), (settings or {}).get("generate") or {}
        if train and "train" in self._panels:
            kind = train.pop("model", None)
            self.train.apply_settings({"train": train, "model": {"kind": kind} if kind else {}})
        if generate and "generate" in self._panels:
            self.generate.generator_form.set(generate)
        before = self.selected_index
        self.select(tab)
        if self.selected_index == before:  # no tab change, so no refresh from the observer
            self.panel(TABS[self.selected_index or 0]).on_shown()

    def select(self, tab: str) -> None:
        """Show a tab by its short name ('stack', 'train', ...); unknown names fall back to the first."""
        self.selected_index = TABS.index(tab) if tab in TABS else 0

    def _search_panel(self, ctx: AppContext) -> W.Widget:
        """The Search panel on the current data set, handing its best settings to the Train tab."""
        from .search_panel import SearchPanel  # deferred to first use: optuna, pandas

        current = ctx.dataset or next(iter(ctx.datasets()), None)
        panel = SearchPanel(ctx, dataset=current, on_use_best=self.use_settings)

        def follow(folder) -> None:
            if folder is not None and not (panel.job is not None and panel.job.running):
                panel.dataset.value = str(folder)

        ctx.follow("dataset", follow)
        return panel

    def use_settings(self, settings: Mapping[str, Any]) -> None:
        """Fill the Train panel with ``{"train": {...}, "model": {...}}`` (e.g. a search's best) and show it."""
        self.train.apply_settings(settings)
        self.select("train")

    def _resume(self, run_id: str) -> None:
        self.train.resume_run(run_id)
        self.select("train")


def request_query_string() -> str:
    """The visitor's URL query string: in a preheated Voilà kernel, wait until a visitor claims the kernel.

    Voilà runs a preheated kernel's notebook before anyone asks for the page and passes the request
    (``QUERY_STRING`` among it) when a visitor arrives; elsewhere (a plain Voilà kernel, JupyterLab,
    papermill) the variable is already set or absent and nothing waits.
    """
    if os.environ.get("VOILA_PREHEAT") == "True":
        from voila.utils import wait_for_request  # only inside a Voilà kernel; voila is not needed elsewhere

        wait_for_request()
    return os.environ.get("QUERY_STRING", "")


def link_settings(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The panel settings the notebook's UI parameters ask for (0 and "" mean: keep the saved value)."""
    train = {"epochs": params["epochs"]} if params.get("epochs", 0) > 0 else {}
    if params.get("model"):
        train["model"] = params["model"]
    generate = {"num_curves": params["num_curves"]} if params.get("num_curves", 0) > 0 else {}
    return {"generate": generate, "train": train}


def open_for_visitor(wb: Workbench, params: dict[str, Any], query: str | None = None) -> dict[str, Any]:
    """Open ``wb`` for whoever asked for the page: the notebook's parameters overridden by the link's.

    What the dashboard notebook calls after building the app, so the expensive part (imports, the first
    tab's charts) is done before a visitor arrives when Voilà preheats kernels.
    """
    p = apply_query_string(params, request_query_string() if query is None else query)
    wb.visit(p["tab"], link_settings(p))
    return p


def apply_query_string(
    params: dict[str, Any],
    query: str | None = None,
    *,
    allowed: tuple[str, ...] = URL_PARAMETERS,
    choices: Mapping[str, tuple[str, ...]] | None = None,
    notes: list[str] | None = None,
) -> dict[str, Any]:
    """Override ``params`` (the notebook's UI parameters) from a URL query string.

    Only names in both ``params`` and ``allowed`` (default :data:`URL_PARAMETERS`: no folder or
    file path, so a link cannot choose where the app reads or writes) are taken, each converted to the type of
    its default (bool, int, float, str) and, for the names in ``choices`` (default: ``tab`` among the tabs,
    ``model`` among the Train tab's model kinds), checked against the allowed values.  A value that does not
    convert or is not allowed keeps the default and is reported, naming the parameter, as a warning shown in
    the notebook's output (and appended to ``notes`` when given): a link never breaks the dashboard, and
    ``?model=x`` never reaches the saved settings.  ``query`` defaults to Voilà's ``QUERY_STRING`` environment
    variable.
    """
    query = os.environ.get("QUERY_STRING", "") if query is None else query
    choices = URL_CHOICES if choices is None else choices
    out = dict(params)
    for name, values in parse_qs(query, keep_blank_values=True).items():
        if name not in params or name not in allowed or not values:
            continue
        raw, default = values[-1][:200], params[name]
        try:
            if isinstance(default, bool):
                low = raw.strip().lower()
                if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(raw)
                value: Any = low in ("1", "true", "yes", "on")
            elif isinstance(default, int):
                value = int(raw)
            elif isinstance(default, float):
                value = float(raw)
                if not math.isfinite(value):
                    raise ValueError(raw)
            else:
                value = raw
        except ValueError:
            problem = f"is not a valid {type(default).__name__}"
        else:
            allowed_values = choices.get(name)
            if allowed_values is None or value in allowed_values:
                out[name] = value
                continue
            problem = f"is not one of {', '.join(v for v in allowed_values if v)}"
        message = f"URL parameter {name}={raw!r} {problem}; using {default!r} instead"
        if notes is not None:
            notes.append(message)
        warnings.warn(message, UserWarning, stacklevel=2)
    return out

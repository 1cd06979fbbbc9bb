"""Small widget helpers shared by the panels: a status line, guarded callbacks, download links."""

from __future__ import annotations

import base64
import functools
import html
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import ipywidgets as W

_COLORS = {"info": "#333", "ok": "#1a7f37", "warn": "#9a6700", "error": "#cf222e"}


class Panel:
    """What the app needs of every tab: the charts it offers for download and what to do when it is shown.

    ``CHARTS`` maps a chart's name in the Files tab to the panel attribute holding its figure.
    """

    CHARTS: ClassVar[dict[str, str]] = {}

    def on_shown(self) -> None:
        """The tab was shown: bring lists and views up to date (nothing by default)."""

    def charts(self) -> dict[str, Any]:
        """The panel's charts by name (``CHARTS`` resolved)."""
        return {label: getattr(self, attr) for label, attr in self.CHARTS.items()}


class Status(W.HTML):
    """One line of feedback in a panel; errors in red, never a silent dead button."""

    def show(self, message: str, level: str = "info") -> None:
        text = html.escape(str(message)).replace("\n", "<br>")
        self.value = f'<span class="wb-status wb-{level}" style="color:{_COLORS.get(level, "#333")}">{text}</span>'

    def info(self, message: str) -> None:
        self.show(message, "info")

    def ok(self, message: str) -> None:
        self.show(message, "ok")

    def warn(self, message: str) -> None:
        self.show(message, "warn")

    def error(self, message: str) -> None:
        self.show(message, "error")

    @property
    def text(self) -> str:
        return html.unescape(re.sub(r"<[^>]+>", "", self.value.replace("<br>", "\n")))

    @property
    def level(self) -> str:
        m = re.search(r"wb-(info|ok|warn|error)", self.value)
        return m.group(1) if m else ""


def guarded(status_of: Callable[[Any], Status]) -> Callable:
    """Decorator for panel callbacks: an exception becomes an error message in the panel's status."""

    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def inner(self, *args, **kwargs):
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - shown to the user
                status_of(self).error(f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc))
                return None

        return inner

    return wrap


def panel_guard(method: Callable) -> Callable:
    """:func:`guarded` for panels whose status widget is ``self.status``."""
    return guarded(lambda self: self.status)(method)


def download_link(filename: str, data: bytes, mime: str = "application/octet-stream", label: str | None = None) -> str:
    """An HTML anchor that downloads ``data`` as ``filename`` (a data: URI: works in Voilà and JupyterLab)."""
    payload = base64.b64encode(data).decode("ascii")
    name = html.escape(filename, quote=True)
    return (
        f'<a class="wb-download" download="{name}" href="data:{mime};base64,{payload}" '
        f'style="margin-right:1em">⬇ {html.escape(label or filename)}</a>'
    )


def labelled(description: str, widget: W.Widget, width: str = "9em") -> W.HBox:
    return W.HBox([W.Label(description, layout=W.Layout(width=width)), widget])


def table_html(rows: list[dict[str, Any]], columns: list[str] | None = None, fmt: str = "{:.5g}") -> str:
    """A small HTML table of dict rows (numbers formatted, text escaped)."""
    if not rows:
        return ""
    columns = columns or list(rows[0])

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return fmt.format(v)
        return html.escape(str(v))

    head = "".join(f"<th style='padding:2px 8px;text-align:left'>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td style='padding:2px 8px'>{cell(r.get(c, ''))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table class='wb-table'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def readable_from_browser(workspace_root: Path, path: Path) -> bool:
    """Whether a path typed in the page may be read: inside the workspace or the example-data folder
    (``$WORKBENCH_EXAMPLE_DATA``) only.  In Voilà anyone who reaches the page types it, so no other file
    of the server is opened (nor quoted back in an error message)."""
    path = Path(path).resolve()
    roots = [Path(workspace_root).resolve()]
    example = os.environ.get("WORKBENCH_EXAMPLE_DATA")
    if example:
        roots.append(Path(example).resolve())
    return any(path == r or r in path.parents for r in roots)

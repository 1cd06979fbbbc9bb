"""Files panel: uploads (validated, size-limited) into the workspace and downloads of bundles and chart data.

Uploads: ``.npy`` data sets (an NR and an SLD array uploaded together: a pyreflect pair) or a
single NR array (measured curves), measured curves (``.txt``, ``.dat``, ``.ort``), model bundles
(``.zip``) and pyreflect ``.pth`` weights, which become a model bundle when uploaded together with
pyreflect's normalisation statistics (its pickled ``.npy`` dict).  Nothing is unpickled as code
(``allow_pickle=False``, ``torch.load(weights_only=True)``, the statistics through a data-only
unpickler), archives are checked for unsafe paths and their unpacked size,
and every file is validated by the loader that will use it before it is kept; a measured curve's
upload says its point count, Q range, dQ convention and what was merged or set aside.  Downloads: a
model bundle as a zip, each chart's data as CSV (axis titles with units as column names, dR where the
trace has error bars) or JSON, and the last refinement's parameters ± 1σ with units as CSV (the charts
keep Plotly's own PNG button).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

import ipywidgets as W
import numpy as np

from ..data.dataset import DatasetError, load_dataset
from ..data.measured import Measurement, load_measurement
from ..data.npyfile import NpyFormatError, declared_header, load_npy
from ..fileio import free_path, safe_name
from ..models import count_parameters
from ..models.parity_cnn import load_pyreflect_state_dict
from ..physics.probe import FWHM_PER_SIGMA
from ..plots.export import chart_export, chart_table_csv, refined_csv
from ..store.adopt import adopt_bundle, import_pyreflect
from ..store.model_bundle import FILES, BundleError, load_model_bundle
from ..store.pyreflect_import import read_pyreflect_stats
from .common import Panel, Status, download_link, panel_guard, table_html
from .context import AppContext

ACCEPT = ".npy,.txt,.dat,.ort,.zip,.pth"
# what a damaged or hostile zip makes the zipfile module raise (a lying declared size: BadZipFile, a bad
# deflate stream: zlib.error, an unknown compression: NotImplementedError, an encrypted entry: RuntimeError)
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, NotImplementedError, RuntimeError)


class UploadError(ValueError):
    """An uploaded file was refused; the message names the file and the reason."""


def _bytes(item: dict[str, Any]) -> bytes:
    content = item["content"]
    return content.tobytes() if isinstance(content, memoryview) else bytes(content)


def describe_measurement(name: str, m: Measurement) -> str:
    """What a scientist checks after an upload: rows read, points used (repeated Q merged), Q range, dQ, R ≤ 0.

    e.g. "REF_L.txt: 416 rows → 350 points (66 repeated Q averaged), Q 0.00835–0.269 Å⁻¹, dR given,
    dQ column FWHM (the header says so), used as 1σ = FWHM / 2.3548; 2 points with R ≤ 0 …".
    """
    merged = m.merge_duplicate_q()
    n_merged = int(merged.metadata.get("merged_duplicate_q", 0))
    count = f"{m.q.size} rows → {merged.q.size} points" if n_merged else f"{m.q.size} points"
    if n_merged:
        count += f" ({n_merged} duplicate Q merged: rows at the same Q averaged, as where stitched angles overlap)"
    parts = [f"{name}: {count}", f"Q {merged.q[0]:.4g}–{merged.q[-1]:.4g} Å⁻¹"]
    parts.append("dR given" if m.dr is not None else "no dR (χ² cannot be computed)")
    from_where = {"header": "the header says so", "orso": "the ORSO header says so", "argument": "as chosen"}
    said = from_where.get(str(m.metadata.get("dq_convention_from")), "as chosen")
    if m.dq_sigma is None:
        parts.append("no dQ column: the probe's dQ/Q is used")
    elif m.dq_convention_of_file == "fwhm":
        parts.append(f"dQ column FWHM ({said}), used as 1σ = FWHM / {FWHM_PER_SIGMA:.4f}")
    elif m.dq_convention_of_file == "variance":
        parts.append("dQ column a variance, used as 1σ = √variance")
    else:
        parts.append(f"dQ column 1σ ({said})")
    text = ", ".join(parts)
    if merged.n_nonpositive:
        text += (
            f"; {merged.n_nonpositive} point{'s' if merged.n_nonpositive > 1 else ''} with R ≤ 0 kept for fits, "
            "not drawn on the log axis"
        )
    return text


def store_measurement(
    ctx: AppContext, name: str, data: bytes, dq_convention: str | None = None
) -> tuple[Path, Measurement]:
    """Validate a measured curve with the loader and keep it in ``<workspace>/measured``; returns it as loaded."""
    folder = ctx.measured_dir
    target = free_path(folder, safe_name(name, "measurement.txt"))
    tmp = folder / f".upload-{target.name}"  # same suffix: the loader picks the format from it
    tmp.write_bytes(data)
    try:
        m = load_measurement(tmp, dq_convention=dq_convention)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise UploadError(f"{name}: not a readable measured curve: {exc}") from exc
    tmp.replace(target)
    return target, m


def store_dataset(ctx: AppContext, files: dict[str, bytes], name: str) -> Path:
    """An NR and an SLD array (pyreflect pair) as a data-set folder in the workspace, validated, then renamed in."""
    arrays = {}
    for fname, data in files.items():
        try:
            arrays[fname] = load_npy(data)
        except NpyFormatError as exc:
            raise UploadError(f"{fname}: not a .npy array of numbers: {exc}") from None
    sld = [f for f in arrays if "sld" in f.lower()]
    nr = [f for f in arrays if f not in sld]
    if len(sld) != 1 or len(nr) != 1:
        raise UploadError(
            "a data set is two .npy files, the NR array and the SLD array (with 'sld' in its name); got "
            f"{sorted(arrays)}"
        )
    folder = free_path(ctx.workspace.datasets, safe_name(name, "uploaded"))
    tmp = Path(tempfile.mkdtemp(dir=ctx.workspace.datasets, prefix=".upload-"))
    try:
        np.save(tmp / "nr_train.npy", arrays[nr[0]], allow_pickle=False)
        np.save(tmp / "sld_train.npy", arrays[sld[0]], allow_pickle=False)
        load_dataset(tmp)
        os.chmod(tmp, 0o755)  # noqa: S103 - a data-set folder, as mkdir would make it
        os.rename(tmp, folder)  # whole or not at all: a reader never sees one array without the other
    except DatasetError as exc:
        raise UploadError(f"{nr[0]} + {sld[0]}: not a valid data set: {exc}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


MAX_BUNDLE_MEMBERS = 64  # a bundle is six files


def _bundle_members(name: str, archive: zipfile.ZipFile, max_bytes: int) -> list[tuple[zipfile.ZipInfo, str]]:
    """The archive's files with the name each gets in the bundle folder, checked before anything is unpacked."""
    members = [i for i in archive.infolist() if not i.filename.endswith("/")]  # is_dir() fails on an empty name
    if len(members) > MAX_BUNDLE_MEMBERS:
        raise UploadError(f"{name}: {len(members)} files in the archive; a model bundle has {len(FILES)}")
    if sum(i.file_size for i in members) > max_bytes:
        raise UploadError(f"{name}: unpacks to more than {max_bytes / 2**20:.0f} MiB")
    out, seen = [], set()
    for info in members:
        p = PurePosixPath(info.filename)
        if p.is_absolute() or ".." in p.parts or info.filename.startswith("\\") or "\\" in info.filename:
            raise UploadError(f"{name}: unsafe path {info.filename!r} in the archive")
        base = p.name  # flatten: a bundle is one folder of files
        if base in ("", ".", "..") or base.startswith(".") or safe_name(base, "") != base:
            raise UploadError(f"{name}: entry {info.filename!r} is not a bundle file name; expected {', '.join(FILES)}")
        if base in seen:
            raise UploadError(f"{name}: two entries named {base!r} in the archive; a bundle is one folder")
        seen.add(base)
        out.append((info, base))
    return out


def store_bundle(ctx: AppContext, name: str, data: bytes, max_bytes: int) -> Path:
    """A zipped model bundle, checked (paths, names, declared and actual unpacked size) and loaded before it is kept."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = _bundle_members(name, archive, max_bytes)
    except UploadError:
        raise
    except _ZIP_ERRORS as exc:
        raise UploadError(f"{name}: not a readable zip archive ({type(exc).__name__}: {str(exc)[:200]})") from None
    with tempfile.TemporaryDirectory(dir=ctx.workspace.models, prefix=".upload-") as tmp:
        unpacked = 0
        for info, base in members:
            try:
                with archive.open(info) as src, open(Path(tmp) / base, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        unpacked += len(chunk)
                        if unpacked > max_bytes:  # a declared size that lies
                            raise UploadError(f"{name}: unpacks to more than {max_bytes / 2**20:.0f} MiB")
                        dst.write(chunk)
            except UploadError:
                raise
            except _ZIP_ERRORS as exc:
                raise UploadError(f"{name}: {info.filename}: damaged entry ({type(exc).__name__}: {exc})") from None
        try:
            bundle = load_model_bundle(tmp, limits=ctx.limits)
        except (BundleError, OSError) as exc:
            raise UploadError(f"{name}: not a workbench model bundle: {exc}") from None
        folder, _version = adopt_bundle(ctx.workspace, tmp, name=bundle.name or Path(name).stem, bundle=bundle)
    return folder


def store_pth(ctx: AppContext, name: str, data: bytes) -> tuple[Path, int]:
    """pyreflect CNN weights: loaded with ``weights_only=True`` into the parity model before being kept."""

    folder = ctx.workspace.root / "weights"
    folder.mkdir(exist_ok=True)
    target = free_path(folder, safe_name(name, "weights.pth"))
    if zipfile.is_zipfile(io.BytesIO(data)):  # torch's format: refuse an entry that would unpack past the limit
        try:
            declared = sum(i.file_size for i in zipfile.ZipFile(io.BytesIO(data)).infolist())
        except _ZIP_ERRORS as exc:
            raise UploadError(f"{name}: not readable pyreflect CNN weights ({type(exc).__name__}: {exc})") from None
        if declared > ctx.limits.max_model_bytes:
            raise UploadError(f"{name}: unpacks to {declared / 2**20:.0f} MiB, above Limits.max_model_bytes")
    tmp = folder / f".upload-{target.name}"
    tmp.write_bytes(data)
    try:
        model = load_pyreflect_state_dict(tmp)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise UploadError(f"{name}: not pyreflect CNN weights: {exc}") from exc
    tmp.replace(target)
    return target, count_parameters(model)


def is_pickled_npy(data: bytes) -> bool:
    """An ``.npy`` holding a pickled object (pyreflect's statistics), not a numeric array."""
    header = declared_header(data)
    return header is not None and header.dtype.hasobject


def store_pyreflect_model(ctx: AppContext, weights: Path, stats_name: str, stats: bytes) -> tuple[Path, int]:
    """pyreflect weights + statistics → a registered bundle in the workspace (name of the weights file)."""

    try:
        st = read_pyreflect_stats(stats)
    except BundleError as exc:
        raise UploadError(f"{stats_name}: {exc}") from None
    try:
        return import_pyreflect(ctx.workspace, weights, st)
    except (ValueError, OSError, RuntimeError) as exc:
        raise UploadError(f"{weights.name} + {stats_name}: {exc}") from None


def zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                archive.write(path, f"{folder.name}/{path.name}")
    return buffer.getvalue()


class FilesPanel(Panel, W.VBox):
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.upload = W.FileUpload(accept=ACCEPT, multiple=True, description="Upload")
        self.dq = W.Dropdown(
            options=[("as the file says", ""), ("FWHM", "fwhm"), ("1σ", "sigma")],
            value="",
            description="dQ column",
            style={"description_width": "8em"},
        )
        self.dataset_name = W.Text(
            value="",
            placeholder="name for an uploaded .npy data set",
            description="data-set name",
            style={"description_width": "8em"},
        )
        self.status = Status()
        self.uploaded = W.HTML()
        self.model = W.Dropdown(
            options=[], description="model bundle", style={"description_width": "8em"}, layout=W.Layout(width="30em")
        )
        self.zip = W.Button(description="Prepare zip", icon="file-archive-o")
        self.chart = W.Dropdown(
            options=[], description="chart", style={"description_width": "8em"}, layout=W.Layout(width="30em")
        )
        self.export = W.Button(
            description="Prepare CSV + JSON",
            icon="table",
            tooltip="the chosen chart's data: CSV with the axis units as column names (and dR), and JSON",
            layout=W.Layout(width="auto"),
        )
        self.refined = W.Button(
            description="Refined parameters (CSV)",
            icon="table",
            tooltip="the last refinement's free parameters: value ± 1σ with units, bounds and flags",
            layout=W.Layout(width="auto"),
        )
        self.links = W.HTML()
        self.refresh = W.Button(icon="refresh", tooltip="refresh the lists", layout=W.Layout(width="3em"))
        self.upload.observe(self._uploaded, "value")
        self.zip.on_click(self._zip)
        self.export.on_click(self._export)
        self.refined.on_click(self._export_refined)
        self.refresh.on_click(lambda _: self.refresh_lists())
        ctx.follow("bundle", lambda _: self.refresh_lists())
        limit = ctx.limits.max_upload_bytes / 2**20
        super().__init__(
            [
                W.HTML(
                    f"<b>Upload</b> ({ACCEPT.replace(',', ' ')}; at most {limit:.0f} MiB each): an NR + SLD .npy pair "
                    "becomes a data set, a single .npy or a text/ORSO file a measured curve, a .zip a model bundle, "
                    "a .pth pyreflect weights (with pyreflect's normalisation .npy: a model for the Predict tab)"
                ),
                W.HBox([self.upload, self.dq, self.dataset_name]),
                self.status,
                self.uploaded,
                W.HTML("<b>Download</b>"),
                W.HBox([self.model, self.zip, self.refresh]),
                W.HBox([self.chart, self.export]),
                self.refined,
                self.links,
            ]
        )
        self.add_class("wb-files-panel")
        self.refresh_lists()

    def on_shown(self) -> None:
        """Charts made since (Predict's χ chart) and new models, data sets and measurements."""
        self.refresh_lists()

    def refresh_lists(self) -> None:
        """Fill the lists; each keeps its choice while it exists, else shows the first (the newest model)."""
        _fill(self.model, [(p.name, str(p)) for p in self.ctx.models()])
        _fill(self.chart, list(getattr(self.ctx, "charts", {})))

    # ------------------------------------------------------------------ uploads
    def _uploaded(self, change) -> None:
        items = list(change["new"] or ())
        if not items:
            return
        self.handle([(item["name"], _bytes(item)) for item in items])

    @panel_guard
    def handle(self, files: list[tuple[str, bytes]]) -> list[str]:
        """Validate and store uploaded files; returns one line per file (also shown in the panel)."""
        limit = self.ctx.limits.max_upload_bytes
        done, errors, notes = [], [], []
        npys: dict[str, bytes] = {}
        stats = [(name, data) for name, data in files if Path(name).suffix.lower() == ".npy" and is_pickled_npy(data)]
        files = [f for f in files if f not in stats]
        for name, data in [s for s in stats if len(s[1]) > limit]:
            errors.append(f"{name}: {len(data) / 2**20:.1f} MiB is above the upload limit of {limit / 2**20:.0f} MiB")
            stats.remove((name, data))
        weights: list[Path] = []
        for name, data in files:
            suffix = Path(name).suffix.lower()
            try:
                if len(data) > limit:
                    raise UploadError(
                        f"{name}: {len(data) / 2**20:.1f} MiB is above the upload limit of {limit / 2**20:.0f} MiB"
                    )
                if suffix not in ACCEPT.split(","):
                    raise UploadError(f"{name}: unsupported file type {suffix!r}; accepted: {ACCEPT}")
                if suffix == ".npy":
                    npys[name] = data
                elif suffix in (".txt", ".dat", ".ort"):
                    path, m = store_measurement(self.ctx, name, data, self.dq.value or None)
                    notes.append(describe_measurement(name, m))
                    done.append(f"measured curve → {path}: {notes[-1]}")
                    self.ctx.announce(measurement=path)
                elif suffix == ".zip":
                    path = store_bundle(self.ctx, name, data, limit)
                    done.append(f"model bundle → {path}")
                    self.ctx.announce(bundle=path)
                else:
                    path, n = store_pth(self.ctx, name, data)
                    weights.append(path)
                    done.append(f"pyreflect weights ({n:,} parameters) → {path}")
            except UploadError as exc:
                errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - one file the loaders did not foresee must not cost the others
                errors.append(f"{name}: not stored ({type(exc).__name__}: {exc})")
        if stats or weights:
            self._pair_pyreflect(weights, stats, done, errors)
        if len(npys) == 1:
            name, data = next(iter(npys.items()))
            try:
                path, m = store_measurement(self.ctx, name, data)
                notes.append(describe_measurement(name, m))
                done.append(f"measured curve(s) → {path}: {notes[-1]}")
                self.ctx.announce(measurement=path)
            except UploadError as exc:
                errors.append(str(exc))
        elif npys:
            try:
                path = store_dataset(self.ctx, npys, self.dataset_name.value or Path(min(npys)).stem)
                done.append(f"data set → {path}")
                self.ctx.announce(dataset=path)
            except UploadError as exc:
                errors.append(str(exc))
        self.uploaded.value = table_html([{"stored": line} for line in done])
        if errors:
            self.status.error("; ".join(errors))
        else:
            self.status.ok(f"stored {len(done)} upload(s)" + (": " + "; ".join(notes) if notes else ""))
        self.refresh_lists()
        return done + errors

    # ------------------------------------------------------------------ downloads
    @panel_guard
    def _pair_pyreflect(
        self, weights: list[Path], stats: list[tuple[str, bytes]], done: list[str], errors: list[str]
    ) -> None:
        """One .pth with one statistics .npy make a model for the Predict tab; anything else says what is missing."""
        if len(weights) == 1 and len(stats) == 1:
            try:
                folder, version = store_pyreflect_model(self.ctx, weights[0], *stats[0])
            except UploadError as exc:
                errors.append(str(exc))
                return
            done.append(f"pyreflect model → {folder} (registered as {folder.name} v{version}; in the Predict tab)")
            self.ctx.announce(bundle=folder)
        elif stats and not weights:
            errors.append(f"{stats[0][0]}: pyreflect statistics need their .pth weights in the same upload")
        elif len(weights) > 1 or len(stats) > 1:
            errors.append("upload one pyreflect .pth with its one statistics .npy at a time to make a model")
        else:
            done.append(
                "to predict with these weights, upload them again together with pyreflect's "
                "normalisation statistics (.npy)"
            )

    @panel_guard
    def _zip(self, _=None) -> None:
        if not self.model.options:
            raise ValueError("no model bundle in the workspace yet: train one in the Train tab or upload a .zip")
        if not self.model.value:
            raise ValueError("choose a model bundle in the 'model bundle' list first")
        folder = Path(self.model.value)
        data = zip_folder(folder)
        if len(data) > self.ctx.limits.max_download_bytes:
            raise ValueError(
                f"{folder.name}.zip is {len(data) / 2**20:.0f} MiB, above the download limit; copy it from {folder}"
            )
        self.links.value = download_link(f"{folder.name}.zip", data, "application/zip")
        self.status.ok(f"{folder.name}.zip ready ({len(data) / 1024:.0f} KiB)")

    @panel_guard
    def _export(self, _=None) -> None:
        charts = getattr(self.ctx, "charts", {})
        if not charts:
            raise ValueError("no chart yet: open a tab with a chart (Film stack, Train, Predict, Refine) first")
        if not self.chart.value or self.chart.value not in charts:
            raise ValueError("choose a chart in the 'chart' list first, then Prepare CSV + JSON")
        fig = charts[self.chart.value]
        stem = safe_name(self.chart.value, "chart")
        data = chart_export(fig)
        csv = chart_table_csv(fig).encode()
        js = json.dumps(data, indent=1).encode()
        self.links.value = download_link(f"{stem}.csv", csv, "text/csv") + download_link(
            f"{stem}.json", js, "application/json"
        )
        self.status.ok(f"{stem}: {sum(len(t['x']) for t in data['traces'])} points")

    @panel_guard
    def _export_refined(self, _=None) -> None:
        result = self.ctx.refined
        if result is None or not hasattr(result, "table"):
            raise ValueError("no refinement yet: refine a prediction in the Refine tab first")
        csv = refined_csv(result).encode()
        self.links.value = download_link("refined-parameters.csv", csv, "text/csv")
        chi2 = getattr(result, "chi2_per_point", None)
        fit = f", χ²/N {chi2:.3g}" if chi2 is not None else ""
        self.status.ok(f"refined-parameters.csv: {len(result.table())} parameters ± 1σ{fit}")


def _fill(dropdown: W.Dropdown, options: list[tuple[str, str]] | list[str]) -> None:
    """New options, keeping the choice while it is offered, else the first: never an empty-looking list.

    (ipywidgets leaves ``value`` None when options are set on a dropdown made empty, so it shows blank.)
    """
    current = dropdown.value
    values = [o[1] if isinstance(o, tuple) else o for o in options]
    with dropdown.hold_sync():
        dropdown.options = options
        dropdown.value = current if current in values else (values[0] if values else None)

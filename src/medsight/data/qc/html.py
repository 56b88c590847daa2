"""The HTML page of a quality report: summary, plots and thumbnails of flagged cases.

Plots are drawn with matplotlib's Agg backend (no display) into ``plots/`` beside
``index.html``: class balance, intensity and size histograms, and one thumbnail strip per
finding (up to :data:`MAX_THUMBS` images, read again from the data set).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medsight.core import MedsightError
from medsight.data.dataset import Dataset
from medsight.data.qc.findings import CheckKind
from medsight.data.qc.result import QCReport
from medsight.data.scan import CaseScan, class_counts
from medsight.io.atomic import atomic_path
from medsight.io.html import write_html

__all__ = ["MAX_THUMBS", "render_html"]

MAX_THUMBS = 6
MAX_FILES_SHOWN = 20
_NO_THUMBS = {CheckKind.SEVERAL_IMAGES_PER_PATIENT, CheckKind.MISSING_ATTRIBUTE,
              CheckKind.SPACING_MIX, CheckKind.LABEL_IMBALANCE}  # fmt: skip


def _pyplot():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: object, path: Path) -> str:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=80, bbox_inches="tight")  # type: ignore[attr-defined]
    _pyplot().close(fig)
    return f"plots/{path.name}"


def _plots(report: QCReport, scans: list[CaseScan], ds: Dataset, plots: Path) -> list[str]:
    plt = _pyplot()
    out = []
    counts, unit = class_counts(ds, scans), "cases"
    if not counts:  # segmentation without classes: voxels per mask label
        counts, unit = report.fingerprint.class_balance.get("voxels", {}), "voxels (log scale)"
    if counts:
        fig, ax = plt.subplots(figsize=(6, 0.4 * len(counts) + 1))
        names = list(counts)[:30]
        ax.barh(names[::-1], [counts[n] for n in names][::-1], color="#4c72b0")
        if unit.startswith("voxels"):
            ax.set_xscale("log")
        ax.set_xlabel(unit)
        ax.set_title("class balance")
        out.append(_save(fig, plots / "class_balance.png"))
    ok = [s for s in scans if s.ok and s.channels]
    if ok:
        fig, axes = plt.subplots(1, 3, figsize=(13, 3))
        means = np.array([s.channels[0].mean for s in ok])
        p99 = np.array([max(abs(s.channels[0].p99), 1e-6) for s in ok])
        axes[0].hist(means, bins=40, color="#55a868")
        axes[0].set_title("mean intensity per image")
        axes[1].hist(np.log10(p99), bins=40, color="#c44e52")
        axes[1].set_title("log10 99th percentile per image")
        sizes = np.array([np.prod(s.shape) for s in ok], dtype=float)
        axes[2].hist(sizes, bins=40, color="#8172b2")
        axes[2].set_title("pixels / voxels per image")
        out.append(_save(fig, plots / "histograms.png"))
    return out


def _thumb(ds: Dataset, case_id: str) -> np.ndarray | None:
    try:
        image = ds.case(case_id).image()
    except (MedsightError, OSError, ValueError):
        return None
    arr = np.asarray(image.array, dtype=np.float32)
    if image.has_channels:
        arr = arr.mean(axis=-1)
    if image.spatial_ndim == 3:
        arr = arr[:, :, arr.shape[2] // 2]
    arr = arr.T  # index order (column, row) -> display (row, column)
    lo, hi = np.nanpercentile(arr, [1, 99]) if arr.size else (0, 1)
    return np.clip((arr - lo) / (hi - lo if hi > lo else 1), 0, 1)


def _finding_strip(ds: Dataset, case_ids: list[str], path: Path) -> str | None:
    """Thumbnails of the first flagged cases side by side, titled by case id (Pillow, fast)."""
    from PIL import Image as PILImage
    from PIL import ImageDraw

    images = [(cid, _thumb(ds, cid)) for cid in case_ids[:MAX_THUMBS]]
    images = [(c, t) for c, t in images if t is not None]
    if not images:
        return None
    size, pad, title = 128, 6, 14
    strip = PILImage.new("L", (len(images) * (size + pad) + pad, size + title + pad), 255)
    draw = ImageDraw.Draw(strip)
    for k, (cid, t) in enumerate(images):
        tile = PILImage.fromarray((t * 255).astype(np.uint8))
        tile.thumbnail((size, size))
        x = pad + k * (size + pad)
        strip.paste(tile, (x, title))
        draw.text((x, 1), cid[-22:], fill=0)
    with atomic_path(path) as tmp:
        strip.save(tmp)
    return f"plots/{path.name}"


def render_html(report: QCReport, scans: list[CaseScan], ds: Dataset, root: Path) -> Path:
    """Write ``index.html`` and its plots under ``root``; return the page's path."""
    plots = root / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for stale in plots.glob("finding_*.png"):  # from an earlier run into the same folder
        stale.unlink()
    figures = _plots(report, scans, ds, plots)
    findings = []
    strips = 0
    for n, f in enumerate(report.findings):
        strip = None
        if f.case_ids and f.kind not in _NO_THUMBS and strips < 40:
            strip = _finding_strip(ds, f.case_ids, plots / f"finding_{n:03d}.png")
            strips += 1
        shown = f.files[:MAX_FILES_SHOWN]
        findings.append({
            "severity": f.severity.value,
            "kind": f.kind.value,
            "message": f.message,
            "files": shown,
            "more": len(f.files) - len(shown),
            "strip": strip,
        })  # fmt: skip
    return write_html(
        root / "index.html",
        "qc.html.j2",
        r=report,
        fp=report.fingerprint,
        plots=figures,
        findings=findings,
    )

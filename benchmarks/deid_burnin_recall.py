"""Recall of burned-in text removal and of its verification, on drawn ultrasound-like images.

For each seed, ``--images`` drawn cases (:func:`medsight.privacy.drawn.draw_case`: the header's
name in one of four orders, patient ID, a date in one of seven formats, plus one or two of
institution, birth date, accession number; DejaVu fonts, sizes 10-40 px, brightness 55-100%,
five colours, mostly in the border band, 15% anywhere, over speckle too) and ``--empty``
text-free ones.  Measured:

* detection recall: fraction of drawn identifying strings whose every inked pixel lies inside a
  scrub box (:func:`medsight.privacy.pixels.scrub_burned_in_text`, default policy);
* verification recall: fraction of drawn strings that the verification
  (:func:`medsight.privacy.pixels.read_burned_in`, failing kinds only) reads on the
  *unscrubbed* image (a leak box overlapping the string's ink), and the fraction of unscrubbed
  images on which verification fails at all;
* residual leaks: failing-kind values verification still reads after scrubbing;
* false scrub area: fraction of the frame blacked out on text-free images;
* runtime per image (scrub; verification) in seconds, on this machine.

Also per font-size band (10-17, 18-27, 28-40 px) and per colour (grey/white text, which only
brightness tells from grey anatomy, versus coloured text).  With a fixed font size, a string
too wide for the 240x320 frame is left out, so large sizes hold fewer long strings.  Results
are means over seeds with their standard deviation.

Usage (from the project root; one heavy job at a time on a shared machine)::

    timeout 900 .venv/bin/python \\
        benchmarks/deid_burnin_recall.py --seeds 0 1 2 --images 16 --empty 6

Writes ``benchmarks/results/deid_burnin_recall.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

from medsight.privacy.drawn import draw_case
from medsight.privacy.identifiers import header_values
from medsight.privacy.pixels import FAILING_KINDS, read_burned_in, scrub_burned_in_text

OUT = Path(__file__).parent / "results" / "deid_burnin_recall.json"
_BANDS = ((10, 17), (18, 27), (28, 40))


def _ink_box(ink: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(ink)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _overlaps(box: tuple[int, int, int, int], ink: np.ndarray) -> bool:
    left, top, width, height = box
    return bool(ink[top : top + height, left : left + width].any())


def _height(ink: np.ndarray) -> int:
    _, top, _, bottom = _ink_box(ink)
    return bottom - top


def run_seed(seed: int, images: int, empty: int) -> dict[str, object]:
    """All measurements for one seed."""
    rng = np.random.default_rng(seed)
    covered, read, total = 0, 0, 0
    failing_images, residual = 0, 0
    by_band = {f"{a}-{b}": [0, 0] for a, b in _BANDS}  # covered, total (by font size drawn)
    by_colour = {"grey": [0, 0], "coloured": [0, 0]}
    scrub_times, verify_times = [], []
    for i in range(images):
        size = int(rng.integers(10, 41))
        case = draw_case(rng, text_size=size, seed=seed * 1000 + i)
        ds = case.dataset
        values = header_values(ds)
        t0 = time.perf_counter()
        before = [x for x in read_burned_in(ds, values) if x.kind in FAILING_KINDS]
        verify_times.append(time.perf_counter() - t0)
        failing_images += bool(before)
        t0 = time.perf_counter()
        regions = scrub_burned_in_text(ds)
        scrub_times.append(time.perf_counter() - t0)
        cover = np.zeros((ds.Rows, ds.Columns), bool)
        for r in regions:
            cover[r.top : r.top + r.height, r.left : r.left + r.width] = True
        band = next(f"{a}-{b}" for a, b in _BANDS if a <= size <= b)
        for s in case.strings:
            total += 1
            ok = not (s.ink & ~cover).any()
            covered += ok
            by_band[band][0] += ok
            by_band[band][1] += 1
            by_colour["grey" if s.grey else "coloured"][0] += ok
            by_colour["grey" if s.grey else "coloured"][1] += 1
            read += any(_overlaps(x.box, s.ink) for x in before)
        residual += len([x for x in read_burned_in(ds, values) if x.kind in FAILING_KINDS])
    false_area = []
    for i in range(empty):
        case = draw_case(rng, with_text=False, seed=seed * 1000 + 500 + i)
        ds = case.dataset
        t0 = time.perf_counter()
        regions = scrub_burned_in_text(ds)
        scrub_times.append(time.perf_counter() - t0)
        area = np.zeros((ds.Rows, ds.Columns), bool)
        for r in regions:
            area[r.top : r.top + r.height, r.left : r.left + r.width] = True
        false_area.append(float(area.mean()))
    return {
        "seed": seed,
        "strings": total,
        "detection_recall": covered / total,
        "verification_recall_strings": read / total,
        "verification_fails_unscrubbed_images": failing_images / images,
        "residual_leaks_after_scrub": residual,
        "false_scrub_area_text_free": float(np.mean(false_area)) if false_area else None,
        "text_free_images_with_any_scrub": sum(a > 0 for a in false_area),
        "detection_recall_by_size_px": {k: (c / n if n else None) for k, (c, n) in by_band.items()},
        "strings_by_size_px": {k: n for k, (_, n) in by_band.items()},
        "detection_recall_by_colour": {
            k: (c / n if n else None) for k, (c, n) in by_colour.items()
        },
        "strings_by_colour": {k: n for k, (_, n) in by_colour.items()},
        "scrub_seconds_per_image": float(np.mean(scrub_times)),
        "verify_seconds_per_image": float(np.mean(verify_times)),
    }


def _summary(runs: list[dict[str, object]]) -> dict[str, dict[str, float]]:
    keys = [
        "detection_recall",
        "verification_recall_strings",
        "verification_fails_unscrubbed_images",
        "residual_leaks_after_scrub",
        "false_scrub_area_text_free",
        "scrub_seconds_per_image",
        "verify_seconds_per_image",
    ]
    out = {}
    for key in keys:
        vals = np.array([float(r[key]) for r in runs if r[key] is not None])  # type: ignore[arg-type]
        out[key] = {
            "mean": float(vals.mean()),
            "std": float(vals.std(ddof=1) if len(vals) > 1 else 0),
        }
    return out


def main() -> None:
    """Run every seed and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--empty", type=int, default=6)
    args = parser.parse_args()
    runs = []
    start = time.perf_counter()
    for seed in args.seeds:
        runs.append(run_seed(seed, args.images, args.empty))
        print(json.dumps(runs[-1]), flush=True)
    result = {
        "benchmark": "deid_burnin_recall",
        "images_per_seed": args.images,
        "text_free_per_seed": args.empty,
        "seeds": args.seeds,
        "summary": _summary(runs),
        "runs": runs,
        "seconds_total": time.perf_counter() - start,
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or "?"},
        "notes": "drawn images (medsight.privacy.drawn), default policy (all text lines), "
        "tesseract via the Debian binary; runtime on a shared 2-core machine",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["summary"], indent=2))


if __name__ == "__main__":
    main()

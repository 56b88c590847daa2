"""Speed of medsight's hot paths beside the reference implementations, in one run (issue 16).

Sections (each timed interleaved with its reference, median of ``--repeats`` runs, torch and
ONNX Runtime threads stated in the JSON):

* ``series_read``: a long 512x512 MR series (``--slices`` files, built from the real series
  ``../shared/data/dicom/brain_mr_study1/12-T1post-05670`` by repeating its slices along the
  normal, ``_speed_series.py``), native and JPEG 2000 lossless: ``read_study(..).load()`` vs
  SimpleITK's ``ImageSeriesReader`` (GDCM), and medsight's load with 1 thread.
* ``header_scan``: headers-only scan (``read_study``) of the same files, files per second.
* ``classifier``: the BreastMNIST zoo classifier's forward pass on 1,024 preprocessed images
  (train split, batch 256), torch vs ONNX Runtime (``medsight export`` into a temp copy).
* ``sliding_window``: the hippocampus zoo network on a ``--volume``^3 volume (a test case,
  prepared as the plan says, in the middle of a zero background, as a head crop sits in air):
  MONAI's ``sliding_window_inference`` with its defaults (overlap 0.25, constant weights,
  1 window a batch), MONAI with medsight's former settings (overlap 0.5, Gaussian, 4 a batch),
  medsight's ``sliding_window_logits`` (overlap 0.5, Gaussian, foreground crop, background
  windows run once, 8 a batch; torch and ONNX Runtime).  Plus the Dice of the zoo Segmenter
  with and without the crop on the hippocampus test cases (``segmentation_prepare.SPLIT``), as
  they are and embedded in a zero volume.
* ``analyze``: ``analyze`` of the hippocampus DICOM crop with the hippocampus package, in a
  fresh process, first call (cold) and second (warm), per stage.

Usage: ``python benchmarks/speed.py [--quick] [--sections series,analyze]``; writes
``benchmarks/results/speed.json`` (``speed_quick.json`` with ``--quick``: fewer slices, a
smaller volume, 1 repeat).  A run of some sections replaces only those in an existing file; each
section records when and under what load it was measured, and ``runs`` lists the partial runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

DATA = Path("../shared/data")
SERIES = DATA / "dicom/brain_mr_study1/12-T1post-05670"
HIPPO_DICOM = DATA / "dicom/brain_mr_study1/13_HCropVolume"
ZOO = Path(__file__).resolve().parents[1] / "src/medsight/zoo"


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict]:
    """Run each function once per round, in rotating order; median and all times."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            t = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t)
    return {k: {"median_s": statistics.median(v), "runs_s": v} for k, v in times.items()}


def _say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def series_read(tmp: Path, n_slices: int, repeats: int) -> dict:
    import SimpleITK as sitk
    from _speed_series import make_long_series

    import medsight.io.dicom.series as series_mod
    from medsight.io.study import read_study

    out: dict = {"slices": n_slices, "source": str(SERIES)}
    syntaxes = {"native": None, "jpeg2000_lossless": "1.2.840.10008.1.2.4.90"}
    for name, uid in syntaxes.items():
        folder = tmp / name
        try:
            make_long_series(SERIES, folder, n_slices, uid)
        except Exception as exc:  # no encoder installed for this syntax
            out[name] = {"skipped": f"cannot write {uid}: {exc}"}
            continue

        def medsight(folder=folder) -> object:
            return read_study(folder).series[0].dicom.load()

        def medsight_1thread(folder=folder, threads=series_mod.LOAD_THREADS) -> object:
            series_mod.LOAD_THREADS = 1
            try:
                return read_study(folder).series[0].dicom.load()
            finally:
                series_mod.LOAD_THREADS = threads

        def simpleitk(folder=folder) -> object:
            reader = sitk.ImageSeriesReader()
            reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
            return reader.Execute()

        study = read_study(folder)
        entry = study.series[0].dicom

        def load_only(entry=entry) -> object:
            return entry.load()

        ref = sitk.GetArrayFromImage(simpleitk())  # (k, j, i)
        mine = np.asarray(medsight().array)  # (i, j, k)
        same = bool(np.array_equal(np.transpose(mine, (2, 1, 0)), ref))
        res = _interleaved(
            {
                "medsight_scan_and_load": medsight,
                "medsight_load_only": load_only,
                "medsight_scan_and_load_1_thread": medsight_1thread,
                "simpleitk_series_reader": simpleitk,
            },
            repeats,
        )
        res["load_threads"] = series_mod.LOAD_THREADS
        res["same_pixels_as_simpleitk"] = same
        res["ratio_medsight_over_simpleitk"] = (
            res["medsight_scan_and_load"]["median_s"] / res["simpleitk_series_reader"]["median_s"]
        )
        out[name] = res
        _say(f"series {name}: {json.dumps({k: v for k, v in res.items() if 'ratio' in k})}")
    scan = _interleaved({"scan": lambda: read_study(tmp / "native")}, repeats)["scan"]
    out["header_scan"] = {
        "files": n_slices,
        "median_s": scan["median_s"],
        "files_per_s": n_slices / scan["median_s"],
    }
    return out


def classifier(tmp: Path, repeats: int, n: int = 1024) -> dict:
    import shutil

    import torch

    from medsight.data import load_dataset
    from medsight.inference.classify import Predictor
    from medsight.inference.onnx_backend import export_onnx

    pkg_dir = tmp / "breastmnist-smallcnn"
    shutil.copytree(ZOO / "breastmnist-smallcnn", pkg_dir)
    export_onnx(pkg_dir)
    ds = load_dataset(f"medmnist:{DATA / 'medmnist/breastmnist.npz'}")
    cases = [c for c in ds if c.split == "train"][:n]
    torch_pred = Predictor(pkg_dir, backend="torch")
    x = np.stack([torch_pred.preprocess(c.image()) for c in cases])
    while len(x) < n:  # fewer training images than asked: repeat them
        x = np.concatenate([x, x[: n - len(x)]])
    onnx_pred = Predictor(pkg_dir, backend="onnx")
    p_t, p_o = torch_pred.predict_arrays(x), onnx_pred.predict_arrays(x)
    res = _interleaved(
        {
            "torch": lambda: torch_pred.predict_arrays(x),
            "onnx": lambda: onnx_pred.predict_arrays(x),
        },
        repeats,
    )
    res["images"] = len(x)
    res["max_abs_prob_diff"] = float(np.abs(p_t - p_o).max())
    res["ratio_onnx_over_torch"] = res["onnx"]["median_s"] / res["torch"]["median_s"]
    res["torch_threads"] = torch.get_num_threads()
    return res


def _hippo_cases(n: int | None) -> list:
    from segmentation_prepare import SPLIT

    from medsight.data import load_dataset, make_splits

    ds = load_dataset(f"msd:{DATA / 'hippocampus'}")
    test = set(make_splits(ds, SPLIT).test)
    cases = [c for c in ds if c.case_id in test]
    return cases if n is None else cases[:n]


def _dice(pred: np.ndarray, ref: np.ndarray, label: int) -> float:
    a, b = pred == label, ref == label
    denom = a.sum() + b.sum()
    return float(2 * (a & b).sum() / denom) if denom else 1.0


def _embed(image, size: int):
    """The image in the middle of a ``size``^3 zero volume (same spacing, shifted origin)."""
    arr = np.asarray(image.array, dtype=np.float32)
    big = np.zeros((size, size, size), np.float32)
    off = [(size - s) // 2 for s in arr.shape]
    big[
        off[0] : off[0] + arr.shape[0],
        off[1] : off[1] + arr.shape[1],
        off[2] : off[2] + arr.shape[2],
    ] = arr
    affine = np.array(image.affine, dtype=np.float64)
    affine[:3, 3] -= affine[:3, :3] @ np.array(off, dtype=np.float64)
    from medsight.core.image import Image

    return Image(big, affine, spatial_ndim=3, modality=image.modality), off


def sliding_window(tmp: Path, size: int, repeats: int, n_dice: int | None, n_embed: int) -> dict:
    import shutil

    import torch
    from monai.inferers import sliding_window_inference

    from medsight.inference.onnx_backend import OnnxNetwork, export_onnx
    from medsight.inference.segment import Segmenter
    from medsight.inference.windows import sliding_window_logits
    from medsight.transforms.seg_plan import prepare_image

    pkg_dir = tmp / "hippocampus-dynunet"
    shutil.copytree(ZOO / "hippocampus-dynunet", pkg_dir)
    seg = Segmenter(pkg_dir, device="cpu", backend="torch")
    net, plan = seg.net, seg.plan
    roi = tuple(plan.patch_size)
    case = _hippo_cases(1)[0]
    prepared = prepare_image(case.image(), plan).array[0]
    vol = np.zeros((size, size, size), np.float32)
    s = [min(a, size) for a in prepared.shape]
    o = [(size - a) // 2 for a in s]
    vol[o[0] : o[0] + s[0], o[1] : o[1] + s[1], o[2] : o[2] + s[2]] = prepared[
        : s[0], : s[1], : s[2]
    ]
    x = torch.from_numpy(vol)[None, None]
    export_onnx(pkg_dir)
    from medsight.models.package import ModelPackage

    pkg = ModelPackage.load(pkg_dir)
    onnx_net = OnnxNetwork(pkg.path / pkg.spec.extra["backends"]["onnx"]["file"])

    def first(o):
        return o[0] if isinstance(o, (tuple, list)) else o

    def monai_default():
        with torch.no_grad():
            return first(sliding_window_inference(x, roi, 1, net))

    def monai_gaussian():
        with torch.no_grad():
            return first(sliding_window_inference(x, roi, 4, net, overlap=0.5, mode="gaussian"))

    def medsight_torch():
        return sliding_window_logits(net, x, roi, overlap=0.5, sw_batch_size=8)

    def medsight_onnx():
        return sliding_window_logits(onnx_net, x, roi, overlap=0.5, sw_batch_size=8)

    stats: dict = {}
    sliding_window_logits(net, x, roi, overlap=0.5, sw_batch_size=8, stats=stats)
    agree = {}
    ref = monai_gaussian().argmax(1)
    for name, fn in (("medsight_torch", medsight_torch), ("medsight_onnx", medsight_onnx)):
        agree[name] = float((fn().argmax(1) == ref).float().mean())
    _say(f"sliding window {size}^3: {stats}; timing {repeats} round(s)")
    res = _interleaved(
        {
            "monai_default": monai_default,
            "monai_overlap0.5_gaussian_batch4": monai_gaussian,
            "medsight_torch": medsight_torch,
            "medsight_onnx": medsight_onnx,
        },
        repeats,
    )
    base = res["monai_default"]["median_s"]
    res.update(
        volume=[size] * 3,
        patch=list(roi),
        windows=stats,
        voxel_label_agreement_with_monai_gaussian=agree,
        ratio_medsight_torch_over_monai_default=res["medsight_torch"]["median_s"] / base,
        ratio_medsight_onnx_over_monai_default=res["medsight_onnx"]["median_s"] / base,
        ratio_medsight_torch_over_monai_gaussian=res["medsight_torch"]["median_s"]
        / res["monai_overlap0.5_gaussian_batch4"]["median_s"],
        torch_threads=torch.get_num_threads(),
    )
    _say("sliding window: Dice with and without the crop")
    crop_seg = seg
    full_seg = Segmenter(pkg_dir, device="cpu", backend="torch", crop=False)
    rows = []
    for k, c in enumerate(_hippo_cases(n_dice)):
        img, ref_mask = c.image(), np.asarray(c.mask().array)
        row = {"case": c.case_id}
        variants = [("as_is", img, None)]
        if k < n_embed:
            big, off = _embed(img, max(96, max(img.shape) + max(roi)))
            variants.append(("embedded", big, off))
        for kind, im, off in variants:
            for name, sg in (("crop", crop_seg), ("no_crop", full_seg)):
                m = np.asarray(sg(im).mask.array)
                if off is not None:
                    sh = ref_mask.shape
                    m = m[off[0] : off[0] + sh[0], off[1] : off[1] + sh[1], off[2] : off[2] + sh[2]]
                row[f"{kind}/{name}"] = [_dice(m, ref_mask, lab) for lab in (1, 2)]
        rows.append(row)
    summary = {}
    for key in rows[0]:
        if key == "case":
            continue
        vals = [r[key] for r in rows if key in r]
        summary[key] = {
            "n": len(vals),
            "mean_dice_anterior": float(np.mean([v[0] for v in vals])),
            "mean_dice_posterior": float(np.mean([v[1] for v in vals])),
        }
    for kind in ("as_is", "embedded"):
        if f"{kind}/crop" in summary:
            summary[f"{kind}/max_abs_mean_dice_change"] = max(
                abs(summary[f"{kind}/crop"][m] - summary[f"{kind}/no_crop"][m])
                for m in ("mean_dice_anterior", "mean_dice_posterior")
            )
    res["dice_test_cases"] = summary
    res["dice_rows"] = rows
    return res


_ANALYZE = """
import json, sys, time
t0 = time.perf_counter()
from medsight.analysis.pipeline import analyze
from medsight.models.package import ModelPackage
imports = time.perf_counter() - t0
pkg = ModelPackage.load(sys.argv[3])
from medsight.inference.cache import clear
out = {}
# cold: first analysis in the process; warm: the next one, the built model reused from the
# model cache (as the service does); warm_rebuilt: the cache emptied first, the model built again
for run in ("cold", "warm", "warm_rebuilt"):
    if run == "warm_rebuilt":
        clear()
    r = analyze(sys.argv[1], sys.argv[2] + "/" + run, [pkg])
    out[run] = r.timings
print(json.dumps({"import_s": imports, **out}))
"""


def analyze_latency(tmp: Path) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _ANALYZE,
            str(HIPPO_DICOM),
            str(tmp),
            str(ZOO / "hippocampus-dynunet"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["input"] = str(HIPPO_DICOM)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer slices, a smaller volume")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument("--slices", type=int, default=None)
    ap.add_argument("--volume", type=int, default=None)
    ap.add_argument(
        "--sections",
        default="series,classifier,window,analyze",
        help="comma-separated subset of series, classifier, window, analyze",
    )
    a = ap.parse_args()
    import onnxruntime
    import SimpleITK
    import torch

    repeats = a.repeats or (1 if a.quick else 3)
    slices = a.slices or (60 if a.quick else 320)
    size = a.volume or (96 if a.quick else 160)
    n_dice, n_embed = (2, 1) if a.quick else (None, 6)
    # rough, for a quiet 2-core machine: series reads, sliding windows, Dice cases, analyze
    eta = 60 + slices * 0.05 * 4 * repeats + repeats * (size / 160) ** 3 * 70
    eta += (n_dice or 52) * 0.5 + n_embed * 15
    _say(f"speed benchmark, {'quick' if a.quick else 'full'}: ETA about {eta / 60:.0f} min")
    result: dict = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "python": platform.python_version(),
        },
        "threads": {
            "torch": torch.get_num_threads(),
            "onnxruntime_intra_op": torch.get_num_threads(),
        },
        "versions": {
            "torch": torch.__version__,
            "onnxruntime": onnxruntime.__version__,
            "SimpleITK": SimpleITK.Version_VersionString(),
        },
        "repeats": repeats,
        "quick": a.quick,
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sections = set(a.sections.split(","))
        result["sections"] = sorted(sections)
        if "series" in sections:
            _say("series read")
            result["series_read"] = series_read(tmp / "series", slices, repeats)
        if "classifier" in sections:
            _say("classifier torch vs onnx")
            result["classifier"] = classifier(tmp, repeats)
            _say(f"classifier: {result['classifier']['ratio_onnx_over_torch']:.3f} onnx/torch")
        if "window" in sections:
            _say("sliding window")
            result["sliding_window"] = sliding_window(tmp, size, repeats, n_dice, n_embed)
        if "analyze" in sections:
            _say("analyze cold / warm")
            result["analyze"] = analyze_latency(tmp / "analyze")
    result["wall_s"] = wall = time.perf_counter() - t_start
    result["machine"]["load_average_at_end"] = os.getloadavg()
    name = "speed_quick.json" if a.quick else "speed.json"
    out = Path(__file__).parent / "results" / name
    keys = {"series": "series_read", "classifier": "classifier", "window": "sliding_window"}
    measured = [keys.get(s, s) for s in sorted(sections)]
    for key in measured:  # each section says when and under what load it was measured
        result[key]["measured"] = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "load_average_at_start": result["machine"]["load_average_at_start"],
            "wall_s_of_the_run": result["wall_s"],
        }
    if out.is_file() and len(sections) < 4:  # a subset: the other sections stay as measured
        previous = json.loads(out.read_text())
        previous.update({k: result[k] for k in measured})
        previous.setdefault("runs", []).append(
            {k: result[k] for k in ("machine", "sections", "wall_s", "repeats", "versions")}
        )
        result = previous
    out.write_text(json.dumps(result, indent=1))
    _say(f"wrote {out} in {wall:.0f} s")


if __name__ == "__main__":
    main()

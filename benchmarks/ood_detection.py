"""How well the zoo's OOD gate separates in-distribution images from others.

For every zoo package with an OOD reference (``scripts/zoo_scope.py``: Mahalanobis distance on
the network's own features, means and covariance from the training split, threshold at a 5%
false-rejection rate on the validation split) this scores, through the same inference path as
``medsight analyze``:

* the package's **test** split (in-distribution, never used to fit or to set the threshold);
* out-of-distribution sets it was **not tuned on**: other modalities and body parts from
  ``../shared/data`` and images that ship with pydicom / scikit-image (colour photographs,
  colour Doppler ultrasound), each converted as the analysis would (colour to grey for a
  grey-scale model, single slices, crops for crop models);
* "near" sets reported apart (same modality, other source, e.g. adult chest X-rays for the
  paediatric pneumonia model; BUSI's lesion-free images for the BUSI lesion model): shift a
  user may or may not want flagged.

Reported per set: AUROC (in-distribution test vs the set; 1.0 = perfectly separated), the
share of the set withheld at the stored threshold (detection rate) and the share of the
in-distribution test split withheld (the real false-rejection rate).  At most ``--per-set``
images per set (seeded choice).  A histogram per package goes to ``results/ood_<name>.png``.

Usage: ``python benchmarks/ood_detection.py [DATA_ROOT] [--per-set 150]`` (default
``../shared/data``); writes ``benchmarks/results/ood_detection.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from zoo_scope import PACKAGES, split_cases  # noqa: E402

from medsight.core.image import Image  # noqa: E402
from medsight.io import read_image  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """P(score of an outside image > score of an inside one), ties counted half."""
    a, b = np.asarray(inside)[:, None], np.asarray(outside)[None, :]
    return float(np.mean((b > a) + 0.5 * (b == a)))


def _pick(items: list, n: int, seed: int = 0) -> list:
    if len(items) <= n:
        return items
    idx = np.random.default_rng(seed).choice(len(items), n, replace=False)
    return [items[i] for i in sorted(idx)]


def _grey(img: Image) -> Image:
    if not img.has_channels:
        return img
    arr = np.asarray(img.array, dtype=np.float32)
    if arr.shape[-1] >= 3:
        return img.with_array(arr[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32))
    return img.with_array(arr[..., 0])


def _rgb(img: Image) -> Image:
    img = _grey(img) if img.has_channels and img.n_channels != 3 else img
    if img.has_channels:
        return img
    arr = np.asarray(img.array, dtype=np.float32)
    return img.with_array(np.repeat(arr[..., None], 3, axis=-1))


def _two_d(img: Image) -> Image:
    if img.spatial_ndim == 3:
        k = img.shape[2] // 2
        arr = np.asarray(img.array)[:, :, k]
        return Image(arr, spatial_ndim=2, modality=img.modality)
    return img


def _crop3d(img: Image, size: int, seed: int) -> Image:
    arr = np.asarray(img.array, dtype=np.float32)
    if arr.ndim == 4:
        arr = arr[..., 0]
    rng = np.random.default_rng(seed)
    starts = [int(rng.integers(0, max(1, s - size))) for s in arr.shape[:3]]
    sl = tuple(slice(st, st + size) for st in starts)
    return Image(arr[sl], spacing=tuple(float(s) for s in img.spacing[:3]))


def _files(folder: Path, pattern: str, exclude: str = "_mask") -> list[Path]:
    return sorted(p for p in folder.glob(pattern) if exclude not in p.name)


def _skimage_colour(fundus: bool = True) -> list[Image]:
    import skimage.data as d

    names = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry"]
    out = []
    for name in [*names, "retina"] if fundus else names:
        arr = getattr(d, name)()
        out.append(Image(np.swapaxes(arr, 0, 1).astype(np.float32), spatial_ndim=2))
    return out


def _pydicom_colour_us() -> list[Image]:
    from pydicom.data import get_testdata_file

    out = []
    for name in ("examples_rgb_color.dcm", "examples_jpeg2k.dcm"):
        img = read_image(get_testdata_file(name, download=False))
        out.append(_two_d(img) if img.spatial_ndim == 3 and img.shape[2] == 1 else img)
    return out


def sets_for(name: str, data: Path, n: int) -> dict[str, tuple[str, list]]:
    """``{set name: (kind, lazy image list)}``; kind is "ood" or "near"."""
    mias = [
        lambda p=p: read_image(p)
        for p in _pick(_files(data / "mammography_mias/images", "*.png"), n)
    ]
    cxr = [lambda p=p: read_image(p) for p in _pick(_files(data / "covid_cxr/images", "*.jp*g"), n)]
    busi_normal = [
        lambda p=p: read_image(p) for p in _pick(_files(data / "busi/normal", "*.png"), n)
    ]
    busi_lesion = [
        lambda p=p: read_image(p)
        for p in _pick(
            _files(data / "busi/benign", "*.png") + _files(data / "busi/malignant", "*.png"), n
        )
    ]
    hippo = [
        lambda p=p: read_image(p)
        for p in _pick(sorted((data / "hippocampus/imagesTr").glob("*.nii*")), n)
    ]

    def medmnist(other: str) -> list:
        cases = split_cases("medmnist", f"medmnist/{other}.npz")["test"]
        return [c.image for c in _pick(cases, n)]

    brain = sorted((data / "ms_longitudinal/patient01").glob("study*_*.nii.gz"))
    if name in ("breastmnist-smallcnn", "pneumoniamnist-smallcnn"):
        sets = {
            "mammograms (MIAS)": ("ood", [lambda f=f: _grey(f()) for f in mias]),
            "brain MR slices (hippocampus crops)": (
                "ood",
                [lambda f=f: _two_d(f()) for f in hippo],
            ),
            "colour photographs (scikit-image), as grey": (
                "ood",
                [lambda im=im: _grey(im) for im in _skimage_colour()],
            ),
            "RetinaMNIST fundus test, as grey": (
                "ood",
                [lambda f=f: _grey(f()) for f in medmnist("retinamnist")],
            ),
        }
        if name == "breastmnist-smallcnn":
            sets["PneumoniaMNIST chest X-ray test"] = ("ood", medmnist("pneumoniamnist"))
            sets["chest X-rays (COVID-19 collection)"] = (
                "ood",
                [lambda f=f: _grey(f()) for f in cxr],
            )
            sets["BUSI full-resolution (BreastMNIST's source)"] = ("near", busi_lesion)
        else:
            sets["BreastMNIST ultrasound test"] = ("ood", medmnist("breastmnist"))
            sets["BUSI breast ultrasound"] = ("ood", busi_lesion)
            sets["adult chest X-rays (COVID-19 collection)"] = (
                "near",
                [lambda f=f: _grey(f()) for f in cxr],
            )
        return sets
    if name == "retinamnist-smallcnn":
        return {
            "colour photographs (scikit-image, not its fundus)": (
                "ood",
                [lambda im=im: im for im in _skimage_colour(fundus=False)],
            ),
            "colour Doppler ultrasound (pydicom)": (
                "ood",
                [lambda im=im: im for im in _pydicom_colour_us()],
            ),
            "BreastMNIST ultrasound test, as RGB": (
                "ood",
                [lambda f=f: _rgb(f()) for f in medmnist("breastmnist")],
            ),
            "PneumoniaMNIST chest X-ray test, as RGB": (
                "ood",
                [lambda f=f: _rgb(f()) for f in medmnist("pneumoniamnist")],
            ),
            "mammograms (MIAS), as RGB": ("ood", [lambda f=f: _rgb(f()) for f in mias]),
        }
    if name == "adrenalmnist3d-smallcnn":
        return {
            "brain MR crops (hippocampus)": ("ood", hippo),
            "brain MR volumes (MS longitudinal)": (
                "ood",
                [lambda p=p: read_image(p) for p in brain],
            ),
        }
    if name == "hippocampus-dynunet":
        return {
            "adrenal CT volumes (AdrenalMNIST3D test)": ("ood", medmnist("adrenalmnist3d")),
            "brain MR crops away from the hippocampus (MS FLAIR/T1/T2)": (
                "near",
                [lambda p=p, k=k: _crop3d(read_image(p), 40, k) for k, p in enumerate(brain * 5)],
            ),
        }
    if name == "busi-lesion-dynunet":
        return {
            "mammograms (MIAS)": ("ood", [lambda f=f: _grey(f()) for f in mias]),
            "chest X-rays (COVID-19 collection)": ("ood", [lambda f=f: _grey(f()) for f in cxr]),
            "fundus photograph and colour photos (scikit-image), as grey": (
                "ood",
                [lambda im=im: _grey(im) for im in _skimage_colour()],
            ),
            "BUSI lesion-free images (same source, no lesion)": ("near", busi_normal),
        }
    return {}


def _plot(name: str, scores: dict[str, np.ndarray], threshold: float) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    every = np.concatenate(list(scores.values()))
    lo = max(float(every[every > 0].min()) if np.any(every > 0) else 1e-3, 1e-3) * 0.9
    hi = max(float(every.max()), threshold) * 1.1
    bins = np.geomspace(lo, hi, 60)
    for label, s in scores.items():
        ax.hist(np.clip(s, lo, hi), bins=bins, alpha=0.5, label=label, histtype="stepfilled")
    ax.set_xscale("log")
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3g}")
    ax.set_xlabel("OOD score (Mahalanobis distance on the network's features, log scale)")
    ax.set_ylabel("images")
    ax.set_title(name)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = RESULTS / f"ood_{name}.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return str(out.relative_to(ROOT))


def main() -> int:
    from medsight.inference.features import package_features
    from medsight.models.ood import OodReference
    from medsight.models.package import ModelPackage
    from medsight.training.plan import register_segmentation_networks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--per-set", type=int, default=150)
    parser.add_argument("--only")
    args = parser.parse_args()
    data = Path(args.data)
    register_segmentation_networks()
    results = []
    started = time.time()
    for name, (kind, rel, _grey_only) in PACKAGES.items():
        if args.only and name != args.only:
            continue
        t0 = time.time()
        folder = ROOT / "src" / "medsight" / "zoo" / name
        package = ModelPackage.load(folder)
        ref = OodReference.load(folder, package.spec.extra["ood"])
        test = _pick(split_cases(kind, rel)["test"], args.per_set)
        inside = ref.score(package_features(package, (c.image() for c in test)))
        row = {
            "package": name,
            "threshold": ref.threshold,
            "in_distribution": {
                "set": "test split",
                "n": len(inside),
                "withheld": float(np.mean(inside > ref.threshold)),
            },
            "sets": [],
        }
        scores = {"in-distribution test": inside}
        for label, (how, lazy) in sets_for(name, data, args.per_set).items():
            s = ref.score(package_features(package, (f() for f in lazy)))
            scores[label] = s
            row["sets"].append(
                {
                    "set": label,
                    "kind": how,
                    "n": len(s),
                    "auroc": auroc(inside, s),
                    "withheld": float(np.mean(s > ref.threshold)),
                }
            )
            print(
                f"{name}: {label}: AUROC {row['sets'][-1]['auroc']:.3f}, withheld "
                f"{row['sets'][-1]['withheld']:.0%} (n={len(s)})",
                flush=True,
            )
        row["plot"] = _plot(name, scores, ref.threshold)
        row["seconds"] = round(time.time() - t0, 1)
        print(
            f"{name}: in-distribution test withheld {row['in_distribution']['withheld']:.1%}"
            f" ({row['seconds']} s)",
            flush=True,
        )
        results.append(row)
    out = {
        "benchmark": "ood_detection",
        "method": "Mahalanobis distance on network features, shared Ledoit-Wolf covariance, "
        "per-class means (classifiers); threshold at 5% false rejection on validation",
        "per_set_max": args.per_set,
        "seed": 0,
        "hardware": f"{platform.processor() or platform.machine()}, CPU only",
        "seconds": round(time.time() - started, 1),
        "packages": results,
    }
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / ("ood_detection.json" if not args.only else f"ood_{args.only}.json")
    target.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

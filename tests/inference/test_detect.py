"""`Detector`: a detection package on Images, boxes back in the input's index space."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsight.core.errors import InvalidInputError
from medsight.core.findings import Region
from medsight.core.image import Image
from medsight.inference.detect import Detector, boxes_to_regions, regions_to_boxes


def _discs(root, n, seed, size=64):
    """PNGs with one bright disc (none in every 4th) as COCO; the discs' centres."""
    from PIL import Image as P

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    jj, ii = np.mgrid[0:size, 0:size]
    images, anns, centres = [], [], []
    for k in range(n):
        arr = rng.normal(40, 8, (size, size))
        centre = None
        if k % 4 != 3:
            cx, cy = rng.uniform(14, size - 14, 2)
            r = rng.uniform(5, 8)
            arr[(ii - cx) ** 2 + (jj - cy) ** 2 <= r * r] += 150
            bbox = [cx - r + 0.5, cy - r + 0.5, 2 * r, 2 * r]
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": 1, "bbox": bbox})
            centre = (cx, cy)
        P.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(root / f"im{k}.png")
        images.append({"id": k + 1, "file_name": f"im{k}.png", "patient_id": f"p{k // 2}"})
        centres.append((np.clip(arr, 0, 255).astype(np.uint8).T, centre))  # (i, j) axes
    coco = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "disc"}]}
    (root / "annotations.json").write_text(json.dumps(coco))
    return root / "annotations.json", centres


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    from medsight.training.detect import DetectConfig, train_detector

    root = tmp_path_factory.mktemp("det")
    coco, _ = _discs(root / "data", 24, seed=0)
    cfg = DetectConfig(
        data=f"coco:{coco}",
        out=root / "run",
        steps=40,
        val_every=20,
        block_inplanes=[8, 16, 32],
        fpn_channels=16,
        device="cpu",
        threads=1,
        lr=2e-3,
    )
    return Detector(train_detector(cfg, log=lambda s: None).path, device="cpu")


def test_boxes_and_regions_are_inverse():
    regions = [Region((4.5, 9.5), (10.0, 4.0)), Region((100.0, 3.0), (7.0, 2.0))]
    scale = [0.25, 0.5]
    back = boxes_to_regions(regions_to_boxes(regions, scale), scale, (200, 30))
    for a, b in zip(regions, back, strict=True):
        assert np.allclose(a.center, b.center) and np.allclose(a.size, b.size)
    # a box reaching past the image is clipped to its edge (pixel 0's outer edge is -0.5)
    (clipped,) = boxes_to_regions(np.array([[-4.0, 2.0, 6.0, 8.0]]), [1.0, 1.0], (5, 5))
    assert clipped.box == ((-0.5, 1.5), (4.5, 4.5))


def test_detector_finds_an_obvious_disc_near_its_centre(detector, tmp_path):
    _, fresh = _discs(tmp_path, 8, seed=7)  # images no training step saw
    near, top_with, top_without = 0, [], []
    for arr, centre in fresh:
        found = detector.detect(Image(arr, spatial_ndim=2))
        assert [d.score for d in found] == sorted((d.score for d in found), reverse=True)
        for d in found:
            lo, hi = d.region.box
            assert all(-0.5 <= a <= b <= 63.5 for a, b in zip(lo, hi, strict=True))
            assert 0 <= d.score <= 1 and d.label == 0
        best = found[0].score if found else 0.0
        if centre is None:
            top_without.append(best)
            continue
        top_with.append(best)
        near += bool(found) and np.hypot(*np.subtract(found[0].region.center, centre)) <= 4.0
    assert near >= len(top_with) - 1  # the top detection sits on the disc
    assert min(top_with) > max(top_without)  # a disc scores above anything in an empty image
    assert detector.labels == ["disc"] and 0 < detector.threshold <= 1


def test_detector_refuses_what_it_cannot_read(detector):
    with pytest.raises(InvalidInputError, match="3D"):
        detector.detect(Image(np.zeros((8, 8, 8)), spatial_ndim=3))
    with pytest.raises(InvalidInputError, match="not a detector"):
        Detector("src/medsight/zoo/mr-denoiser-unet", device="cpu")


def test_min_score_and_resized_input_map_back(detector):
    """A 128 x 128 input is resized to the package's 64 x 64 and the boxes scaled back."""
    ii, jj = np.mgrid[0:128, 0:128]  # Image axes: i (column), j (row)
    noisy = np.random.default_rng(3).normal(40, 8, (128, 128))
    arr = np.clip(np.where((ii - 80) ** 2 + (jj - 40) ** 2 <= 13**2, noisy + 150, noisy), 0, 255)
    found = detector.detect(Image(arr.astype(np.uint8), spatial_ndim=2))
    assert found and np.hypot(found[0].region.center[0] - 80, found[0].region.center[1] - 40) <= 8
    assert 12 <= found[0].region.size[0] <= 48  # about the disc's 26 px, in input pixels
    cut = found[0].score - 1e-4
    kept = detector.detect(Image(arr.astype(np.uint8), spatial_ndim=2), min_score=cut)
    assert kept and all(d.score >= cut for d in kept)
    assert len(kept) == sum(d.score >= cut for d in found)


def test_zoo_mass_detector_runs_on_a_mammogram(shared_data):
    """The zoo's mini-MIAS package loads, keeps its 512 x 512 input's index space and scores."""
    from medsight.data import load_dataset
    from medsight.models.zoo import zoo_folders

    folder = next(f / "mammo-mass-detector" for f in zoo_folders())
    det = Detector(folder, device="cpu")
    assert det.labels == ["mass"] and det.package.spec.input.modalities == ["MG"]
    ds = load_dataset(f"mias:{shared_data / 'mammography_mias'}?classes=CIRC,SPIC,MISC&merge=mass")
    image = ds.case("mdb001").image()
    found = det.detect(image)
    assert found and all(0 <= d.score <= 1 for d in found)
    for d in found:
        lo, hi = d.region.box
        assert all(-0.5 <= a <= b <= 511.5 for a, b in zip(lo, hi, strict=True))

"""Occlusion on demand: hide (or keep only) a drawn region, re-run the classifier, compare.

The region is drawn in the image's index space, ``(i, j)`` on slice ``k`` for a volume (the
viewer shows slice ``k`` with rows ``j`` and columns ``i``): a half-open box
``[i0, j0, i1, j1]`` or a polygon of ``[i, j]`` vertices.  ``mode="occlude"`` fills the region,
``"keep"`` fills everything else; the fill is the image mean (per channel), zero, or a strong
Gaussian blur of the image (what is there, without its detail).

The classifier runs on the original and on the changed image through
:func:`medsight.analysis.runners.run_package`, the analysis' own gate: when the changed image
falls outside the model's intended use or its training data (the OOD check), the answer is
*withheld* with the model's reasons, never a number.  On demand, MONAI's
``OcclusionSensitivity`` map of the original image (:func:`medsight.explain.explain_classifier`)
comes back as a PNG.

An occluded image is not like the images the model learnt from (a flat or blurred patch is an
edit no scanner makes), so a moved probability says what the output depends on, not what the
finding would be without that region.  Every answer carries that :data:`CAVEAT`, the OOD
score of the original and of the changed image against the package's threshold (when the
package has an OOD reference: the same Mahalanobis score that would withhold the answer), and
per reported label whether the decision at the operating threshold flips.

Examples
--------
>>> region_mask((6, 4), Region(box=[1, 0, 3, 2])).astype(int).T
array([[0, 1, 1, 0, 0, 0],
       [0, 1, 1, 0, 0, 0],
       [0, 0, 0, 0, 0, 0],
       [0, 0, 0, 0, 0, 0]])
"""

from __future__ import annotations

import base64
import io
from enum import StrEnum
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field, model_validator

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.models.package import ModelPackage
from medsight.service.whatif.source import JobImage, check_index

__all__ = [
    "CAVEAT",
    "Fill",
    "Mode",
    "OcclusionQuery",
    "Region",
    "occlude",
    "region_mask",
    "run_occlusion",
]

#: Said with every occlusion answer: the edited image is outside what the model was trained on.
CAVEAT = (
    "An occluded image is unlike the images the model was trained on (no scanner makes a "
    "flat or blurred patch), so the change shows what the model's output depends on, not what "
    "the finding would be without that region."
)


class Mode(StrEnum):
    """Hide the region, or keep only the region."""

    OCCLUDE = "occlude"
    KEEP = "keep"


class Fill(StrEnum):
    """What replaces the hidden pixels."""

    MEAN = "mean"
    ZERO = "zero"
    BLUR = "blur"


class Region(BaseModel):
    """A box ``[i0, j0, i1, j1]`` (half-open) or a polygon ``[[i, j], ...]`` on slice ``slice``."""

    box: list[int] | None = Field(None, min_length=4, max_length=4)
    polygon: list[list[float]] | None = Field(None, min_length=3, max_length=1000)
    slice: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_shape(self) -> Region:
        if (self.box is None) == (self.polygon is None):
            raise ValueError("give exactly one of box or polygon")
        if self.polygon is not None and any(len(p) != 2 for p in self.polygon):
            raise ValueError("polygon vertices are [i, j] pairs")
        return self


class OcclusionQuery(BaseModel):
    """The body of ``POST /api/jobs/{job}/whatif/occlusion``."""

    package: str | None = Field(None, description="package id (name@version)")
    finding: int | None = Field(None, ge=0, description="index of a finding of the report")
    region: Region
    mode: Mode = Mode.OCCLUDE
    fill: Fill = Fill.MEAN
    sensitivity_map: bool = Field(False, description="also return MONAI's occlusion map (PNG)")


def region_mask(shape: tuple[int, int], region: Region) -> NDArray[np.bool_]:
    """The region as a boolean ``(i, j)`` mask of ``shape``; an empty region is refused."""
    mask = np.zeros(shape, dtype=bool)
    if region.box is not None:
        i0, j0, i1, j1 = region.box
        if i1 <= i0 or j1 <= j0:
            raise InvalidInputError("region.box", f"{region.box} is empty (need i0 < i1, j0 < j1)")
        mask[max(i0, 0) : max(i1, 0), max(j0, 0) : max(j1, 0)] = True
    else:
        from skimage.draw import polygon

        pts = np.asarray(region.polygon, dtype=float)
        rr, cc = polygon(pts[:, 0], pts[:, 1], shape=shape)
        mask[rr, cc] = True
    if not mask.any():
        raise InvalidInputError("region", f"covers no pixel of the {shape[0]}x{shape[1]} image")
    return mask


def _spatial_mask(image: Image, region: Region) -> NDArray[np.bool_]:
    shape = image.shape[: image.spatial_ndim]
    plane = region_mask((shape[0], shape[1]), region)
    if image.spatial_ndim == 2:
        check_index("region.slice", region.slice, 1)
        return plane
    full = np.zeros(shape, dtype=bool)
    full[:, :, check_index("region.slice", region.slice, shape[2])] = plane
    return full


def occlude(image: Image, region: Region, mode: Mode | str, fill: Fill | str) -> Image:
    """``image`` with the region (``occlude``) or everything else (``keep``) filled."""
    mode, fill = Mode(mode), Fill(fill)
    arr = np.asarray(image.array, dtype=np.float32)
    inside = _spatial_mask(image, region)
    hide = inside if mode is Mode.OCCLUDE else ~inside
    spatial = tuple(range(image.spatial_ndim))
    if fill is Fill.ZERO:
        filler = np.zeros_like(arr)
    elif fill is Fill.MEAN:
        filler = np.broadcast_to(arr.mean(axis=spatial, keepdims=True), arr.shape)
    else:
        from scipy.ndimage import gaussian_filter

        sigma = max(2.0, min(image.shape[:2]) / 16)
        sigmas = [sigma, sigma] + [0.0] * (arr.ndim - 2)  # in-plane only
        filler = gaussian_filter(arr, sigma=sigmas, mode="nearest")
    out = arr.copy()
    out[hide] = filler[hide]
    return image.with_array(out)


def _as_2d(image: Image) -> Image:
    arr = np.asarray(image.array)
    return image.with_array(arr[:, :, 0], spatial_ndim=2)


def _summary(output: Any) -> dict[str, Any]:
    return {
        "withheld": list(output.withheld),
        "probabilities": dict(output.probabilities),
        "ood_score": output.ood_score,
        "ood_threshold": output.ood_threshold,
        "findings": [
            {
                "label": f.finding.meaning,
                "code": f"{f.finding.scheme}:{f.finding.value}",
                "probability": f.probability,
                "positive": f.positive,
                # the operating threshold for this label, where the finding carries one
                "threshold": getattr(f, "threshold", None),
            }
            for f in output.findings
        ],
    }


def _decisions(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Per label reported on both images: the decision before and after, and whether it flips."""
    changed = {f["code"]: f for f in after["findings"]}
    out = []
    for f in before["findings"]:
        g = changed.get(f["code"])
        if g is None:
            continue
        out.append(
            {
                "label": f["label"],
                "code": f["code"],
                "threshold": f["threshold"] if f["threshold"] is not None else g["threshold"],
                "before": f["positive"],
                "after": g["positive"],
                "flipped": f["positive"] != g["positive"],
            }
        )
    return out


def _ood(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    """The OOD scores of both images against the package's threshold (None: no reference)."""
    threshold = after["ood_threshold"]
    threshold = before["ood_threshold"] if threshold is None else threshold
    if threshold is None:
        return None
    score = after["ood_score"]
    return {
        "original": before["ood_score"],
        "changed": score,
        "threshold": threshold,
        "changed_over_threshold": score is not None and score > threshold,
    }


def _heat_png(heat: NDArray[Any]) -> str:
    """A red, half-transparent overlay (rows j, columns i) as base64 PNG."""
    from PIL import Image as PILImage

    plane = np.clip(np.asarray(heat, dtype=np.float32).T, 0, 1)
    rgba = np.zeros((*plane.shape, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[..., 1] = (80 * (1 - plane)).astype(np.uint8)
    rgba[..., 3] = (200 * plane).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(rgba).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def sensitivity_map(package: ModelPackage, image: Image, class_index: int, k: int) -> str:
    """MONAI's occlusion-sensitivity map of ``image`` for ``class_index``, slice ``k``, PNG."""
    import torch

    from medsight.explain import explain_classifier
    from medsight.inference.cache import cached_model
    from medsight.inference.classify import Predictor

    predictor = cached_model(Predictor, package)
    work = image
    if image.spatial_ndim == 3 and package.spec.input.spatial_ndim == 2 and image.shape[2] == 1:
        work = _as_2d(image)
    x = torch.from_numpy(np.ascontiguousarray(predictor.preprocess(work)))[None]
    heat = explain_classifier(predictor.network, x, work, class_index, method="occlusion")
    arr = np.asarray(heat.array)
    return _heat_png(arr if arr.ndim == 2 else arr[:, :, k])


def run_occlusion(package: ModelPackage, source: JobImage, query: OcclusionQuery) -> dict[str, Any]:
    """Original and changed outputs of ``package``, their difference, and the map on demand.

    ``difference`` (changed minus original probability, per label) is None when either answer
    is withheld; ``abstained`` then says so and ``message`` gives the model's reasons.
    """
    from medsight.analysis.runners import run_package
    from medsight.families import family_for

    if family_for(package.spec.task).name != "classification":
        raise InvalidInputError(
            f"model {package.id}",
            f"is a {package.spec.task.value} model; occlusion re-runs classification models",
        )
    image = source.image
    changed = occlude(image, query.region, query.mode, query.fill)
    touched = int(np.count_nonzero(np.asarray(changed.array) != np.asarray(image.array)))
    kw: dict[str, Any] = {"explain": False, "header": source.header}
    before = _summary(run_package(package, image, **kw))
    after = _summary(run_package(package, changed, **kw))
    abstained = bool(before["withheld"] or after["withheld"])
    difference = None
    message = ""
    if abstained:
        which = after["withheld"] or before["withheld"]
        side = "changed" if after["withheld"] else "original"
        message = f"the model withholds its answer on the {side} image: {'; '.join(which)}"
    else:
        difference = {
            name: after["probabilities"][name] - p for name, p in before["probabilities"].items()
        }
    result: dict[str, Any] = {
        "package": package.id,
        "series": source.series,
        "mode": Mode(query.mode).value,
        "fill": Fill(query.fill).value,
        "changed_pixels": touched,
        "original": before,
        "changed": after,
        "difference": difference,
        "abstained": abstained,
        "message": message,
        "caveat": CAVEAT,
        "ood": _ood(before, after),
        "decisions": [] if abstained else _decisions(before, after),
        "sensitivity_map_png": None,
    }
    if query.sensitivity_map and not before["withheld"]:
        from medsight.analysis.output import label_code

        codes = {}
        for lab in package.spec.labels:
            code = label_code(lab, package)
            codes[f"{code.scheme}:{code.value}"] = lab.index
        first = before["findings"][0]["code"] if before["findings"] else None
        index = codes.get(first, max(codes.values())) if first else max(codes.values())
        result["sensitivity_map_png"] = sensitivity_map(package, image, index, query.region.slice)
        result["sensitivity_map_class"] = index
    return result

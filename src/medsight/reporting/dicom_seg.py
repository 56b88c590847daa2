"""DICOM Segmentation objects (binary SEG) from a label mask on a DICOM series, with highdicom.

A source without patient geometry (no Frame of Reference, Pixel Spacing or orientation: a
photograph, an uncalibrated ultrasound, a PNG converted to DICOM) gets a SEG without Pixel
Measures, Plane Orientation and Plane Position functional groups, as the SEG IOD allows: no
spacing or orientation is invented.  OHIF 3.12 cannot load such a SEG (it reads both groups
unconditionally); an empty Pixel Measures item would satisfy dciodvfy and OHIF's first read
but not highdicom's reader (it requires Pixel Spacing there) nor OHIF's orientation check, so
the service does not offer such a SEG to OHIF instead (:mod:`medsight.service.viewer.ohif`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from medsight import __version__
from medsight.core.codes import (
    ABNORMAL_STRUCTURE,
    ANATOMICAL_STRUCTURE,
    ARTIFICIAL_INTELLIGENCE,
    LESION,
    LOCAL_SCHEME,
    MASS,
    NEOPLASM,
    Code,
)
from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.models.spec import LabelSpec
from medsight.reporting.coding_schemes import declare_coding_schemes
from medsight.reporting.sources import check_same_grid, source_datasets

if TYPE_CHECKING:
    from highdicom.color import CIELabColor
    from highdicom.seg import Segmentation
    from highdicom.sr import CodedConcept

__all__ = ["build_segmentation", "hd_code", "segment_category", "segment_numbers"]

_ABNORMAL = {LESION, MASS, NEOPLASM}


def hd_code(code: Code) -> CodedConcept:
    """medsight Code -> highdicom CodedConcept."""
    from highdicom.sr import CodedConcept

    return CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def segment_category(label: LabelSpec) -> Code:
    """The CID 7150 category of a label: given, or abnormal for lesions, else anatomy.

    Examples
    --------
    >>> from medsight.core.codes import LESION
    >>> segment_category(LabelSpec(index=1, name="lesion", code=LESION)).value
    '49755003'
    """
    if label.category is not None:
        return label.category
    return ABNORMAL_STRUCTURE if label.code in _ABNORMAL else ANATOMICAL_STRUCTURE


def _lab_color(rgb: tuple[int, int, int]) -> CIELabColor:
    from highdicom.color import CIELabColor
    from skimage.color import rgb2lab

    lab = rgb2lab(np.asarray(rgb, dtype=float).reshape(1, 1, 3) / 255.0)[0, 0]
    return CIELabColor(float(lab[0]), float(lab[1]), float(lab[2]))


def build_segmentation(
    mask: Image,
    image: Image,
    labels: Sequence[LabelSpec],
    *,
    algorithm_name: str,
    algorithm_version: str,
    series_number: int = 901,
    series_description: str = "medsight AI segmentation",
) -> Segmentation:
    """A DICOM SEG of every non-zero label of ``mask`` referencing ``image``'s source files.

    Parameters
    ----------
    mask : Image
        Integer label map on exactly the grid of ``image`` (values are label indices).
    image : Image
        The DICOM series the mask was predicted on (read with :func:`medsight.io.read_image`).
    labels : sequence of LabelSpec
        Label index -> name, coded type, colour; index 0 (background) is skipped.

    Raises
    ------
    InvalidInputError
        The mask is off-grid, non-integer, has values without a label, or the image has no
        DICOM source.
    """
    import highdicom as hd

    check_same_grid(mask, image)
    arr = np.asarray(mask.array)
    if arr.dtype.kind not in "iub":
        raise InvalidInputError("mask", f"must hold integer labels, not {arr.dtype}")
    by_index = {lab.index: lab for lab in labels if lab.index > 0}
    present = sorted(int(v) for v in np.unique(arr) if v > 0)
    unknown = [v for v in present if v not in by_index]
    if unknown:
        raise InvalidInputError("mask", f"values {unknown} have no label in the model")
    datasets = source_datasets(image)
    # (i, j, k) -> (k, rows, columns): one frame per slice, in the Image's slice order
    frames = np.transpose(arr, (2, 1, 0)) if mask.spatial_ndim == 3 else arr.T[np.newaxis]
    multiframe = len(datasets) == 1 and int(datasets[0].get("NumberOfFrames", 1) or 1) > 1
    if not multiframe and len(datasets) != frames.shape[0]:
        raise InvalidInputError("mask", "slices do not correspond one to one with source files")
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name,
        family=hd_code(ARTIFICIAL_INTELLIGENCE),
        version=algorithm_version,
    )
    descriptions = []
    numbers = segment_numbers(labels)
    indices = sorted(numbers, key=numbers.__getitem__)
    for index in indices:
        lab, number = by_index[index], numbers[index]
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=lab.name,
                segmented_property_category=hd_code(segment_category(lab)),
                segmented_property_type=hd_code(
                    lab.code or Code(f"label-{index}", LOCAL_SCHEME, lab.name)
                ),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                display_color=_lab_color(lab.color) if lab.color else None,
            )
        )
    # one-hot in segment order; segment numbers are 1..n even when label indices are not
    onehot = np.stack([(frames == index) for index in indices], axis=-1).astype(np.uint8)
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=onehot,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medsight",
        manufacturer_model_name=algorithm_name,
        software_versions=f"medsight {__version__}",
        device_serial_number="0",
        series_description=series_description,
        omit_empty_frames=False,
        content_label="MEDSIGHT",
        content_description=f"{algorithm_name} {algorithm_version}"[:64],
    )
    if "PatientOrientation" not in seg and "ImageOrientationPatient" not in datasets[0]:
        # A source without patient coordinates (ultrasound, photograph): General Image's
        # Patient Orientation is type 2C; copy it, or state it as unknown (empty).
        seg.PatientOrientation = datasets[0].get("PatientOrientation", "")
    return declare_coding_schemes(seg)  # an uncoded label's 99MEDSIGHT code is declared


def segment_numbers(labels: Sequence[LabelSpec]) -> dict[int, int]:
    """Label index -> SEG segment number, as :func:`build_segmentation` assigns them."""
    return {
        lab.index: n
        for n, lab in enumerate(
            sorted((lab for lab in labels if lab.index > 0), key=lambda lab: lab.index), start=1
        )
    }

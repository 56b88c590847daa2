"""Image regions of detection findings in a TID 1500 Measurement Report (highdicom).

A detection finding's :class:`~medsight.core.findings.Region` (index space of its image)
becomes, with its measurements, the score and a present / absent evaluation:

* **2D**: a TID 1501 group in the layout that the cornerstone3D adapters (OHIF's measurement
  tracking) rehydrate, so OHIF lists the box, circle or ellipse in its measurement panel
  (:func:`cornerstone_region`): Tracking Identifier ``Cornerstone3DTools@^0.1.0:`` plus the
  tool (``RectangleROI``, ``CircleROI``, ``EllipticalROI``), the finding's own Tracking Unique
  Identifier, and first the tool's geometric NUMs in dcmjs' TID 300 order (a box and a circle:
  Perimeter, Area, and Radius for a circle; an ellipse: Area), the first of them INFERRED FROM
  the region's SCOORD on the source instance, then the finding's measurements, its score and
  evaluation.  The SCOORD is a closed 5-point ``POLYLINE`` for a box (top-left, top-right,
  bottom-right, bottom-left, top-left), a ``CIRCLE`` (centre, a point on the circle) for a
  circle on square pixels, else an ``ELLIPSE`` (the longer axis' end points first, in mm).
  Points are DICOM pixel coordinates ``(column, row)`` with the top-left corner of the
  top-left pixel at ``(0, 0)`` (PS3.3 C.18.6.1), so the centre of voxel index ``(i, j)`` is
  ``(i + 0.5, j + 0.5)``.  Perimeter, area and radius are in mm from the instance's Pixel
  Spacing; an instance without one (or a region of no extent) gets the plain TID 1410 Planar
  ROI group with the same SCOORD instead, since no unit is guessed (OHIF then draws it in the
  SR viewport but does not list it).
* **3D**: a Volumetric ROI group (TID 1411) with an SCOORD3D volume surface in patient
  coordinates (LPS mm, through the image's affine) and its frame of reference: an
  ``ELLIPSOID`` for an ellipsoid, and for a box the two ``POLYGON`` faces at its lower and upper
  slice edges (a box without depth: a Planar ROI with one ``POLYGON``).

A segmentation finding on a single image also gets Planar ROI groups outlining its segment
(closed ``POLYLINE`` SCOORDs from the SEG's frame, :func:`segment_outline_groups`), since
viewers such as OHIF draw only measurements that carry spatial coordinates.

A segmentation finding also gets its long axis (RECIST style, :func:`long_axis_group`): the
longest in-plane diameter (maximum Feret diameter, mm) of its largest connected part on the
SEG frame of largest area, as a TID 1501 group holding one ``Length`` NUM (SCT 410668003, mm)
INFERRED FROM the diameter's two-point ``POLYLINE`` SCOORD on the source instance: the layout
dcmjs (TID 300) writes and OHIF's measurement panel lists.  Its Tracking Identifier is
:data:`CORNERSTONE_LENGTH`, the cornerstone interoperability convention (OHIF / cornerstone3D
adapters pick the tool that rehydrates a group by this text, ``Cornerstone3DTools@^0.1.0:``
plus the tool name), and it has its own Tracking Unique Identifier (OHIF merges groups that
share one).

Examples
--------
>>> from medsight.core.findings import Region
>>> pixel_outline(Region((10, 20), (4, 4), "ellipse"))[1].tolist()
[[10.5, 20.5], [12.5, 20.5]]
>>> pixel_outline(Region((10, 20), (4, 2)))[1][:2].tolist()
[[8.5, 19.5], [12.5, 19.5]]
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pydicom.dataset import Dataset

from medsight.core.errors import InvalidInputError
from medsight.core.findings import Finding, Region

__all__ = [
    "CORNERSTONE_CIRCLE",
    "CORNERSTONE_ELLIPSE",
    "CORNERSTONE_LENGTH",
    "CORNERSTONE_RECTANGLE",
    "ToolRegion",
    "cornerstone_region",
    "feret_diameter",
    "long_axis_group",
    "pixel_outline",
    "region_group",
    "segment_outline_groups",
    "segment_outlines",
    "world_outline",
]


def pixel_outline(region: Region) -> tuple[str, NDArray[np.float64]]:
    """``(graphic type, (column, row) points)`` of a 2D region in DICOM pixel coordinates."""
    if region.ndim != 2:
        raise InvalidInputError("region", f"is {region.ndim}D; an SCOORD outline needs 2D")
    cx, cy = region.center[0] + 0.5, region.center[1] + 0.5
    w, h = region.size
    if region.shape == "ellipse":
        if np.isclose(w, h):
            return "CIRCLE", np.array([[cx, cy], [cx + w / 2, cy]])
        major = [[cx - w / 2, cy], [cx + w / 2, cy]]
        minor = [[cx, cy - h / 2], [cx, cy + h / 2]]
        return "ELLIPSE", np.array(major + minor if w > h else minor + major)
    x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
    return "POLYLINE", np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])


@dataclasses.dataclass(frozen=True)
class ToolRegion:
    """A 2D region as a cornerstone tool's SR content: what :func:`cornerstone_region` gives.

    ``measures`` are ``(concept, value, unit)`` with concepts and units as ``(code value,
    scheme, meaning)``, in the order dcmjs writes them (the first one holds the SCOORD).
    """

    tracking_identifier: str
    graphic_type: str
    points: NDArray[np.float64]
    measures: tuple[tuple[tuple[str, str, str], float, tuple[str, str, str]], ...]


def cornerstone_region(region: Region, spacing: Sequence[float]) -> ToolRegion:
    """The cornerstone tool, SCOORD and geometric NUMs of a 2D region (module docstring).

    ``spacing`` is DICOM Pixel Spacing ``(row spacing, column spacing)`` in mm.  A circle on
    anisotropic pixels is an ellipse in mm, so it becomes an ``EllipticalROI``.

    Raises
    ------
    InvalidInputError
        The region is not 2D, has no extent along an axis, or the spacing is not two
        positive values.

    Examples
    --------
    >>> box = cornerstone_region(Region((10, 20), (4, 2)), (0.5, 1.0))
    >>> box.tracking_identifier, box.graphic_type
    ('Cornerstone3DTools@^0.1.0:RectangleROI', 'POLYLINE')
    >>> box.points[:3].tolist()
    [[8.5, 19.5], [12.5, 19.5], [12.5, 21.5]]
    >>> [(name[2], value, unit[0]) for name, value, unit in box.measures]
    [('Perimeter', 10.0, 'mm'), ('Area', 4.0, 'mm2')]
    >>> oval = cornerstone_region(Region((10, 20), (6, 6), "ellipse"), (0.5, 1.0))
    >>> oval.tracking_identifier  # a circle in pixels, 6 mm across and 3 mm down
    'Cornerstone3DTools@^0.1.0:EllipticalROI'
    >>> oval.points.tolist()  # the longer axis (across) first
    [[7.5, 20.5], [13.5, 20.5], [10.5, 17.5], [10.5, 23.5]]
    """
    if region.ndim != 2:
        raise InvalidInputError("region", f"is {region.ndim}D; an SCOORD needs 2D")
    if len(spacing) != 2 or min(float(v) for v in spacing) <= 0:
        raise InvalidInputError("Pixel Spacing", f"{list(spacing)} is not two positive values")
    if min(region.size) <= 0:
        raise InvalidInputError("region", f"size {region.size} has no extent to measure")
    row_mm, col_mm = (float(v) for v in spacing)
    cx, cy = region.center[0] + 0.5, region.center[1] + 0.5
    w, h = region.size
    wm, hm = w * col_mm, h * row_mm  # extent in mm along columns and rows
    if region.shape == "box":
        x0, x1, y0, y1 = cx - w / 2, cx + w / 2, cy - h / 2, cy + h / 2
        points = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
        measures = ((_PERIMETER, 2 * (wm + hm), _MM), (_AREA, wm * hm, _MM2))
        return ToolRegion(CORNERSTONE_RECTANGLE, "POLYLINE", np.array(points), _rounded(measures))
    if math.isclose(w, h) and math.isclose(row_mm, col_mm):
        r = wm / 2
        measures = (
            (_PERIMETER, 2 * math.pi * r, _MM),
            (_AREA, math.pi * r * r, _MM2),
            (_RADIUS, r, _MM),
        )
        points = [[cx, cy], [cx + w / 2, cy]]
        return ToolRegion(CORNERSTONE_CIRCLE, "CIRCLE", np.array(points), _rounded(measures))
    across = [[cx - w / 2, cy], [cx + w / 2, cy]]
    down = [[cx, cy - h / 2], [cx, cy + h / 2]]
    points = across + down if wm >= hm else down + across  # the longer axis (mm) first
    measures = ((_AREA, math.pi * wm * hm / 4, _MM2),)
    return ToolRegion(CORNERSTONE_ELLIPSE, "ELLIPSE", np.array(points), _rounded(measures))


def _rounded(measures: Any) -> Any:
    return tuple((name, round(float(value), 2), unit) for name, value, unit in measures)


def _world(affine: NDArray[np.float64], points: ArrayLike) -> NDArray[np.float64]:
    p = np.asarray(points, dtype=np.float64)
    return (affine[:3, :3] @ p.T).T + affine[:3, 3]


def world_outline(region: Region, affine: ArrayLike) -> tuple[str, list[NDArray[np.float64]]]:
    """``(graphic type, [points (n, 3)])`` of a 3D region in patient coordinates (mm).

    An ellipsoid gives one ``ELLIPSOID`` (its three axes' end points, longest axis first); a
    box its lower and upper ``POLYGON`` faces along ``k`` (one polygon when it has no depth).

    Examples
    --------
    >>> g, faces = world_outline(Region((1, 1, 1), (2, 2, 2)), np.diag([2.0, 2.0, 3.0, 1.0]))
    >>> g, len(faces), faces[0][0].tolist(), faces[1][0].tolist()
    ('POLYGON', 2, [0.0, 0.0, 0.0], [0.0, 0.0, 6.0])
    """
    a = np.asarray(affine, dtype=np.float64)
    if region.ndim != 3:
        raise InvalidInputError("region", f"is {region.ndim}D; an SCOORD3D surface needs 3D")
    c, s = np.asarray(region.center), np.asarray(region.size)
    if region.shape == "ellipse" and np.all(s > 0):
        axes = []
        for d in range(3):
            step = np.zeros(3)
            step[d] = s[d] / 2
            ends = _world(a, [c - step, c + step])
            axes.append((float(np.linalg.norm(ends[1] - ends[0])), ends))
        axes.sort(key=lambda t: -t[0])
        return "ELLIPSOID", [np.vstack([ends for _, ends in axes])]
    lo, hi = c - s / 2, c + s / 2
    corners = [[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]], [lo[0], lo[1]]]
    faces = [lo[2], hi[2]] if s[2] > 0 else [c[2]]
    return "POLYGON", [_world(a, [[i, j, k] for i, j in corners]) for k in faces]


def region_group(
    finding: Finding,
    *,
    tracking: Any,
    sites: Sequence[Any] | None,
    algorithm: Any,
    measurements: Sequence[Any],
    evaluations: Sequence[Any] | None,
    source: Sequence[Dataset],
    affine: ArrayLike | None,
    finding_type: Any,
) -> Any:
    """The TID 1410 / 1411 measurement group of one detection finding (module docstring).

    Raises
    ------
    InvalidInputError
        The finding has no region; a 3D region without the image's affine or a frame of
        reference.
    """
    import highdicom as hd

    region = finding.region
    if region is None:
        raise InvalidInputError(f"finding {finding.finding.meaning}", "has no image region")
    common = {
        "tracking_identifier": tracking,
        "finding_type": finding_type,
        "algorithm_id": algorithm,
        "finding_sites": sites,
        "measurements": list(measurements) or None,
        "qualitative_evaluations": evaluations,
    }
    if region.ndim == 2:
        frames = finding.source.frame_numbers[:1] if finding.source else ()
        image = hd.sr.SourceImageForRegion.from_source_image(
            source[0], referenced_frame_numbers=list(frames) or None
        )
        spacing = source[0].get("PixelSpacing") or _frame_spacing(source[0], (*frames, 1)[0])
        measurable = (
            spacing is not None
            and len(spacing) == 2
            and min(float(v) for v in spacing) > 0
            and min(region.size) > 0
        )
        if measurable:
            return _tool_group(
                cornerstone_region(region, [float(v) for v in spacing]), image, common
            )
        graphic, points = pixel_outline(region)  # no mm to give: the plain TID 1410 group
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_region=hd.sr.ImageRegion(graphic, points, image), **common
        )
    frame_of_reference = getattr(source[0], "FrameOfReferenceUID", None) or (
        finding.source.frame_of_reference_uid if finding.source else None
    )
    if affine is None or not frame_of_reference:
        raise InvalidInputError(
            f"finding {finding.finding.meaning}",
            "a 3D region needs the image's affine and a frame of reference for SCOORD3D",
        )
    graphic, surfaces = world_outline(region, affine)
    if graphic == "POLYGON" and len(surfaces) == 1:
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_region=hd.sr.ImageRegion3D(graphic, surfaces[0], str(frame_of_reference)),
            **common,
        )
    surface = hd.sr.VolumeSurface(
        graphic_type=graphic,
        graphic_data=surfaces if graphic == "POLYGON" else surfaces[0],
        frame_of_reference_uid=str(frame_of_reference),
        source_series=hd.sr.SourceSeriesForSegmentation(source[0].SeriesInstanceUID),
    )
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        referenced_volume_surface=surface, **common
    )


def _tool_group(shape: ToolRegion, image: Any, common: dict[str, Any]) -> Any:
    """The TID 1501 group of a cornerstone tool region (module docstring): geometric NUMs
    first, the first INFERRED FROM the SCOORD, then the finding's own content."""
    import highdicom as hd

    region = hd.sr.ImageRegion(shape.graphic_type, shape.points, image)
    region.RelationshipType = "INFERRED FROM"  # TID 300 row 8 (TID 320): the NUM's source
    geometric = [
        hd.sr.Measurement(
            name=hd.sr.CodedConcept(*name), value=value, unit=hd.sr.CodedConcept(*unit)
        )
        for name, value, unit in shape.measures
    ]
    # the SCOORD is the first NUM's only content item (cornerstone's adapters read the group's
    # first NUM and the SCOORD in it; long_axis_group has the same layout)
    geometric[0][0].ContentSequence = hd.sr.ContentSequence([region])
    tracking = common["tracking_identifier"]
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_tracking_uid(tracking), identifier=shape.tracking_identifier
        ),
        finding_type=common["finding_type"],
        algorithm_id=common["algorithm_id"],
        finding_sites=common["finding_sites"],
        measurements=geometric + list(common["measurements"] or []),
        qualitative_evaluations=common["qualitative_evaluations"],
    )


def _tracking_uid(tracking: Any) -> str:
    """The Tracking Unique Identifier (DCM 112040) of a highdicom TrackingIdentifier."""
    for item in tracking:
        if item.ConceptNameCodeSequence[0].CodeValue == "112040":
            return str(item.UID)
    raise InvalidInputError("tracking identifier", "has no Tracking Unique Identifier")


def segment_outlines(mask: ArrayLike) -> list[NDArray[np.float64]]:
    """Closed outlines, in DICOM pixel coordinates ``(column, row)``, of a 2D mask's parts.

    ``mask`` is one frame indexed ``[row, column]`` (as a SEG frame's pixels); each connected
    part (holes filled) gives the iso-line at 0.5 between its pixel centres and the rest,
    first point repeated last, largest part first.

    Examples
    --------
    >>> m = np.zeros((5, 6), bool); m[1:3, 2:5] = True
    >>> o = segment_outlines(m)[0]
    >>> o.min(axis=0).tolist(), o.max(axis=0).tolist(), bool((o[0] == o[-1]).all())
    ([2.0, 1.0], [5.0, 3.0], True)
    """
    from scipy import ndimage
    from skimage.measure import find_contours

    parts, n = ndimage.label(np.asarray(mask) > 0)
    outlines = []
    for part in range(1, n + 1):
        filled = ndimage.binary_fill_holes(parts == part)
        # pad so that parts touching the frame's edge close too; (row, col) -> (col, row)
        lines = find_contours(np.pad(filled, 1).astype(np.float64), 0.5)
        line = max(lines, key=len)[:, ::-1] - 1.0 + 0.5
        outlines.append((int(filled.sum()), line))
    outlines.sort(key=lambda t: -t[0])
    return [line for _, line in outlines]


def segment_outline_groups(
    *,
    segmentation: Dataset,
    segment_number: int,
    source: Sequence[Dataset],
    tracking_uid: str,
    tracking_id: str,
    algorithm: Any,
    finding_type: Any,
) -> list[Any]:
    """TID 1410 groups outlining a segment of a single-image SEG on its source image.

    Viewers that draw TID 1500 measurements from spatial coordinates (OHIF's SR viewport
    draws SCOORDs only) cannot read a segment reference; these Planar ROI
    groups, one per connected part of the segment, give its outline as a closed ``POLYLINE``
    SCOORD on the source image and share the finding's Tracking Unique Identifier, so they
    describe the same finding as its TID 1411 group (which keeps the measurements).  A segment
    whose frames lie on more than one source frame (a volume) gets none: an outline on one
    slice would not stand for it.
    """
    import highdicom as hd

    frames = _segment_frames(segmentation, segment_number)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in source}
    if len(frames) != 1 or next(iter(frames))[0] not in by_uid:
        return []
    ((uid, frame), index), *_ = frames.items()
    mask = _frame_mask(segmentation, index)
    multiframe = int(by_uid[uid].get("NumberOfFrames", 1)) > 1
    groups = []
    for line in segment_outlines(mask):
        image = hd.sr.SourceImageForRegion.from_source_image(
            by_uid[uid], referenced_frame_numbers=[frame] if multiframe else None
        )
        groups.append(
            hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
                tracking_identifier=hd.sr.TrackingIdentifier(
                    uid=tracking_uid, identifier=tracking_id
                ),
                referenced_region=hd.sr.ImageRegion("POLYLINE", line, image),
                finding_type=finding_type,
                algorithm_id=algorithm,
            )
        )
    return groups


#: Tracking Identifier of a length measurement in the cornerstone interoperability convention:
#: OHIF's cornerstone-dicom-sr extension rehydrates (lists in its measurement panel) only groups
#: whose identifier an adapter of @cornerstonejs/adapters claims, ``Cornerstone3DTools@^0.1.0:``
#: plus the tool name (adapters/Cornerstone3D/BaseAdapter3D.js, isValidCornerstoneTracking-
#: Identifier; MeasurementReport.getAdapterForTrackingIdentifier).
CORNERSTONE_LENGTH = "Cornerstone3DTools@^0.1.0:Length"
#: Tracking Identifiers of cornerstone's rectangle, circle and ellipse tools (their adapters in
#: @cornerstonejs/adapters, Cornerstone3D/RectangleROI.js, CircleROI.js, EllipticalROI.js, as
#: bundled by OHIF 3.12): the SR layouts dcmjs' TID300 Polyline, Circle and Ellipse write.
CORNERSTONE_RECTANGLE = "Cornerstone3DTools@^0.1.0:RectangleROI"
CORNERSTONE_CIRCLE = "Cornerstone3DTools@^0.1.0:CircleROI"
CORNERSTONE_ELLIPSE = "Cornerstone3DTools@^0.1.0:EllipticalROI"

#: SNOMED CT concepts and UCUM units of dcmjs' MeasurementBuilder (TID 300 NUMs).
_PERIMETER = ("131191004", "SCT", "Perimeter")
_AREA = ("42798000", "SCT", "Area")
_RADIUS = ("131190003", "SCT", "Radius")
_MM = ("mm", "UCUM", "millimeter")
_MM2 = ("mm2", "UCUM", "square millimeter")

#: SNOMED CT "Length" (the concept cornerstone's Length tool and TID 300 use for a distance).
_LENGTH = ("410668003", "SCT", "Length")


def _functional_group(ds: Dataset, item: Dataset | None, name: str) -> Any:
    """Functional group ``name`` of a per-frame ``item``, else the shared one, else
    ``[Dataset()]``."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    return (item.get(name) if item is not None else None) or shared.get(name) or [Dataset()]


def _segment_frames(segmentation: Dataset, segment_number: int) -> dict[tuple[str, int], int]:
    """``(source SOP instance UID, source frame) -> SEG frame index`` of one segment's frames
    that derive from exactly one source frame."""
    frames: dict[tuple[str, int], int] = {}
    for n, item in enumerate(segmentation.get("PerFrameFunctionalGroupsSequence", [])):
        ident = _functional_group(segmentation, item, "SegmentIdentificationSequence")
        number = ident[0].get("ReferencedSegmentNumber")
        derivation = _functional_group(segmentation, item, "DerivationImageSequence")
        refs = derivation[0].get("SourceImageSequence") or []
        if number is None or int(number) != int(segment_number) or len(refs) != 1:
            continue
        ref = refs[0]
        key = (str(ref.ReferencedSOPInstanceUID), int(ref.get("ReferencedFrameNumber", 1)))
        frames[key] = n
    return frames


def _frame_mask(segmentation: Dataset, index: int) -> NDArray[np.bool_]:
    """The boolean mask ``[row, column]`` of SEG frame ``index`` (a fractional one at 50 %)."""
    pixels = segmentation.pixel_array
    mask = pixels if pixels.ndim == 2 else pixels[index]
    if segmentation.get("SegmentationType") == "FRACTIONAL":
        return np.asarray(mask > int(segmentation.MaximumFractionalValue) / 2)
    return np.asarray(mask) > 0


def feret_diameter(
    mask: ArrayLike, spacing: Sequence[float]
) -> tuple[float, NDArray[np.float64]] | None:
    """Maximum Feret diameter (mm) of a 2D mask and its two end points in pixel coordinates.

    ``mask`` is indexed ``[row, column]`` and ``spacing`` is DICOM Pixel Spacing ``(row
    spacing, column spacing)`` in mm.  The diameter is the longest distance between two points
    of the pixels' union (the caliper length across the lesion's extent): the largest distance,
    with columns scaled by the column spacing and rows by the row spacing, between two vertices
    of the convex hull of the pixels' corners.  The end points are ``(column, row)`` DICOM pixel
    coordinates (top-left corner of the top-left pixel at ``(0, 0)``).  ``None`` for an empty
    mask.  (skimage's ``regionprops(...).feret_diameter_max`` measures the hull of the
    iso-contour through the edge mid-points instead, which cuts the corners, and is isotropic.)

    Examples
    --------
    >>> m = np.zeros((6, 12), bool); m[1:5, 1:11] = True  # 4 rows x 10 columns
    >>> length, ends = feret_diameter(m, (2.0, 0.5))  # rows 2 mm apart, columns 0.5 mm
    >>> round(length, 6), sorted(ends.tolist())
    (9.433981, [[1.0, 1.0], [11.0, 5.0]])
    """
    from scipy.spatial import ConvexHull, QhullError

    rows, cols = np.nonzero(np.asarray(mask) > 0)
    if rows.size == 0:
        return None
    corners = np.unique(
        np.concatenate(
            [np.stack([cols + dc, rows + dr], axis=1) for dc in (0, 1) for dr in (0, 1)]
        ),
        axis=0,
    ).astype(np.float64)
    try:
        points = corners[ConvexHull(corners).vertices]
    except QhullError:  # cannot happen for unit squares' corners; keep all points then
        points = corners
    scale = np.array([float(spacing[1]), float(spacing[0])])
    mm = points * scale
    d = np.linalg.norm(mm[:, None, :] - mm[None, :, :], axis=2)
    a, b = np.unravel_index(int(np.argmax(d)), d.shape)
    return float(d[a, b]), np.array([points[a], points[b]])


def long_axis_group(
    *,
    segmentation: Dataset,
    segment_number: int,
    source: Sequence[Dataset],
    algorithm: Any,
    finding_type: Any,
    finding_sites: Sequence[Any] | None = None,
) -> Any | None:
    """The long-axis (longest in-plane diameter) group of a segment, or ``None``.

    On the SEG frame where the segment covers the most pixels, the largest connected part's
    maximum Feret diameter (:func:`feret_diameter`, with the source instance's Pixel Spacing)
    becomes a TID 1501 group (module docstring) with a ``Length`` NUM in mm, INFERRED FROM the
    diameter's two-point ``POLYLINE`` on that source instance (and frame).  Withheld
    (``None``) when the segment is empty, its frames do not each come from one known source
    instance, or that instance has no Pixel Spacing (no unit is guessed).
    """
    import highdicom as hd
    from scipy import ndimage

    frames = _segment_frames(segmentation, segment_number)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in source}
    best: tuple[int, tuple[str, int], NDArray[np.bool_]] | None = None
    for key, index in frames.items():
        if key[0] not in by_uid:
            return None
        mask = _frame_mask(segmentation, index)
        area = int(mask.sum())
        if area and (best is None or area > best[0]):
            best = (area, key, mask)
    if best is None:
        return None
    _, (uid, frame), mask = best
    image = by_uid[uid]
    spacing = image.get("PixelSpacing") or _frame_spacing(image, frame)
    if not spacing or len(spacing) != 2 or min(float(v) for v in spacing) <= 0:
        return None
    parts, n = ndimage.label(mask)
    sizes = ndimage.sum(mask, parts, index=range(1, n + 1))
    largest = parts == 1 + int(np.argmax(sizes))
    measured = feret_diameter(largest, [float(v) for v in spacing])
    if measured is None:
        return None
    length, ends = measured
    multiframe = int(image.get("NumberOfFrames", 1)) > 1
    region = hd.sr.ImageRegion(
        "POLYLINE",
        ends,
        hd.sr.SourceImageForRegion.from_source_image(
            image, referenced_frame_numbers=[frame] if multiframe else None
        ),
    )
    region.RelationshipType = "INFERRED FROM"  # TID 300 row 8 (TID 320): the NUM's source
    measurement = hd.sr.Measurement(
        name=hd.sr.CodedConcept(*_LENGTH),
        value=round(length, 2),
        unit=hd.sr.CodedConcept("mm", "UCUM", "millimeter"),
    )
    # the SCOORD is the NUM's only content item: OHIF reads a NUM's spatial reference through
    # dcmjs' single-item sequence accessors (NUM.ContentSequence.ValueType), so the algorithm
    # identification stays on the group, not on the NUM
    measurement[0].ContentSequence = hd.sr.ContentSequence([region])
    return hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=CORNERSTONE_LENGTH),
        finding_type=finding_type,
        algorithm_id=algorithm,
        finding_sites=finding_sites,
        measurements=[measurement],
    )


def _frame_spacing(image: Dataset, frame: int) -> Any:
    """Pixel Spacing of one frame of an enhanced (multi-frame) instance, or ``None``."""
    per_frame = image.get("PerFrameFunctionalGroupsSequence") or []
    item = per_frame[frame - 1] if len(per_frame) >= frame else None
    return _functional_group(image, item, "PixelMeasuresSequence")[0].get("PixelSpacing")

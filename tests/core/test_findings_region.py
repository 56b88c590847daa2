"""Finding regions (detection) and the kinds a finding may have."""

import pytest

from medsight.core.codes import NEOPLASM
from medsight.core.errors import InvalidInputError
from medsight.core.findings import Finding, FindingKind, Region


def test_region_box_and_ellipse_containment():
    box = Region((10, 10, 5), (4, 4, 2))
    assert box.ndim == 3
    assert box.contains((12, 8, 6)) and not box.contains((12.5, 10, 5))
    circle = Region((0, 0), (10, 10), shape="ellipse")
    assert circle.contains((3, 3)) and not circle.contains(
        (4, 4)
    )  # corner of the box, not the circle


@pytest.mark.parametrize(
    ("center", "size", "shape"),
    [
        ((1, 2), (1, 2, 3), "box"),
        ((1,), (1,), "box"),
        ((1, 2), (-1, 2), "box"),
        ((1, 2), (1, 2), "x"),
    ],
)
def test_region_refuses_bad_geometry(center, size, shape):
    with pytest.raises(InvalidInputError):
        Region(center, size, shape)


def test_detection_finding_present_unless_below_threshold():
    r = Region((5, 5), (2, 2))
    assert Finding(
        NEOPLASM, "m", "1", kind=FindingKind.DETECTION, region=r, probability=0.7
    ).present
    below = Finding(NEOPLASM, "m", "1", kind="detection", region=r, probability=0.2, positive=False)
    assert not below.present
    assert not Finding(NEOPLASM, "m", "1", kind=FindingKind.RISK, probability=0.4).present

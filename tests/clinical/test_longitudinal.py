"""Longitudinal comparison: identity and date checks, registration quality, change and the
RECIST-style category, on a synthetic growth of a real hippocampus (MSD Task04) and on the two
real visits of an MS patient (Lesjak et al. 2016) checked against the data set's own transforms.
"""

from __future__ import annotations

import dataclasses
import datetime
import math

import numpy as np
import pytest

from medsight.clinical.longitudinal import (
    LabelInfo,
    Response,
    StudyIdentity,
    check_prior,
    compare_masks,
    doubling_time_days,
    recist_category,
    register,
)
from medsight.core.codes import LESION
from medsight.core.errors import InvalidInputError
from medsight.core.image import Image

from .synthetic_growth import grow, rotation

LABELS = [LabelInfo(1, "lesion", LESION, lesion=True)]
DAYS = 180.0


# --- pure rules -------------------------------------------------------------------------------


def test_doubling_time_is_defined_for_growth_only():
    # V(t) = V0 2^(t / DT): from 1 to 4 mL in 200 days is two doublings -> DT 100 days
    assert doubling_time_days(1.0, 4.0, 200.0) == pytest.approx(100.0)
    assert doubling_time_days(1.0, 1.3, 180.0) == pytest.approx(180 * math.log(2) / math.log(1.3))
    assert doubling_time_days(2.0, 2.0, 100.0) is None  # unchanged: never divide by zero
    assert doubling_time_days(2.0, 1.0, 100.0) is None  # shrinking
    assert doubling_time_days(0.0, 1.0, 100.0) is None  # absent at prior
    assert doubling_time_days(1.0, 2.0, 0.0) is None


@pytest.mark.parametrize(
    ("prior", "current", "new", "expected"),
    [
        (50.0, 60.0, 0, Response.PD),  # +20 % and +10 mm
        (20.0, 24.5, 0, Response.SD),  # +22.5 % but only +4.5 mm: not PD (RECIST 1.1 5 mm)
        (50.0, 35.0, 0, Response.PR),  # -30 %
        (50.0, 36.0, 0, Response.SD),  # -28 %
        (50.0, 0.0, 0, Response.CR),
        (50.0, 30.0, 1, Response.PD),  # a new lesion is progression whatever the sum
        (0.0, 12.0, 0, Response.PD),  # nothing before, something now
    ],
)
def test_recist_style_thresholds(prior, current, new, expected):
    assert recist_category(prior, current, new) is expected


def _identity(**changes):
    base = StudyIdentity(
        "current", "P1", "DOE^JANE", "19600101", datetime.date(2024, 7, 1), "1.2.3"
    )
    return dataclasses.replace(base, **changes)


def test_same_patient_and_earlier_prior_is_accepted():
    prior = _identity(label="prior", study_date=datetime.date(2024, 1, 1))
    assert check_prior(_identity(), dataclasses.replace(prior, patient_name="doe jane")) == []


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"patient_id": "P2"}, "PatientID"),
        ({"patient_name": "ROE^JOHN"}, "names differ"),
        ({"birth_date": "19610101"}, "birth date"),
        ({"patient_id": ""}, "no PatientID"),
    ],
)
def test_another_patient_is_refused_unless_overridden(changes, reason):
    prior = _identity(label="prior", study_date=datetime.date(2024, 1, 1), **changes)
    with pytest.raises(InvalidInputError, match=f"not the same patient.*{reason}"):
        check_prior(_identity(), prior)
    (warning,) = check_prior(_identity(), prior, allow_identity_mismatch=True)
    assert "overridden" in warning and reason in warning


@pytest.mark.parametrize("date", [datetime.date(2024, 7, 1), datetime.date(2025, 1, 1), None])
def test_prior_not_earlier_is_refused_even_with_the_override(date):
    prior = _identity(label="prior", study_date=date)
    with pytest.raises(InvalidInputError, match=r"not earlier|no StudyDate"):
        check_prior(_identity(), prior, allow_identity_mismatch=True)


# --- synthetic growth of a real structure -------------------------------------------------------


@pytest.fixture(scope="module")
def hippocampus(shared_data):
    from medsight.io import read_image

    folder = shared_data / "hippocampus"
    image = read_image(folder / "imagesTr" / "hippocampus_001.nii.gz")
    label = read_image(folder / "labelsTr" / "hippocampus_001.nii.gz")
    mask = label.with_array((np.asarray(label.array) > 0).astype(np.uint8))
    return image.with_array(np.asarray(image.array, np.float32)), mask


MOTION = (rotation(2, 5.0), np.array([2.0, -1.5, 1.0]))  # 5 degrees about S, 2.7 mm


def _rotation_error_deg(transform, truth) -> float:
    m = np.asarray(transform.GetMatrix()).reshape(3, 3)
    return float(np.rad2deg(np.arccos(np.clip((np.trace(m @ truth.T) - 1) / 2, -1, 1))))


@pytest.mark.parametrize(
    ("factor", "category"),
    [(1.3, Response.SD), (0.7, Response.SD)],  # diameters +9 % / -11 %: stable by RECIST
)
def test_known_volume_change_and_rigid_motion_are_recovered(hippocampus, factor, category):
    image, mask = hippocampus
    current, current_mask = grow(image, mask, factor, *MOTION)
    reg = register(current, image, shrink=(2, 1), iterations=50)
    assert reg.ok, reg.problem
    # the rigid motion: current -> prior points is q = R (p - centre) + centre + t
    assert _rotation_error_deg(reg.transform, MOTION[0]) < 2.0
    probe = np.array([[0.0, 0.0, 0.0], [20.0, 30.0, 20.0]]) + image.origin
    centre = (np.asarray(image.shape) - 1) / 2 @ image.affine[:3, :3].T + image.affine[:3, 3]
    truth = (probe - centre) @ MOTION[0].T + centre + MOTION[1]
    assert np.linalg.norm(reg.to_prior(probe) - truth, axis=1).max() < 2.0  # mm
    (change,) = compare_masks(current_mask, mask, reg, LABELS, DAYS)
    # the warp changes the volume by `factor`; nearest-neighbour resampling of the mask adds
    # a voxel-level error (a few percent on ~3000 voxels)
    assert change.percent == pytest.approx(100 * (factor - 1), abs=4.0)
    assert change.prior_size == pytest.approx(float(np.count_nonzero(mask.array)) / 1000)
    assert change.category is category and change.new_lesions == 0
    if factor > 1:
        expected = doubling_time_days(1.0, factor, DAYS)
        assert change.doubling_time == pytest.approx(expected, rel=0.15)
        assert change.row()["doubling_time"].endswith("days")
    else:
        assert change.doubling_time is None and change.row()["doubling_time"] == "not defined"


@pytest.fixture(scope="module")
def grown(hippocampus):
    image, mask = hippocampus
    current, current_mask = grow(image, mask, 1.3, *MOTION)
    return current, current_mask, register(current, image, shrink=(2, 1), iterations=50)


def test_a_new_lesion_is_progression(hippocampus, grown):
    _image, mask = hippocampus
    _current, current_mask, reg = grown
    arr = np.asarray(current_mask.array).copy()
    arr[1:4, 1:4, 1:4] = 1  # a 27-voxel lesion far from the tracked one
    (change,) = compare_masks(current_mask.with_array(arr), mask, reg, LABELS, DAYS)
    assert change.new_lesions == 1 and change.category is Response.PD


def test_a_vanished_lesion_is_complete_response(hippocampus, grown):
    _image, mask = hippocampus
    _current, current_mask, reg = grown
    empty = current_mask.with_array(np.zeros(current_mask.shape, np.uint8))
    (change,) = compare_masks(empty, mask, reg, LABELS, DAYS)
    assert change.category is Response.CR and change.percent == pytest.approx(-100.0)


def test_an_unrelated_prior_fails_registration(hippocampus):
    from scipy import ndimage

    image, mask = hippocampus
    noise = ndimage.gaussian_filter(np.random.default_rng(0).normal(size=image.shape), 3)
    unrelated = image.with_array((200 + 100 * noise).astype(np.float32))
    reg = register(image, unrelated, shrink=(2, 1), iterations=50)
    assert not reg.ok and "entropy correlation" in reg.problem
    with pytest.raises(InvalidInputError, match=r"registration.*failed"):
        compare_masks(mask, mask, reg, LABELS, DAYS)


# --- the two real visits of one MS patient ------------------------------------------------------


def test_ms_visits_register_like_the_data_sets_transforms(shared_data):
    """Visit 1 registered onto visit 2 (FLAIR, both in scanner space) against the supplied ITK
    transforms to the common space: point error and Dice of the brain mask carried both ways."""
    import SimpleITK as sitk

    folder = shared_data / "ms_longitudinal" / "patient01"

    def load(name):  # 4x in-plane downsampling (2.9 x 2.9 x 3-4 mm) keeps this to seconds
        return sitk.Shrink(sitk.ReadImage(str(folder / name), sitk.sitkFloat32), [4, 4, 1])

    visit1, visit2 = load("study1_FLAIR.nii.gz"), load("study2_FLAIR.nii.gz")
    to_common1 = sitk.ReadTransform(str(folder / "study1_FLAIR_to_common_space.txt"))
    to_common2 = sitk.ReadTransform(str(folder / "study2_FLAIR_to_common_space.txt"))
    reg = register(Image.from_sitk(visit2), Image.from_sitk(visit1), shrink=(2, 1), iterations=60)
    assert reg.ok, reg.problem
    brain = sitk.ReadImage(str(folder / "brainmask.nii.gz"))
    near = sitk.sitkNearestNeighbor
    # the supplied transforms map common-space points to each visit: brain mask in each visit
    brain2 = sitk.Resample(brain, visit2, to_common2.GetInverse(), near, 0)
    brain1 = sitk.Resample(brain, visit1, to_common1.GetInverse(), near, 0)
    inside = np.argwhere(sitk.GetArrayFromImage(brain2))[::20, ::-1]
    points = np.array([brain2.TransformIndexToPhysicalPoint([int(v) for v in i]) for i in inside])
    truth = np.array(
        [to_common1.TransformPoint(to_common2.GetInverse().TransformPoint(p)) for p in points]
    )
    error = np.linalg.norm(reg.to_prior(points) - truth, axis=1)
    unregistered = np.linalg.norm(points - truth, axis=1)
    assert error.mean() < 1.5 and unregistered.mean() > 5  # mm: the visits really moved
    moved = sitk.GetArrayFromImage(sitk.Resample(brain1, brain2, reg.transform, near, 0)) > 0
    fixed = sitk.GetArrayFromImage(brain2) > 0
    dice = 2 * (moved & fixed).sum() / (moved.sum() + fixed.sum())
    assert dice > 0.95


def test_registration_is_reproducible_and_the_affine_stage_runs(hippocampus, grown):
    image, _mask = hippocampus
    current, _current_mask, reg = grown
    again = register(current, image, shrink=(2, 1), iterations=50)
    # same samples (seeded); threads sum in any order: equal up to rounding
    np.testing.assert_allclose(
        again.transform.GetParameters(), reg.transform.GetParameters(), atol=1e-6
    )
    affine = register(current, image, affine=True, shrink=(2, 1), iterations=30)
    assert affine.kind == "rigid+affine" and affine.ok, affine.problem
    assert len(affine.transform.GetParameters()) == 12

"""A synthetic BOLD run with a planted activation box following a known block design.

Baseline: an ellipsoidal "brain" of intensity 1000 with Gaussian noise (sd 10) in every volume;
inside ``BOX`` (voxel index ranges) the signal adds ``amplitude`` x the design's Glover-HRF
regressor (nilearn's own, the model the GLM fits), so the GLM must find the box.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medsight.core.image import Image

SHAPE = (24, 24, 10)
BOX = (slice(5, 9), slice(14, 18), slice(4, 7))  # i, j, k
TR = 2.0
N_VOLUMES = 40
EVENTS = pd.DataFrame(
    {"onset": [10.0, 30.0, 50.0, 70.0], "duration": [10.0] * 4, "trial_type": ["task"] * 4}
)


def regressor(events: pd.DataFrame = EVENTS) -> np.ndarray:
    from nilearn.glm.first_level import make_first_level_design_matrix

    frames = np.arange(N_VOLUMES) * TR
    design = make_first_level_design_matrix(frames, events, drift_model=None)
    return design["task"].to_numpy()


def bold_array(amplitude: float = 30.0, seed: int = 0) -> np.ndarray:
    """``(24, 24, 10, 40)`` float32 volumes."""
    rng = np.random.default_rng(seed)
    i, j, k = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    centre = [(n - 1) / 2 for n in SHAPE]
    inside = ((i - centre[0]) / 10) ** 2 + ((j - centre[1]) / 10) ** 2 + (
        (k - centre[2]) / 5
    ) ** 2 <= 1
    base = np.where(inside, 1000.0, 0.0)[..., None]
    data = base + rng.normal(0, 10, (*SHAPE, N_VOLUMES))
    box = np.zeros(SHAPE, bool)
    box[BOX] = True
    data[box] += amplitude * regressor()[None, :]
    return np.clip(data, 0, None).astype(np.float32)


def bold_image(amplitude: float = 30.0, seed: int = 0) -> Image:
    """In memory, on a tilted-free but flipped, offset grid (LPS)."""
    meta = {
        "channel_axis": "time",
        "repetition_time_s": TR,
        "frame_times_s": tuple(TR * t for t in range(N_VOLUMES)),
        "n_volumes": N_VOLUMES,
    }
    return Image(
        bold_array(amplitude, seed),
        spacing=(3.0, 3.0, 4.0),
        direction=np.diag([-1.0, 1.0, -1.0]),
        origin=(40.0, -60.0, 30.0),
        spatial_ndim=3,
        modality="MR",
        meta=meta,
    )


def write_bold_dicom(folder: Path, amplitude: float = 30.0, seed: int = 0) -> Path:
    """The same run as classic MR DICOM, one file per slice and volume (uint16)."""
    folder.mkdir(parents=True)
    data = np.rint(bold_array(amplitude, seed)).astype(np.uint16)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    number = 0
    for t in range(N_VOLUMES):
        for k in range(SHAPE[2]):
            uid = generate_uid()
            ds = Dataset()
            ds.file_meta = FileMetaDataset()
            ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
            ds.file_meta.MediaStorageSOPInstanceUID = uid
            ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, uid
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.FrameOfReferenceUID = frame
            ds.Modality, ds.PatientID, ds.PatientName = "MR", "FMRI1", "Test^Bold"
            ds.PatientBirthDate, ds.PatientSex, ds.StudyID, ds.AccessionNumber = "", "O", "1", ""
            ds.StudyDate, ds.StudyTime, ds.ReferringPhysicianName = "20260101", "120000", ""
            ds.SeriesDate, ds.SeriesTime = "20260101", "120000"
            ds.SeriesDescription, ds.SeriesNumber = "bold task", 5
            ds.Manufacturer = "synthetic"
            number += 1
            ds.InstanceNumber = number
            ds.RepetitionTime, ds.EchoTime = TR * 1000, 30
            ds.TemporalPositionIdentifier, ds.NumberOfTemporalPositions = t + 1, N_VOLUMES
            seconds = 12 * 3600 + 10 + TR * t
            ds.AcquisitionTime = f"{int(seconds // 3600):02d}{int(seconds % 3600 // 60):02d}" + (
                f"{seconds % 60:05.2f}"
            )
            ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
            ds.ImagePositionPatient = [-30.0, -40.0, 10.0 + 4.0 * k]
            ds.PixelSpacing, ds.SliceThickness = [3.0, 3.0], 4.0
            ds.Rows, ds.Columns = SHAPE[1], SHAPE[0]
            ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
            ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
            ds.PixelData = np.ascontiguousarray(data[:, :, k, t].T).tobytes()
            ds.save_as(folder / f"im{number:05d}.dcm", enforce_file_format=True)
    return folder

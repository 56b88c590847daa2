"""DICOM reading: safe header parsing, series grouping and geometry, pixel decoding."""

from medsight.io.dicom.headers import BadFile, read_dataset, read_header, scan
from medsight.io.dicom.series import DicomSeries, SliceInfo, build_series

__all__ = [
    "BadFile",
    "DicomSeries",
    "SliceInfo",
    "build_series",
    "read_dataset",
    "read_header",
    "scan",
]

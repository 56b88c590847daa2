"""Core objects: Image, Case, Task, errors and geometry helpers (numpy only, no torch)."""

from medsight.core.case import Box, Case, ImageSource, Split
from medsight.core.codes import Code
from medsight.core.errors import (
    EmptyInputError,
    GeometryError,
    InvalidInputError,
    MedsightError,
    UnreadableFileError,
    UnsupportedFormatError,
)
from medsight.core.findings import Finding, FindingKind, Measurement
from medsight.core.geometry import LPS_TO_RAS, affine_from_parts, orientation_code
from medsight.core.image import DicomReference, Image
from medsight.core.task import Task

__all__ = [
    "LPS_TO_RAS",
    "Box",
    "Case",
    "Code",
    "DicomReference",
    "EmptyInputError",
    "Finding",
    "FindingKind",
    "GeometryError",
    "Image",
    "ImageSource",
    "InvalidInputError",
    "Measurement",
    "MedsightError",
    "Split",
    "Task",
    "UnreadableFileError",
    "UnsupportedFormatError",
    "affine_from_parts",
    "orientation_code",
]

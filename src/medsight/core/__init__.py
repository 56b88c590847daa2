"""Core objects: Image, Case, errors and geometry helpers (numpy only, no torch)."""

from medsight.core.case import Box, Case, ImageSource, Split
from medsight.core.errors import (
    EmptyInputError,
    GeometryError,
    InvalidInputError,
    MedsightError,
    UnreadableFileError,
    UnsupportedFormatError,
)
from medsight.core.geometry import LPS_TO_RAS, affine_from_parts, orientation_code
from medsight.core.image import DicomReference, Image

__all__ = [
    "LPS_TO_RAS",
    "Box",
    "Case",
    "DicomReference",
    "EmptyInputError",
    "GeometryError",
    "Image",
    "ImageSource",
    "InvalidInputError",
    "MedsightError",
    "Split",
    "UnreadableFileError",
    "UnsupportedFormatError",
    "affine_from_parts",
    "orientation_code",
]

"""Reading and writing images: DICOM (files, series, studies; SEG through highdicom; RT
Structure Sets rasterised on their series), NIfTI, MGH/MGZ, Analyze, NRRD, MetaImage,
PNG/JPEG/TIFF.

Examples
--------
>>> from medsight.io import read_image
>>> from pydicom.data import get_testdata_file
>>> read_image(get_testdata_file("MR_small.dcm")).shape
(64, 64, 1)
"""

from medsight.io.nifti import read_nifti, write_nifti
from medsight.io.raster import read_raster, write_png
from medsight.io.study import SeriesEntry, Study, read_image, read_study, summarize, write_image
from medsight.io.volumes import read_volume

__all__ = [
    "SeriesEntry",
    "Study",
    "read_image",
    "read_nifti",
    "read_raster",
    "read_study",
    "read_volume",
    "summarize",
    "write_image",
    "write_nifti",
    "write_png",
]

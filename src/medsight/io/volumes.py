"""Other volume formats, read by the library that knows them, into LPS Images like NIfTI.

* nibabel: FreeSurfer MGH / MGZ (``.mgh``, ``.mgz``), Analyze 7.5 and NIfTI pairs
  (``.hdr`` + ``.img``; either name may be given), and NIfTI-2 (through :mod:`.nifti`);
* SimpleITK: NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``).

nibabel's affines are RAS and become LPS exactly as for NIfTI; SimpleITK's are LPS already.
Analyze 7.5 stores no orientation: nibabel's default (voxel axes along x flipped, y, z, the
radiological convention) is used and a problem says the orientation is assumed.

Files in formats medsight does not read are named by :func:`unsupported_format` (MINC, ECAT,
PAR/REC, ...), so the message says what the file is rather than "not a DICOM file".
"""

from __future__ import annotations

import os
from pathlib import Path

from medsight.core.errors import UnreadableFileError, short_reason
from medsight.core.image import Image

__all__ = [
    "ITK_SUFFIXES",
    "NIBABEL_SUFFIXES",
    "is_volume",
    "read_volume",
    "unsupported_format",
]

NIBABEL_SUFFIXES = (".mgh", ".mgz", ".hdr", ".img")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")

_UNSUPPORTED = {
    ".mnc": "MINC",
    ".v": "ECAT 7",
    ".par": "Philips PAR/REC",
    ".rec": "Philips PAR/REC",
    ".gipl": "GIPL",
    ".vtk": "VTK",
    ".vti": "VTK",
    ".stl": "STL surface mesh",
    ".obj": "OBJ surface mesh",
    ".npy": "NumPy array",
    ".npz": "NumPy archive",
    ".h5": "HDF5",
    ".hdf5": "HDF5",
    ".zip": "ZIP archive",
    ".tar": "tar archive",
    ".gz": "gzip-compressed",
    ".svs": "Aperio whole-slide",
    ".ndpi": "Hamamatsu whole-slide",
}


def _suffix(path: str | os.PathLike[str]) -> str:
    return Path(path).suffix.lower()


def is_volume(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has the name of an MGH/MGZ, Analyze, NRRD or MetaImage file.

    A ``.img`` counts only beside its ``.hdr`` (that pair is read once, through the header).

    Examples
    --------
    >>> is_volume("brain.mgz"), is_volume("ct.nrrd"), is_volume("a.MHA"), is_volume("x.dcm")
    (True, True, True, False)
    """
    suffix = _suffix(path)
    if suffix == ".img":
        return False
    return suffix in NIBABEL_SUFFIXES or suffix in ITK_SUFFIXES


def is_pair_image(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the ``.img`` of an Analyze / NIfTI pair (read through its ``.hdr``)."""
    p = Path(path)
    return _suffix(p) == ".img" and any(p.with_suffix(s).exists() for s in (".hdr", ".HDR", ".Hdr"))


def unsupported_format(path: str | os.PathLike[str]) -> str | None:
    """Why a file medsight does not read cannot be used, from its name's format, else None.

    Examples
    --------
    >>> unsupported_format("brain.mnc")
    'a MINC file, a format medsight does not read (convert it to NIfTI)'
    >>> unsupported_format("ct.dcm") is None
    True
    """
    p = Path(path)
    if _suffix(p) == ".img" and not is_pair_image(p):
        return "an Analyze / NIfTI-pair image whose .hdr header is missing (put it beside the .img)"
    fmt = _UNSUPPORTED.get(_suffix(p))
    if fmt is None:
        return None
    article = "an" if fmt[0] in "AEIOU" else "a"
    return f"{article} {fmt} file, a format medsight does not read (convert it to NIfTI)"


def read_volume(path: str | os.PathLike[str]) -> Image:
    """Read an MGH/MGZ, Analyze (.hdr/.img), NRRD or MetaImage file into an LPS Image.

    Raises
    ------
    UnreadableFileError
        Missing, truncated or corrupt, or not in the format its name says.
    """
    p = Path(path)
    if not p.exists():
        raise UnreadableFileError(p, "does not exist")
    suffix = _suffix(p)
    if suffix in ITK_SUFFIXES:
        return _read_itk(p)
    if suffix == ".img":
        header = next(
            (p.with_suffix(s) for s in (".hdr", ".HDR") if p.with_suffix(s).exists()), None
        )
        if header is None:
            raise UnreadableFileError(p, "is an Analyze / NIfTI-pair image without its .hdr")
        p = header
    return _read_nibabel(p)


def _read_nibabel(p: Path) -> Image:
    import nibabel as nib

    from medsight.io.nifti import _time_meta

    try:
        loaded = nib.load(p)
        kind = type(loaded).__name__.replace("Image", "")  # MGH, Analyze, Nifti1Pair ...
        problems: list[str] = []
        if kind in ("Analyze", "Spm99Analyze", "Spm2Analyze"):
            problems.append(
                "Analyze 7.5 stores no orientation: nibabel's default (x flipped, the "
                "radiological convention) is assumed; check left and right"
            )
        meta = {"files": (str(p),), "spacing_source": kind, "spacing_known": True}
        if kind.startswith("Nifti"):
            meta.update(_time_meta(loaded))
        if problems:
            meta["problems"] = (*meta.get("problems", ()), *problems)
        return Image.from_nibabel(loaded, meta=meta)
    except FileNotFoundError as exc:
        raise UnreadableFileError(
            p, f"a file of the pair is missing: {short_reason(exc)}"
        ) from None
    except Exception as exc:  # nibabel raises many kinds
        raise UnreadableFileError(
            p, f"not a readable {p.suffix} volume (nibabel): {short_reason(exc)}"
        ) from None


def _read_itk(p: Path) -> Image:
    import SimpleITK as sitk

    try:
        itk = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        raise UnreadableFileError(
            p, f"not a readable {p.suffix} volume (SimpleITK): {short_reason(exc)}"
        ) from None
    meta = {
        "files": (str(p),),
        "spacing_source": "NRRD" if _suffix(p) in (".nrrd", ".nhdr") else "MetaImage",
        "spacing_known": True,
    }
    return Image.from_sitk(itk, meta=meta)

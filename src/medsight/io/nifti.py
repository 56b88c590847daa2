"""NIfTI-1/2 reading and writing through nibabel, with LPS geometry kept exact."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medsight.core.errors import UnreadableFileError, short_reason
from medsight.core.image import Image
from medsight.io.atomic import atomic_path

__all__ = ["NIFTI_SUFFIXES", "is_nifti", "read_nifti", "write_nifti"]

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` has a NIfTI file name.

    Examples
    --------
    >>> is_nifti("brain.nii.gz"), is_nifti("scan.NII"), is_nifti("a.dcm")
    (True, True, False)
    """
    name = Path(path).name.lower()
    return name.endswith(NIFTI_SUFFIXES)


def read_nifti(path: str | os.PathLike[str]) -> Image:
    """Read a NIfTI file into an Image (RAS on disk, LPS in memory).

    Raises
    ------
    UnreadableFileError
        Not a NIfTI file, or truncated / corrupt data.

    Examples
    --------
    >>> from pathlib import Path
    >>> import nibabel
    >>> img = read_nifti(Path(nibabel.__file__).parent / "tests" / "data" / "anatomical.nii")
    >>> img.shape, img.orientation, img.meta["spacing_source"]
    ((33, 41, 25), 'LAS', 'NIfTI')
    """
    import nibabel as nib

    p = Path(path)
    try:
        loaded = nib.load(p)
        meta = {"files": (str(p),), "spacing_source": "NIfTI", "spacing_known": True}
        meta.update(_time_meta(loaded))
        return Image.from_nibabel(loaded, meta=meta)
    except FileNotFoundError:
        raise UnreadableFileError(p, "does not exist") from None
    except Exception as exc:  # nibabel raises many types: ImageFileError, EOFError, zlib errors
        raise UnreadableFileError(p, f"not a readable NIfTI file: {short_reason(exc)}") from None


#: NIfTI xyzt_units time codes (as nibabel names them) -> seconds per unit.
_TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6}


def _time_meta(loaded: Any) -> dict[str, Any]:
    """Time-axis meta of a 4D NIfTI (``dim[4] > 1``, not a vector intent): see Image's docs.

    NIfTI puts time on the fourth dimension; ``pixdim[4]`` is the repetition time in the time
    unit of ``xyzt_units`` (s, ms or us).  An unknown unit or a zero ``pixdim[4]`` leaves the
    repetition time None (never guessed) with a problem; a non-time unit (Hz, ppm, rad/s:
    spectra) leaves the fourth axis unlabelled.
    """
    hdr = loaded.header
    shape = loaded.shape
    if len(shape) != 4 or shape[3] < 2 or not hasattr(hdr, "get_xyzt_units"):
        return {}
    if hdr.get_intent()[0] == "vector":
        return {}
    unit = hdr.get_xyzt_units()[1]
    n = int(shape[3])
    if unit not in _TIME_UNITS and unit != "unknown":
        return {
            "problems": (f"the fourth axis is in {unit}, not time: its {n} values are channels",)
        }
    step = float(hdr["pixdim"][4])
    problems: list[str] = []
    tr = None
    if unit == "unknown":
        problems.append(
            f"4D NIfTI with no time unit in xyzt_units (pixdim[4] = {step:g}): the repetition "
            "time is unknown (give it explicitly)"
        )
    elif not step > 0:
        problems.append("4D NIfTI with pixdim[4] = 0: the repetition time is unknown")
    else:
        tr = step * _TIME_UNITS[unit]
    meta: dict[str, Any] = {
        "channel_axis": "time",
        "n_volumes": n,
        "repetition_time_s": tr,
        "frame_times_s": tuple(round(t * tr, 6) for t in range(n)) if tr else None,
        "frame_times_source": "pixdim[4]" if tr else None,
    }
    if problems:
        meta["problems"] = tuple(problems)
    return meta


def write_nifti(image: Image, path: str | os.PathLike[str]) -> Path:
    """Write ``image`` as NIfTI (``.nii`` or ``.nii.gz``) atomically; geometry round-trips.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> img = Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), spacing=(0.5, 0.7, 2.0))
    >>> out = write_nifti(img, pathlib.Path(tempfile.mkdtemp()) / "x.nii.gz")
    >>> back = read_nifti(out)
    >>> bool(np.array_equal(back.array, img.array)), bool(np.allclose(back.affine, img.affine))
    (True, True)
    """
    import nibabel as nib

    p = Path(path)
    if not is_nifti(p):
        raise UnreadableFileError(p, "a NIfTI file name must end in .nii or .nii.gz")
    with atomic_path(p) as tmp:
        nib.save(image.to_nibabel(), tmp)
    return p

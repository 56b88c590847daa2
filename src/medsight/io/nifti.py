"""NIfTI-1/2 reading and writing through nibabel, with LPS geometry kept exact."""

from __future__ import annotations

import os
from pathlib import Path

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
        return Image.from_nibabel(loaded, meta=meta)
    except FileNotFoundError:
        raise UnreadableFileError(p, "does not exist") from None
    except Exception as exc:  # nibabel raises many types: ImageFileError, EOFError, zlib errors
        raise UnreadableFileError(p, f"not a readable NIfTI file: {short_reason(exc)}") from None


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

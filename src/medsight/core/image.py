"""`Image`: pixels with their geometry and the DICOM instances they came from.

Conventions
-----------
* ``array`` holds the spatial axes in index order ``(i, j[, k])`` (``i`` = image column, ``j`` =
  image row, ``k`` = slice, as ITK and nibabel index them), optionally followed by **one**
  channel axis (RGB components, MR echoes, time points).  ``spatial_ndim`` says which.
* ``affine`` is a 4x4 float64 matrix mapping ``(i, j, k, 1)`` to millimetres in LPS patient
  coordinates.  A 2D image still has a 4x4 affine; its third column is the plane normal.
* Images are immutable: the array is made read-only and every operation returns a new Image
  (``with_array``).
* When the source gives no physical pixel size (PNG/JPEG, DICOM without any spacing attribute)
  the affine still holds 1.0 (geometry code needs a grid) but ``meta["spacing_known"]`` is
  False, and :func:`spacing_known` says so: sizes are then in pixels, never mm.  Readers also
  record ``meta["spacing_source"]``, the header the spacing came from.
* What a channel axis holds is said by ``meta["channel_axis"]`` when a reader knows it:
  ``"time"`` (a 4D series: fMRI BOLD, dynamic PET, perfusion), ``"echo"``, ``"echo+time"``;
  absent for colour samples and unknown channels.  A time axis comes with
  ``meta["repetition_time_s"]`` (None when unknown), ``meta["frame_times_s"]`` (seconds from
  the first volume, one per channel), ``meta["frame_times_source"]`` and ``meta["n_volumes"]``
  (counted from the data); see :mod:`medsight.io.dicom.temporal` and
  :func:`medsight.io.nifti.read_nifti`.

Examples
--------
>>> import numpy as np
>>> img = Image(np.zeros((4, 5, 6), dtype=np.int16), spacing=(0.5, 0.5, 2.0), modality="CT")
>>> img.shape, img.spacing.tolist(), img.orientation
((4, 5, 6), [0.5, 0.5, 2.0], 'LPS')
>>> img.with_array(img.array + 1).array.max()
np.int16(1)
>>> img.array.flags.writeable
False
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medsight.core.errors import GeometryError, InvalidInputError
from medsight.core.geometry import (
    LPS_TO_RAS,
    affine_from_parts,
    direction_of,
    orientation_code,
    spacing_of,
)

if TYPE_CHECKING:  # heavy optional libraries are imported inside the conversion methods
    import nibabel
    import SimpleITK
    from monai.data import MetaTensor

__all__ = ["DicomReference", "Image", "spacing_known"]


@dataclasses.dataclass(frozen=True)
class DicomReference:
    """Where an Image came from in DICOM terms.

    ``sop_instance_uids`` lists the source instances in slice order (one per slice for a
    classic series, a single one for a multi-frame object); ``frame_numbers`` gives the frame of
    each slice for multi-frame objects (1-based, empty otherwise).

    Examples
    --------
    >>> ref = DicomReference(study_instance_uid="1.2", series_instance_uid="1.2.3")
    >>> ref.sop_instance_uids
    ()
    """

    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uids: tuple[str, ...] = ()
    sop_class_uid: str | None = None
    frame_of_reference_uid: str | None = None
    frame_numbers: tuple[int, ...] = ()


def spacing_known(image: Image) -> bool:
    """Whether ``image``'s spacing is a physical size in mm (``meta["spacing_known"]``).

    True when the key is absent: an Image built with an explicit ``spacing`` is in mm.

    Examples
    --------
    >>> import numpy as np
    >>> spacing_known(Image(np.zeros((2, 2)), spacing=(0.5, 0.5)))
    True
    >>> spacing_known(Image(np.zeros((2, 2)), meta={"spacing_known": False}))
    False
    """
    return bool(image.meta.get("spacing_known", True))


class Image:
    """An n-dimensional medical image with its geometry.

    Parameters
    ----------
    array : array_like
        Pixel data, spatial axes in index order then at most one channel axis.
    affine : array_like, shape (4, 4), optional
        Index to LPS millimetres.  Built from ``spacing``, ``direction`` and ``origin`` when
        omitted.
    spacing, direction, origin : optional
        Alternative to ``affine`` (defaults 1 mm, identity, zero).
    spatial_ndim : int, optional
        2 or 3.  Defaults to ``array.ndim`` when that is 2 or 3.
    modality : str, optional
        DICOM modality code (``CT``, ``MR``, ``US``, ``CR``, ``DX``, ``OP`` ...).
    source : DicomReference, optional
        The DICOM instances the pixels came from.
    meta : mapping, optional
        Other descriptive attributes (series description, photometric interpretation ...).

    Raises
    ------
    InvalidInputError
        If the array and ``spatial_ndim`` disagree.
    GeometryError
        If the affine is not a finite, invertible 4x4 matrix.
    """

    __slots__ = ("_affine", "_array", "_meta", "_modality", "_source", "_spatial_ndim")

    def __init__(
        self,
        array: ArrayLike,
        affine: ArrayLike | None = None,
        *,
        spacing: Sequence[float] | None = None,
        direction: ArrayLike | None = None,
        origin: Sequence[float] | None = None,
        spatial_ndim: int | None = None,
        modality: str | None = None,
        source: DicomReference | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        arr = np.asarray(array)
        if spatial_ndim is None:
            if arr.ndim not in (2, 3):
                raise InvalidInputError(
                    "array", f"shape {arr.shape}: pass spatial_ndim for a {arr.ndim}-D array"
                )
            spatial_ndim = arr.ndim
        if spatial_ndim not in (2, 3) or arr.ndim not in (spatial_ndim, spatial_ndim + 1):
            raise InvalidInputError(
                "array",
                f"shape {arr.shape} does not fit spatial_ndim={spatial_ndim} "
                "(spatial axes then at most one channel axis)",
            )
        if affine is None:
            affine_m = affine_from_parts(
                spacing if spacing is not None else (1.0,) * spatial_ndim,
                direction if direction is not None else np.eye(3),
                origin if origin is not None else (0.0, 0.0, 0.0),
            )
        else:
            if spacing is not None or direction is not None or origin is not None:
                raise InvalidInputError("affine", "give either affine or spacing/direction/origin")
            affine_m = np.array(affine, dtype=np.float64)
        if affine_m.shape != (4, 4) or not np.all(np.isfinite(affine_m)):
            raise GeometryError("affine", f"expected a finite 4x4 matrix, got {affine_m.shape}")
        if abs(np.linalg.det(affine_m[:3, :3])) < 1e-12:
            raise GeometryError("affine", "the 3x3 part is singular (zero spacing?)")
        if arr.flags.writeable:
            arr = arr.view()
            arr.flags.writeable = False
        affine_m.flags.writeable = False
        self._array = arr
        self._affine = affine_m
        self._spatial_ndim = int(spatial_ndim)
        self._modality = modality
        self._source = source
        self._meta = MappingProxyType(dict(meta or {}))

    # --- read-only properties -------------------------------------------------------------
    @property
    def array(self) -> NDArray[Any]:
        """The pixel data (read-only)."""
        return self._array

    @property
    def affine(self) -> NDArray[np.float64]:
        """4x4 index-to-LPS affine (read-only)."""
        return self._affine

    @property
    def spatial_ndim(self) -> int:
        """Number of spatial axes, 2 or 3."""
        return self._spatial_ndim

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape, in index order."""
        return tuple(int(s) for s in self._array.shape[: self._spatial_ndim])

    @property
    def n_channels(self) -> int:
        """Length of the channel axis, 1 when there is none."""
        return int(self._array.shape[-1]) if self.has_channels else 1

    @property
    def has_channels(self) -> bool:
        """Whether the array has a trailing channel axis."""
        return self._array.ndim == self._spatial_ndim + 1

    @property
    def spacing(self) -> NDArray[np.float64]:
        """Spacing in mm of each spatial axis."""
        return spacing_of(self._affine)[: self._spatial_ndim]

    @property
    def direction(self) -> NDArray[np.float64]:
        """3x3 direction cosines (columns) in LPS."""
        return direction_of(self._affine)

    @property
    def origin(self) -> NDArray[np.float64]:
        """LPS position in mm of the centre of the first voxel."""
        return self._affine[:3, 3].copy()

    @property
    def orientation(self) -> str:
        """Orientation code of the spatial axes, e.g. ``'LPS'`` (2 letters for 2D)."""
        return orientation_code(self._affine)[: self._spatial_ndim]

    @property
    def modality(self) -> str | None:
        """DICOM modality code, if known."""
        return self._modality

    @property
    def source(self) -> DicomReference | None:
        """The source DICOM instances, if any."""
        return self._source

    @property
    def meta(self) -> Mapping[str, Any]:
        """Other attributes (read-only mapping)."""
        return self._meta

    def __repr__(self) -> str:
        sp = ", ".join(f"{s:.3g}" for s in self.spacing)
        return (
            f"Image(shape={self.shape}, channels={self.n_channels}, dtype={self._array.dtype}, "
            f"spacing=({sp}), orientation={self.orientation!r}, modality={self._modality!r})"
        )

    # --- derived images -------------------------------------------------------------------
    def with_array(
        self,
        array: ArrayLike,
        *,
        affine: ArrayLike | None = None,
        spatial_ndim: int | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Image:
        """A new Image with other pixels and the same geometry, modality and source.

        Examples
        --------
        >>> import numpy as np
        >>> img = Image(np.zeros((2, 3)), spacing=(0.7, 0.7))
        >>> img.with_array(np.ones((2, 3))).spacing.tolist()
        [0.7, 0.7]
        """
        arr = np.asarray(array)
        ndim = spatial_ndim if spatial_ndim is not None else self._spatial_ndim
        return Image(
            arr,
            self._affine if affine is None else affine,
            spatial_ndim=ndim,
            modality=self._modality,
            source=self._source,
            meta=self._meta if meta is None else meta,
        )

    def index_to_world(self, index: ArrayLike) -> NDArray[np.float64]:
        """LPS coordinates in mm of voxel indices (shape ``(..., 2 or 3)``).

        Examples
        --------
        >>> img = Image(np.zeros((4, 4, 4)), spacing=(1, 2, 3), origin=(10, 0, 0))
        >>> img.index_to_world([1, 1, 1]).tolist()
        [11.0, 2.0, 3.0]
        """
        idx = np.asarray(index, dtype=float)
        full = np.zeros((*idx.shape[:-1], 3))
        full[..., : idx.shape[-1]] = idx
        return full @ self._affine[:3, :3].T + self._affine[:3, 3]

    # --- SimpleITK ----------------------------------------------------------------------
    def to_sitk(self) -> SimpleITK.Image:
        """Convert to a SimpleITK image with the same geometry (vector image if channels).

        A 2D Image becomes a 2D SimpleITK image using the in-plane part of the direction.
        """
        import SimpleITK as sitk

        arr = self._array
        # SimpleITK arrays are indexed (k, j, i[, c]): reverse the spatial axes.
        order = tuple(reversed(range(self._spatial_ndim)))
        if self.has_channels:
            order = (*order, self._spatial_ndim)
        out = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(order)), self.has_channels)
        n = self._spatial_ndim
        out.SetSpacing([float(s) for s in self.spacing])
        out.SetOrigin([float(o) for o in self._affine[:n, 3]])
        out.SetDirection([float(v) for v in self.direction[:n, :n].ravel()])
        return out

    @classmethod
    def from_sitk(
        cls,
        image: SimpleITK.Image,
        *,
        modality: str | None = None,
        source: DicomReference | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Image:
        """Build from a SimpleITK image (2D or 3D, scalar or vector)."""
        import SimpleITK as sitk

        n = image.GetDimension()
        if n not in (2, 3):
            raise InvalidInputError("SimpleITK image", f"{n}-D images are not supported")
        arr = sitk.GetArrayFromImage(image)
        vector = image.GetNumberOfComponentsPerPixel() > 1
        order = tuple(reversed(range(n)))
        if vector:
            order = (*order, n)
        direction = np.asarray(image.GetDirection(), dtype=float).reshape(n, n)
        if n == 2:
            d3 = np.eye(3)
            d3[:2, :2] = direction
            d3[:, 2] = np.cross(d3[:, 0], d3[:, 1])
            direction = d3
        affine = affine_from_parts(image.GetSpacing(), direction, image.GetOrigin())
        return cls(
            arr.transpose(order),
            affine,
            spatial_ndim=n,
            modality=modality,
            source=source,
            meta=meta,
        )

    # --- nibabel ------------------------------------------------------------------------
    def to_nibabel(self) -> nibabel.Nifti1Image:
        """Convert to a NIfTI-1 image (RAS affine, as NIfTI requires).

        Channels go to the fifth NIfTI dimension with the vector intent, so a 2D RGB image is
        stored as ``(i, j, 1, 1, 3)``; a 3D time series (``meta["channel_axis"] == "time"``)
        goes to the fourth, with ``pixdim[4]`` the repetition time in seconds.
        """
        import nibabel as nib

        arr = self._array
        time_axis = self.has_channels and self._meta.get("channel_axis") == "time"
        if time_axis and self._spatial_ndim == 3:
            out = nib.Nifti1Image(np.asarray(arr), LPS_TO_RAS @ self._affine)
            out.header.set_qform(LPS_TO_RAS @ self._affine, code=1)
            out.header.set_sform(LPS_TO_RAS @ self._affine, code=1)
            out.header.set_xyzt_units("mm", "sec")
            tr = self._meta.get("repetition_time_s")
            zooms = out.header.get_zooms()
            out.header.set_zooms((*zooms[:3], float(tr) if tr else 0.0))
            return out
        if self.has_channels:
            spatial = arr.shape[: self._spatial_ndim] + (1,) * (3 - self._spatial_ndim)
            arr = arr.reshape(*spatial, 1, arr.shape[-1])
        out = nib.Nifti1Image(np.asarray(arr), LPS_TO_RAS @ self._affine)
        out.header.set_qform(LPS_TO_RAS @ self._affine, code=1)
        out.header.set_sform(LPS_TO_RAS @ self._affine, code=1)
        out.header.set_xyzt_units("mm", "sec")
        if self.has_channels:
            out.header.set_intent("vector")
        return out

    @classmethod
    def from_nibabel(
        cls,
        image: nibabel.spatialimages.SpatialImage,
        *,
        modality: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> Image:
        """Build from a nibabel image; 4D data becomes 3D with a channel axis.

        Stored data types are kept: a scaled NIfTI (``scl_slope``) gives floats, an unscaled
        one keeps its on-disk dtype.
        """
        hdr = image.header
        slope, inter = hdr.get_slope_inter() if hasattr(hdr, "get_slope_inter") else (None, None)
        if slope in (None, 1.0) and inter in (None, 0.0):
            arr = np.asarray(image.dataobj)
        else:
            arr = np.asarray(image.get_fdata(dtype=np.float32))
        affine = LPS_TO_RAS @ np.asarray(image.affine, dtype=float)
        intent = hdr.get_intent()[0] if hasattr(hdr, "get_intent") else ""
        if arr.ndim == 5 and arr.shape[3] == 1:
            arr = arr[:, :, :, 0, :]
            if intent == "vector" and arr.shape[2] == 1:
                return cls(arr[:, :, 0, :], affine, spatial_ndim=2, modality=modality, meta=meta)
        if arr.ndim in (2, 3, 4):
            spatial = 3 if arr.ndim == 4 else arr.ndim
            return cls(arr, affine, spatial_ndim=spatial, modality=modality, meta=meta)
        raise InvalidInputError("NIfTI image", f"shape {arr.shape} is not 2D, 3D or 4D")

    # --- MONAI --------------------------------------------------------------------------
    def to_metatensor(self) -> MetaTensor:
        """Convert to a channel-first MONAI ``MetaTensor`` with a RAS affine (MONAI's default).

        The LPS affine and source reference travel in ``meta`` too.
        """
        import torch
        from monai.data import MetaTensor
        from monai.utils import SpaceKeys

        arr = self._array
        arr = np.moveaxis(arr, -1, 0) if self.has_channels else arr[np.newaxis]
        affine = LPS_TO_RAS @ self._affine
        if self._spatial_ndim == 2:
            # MONAI expects a (n+1)x(n+1) affine for n spatial dims.
            affine = np.delete(np.delete(affine, 2, axis=0), 2, axis=1)
        meta: dict[str, Any] = {
            "space": SpaceKeys.RAS,
            "original_affine": torch.as_tensor(affine),
            "lps_affine": torch.as_tensor(np.array(self._affine)),
            "spatial_shape": self.shape,
            "modality": self._modality,
        }
        data = torch.from_numpy(np.array(arr, copy=True))  # the Image array is read-only
        return MetaTensor(data, affine=affine, meta=meta)

    @classmethod
    def from_metatensor(
        cls,
        tensor: MetaTensor,
        *,
        modality: str | None = None,
        source: DicomReference | None = None,
    ) -> Image:
        """Build from a channel-first ``MetaTensor`` (RAS or LPS, per its ``space`` key)."""
        from monai.utils import SpaceKeys

        arr = tensor.detach().cpu().numpy()
        n = arr.ndim - 1
        if n not in (2, 3):
            raise InvalidInputError("MetaTensor", f"shape {arr.shape}: expected (C, spatial...)")
        aff_n = np.asarray(tensor.affine.detach().cpu().numpy(), dtype=float)
        affine = np.eye(4)
        if n == 2:
            affine[np.ix_([0, 1, 3], [0, 1, 3])] = aff_n
            affine[:3, 2] = np.cross(affine[:3, 0], affine[:3, 1])
            affine[:3, 2] /= max(np.linalg.norm(affine[:3, 2]), 1e-12)
        else:
            affine = aff_n
        if str(tensor.meta.get("space", SpaceKeys.RAS)) == str(SpaceKeys.RAS):
            affine = LPS_TO_RAS @ affine
        arr = arr[0] if arr.shape[0] == 1 else np.moveaxis(arr, 0, -1)
        return cls(
            arr,
            affine,
            spatial_ndim=n,
            modality=modality or tensor.meta.get("modality"),
            source=source,
        )

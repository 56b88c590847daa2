"""`Denoiser`: a denoising ModelPackage applied to an Image of any size, geometry kept.

The network is a 2D U-Net that predicts a correction added to its input (residual learning).
Each 2D image, or each slice of a 3D volume (index axis ``k``), is scaled by its own robust
percentiles (:func:`medsight.transforms.noise.scale_to_unit`, computed on the noisy input as
in training), padded by reflection to a multiple of the network's down-sampling factor,
denoised, cropped and scaled back, so the output is in the input's units with the input's
shape, affine, modality and source references (for the magnitude noise models, Rician and
speckle, a slice without negative values gets none in its output either); its ``meta`` says
it is derived and by which model.  The U-Net runs on torch or, exported (``medsight
export``, dynamic height and width), on ONNX Runtime (``backend=``; default
:func:`medsight.inference.onnx_backend.resolve_backend`).

Intended use is checked before the network runs (:func:`denoise_scope_problems`): a CT image
given to an MR denoiser is refused with the reason, as are colour images and other
:func:`medsight.models.scope.scope_problems`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.core.task import Task
from medsight.models.package import ModelPackage
from medsight.models.scope import scope_problems
from medsight.models.spec import ModelSpec
from medsight.transforms.noise import MAGNITUDE_NOISE, scale_to_unit, unscale

if TYPE_CHECKING:
    import torch

__all__ = [
    "Denoiser",
    "denoise_scope_problems",
    "denoise_slices",
    "magnitude_noise",
    "pad_multiple",
]

#: Slices of a volume denoised per forward pass.
BATCH = 8


def pad_multiple(spec: ModelSpec) -> int:
    """The factor every input side is padded to (the product of the U-Net's strides).

    Examples
    --------
    >>> from medsight.models.spec import ArchitectureSpec, InputSpec, PreprocessingSpec
    >>> spec = ModelSpec.model_construct(architecture=ArchitectureSpec(name="unet",
    ...     args={"strides": [2, 2, 2]}))
    >>> pad_multiple(spec)
    8
    """
    strides = spec.architecture.args.get("strides", [])
    return int(np.prod([int(np.max(s)) for s in strides])) if strides else 1


def magnitude_noise(spec: ModelSpec) -> bool:
    """Whether the package's noise model is one of magnitude data (Rician MR, US speckle).

    Examples
    --------
    >>> spec = ModelSpec.model_construct(extra={"noise": {"model": "rician"}})
    >>> magnitude_noise(spec), magnitude_noise(ModelSpec.model_construct(extra={}))
    (True, False)
    """
    return str(spec.extra.get("noise", {}).get("model", "")) in MAGNITUDE_NOISE


def denoise_scope_problems(
    spec: ModelSpec, image: Image, header: Mapping[str, Any] | None = None
) -> list[str]:
    """Why ``image`` is outside the denoiser's intended use (empty when inside).

    The modality must be one the model was trained on when both are known (a NIfTI or PNG
    image has no modality and is taken as the user's responsibility); the rest is
    :func:`~medsight.models.scope.scope_problems`.
    """
    problems = []
    allowed = [m.upper() for m in spec.input.modalities]
    if allowed and image.modality and image.modality.upper() not in allowed:
        problems.append(
            f"the image's modality is {image.modality}; the model denoises "
            f"{', '.join(allowed)} images only (its noise model and training data are "
            f"{spec.extra.get('noise', {}).get('model', 'of')} {', '.join(allowed)})"
        )
    if image.n_channels > 1:
        problems.append(
            f"the image has {image.n_channels} channels; the model denoises grey-scale images"
        )
    return problems + scope_problems(spec.input, image, header)


def denoise_slices(
    net: torch.nn.Module | Any,
    slices: NDArray[Any],
    multiple: int,
    device: torch.device | str = "cpu",
    *,
    residual: bool = True,
    nonnegative: bool = False,
) -> NDArray[np.float32]:
    """Denoise a stack of same-sized 2D slices ``(n, i, j)`` in their own units.

    Each slice is scaled by its robust percentiles, reflect-padded to ``multiple``, run
    through ``net`` (``z + net(z)`` when ``residual``), cropped and scaled back.  ``net`` is
    the torch U-Net or its ONNX session (:class:`~medsight.inference.onnx_backend.OnnxNetwork`).

    ``nonnegative`` (magnitude data: :func:`magnitude_noise`): a slice without negative values
    is given none in its output either.  An MR magnitude or ultrasound envelope image cannot be
    negative, yet the residual network can overshoot below 0 in a dark background whose noise
    floor differs from its training data (measured in ``benchmarks/denoise_mr_wholebrain.py``).
    A slice that has negative values (a pre-processed or signed image) is left unclipped.
    """
    import torch

    arr = np.asarray(slices, dtype=np.float32)
    n, h, w = arr.shape
    ph, pw = (-h) % multiple, (-w) % multiple
    out = np.empty_like(arr)
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, BATCH):
                chunk = arr[start : start + BATCH]
                scaled = [scale_to_unit(s) for s in chunk]
                z = np.stack([s[0] for s in scaled])
                if ph or pw:
                    z = np.pad(
                        z, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(h, w) > 1 else "edge"
                    )
                x = torch.from_numpy(np.ascontiguousarray(z[:, None])).to(device)
                y = net(x)
                y = (x + y) if residual else y
                y_np = y[:, 0, :h, :w].float().cpu().numpy()
                for k, (_, offset, scale) in enumerate(scaled):
                    out[start + k] = unscale(y_np[k], offset, scale)
                    if nonnegative and chunk[k].min() >= 0:
                        np.maximum(out[start + k], 0.0, out=out[start + k])
    finally:
        net.train(was_training)
    return out


class Denoiser:
    """A denoising package, ready to run on Images.

    Parameters
    ----------
    package : ModelPackage or path
        A package of task ``denoising``.
    device : str
        ``auto``, ``cpu`` or ``cuda[:i]``.
    backend : {"torch", "onnx"}, optional
        Default: :func:`medsight.inference.onnx_backend.resolve_backend` (``--backend``, else
        the package's measured default, else torch).  ONNX runs the exported U-Net on CPU with
        the same scaling, padding and residual around it.

    Raises
    ------
    InvalidInputError
        The package is not a denoiser, or ``backend`` names an export it lacks or one whose
        file changed.
    """

    def __init__(
        self,
        package: ModelPackage | str | os.PathLike[str],
        device: str = "auto",
        *,
        backend: str | None = None,
    ) -> None:
        from medsight.inference.onnx_backend import onnx_network, resolve_backend
        from medsight.models.device import select_device

        pkg = ModelPackage.of_task(package, Task.DENOISING, "a denoiser (task denoising)")
        self._package = pkg
        self._device = select_device(device)
        self.backend = resolve_backend(pkg, backend)
        self._net: Any
        if self.backend == "torch":
            self._net = pkg.build_network().float().to(self._device)
        else:  # the exported U-Net (dynamic batch, height and width), verified by its sha256
            self._net = onnx_network(pkg, self.backend)
        self._multiple = pad_multiple(pkg.spec)
        self._residual = bool(pkg.spec.extra.get("residual", True))
        self._nonnegative = magnitude_noise(pkg.spec)

    @property
    def package(self) -> ModelPackage:
        """The model package."""
        return self._package

    def scope_problems(self, image: Image, header: Mapping[str, Any] | None = None) -> list[str]:
        """Why ``image`` is outside this model's intended use (see the module's docstring)."""
        return denoise_scope_problems(self._package.spec, image, header)

    def __call__(self, image: Image, *, check_scope: bool = True) -> Image:
        """The denoised image: same shape, geometry, modality and source; float32, input units.

        Raises
        ------
        InvalidInputError
            The image is outside the model's intended use (the reasons are named).
        """
        if check_scope:
            problems = self.scope_problems(image)
            if problems:
                raise InvalidInputError(
                    "image",
                    f"outside the intended use of {self._package.id}: " + "; ".join(problems),
                )
        arr = np.asarray(image.array, dtype=np.float32)
        squeeze = image.has_channels  # one channel (more are refused by the scope check)
        if squeeze:
            arr = arr[..., 0]
        if arr.ndim == 2:
            out = self.denoise_array(arr[None])[0]
        else:  # a volume slice by slice along k
            out = np.moveaxis(self.denoise_array(np.moveaxis(arr, 2, 0)), 0, 2)
        if squeeze:
            out = out[..., None]
        meta = dict(image.meta) | {
            "derived": "denoised",
            "derived_by": self._package.id,
            "derivation_description": self.derivation_description,
        }
        return image.with_array(out, meta=meta)

    @property
    def derivation_description(self) -> str:
        """One line naming the algorithm, for DICOM Derivation Description and reports."""
        noise = self._package.spec.extra.get("noise", {})
        return (
            f"Denoised by medsight model {self._package.id} (2D U-Net, trained on "
            f"{noise.get('model', 'unknown')} noise)"
        )

    def denoise_array(self, slices: NDArray[Any]) -> NDArray[np.float32]:
        """Denoise ``(n, i, j)`` slices in their units (no scope check)."""
        return denoise_slices(
            self._net,
            slices,
            self._multiple,
            self._device,
            residual=self._residual,
            nonnegative=self._nonnegative,
        )

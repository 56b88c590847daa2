"""`Synthesizer` for synthesis packages: a class label and a seed in, new 2D images out.

A synthesis package (``ModelSpec.task == "synthesis"``) holds either a class-conditional GAN
generator (:mod:`medsight.inference.synth_gan`, ``medsight train synth --method gan``: one
forward pass per batch, no ``steps`` or ``guidance``) or a class-conditional MONAI
``DiffusionModelUNet`` trained as a DDPM (:mod:`medsight.training.synth`) and, in
``spec.extra["diffusion"]``, the noise schedule it was trained with.  Sampling runs MONAI's
``DDIMScheduler`` on that schedule with fewer steps than training (``steps=``, default 50) and
``eta=0``, so the same seed always gives the same images.  The network works on intensities in
``[-1, 1]``: the package's preprocessing (``dataset_zscore`` with ``mean``/``std`` chosen so the
training range maps onto ``[-1, 1]``) is undone here, so the images come back in the training
data's units (``uint8`` 0..255 for 8-bit data such as MedMNIST).

Every image carries ``meta["synthetic"] = True`` with the model id and version, the seed, the
label and its index within the batch, so what is written from it can be told apart from real
data (``medsight synthesize`` writes that provenance beside the files).

Examples
--------
>>> import tempfile
>>> from medsight.core.task import Task
>>> from medsight.models import ModelPackage
>>> spec = synthesis_spec_for_tests(["a", "b"], size=[8, 8])
>>> net = build_diffusion_unet(spec.architecture.args)
>>> pkg = ModelPackage.save(tempfile.mkdtemp() + "/s", spec, net.state_dict())
>>> imgs = Synthesizer(pkg).sample(2, "b", seed=3, steps=2)
>>> [im.shape for im in imgs], imgs[0].array.dtype.name, imgs[0].meta["label"]
([(8, 8), (8, 8)], 'uint8', 'b')
>>> bool((Synthesizer(pkg).sample(1, 1, seed=3, steps=2)[0].array == imgs[0].array).all())
True
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.models.package import ModelPackage, PackageError
from medsight.models.spec import Task

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_STEPS",
    "DIFFUSION_ARCH",
    "PredictionType",
    "Synthesizer",
    "build_diffusion_unet",
    "ddim_sample",
    "ddim_scheduler",
    "diffusion_unet_args",
    "from_unit_range",
    "synthesis_network",
    "synthesis_spec_for_tests",
]

#: DDIM steps of a sample unless asked otherwise.
DEFAULT_STEPS = 50
#: ``ArchitectureSpec.name`` of a synthesis package's network.
DIFFUSION_ARCH = "diffusion_unet"


class PredictionType(StrEnum):
    """What the diffusion network predicts (MONAI ``DDPMPredictionType`` values)."""

    EPSILON = "epsilon"
    V_PREDICTION = "v_prediction"


def diffusion_unet_args(
    channels: int, n_classes: int, widths: list[int], *, res_blocks: int = 1
) -> dict[str, Any]:
    """``DiffusionModelUNet`` arguments for ``n_classes`` classes (+1: the unconditional one).

    Attention only at the lowest resolution; group norm with the largest group count (up to 32)
    that divides every width.

    Examples
    --------
    >>> a = diffusion_unet_args(1, 2, [8, 16])
    >>> a["num_class_embeds"], a["norm_num_groups"], a["attention_levels"]
    (3, 8, [False, True])
    """
    groups = math.gcd(*widths)
    groups = max(g for g in range(1, min(groups, 32) + 1) if groups % g == 0)
    return {
        "spatial_dims": 2,
        "in_channels": channels,
        "out_channels": channels,
        "num_res_blocks": res_blocks,
        "channels": list(widths),
        "attention_levels": [False] * (len(widths) - 1) + [True],
        "norm_num_groups": groups,
        "num_head_channels": min(widths[-1], 32),
        "num_class_embeds": n_classes + 1,
    }


def build_diffusion_unet(args: Mapping[str, Any]) -> torch.nn.Module:
    """MONAI's ``DiffusionModelUNet`` with ``args`` (as ``ArchitectureSpec.args`` stores them).

    Raises
    ------
    InvalidInputError
        MONAI is missing or refuses the arguments.
    """
    try:
        from monai.networks.nets import DiffusionModelUNet
    except ImportError as exc:
        raise InvalidInputError(
            f"architecture {DIFFUSION_ARCH!r}",
            f"needs a missing library: {exc.name}",
            hint="install medsight with the [ml] extra (torch, monai)",
        ) from None
    try:
        return DiffusionModelUNet(**args)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"architecture {DIFFUSION_ARCH!r}", f"bad arguments {sorted(args)}: {exc}"
        ) from None


def from_unit_range(x: np.ndarray, extra: Mapping[str, Any], mean: float, std: float) -> Any:
    """Network intensities in ``[-1, 1]`` back to the data's units (and dtype, e.g. uint8).

    Examples
    --------
    >>> from_unit_range(np.array([-1.0, 0.0, 1.0]), {"output_dtype": "uint8"}, 127.5, 127.5)
    array([  0, 128, 255], dtype=uint8)
    """
    y = np.clip(x, -1.0, 1.0) * std + mean
    dtype = np.dtype(extra.get("output_dtype", "float32"))
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(y), info.min, info.max).astype(dtype)
    return y.astype(dtype)


class Synthesizer:
    """Sample images of a class from a synthesis package (DDIM, deterministic by seed).

    Parameters
    ----------
    package : ModelPackage or path
        A package whose task is ``synthesis``.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    backend : {"torch", "onnx"}, optional
        Default: :func:`medsight.inference.onnx_backend.resolve_backend` (``--backend``, else
        the package's measured default, else torch).  ONNX runs the exported U-Net step (or
        GAN generator) on CPU; the DDIM loop is the same either way.

    Raises
    ------
    InvalidInputError
        The package is not a synthesis package.
    """

    def __init__(
        self,
        package: ModelPackage | str | os.PathLike[str],
        *,
        device: str = "cpu",
        backend: str | None = None,
    ) -> None:
        from medsight.inference.onnx_backend import onnx_network, resolve_backend
        from medsight.models.device import select_device

        if not isinstance(package, ModelPackage):
            package = ModelPackage.load(package)
        spec = package.spec
        self._package = package
        self._diffusion = dict(spec.extra.get("diffusion", {}))
        self._device = select_device(device)
        net, self._gan = synthesis_network(package)
        self._net = net.to(self._device).eval()
        self.backend = resolve_backend(package, backend)
        # the sampling network: torch, or the ONNX export of the same U-Net step / generator
        # (features() always runs the torch network: it hooks the U-Net's middle block)
        self._step: Any = self._net
        if self.backend != "torch":
            self._step = onnx_network(package, self.backend)

    @property
    def package(self) -> ModelPackage:
        """The synthesis package."""
        return self._package

    @property
    def method(self) -> str:
        """``"gan"`` or ``"ddpm"``: how the package's network makes an image."""
        return "gan" if self._gan else "ddpm"

    @property
    def timesteps(self) -> int:
        """Length of the training noise schedule (the most DDIM steps a sample can take)."""
        return int(self._diffusion.get("num_train_timesteps", 1000))

    @property
    def labels(self) -> list[str]:
        """The class names a sample can be asked for, in index order."""
        return self._package.spec.label_names

    def label_index(self, label: str | int) -> int:
        """The class index of ``label`` (its name, or its index as int or digit string).

        Raises
        ------
        InvalidInputError
            No class has that name or index.
        """
        names = self.labels
        if isinstance(label, str) and label in names:
            return names.index(label)
        numeric = isinstance(label, int) or (isinstance(label, str) and label.isdigit())
        if numeric and 0 <= int(label) < len(names):
            return int(label)
        raise InvalidInputError(
            f"label {label!r}",
            f"is not a class of model {self._package.id}",
            hint=f"choose one of {', '.join(map(repr, names))}",
        )

    def sample(
        self,
        n: int,
        label: str | int,
        seed: int = 0,
        *,
        steps: int | None = None,
        guidance: float = 1.0,
        batch_size: int = 64,
    ) -> list[Image]:
        """``n`` new images of class ``label``, in the training data's units.

        Parameters
        ----------
        steps : int, optional
            DDIM steps, at most the training schedule's length (default 50, or the schedule's
            length when shorter).  DDPM packages only.
        guidance : float
            Classifier-free guidance scale; 1 uses the class-conditional prediction only.
            DDPM packages only.

        Raises
        ------
        InvalidInputError
            ``n`` or ``steps`` out of range, an unknown label, or ``steps`` / ``guidance``
            given to a GAN package.
        """
        import torch

        if n < 1:
            raise InvalidInputError("n", f"must be at least 1, got {n}")
        index = self.label_index(label)
        spec = self._package.spec
        if self._gan:
            return self._sample_gan(n, index, seed, steps, guidance, batch_size)
        timesteps = self.timesteps
        steps = min(DEFAULT_STEPS, timesteps) if steps is None else steps
        if not 1 <= steps <= timesteps:
            raise InvalidInputError("steps", f"must be in 1..{timesteps}, got {steps}")
        size = list(spec.preprocessing.size or [])
        channels = int(spec.architecture.args.get("in_channels", 1))
        gen = torch.Generator().manual_seed(int(seed))
        noise = torch.randn((n, channels, *size), generator=gen)  # on CPU: same on any device
        outs = []
        for start in range(0, n, batch_size):
            outs.append(self._denoise(noise[start : start + batch_size], index, steps, guidance))
        x = torch.cat(outs).numpy()
        args = spec.preprocessing.intensity_args
        arr = from_unit_range(x, spec.extra, float(args["mean"]), float(args["std"]))
        modality = spec.input.modalities[0] if spec.input.modalities else None
        name = self.labels[index]
        images = []
        for i in range(n):
            pixels = arr[i, 0] if channels == 1 else np.moveaxis(arr[i], 0, -1)
            meta = {
                "synthetic": True,
                "model": spec.name,
                "model_version": spec.version,
                "seed": int(seed),
                "index": i,
                "label": name,
                "label_index": index,
                "steps": steps,
                "guidance": guidance,
                "spacing_known": False,
            }
            images.append(Image(pixels, spatial_ndim=2, modality=modality, meta=meta))
        return images

    def _images(self, arr: np.ndarray, index: int, seed: int, **extra: Any) -> list[Image]:
        spec = self._package.spec
        channels = int(arr.shape[1])
        modality = spec.input.modalities[0] if spec.input.modalities else None
        images = []
        for i in range(len(arr)):
            pixels = arr[i, 0] if channels == 1 else np.moveaxis(arr[i], 0, -1)
            meta = {
                "synthetic": True,
                "model": spec.name,
                "model_version": spec.version,
                "seed": int(seed),
                "index": i,
                "label": self.labels[index],
                "label_index": index,
                **extra,
                "spacing_known": False,
            }
            images.append(Image(pixels, spatial_ndim=2, modality=modality, meta=meta))
        return images

    def _sample_gan(
        self, n: int, index: int, seed: int, steps: int | None, guidance: float, batch_size: int
    ) -> list[Image]:
        import torch

        if steps is not None or guidance != 1.0:
            raise InvalidInputError(
                "--steps / --guidance",
                f"apply to diffusion models; {self._package.id} is a GAN (one forward pass)",
                hint="leave them out for a GAN package",
            )
        latent = int(self._package.spec.architecture.args["latent_dim"])
        gen = torch.Generator().manual_seed(int(seed))
        z = torch.randn((n, latent), generator=gen)  # on CPU: the same on any device
        outs = []
        with torch.no_grad():
            for start in range(0, n, batch_size):
                zb = z[start : start + batch_size].to(self._device)
                labels = torch.full((len(zb),), index, dtype=torch.long, device=self._device)
                outs.append(self._step(zb, labels).float().cpu())
        spec = self._package.spec
        args = spec.preprocessing.intensity_args
        arr = from_unit_range(
            torch.cat(outs).numpy(), spec.extra, float(args["mean"]), float(args["std"])
        )
        return self._images(arr, index, seed, steps=None, guidance=None)

    def features(self, images: list[Image], *, timestep: int = 0) -> np.ndarray:
        """The network's own feature vector per image ``(n, d)``: the U-Net's middle block,
        averaged over space, on the image (lightly noised at ``timestep``; 0: clean) with the
        "no class" condition.  An encoder for Frechet distances when no classifier is given.

        Raises
        ------
        InvalidInputError
            A GAN package: its generator has no encoder (give a classifier as the encoder).
        """
        import torch

        from medsight.transforms.preprocess import to_network_input

        if self._gan:
            raise InvalidInputError(
                f"model {self._package.id}",
                "is a GAN: its generator cannot encode images for a Frechet distance",
                hint="give a classification package as the encoder (evaluate_synthesizer encoder=)",
            )
        spec = self._package.spec
        null = int(spec.architecture.args["num_class_embeds"]) - 1
        grabbed: list[torch.Tensor] = []

        def hook(_module: Any, _inputs: Any, output: torch.Tensor) -> None:
            grabbed.append(output.float().mean(dim=(2, 3)).cpu())

        handle = self._net.middle_block.register_forward_hook(hook)
        try:
            with torch.no_grad():
                for start in range(0, len(images), 128):
                    chunk = images[start : start + 128]
                    arr = np.stack([to_network_input(im, spec.preprocessing) for im in chunk])
                    x = torch.from_numpy(arr.clip(-1.0, 1.0)).to(self._device)
                    tt = torch.full((len(x),), timestep, dtype=torch.long, device=self._device)
                    cond = torch.full((len(x),), null, dtype=torch.long, device=self._device)
                    self._net(x, timesteps=tt, class_labels=cond)
        finally:
            handle.remove()
        return torch.cat(grabbed).numpy().astype(np.float64)

    def _denoise(self, x: torch.Tensor, index: int, steps: int, guidance: float) -> torch.Tensor:
        null = int(self._package.spec.architecture.args["num_class_embeds"]) - 1
        return ddim_sample(
            self._step, x, index, steps, guidance, self._diffusion, null, self._device
        )


def synthesis_network(package: ModelPackage) -> tuple[torch.nn.Module, bool]:
    """The torch network of a synthesis package (weights loaded, eval mode) and whether it is
    a GAN generator (else a DDPM U-Net).

    Raises
    ------
    InvalidInputError
        The package is not a synthesis package, or its weights do not fit.
    """
    from medsight.inference.synth_gan import GAN_ARCH, build_gan_generator

    spec = package.spec
    arch = spec.architecture.name
    if spec.task is not Task.SYNTHESIS or arch not in (DIFFUSION_ARCH, GAN_ARCH):
        raise InvalidInputError(
            f"model {package.id}",
            f"is a {spec.task.value} model ({spec.architecture.name}), not a synthesis model",
            hint="train one with `medsight train synth`",
        )
    build = build_gan_generator if arch == GAN_ARCH else build_diffusion_unet
    net = build(spec.architecture.args)
    try:
        net.load_state_dict(package.state_dict(), strict=True)
    except RuntimeError as exc:
        raise PackageError(
            package.path / "weights.safetensors",
            f"weights do not fit architecture {arch!r}: {str(exc).splitlines()[0]}",
        ) from None
    return net.eval(), arch == GAN_ARCH


def ddim_scheduler(diffusion: Mapping[str, Any], steps: int) -> Any:
    """MONAI's ``DDIMScheduler`` on the training schedule ``diffusion``, set to ``steps``."""
    from monai.networks.schedulers import DDIMScheduler

    sched = DDIMScheduler(
        num_train_timesteps=int(diffusion.get("num_train_timesteps", 1000)),
        schedule=str(diffusion.get("schedule", "linear_beta")),
        prediction_type=str(diffusion.get("prediction_type", PredictionType.EPSILON.value)),
        clip_sample=True,
    )
    sched.set_timesteps(steps)
    return sched


def ddim_sample(
    net: Any,
    x: torch.Tensor,
    index: int | None,
    steps: int,
    guidance: float,
    diffusion: Mapping[str, Any],
    null: int | None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Run ``steps`` DDIM steps (``eta=0``) from the noise ``x`` for class ``index``.

    ``net(x, timesteps=, class_labels=)`` is the U-Net step: the torch network or its ONNX
    session (:class:`~medsight.inference.onnx_backend.OnnxNetwork` takes the same named
    inputs).  ``index`` None: an unconditional network (no class labels, no guidance);
    ``null`` is the "no class" index classifier-free guidance uses.
    """
    import torch

    sched = ddim_scheduler(diffusion, steps)
    b = len(x)
    x = x.to(device)
    cond = None if index is None else torch.full((b,), index, dtype=torch.long, device=device)
    with torch.no_grad():
        for t in sched.timesteps:
            tt = torch.full((b,), int(t), dtype=torch.long, device=device)
            out = net(x, timesteps=tt, class_labels=cond)
            if guidance != 1.0 and cond is not None and null is not None:
                free = net(x, timesteps=tt, class_labels=torch.full_like(cond, null))
                out = free + guidance * (out - free)
            x, _ = sched.step(out, int(t), x)
    return x.float().cpu()


def synthesis_spec_for_tests(labels: list[str], *, size: list[int]) -> Any:
    """A minimal synthesis :class:`~medsight.models.spec.ModelSpec` (tiny network), for doctests
    and tests of code that reads synthesis packages."""
    from medsight.models.spec import (
        ArchitectureSpec,
        InputSpec,
        Intensity,
        LabelSpec,
        ModelSpec,
        PreprocessingSpec,
    )

    return ModelSpec(
        name="toy-synth",
        version="0.1.0",
        task=Task.SYNTHESIS,
        architecture=ArchitectureSpec(
            name=DIFFUSION_ARCH, args=diffusion_unet_args(1, len(labels), [8, 16])
        ),
        input=InputSpec(spatial_ndim=2),
        preprocessing=PreprocessingSpec(
            size=size,
            intensity=Intensity.DATASET_ZSCORE,
            intensity_args={"mean": 127.5, "std": 127.5},
        ),
        labels=[LabelSpec(index=i, name=n) for i, n in enumerate(labels)],
        extra={"diffusion": {"num_train_timesteps": 100}, "output_dtype": "uint8"},
    )

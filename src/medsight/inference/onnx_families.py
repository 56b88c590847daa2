"""What each task family exports to ONNX, on which reference inputs, and how its decision is
compared with torch's.

:func:`medsight.inference.onnx_backend.export_onnx` is one procedure for every family (trace,
check parity, time both backends, record); an :class:`ExportPlan` is the family-specific part:

* **classification / segmentation** (built in :mod:`~medsight.inference.onnx_backend`): the
  network, a dynamic batch axis; decision = the class / the voxel label.
* **denoising**: the 2D U-Net with dynamic batch *and* height/width (multiples of the U-Net's
  down-sampling factor, as :func:`medsight.inference.denoise.denoise_slices` pads them); the
  reference inputs come in two slice sizes, so the dynamic spatial axes are checked; the
  decision is the denoised output itself (its max absolute difference).
* **detection**: RetinaNet's network only, as a wrapper returning the flattened head outputs
  (class maps of every pyramid level, then box maps), dynamic batch and spatial axes (multiples
  of the network's ``size_divisible``).  MONAI's anchor generation, box decoding, score floor
  and NMS stay in torch on the ONNX outputs (:func:`onnx_head_module` stands in for the network
  inside MONAI's ``RetinaNetDetector``).  Decision = the boxes at or above the package's
  operating threshold after NMS: each torch box must have an ONNX box of the same class with
  IoU at least ``1 -`` :data:`IOU_TOLERANCE` (and no extra ones).
* **synthesis**: a DDPM package exports one U-Net step with its inputs (noisy image, timestep,
  and class condition when the network has one), all with a dynamic batch axis; the DDIM loop
  stays in Python (:func:`medsight.inference.synth.ddim_sample`).  Decision = a few sampling
  steps from the same seeded noise, torch vs ONNX, compared in the data's units.  A GAN package
  exports its generator (latent, class) -> image; decision = the images in the data's units.

Risk packages are refused (:data:`medsight.inference.onnx_backend.REFUSED`).

Examples
--------
>>> boxes_iou(np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[1.0, 0.0, 3.0, 2.0]])).round(3)
array([[0.333]])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.models.package import ModelPackage
from medsight.models.spec import Task

if TYPE_CHECKING:
    import torch

    from medsight.inference.onnx_backend import OnnxNetwork

__all__ = [
    "IOU_TOLERANCE",
    "SAMPLING_STEPS",
    "ExportPlan",
    "boxes_iou",
    "family_plan",
    "onnx_head_module",
]

#: A torch box and its ONNX twin must overlap with IoU >= 1 - IOU_TOLERANCE.
IOU_TOLERANCE = 1e-3
#: DDIM steps compared at export (a DDPM package's decision check).
SAMPLING_STEPS = 3
#: Reference slice sizes of a denoiser (before rounding up to its padding multiple).
DENOISE_SIZES = ((64, 64), (48, 80))

#: One group of reference inputs: one array per network input, same batch size.
Group = tuple[NDArray[Any], ...]
#: ``(torch outputs, onnx outputs, session)`` per group -> the decision record.
Decide = Callable[[list[list[NDArray[Any]]], list[list[NDArray[Any]]], "OnnxNetwork"], dict]


@dataclasses.dataclass(frozen=True)
class ExportPlan:
    """The family-specific part of an export (see the module docstring).

    Parameters
    ----------
    module : torch.nn.Module
        What ``torch.onnx.export`` traces (tensors in, a tensor or a tuple of tensors out).
    groups : list of tuple of arrays
        Reference inputs: each group holds one array per network input, first axis the batch;
        groups may differ in spatial size (a denoiser's two slice sizes).
    source : str
        Where the reference inputs came from, for the record.
    input_names, output_names : tuple of str
    dynamic : tuple of dict
        Per input: axis -> ``"batch"`` or the multiple a dynamic spatial axis must be of.
    decide : callable
        Torch and ONNX outputs per group, and the session -> ``{"decision_agreement": float or
        None, ...}`` (None: the output is the decision, checked by its max difference).
    decision : str
        What the decision is, in words.
    """

    module: torch.nn.Module
    groups: list[Group]
    source: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic: tuple[dict[int, str | int], ...]
    decide: Decide
    decision: str

    def dynamic_record(self) -> dict[str, dict[str, str]]:
        """The dynamic axes as ``model.json`` records them (input name -> axis -> meaning)."""
        out: dict[str, dict[str, str]] = {}
        for name, axes in zip(self.input_names, self.dynamic, strict=True):
            out[name] = {
                str(a): v if isinstance(v, str) else f"spatial (multiple of {v})"
                for a, v in axes.items()
            }
        return out


def family_plan(pkg: ModelPackage, n: int | None, seed: int, reference: Path | None) -> ExportPlan:
    """The :class:`ExportPlan` of a denoising, detection or synthesis package.

    ``reference`` is the package's ``reference_inputs.npz`` when it has one (arrays named after
    the network's inputs; ``x`` for the image), else seeded synthetic inputs are made.
    """
    task = pkg.spec.task
    if task is Task.DENOISING:
        return _denoise_plan(pkg, n or 4, seed, reference)
    if task is Task.DETECTION:
        return _detect_plan(pkg, n or 4, seed, reference)
    if task is Task.SYNTHESIS:
        return _synth_plan(pkg, n or 4, seed, reference)
    raise InvalidInputError(pkg.path, f"{task.value} packages have no ONNX export plan")


def _load_reference(path: Path, names: Sequence[str]) -> dict[str, NDArray[Any]]:
    with np.load(path) as z:
        missing = [k for k in names if k not in z.files]
        if missing:
            raise InvalidInputError(
                path, f"lacks the arrays {missing}; the network's inputs are {list(names)}"
            )
        return {k: np.asarray(z[k]) for k in names}


def _round_up(v: int, m: int) -> int:
    return -(-int(v) // m) * m


# --- denoising ------------------------------------------------------------------------------


def _denoise_plan(pkg: ModelPackage, n: int, seed: int, reference: Path | None) -> ExportPlan:
    from medsight.inference.denoise import pad_multiple

    m = pad_multiple(pkg.spec)
    channels = pkg.spec.input.channels
    if reference is not None:
        x = _load_reference(reference, ["x"])["x"].astype(np.float32)
        if x.ndim != 4 or x.shape[1] != channels or any(s % m for s in x.shape[2:]):
            raise InvalidInputError(
                reference,
                f"x has shape {x.shape}; the denoiser takes (N, {channels}, H, W) with H and W "
                f"multiples of {m}",
            )
        groups, source = [(x,)], f"reference_inputs.npz ({len(x)} slices of {list(x.shape[2:])})"
    else:
        rng = np.random.default_rng(seed)
        sizes = [tuple(_round_up(s, m) for s in hw) for hw in DENOISE_SIZES]
        counts = (n, max(1, n // 2))
        groups = [
            (rng.uniform(0.0, 1.0, (k, channels, *hw)).astype(np.float32),)
            for k, hw in zip(counts, sizes, strict=True)
        ]
        source = (
            f"synthetic: seeded uniform [0, 1] slices (the denoiser's input scale), {counts[0]} "
            f"of {list(sizes[0])} and {counts[1]} of {list(sizes[1])} (seed {seed})"
        )

    def decide(ref: Any, out: Any, session: Any) -> dict[str, Any]:
        return {"decision_agreement": None, "shapes": [list(g[0].shape) for g in groups]}

    return ExportPlan(
        module=pkg.build_network(),
        groups=groups,
        source=source,
        input_names=("input",),
        output_names=("output",),
        dynamic=({0: "batch", 2: m, 3: m},),
        decide=decide,
        decision="the denoised output itself (max abs difference on two slice sizes)",
    )


# --- detection ------------------------------------------------------------------------------


def _head_outputs_module(net: torch.nn.Module) -> torch.nn.Module:
    """RetinaNet returning ``(*class maps per level, *box maps per level)``: what MONAI's
    detector splits in half when a network returns a sequence."""
    import torch

    class HeadOutputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            out = self.inner(x)
            return (*out["classification"], *out["box_regression"])

    return HeadOutputs(net).eval()


def onnx_head_module(session: OnnxNetwork) -> torch.nn.Module:
    """A torch module running ``session`` and returning all its outputs as a tuple of tensors on
    the input's device: a stand-in for RetinaNet inside MONAI's ``RetinaNetDetector``."""
    import torch

    class OnnxHeads(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.session = session

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            outs = session.run_all(x.detach().cpu().numpy())
            return tuple(torch.from_numpy(o).to(x.device) for o in outs)

    return OnnxHeads().eval()


def boxes_iou(a: NDArray[Any], b: NDArray[Any]) -> NDArray[np.float64]:
    """IoU of corner boxes ``[lo..., hi...]`` (2D or 3D): ``(len(a), len(b))``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d = a.shape[1] // 2 if a.size else b.shape[1] // 2 if b.size else 2
    a, b = a.reshape(-1, 2 * d), b.reshape(-1, 2 * d)
    lo = np.maximum(a[:, None, :d], b[None, :, :d])
    hi = np.minimum(a[:, None, d:], b[None, :, d:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=2)
    va = np.prod(a[:, d:] - a[:, :d], axis=1)
    vb = np.prod(b[:, d:] - b[:, :d], axis=1)
    union = va[:, None] + vb[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _matched(t: dict[str, NDArray[Any]], o: dict[str, NDArray[Any]]) -> int:
    """Torch boxes with an ONNX box of the same class at IoU >= 1 - IOU_TOLERANCE (greedy)."""
    iou = boxes_iou(t["boxes"], o["boxes"])
    iou[t["labels"][:, None] != o["labels"][None, :]] = 0.0
    used: set[int] = set()
    hits = 0
    for i in range(len(t["boxes"])):
        for j in np.argsort(-iou[i]) if iou.shape[1] else []:
            if int(j) not in used and iou[i, j] >= 1.0 - IOU_TOLERANCE:
                used.add(int(j))
                hits += 1
                break
    return hits


def _detect_plan(pkg: ModelPackage, n: int, seed: int, reference: Path | None) -> ExportPlan:
    import torch

    from medsight.models.retinanet import build_detector

    spec = pkg.spec
    net = pkg.build_network().float()
    divisible = [int(v) for v in net.size_divisible]
    ndim = spec.input.spatial_ndim
    settings = dict(spec.extra.get("detector", {}))
    if reference is not None:
        x = _load_reference(reference, ["x"])["x"].astype(np.float32)
        if x.ndim != ndim + 2 or x.shape[1] != spec.input.channels:
            raise InvalidInputError(reference, f"x has shape {x.shape}; need (N, C, {ndim} axes)")
        source = f"reference_inputs.npz ({len(x)} inputs)"
    else:
        size = spec.preprocessing.size or settings.get("patch_size") or [2 * d for d in divisible]
        size = [int(s) for s in size]
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((n, spec.input.channels, *size)).astype(np.float32)
        source = f"synthetic: {n} seeded standard-normal inputs of shape {size} (seed {seed})"
    # MONAI pads every input at the end with zeros to a multiple of size_divisible: so here
    pad = [(0, 0), (0, 0)] + [(0, (-s) % d) for s, d in zip(x.shape[2:], divisible, strict=True)]
    x = np.pad(x, pad)
    threshold = float(spec.thresholds.get("score", settings.get("score_floor", 0.02)))
    levels = int(net.n_levels)

    def detector(network: torch.nn.Module | None) -> Any:
        det = build_detector(
            net,
            score_thresh=float(settings.get("score_floor", 0.02)),
            nms_thresh=float(settings.get("nms_iou", 0.22)),
            detections_per_img=int(settings.get("max_detections", 100)),
        ).eval()
        if network is not None:
            det.network = network
        return det

    def boxes(det: Any) -> list[dict[str, NDArray[Any]]]:
        found = []
        with torch.no_grad():
            for start in range(0, len(x), 4):
                for r in det(torch.from_numpy(x[start : start + 4])):
                    keep = (r["labels_scores"] >= threshold).numpy()
                    found.append({k: r[k].numpy()[keep] for k in ("boxes", "labels")})
        return found

    def decide(ref: Any, out: Any, session: OnnxNetwork) -> dict[str, Any]:
        a, b = boxes(detector(None)), boxes(detector(onnx_head_module(session)))
        total = sum(max(len(t["boxes"]), len(o["boxes"])) for t, o in zip(a, b, strict=True))
        hits = sum(_matched(t, o) for t, o in zip(a, b, strict=True))
        return {
            "decision_agreement": hits / total if total else 1.0,
            "boxes_compared": int(total),
            "score_threshold": threshold,
            "iou_tolerance": IOU_TOLERANCE,
        }

    return ExportPlan(
        module=_head_outputs_module(net),
        groups=[(x,)],
        source=source,
        input_names=("input",),
        output_names=tuple(
            f"{kind}_{i}" for kind in ("classification", "box_regression") for i in range(levels)
        ),
        dynamic=({0: "batch", **{2 + k: d for k, d in enumerate(divisible)}},),
        decide=decide,
        decision=(
            f"boxes scoring >= {threshold:g} after NMS: same class, IoU >= {1 - IOU_TOLERANCE:g}"
        ),
    )


# --- synthesis ------------------------------------------------------------------------------


def _step_module(net: torch.nn.Module, conditional: bool) -> torch.nn.Module:
    """One DDPM U-Net step with positional inputs ``(x, timesteps[, class_labels])``."""
    import torch

    class Step(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(
            self, x: torch.Tensor, timesteps: torch.Tensor, class_labels: torch.Tensor
        ) -> torch.Tensor:
            return self.inner(x, timesteps=timesteps, class_labels=class_labels)

    class UnconditionalStep(Step):
        def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return self.inner(x, timesteps=timesteps)

    if not conditional:
        return UnconditionalStep(net).eval()
    return Step(net).eval()


def _agreement(a: NDArray[Any], b: NDArray[Any], spec: Any, tol: float) -> float:
    """Share of pixels of two samples (network units, ``[-1, 1]``) that agree in the data's
    units: within one unit for integer output types (rounding), else within ``2 tol`` of the
    ``[-1, 1]`` range."""
    from medsight.inference.synth import from_unit_range

    if np.issubdtype(np.dtype(spec.extra.get("output_dtype", "float32")), np.integer):
        iargs = spec.preprocessing.intensity_args
        mean, std = float(iargs["mean"]), float(iargs["std"])
        da = from_unit_range(a, spec.extra, mean, std).astype(np.int64)
        db = from_unit_range(b, spec.extra, mean, std).astype(np.int64)
        return float((np.abs(da - db) <= 1).mean())
    return float((np.abs(np.clip(a, -1, 1) - np.clip(b, -1, 1)) <= 2 * tol).mean())


def _synth_plan(pkg: ModelPackage, n: int, seed: int, reference: Path | None) -> ExportPlan:
    import torch

    from medsight.inference.synth import ddim_sample, synthesis_network
    from medsight.inference.synth_gan import GAN_ARCH

    spec = pkg.spec
    args = spec.architecture.args
    net, _ = synthesis_network(pkg)
    rng = np.random.default_rng(seed)
    if spec.architecture.name == GAN_ARCH:
        names: tuple[str, ...] = ("z", "labels")
        classes = int(args["n_classes"])
        made = (
            rng.standard_normal((n, int(args["latent_dim"]))).astype(np.float32),
            rng.integers(0, classes, n).astype(np.int64),
        )
        module, what = net, "the generated images in the data's units"
    else:
        conditional = args.get("num_class_embeds") is not None
        names = ("x", "timesteps", "class_labels") if conditional else ("x", "timesteps")
        steps = int(spec.extra.get("diffusion", {}).get("num_train_timesteps", 1000))
        shape = (int(args.get("in_channels", 1)), *[int(s) for s in spec.preprocessing.size or []])
        made = (
            rng.standard_normal((n, *shape)).astype(np.float32),
            rng.integers(0, steps, n).astype(np.int64),
            rng.integers(0, int(args.get("num_class_embeds") or 1), n).astype(np.int64),
        )[: len(names)]
        module = _step_module(net, conditional)
        what = f"{SAMPLING_STEPS} DDIM steps from the same seeded noise, in the data's units"
    if reference is not None:
        loaded = _load_reference(reference, ["x" if names[0] == "x" else names[0], *names[1:]])
        made = tuple(loaded[k] for k in names)
        source = f"reference_inputs.npz ({len(made[0])} inputs: {', '.join(names)})"
    else:
        source = f"synthetic: {n} seeded inputs ({', '.join(names)}; seed {seed})"
    groups = [tuple(a.astype(np.float32 if a.dtype.kind == "f" else np.int64) for a in made)]

    def decide(ref: Any, out: Any, session: OnnxNetwork) -> dict[str, Any]:
        from medsight.inference.onnx_backend import PARITY_TOLERANCE as tol

        if spec.architecture.name == GAN_ARCH:
            return {"decision_agreement": _agreement(ref[0][0], out[0][0], spec, tol)}
        gen = torch.Generator().manual_seed(seed)
        noise = torch.randn((2, *made[0].shape[1:]), generator=gen)
        diffusion = spec.extra.get("diffusion", {})
        embeds = args.get("num_class_embeds")
        index, null = (0, int(embeds) - 1) if embeds is not None else (None, None)
        a = ddim_sample(net, noise, index, SAMPLING_STEPS, 1.0, diffusion, null).numpy()
        b = ddim_sample(session, noise, index, SAMPLING_STEPS, 1.0, diffusion, null).numpy()
        return {
            "decision_agreement": _agreement(a, b, spec, tol),
            "sampling_steps": SAMPLING_STEPS,
            "sampling_max_abs_diff": float(np.max(np.abs(a.astype(np.float64) - b))),
        }

    return ExportPlan(
        module=module,
        groups=groups,
        source=source,
        input_names=names,
        output_names=("output",),
        dynamic=tuple({0: "batch"} for _ in names),
        decide=decide,
        decision=what,
    )

"""ONNX export of a package's network and ONNX Runtime as a second inference backend.

:func:`export_onnx` writes ``model.onnx`` (``torch.onnx.export``, opset :data:`OPSET`, a dynamic
batch axis) into the package folder (or into a copy of it), checks it against torch on the
package's reference inputs, and records the file, its sha256, the opset and the parity result
in ``model.json`` under ``extra["backends"]``.  An export whose outputs differ from torch by
more than the tolerance, or whose decisions disagree, is refused and nothing is written.

Reference inputs are the package's ``reference_inputs.npz`` (array ``x``, preprocessed network
inputs ``(N, C, *spatial)``, and for a diffusion step ``timesteps`` and ``class_labels``) when
it has one; otherwise seeded synthetic inputs of the declared shape (the classifier's resize
size, the segmentation plan's patch size, the detector's size or patch, two slice sizes for a
denoiser), and the record says which.

Optional int8 dynamic quantisation (``onnxruntime.quantization.quantize_dynamic``) is kept only
when the measured drop stays within :data:`QUANT_BOUND`: a classifier's AUC drop on an
evaluation set when one is given, else ``1 -`` decision agreement with torch on the reference
inputs (a proxy; the record says which was measured).  The Dice drop of a segmentation
package on an evaluation set is not measured yet: it gets the reference-input proxy.

Backend selection (:func:`resolve_backend`): an explicit ``backend=`` argument, else the one set
by :func:`use_backend` (the CLI's ``--backend``), else the default recorded in the package
(``extra["backends"]["default"]``: the backend measured faster at export, torch and ONNX
Runtime timed interleaved on the reference inputs, :func:`time_backends`; it holds only on the
kind of machine it was measured on, :func:`machine_fingerprint`), else ``"torch"``.  ONNX
Runtime runs on its CPU execution provider with ``intra_op_num_threads`` =
``torch.get_num_threads()`` unless a thread count is given.

Families: classification (binary, multi-class, ordinal, multi-label), segmentation, denoising
(dynamic height and width too), detection (RetinaNet's head outputs; anchors, box decoding and
NMS stay in torch) and synthesis (one DDPM U-Net step with its timestep and class inputs, the
DDIM loop in Python; or a GAN generator) export, each with its own reference inputs and
decision check (:mod:`medsight.inference.onnx_families`).  Risk packages are refused with the
reason (:func:`export_support`, :data:`REFUSED`), and so is any export the exporter fails on:
one :class:`InvalidInputError`, nothing written.

Examples
--------
>>> export_support("risk")[0]
False
>>> resolve_backend(None, "onnx")
'onnx'
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import hashlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.models.package import SPEC_FILE, ModelPackage
from medsight.models.spec import Task

if TYPE_CHECKING:
    import torch

    from medsight.inference.onnx_families import ExportPlan

__all__ = [
    "BACKENDS",
    "OPSET",
    "PARITY_TOLERANCE",
    "QUANT_BOUND",
    "REFUSED",
    "ExportResult",
    "OnnxNetwork",
    "export_onnx",
    "export_plan",
    "export_support",
    "onnx_network",
    "resolve_backend",
    "use_backend",
]

#: ONNX opset of every export.
OPSET = 18
#: Largest max absolute difference of the network outputs (logits) accepted at export, per unit
#: of output scale (``max(1, max |torch output|)``): float32 sums in large 3D convolutions
#: differ by more in absolute terms when the logits are large.
PARITY_TOLERANCE = 1e-4
#: Smallest decision agreement with torch accepted at export (classes; segmentation voxels).
MIN_AGREEMENT = 0.999
#: Largest accepted accuracy drop of the int8 model (AUC for classifiers, Dice for segmentation).
QUANT_BOUND = 0.005
#: Backend names; ``onnx-int8`` only where a quantised model was kept.
BACKENDS = ("torch", "onnx", "onnx-int8")

ONNX_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
REFERENCE_FILE = "reference_inputs.npz"
_CLASSIFY = (Task.BINARY, Task.MULTICLASS, Task.ORDINAL, Task.MULTILABEL)
_FAMILIES = (Task.DENOISING, Task.DETECTION, Task.SYNTHESIS)
#: Why the remaining families are not exported.
REFUSED = {
    Task.RISK: "a risk model is not one network: the clinical encoding of its tabular "
    "covariates (fitted on training data) and the visit padding run in Python around the "
    "fusion network, and its image embeddings come from a separate encoder pass, so no single "
    "ONNX graph holds the prediction",
    Task.NONE: "the package predicts nothing",
}

_selected: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "medsight_backend", default=None
)


def export_support(task: Task | str) -> tuple[bool, str]:
    """Whether packages of ``task`` can be exported, and why not.

    Examples
    --------
    >>> export_support("detection")
    (True, '')
    >>> export_support("risk")[1].split(":")[0]
    'a risk model is not one network'
    """
    t = Task(task)
    if t in _CLASSIFY or t is Task.SEGMENTATION or t in _FAMILIES:
        return True, ""
    return False, REFUSED.get(t, f"{t.value} packages are not supported")


@contextlib.contextmanager
def use_backend(backend: str | None) -> Iterator[None]:
    """Within the block, Predictors and Segmenters built without ``backend=`` use ``backend``."""
    if backend is not None and backend not in BACKENDS:
        raise InvalidInputError("backend", f"{backend!r} is not one of {', '.join(BACKENDS)}")
    token = _selected.set(backend)
    try:
        yield
    finally:
        _selected.reset(token)


def resolve_backend(package: ModelPackage | None, backend: str | None = None) -> str:
    """The backend to run: ``backend``, else :func:`use_backend`'s, else the package's recorded
    measured default, else ``"torch"``."""
    chosen = backend or _selected.get()
    if chosen is None and package is not None:
        recorded = package.spec.extra.get("backends", {})
        timing = recorded.get("timing")
        # a measured default holds only on the kind of machine it was measured on
        if timing is None or timing.get("on") == machine_fingerprint():
            chosen = recorded.get("default")
        if chosen is not None and chosen != "torch" and not (package.path / ONNX_FILE).is_file():
            chosen = None  # the recorded file is gone: torch
    chosen = chosen or "torch"
    if chosen not in BACKENDS:
        raise InvalidInputError("backend", f"{chosen!r} is not one of {', '.join(BACKENDS)}")
    return str(chosen)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class OnnxNetwork:
    """An ONNX Runtime session that takes and returns tensors like the torch network.

    Inputs are given in the exported order, or by name (a DDPM step's ``timesteps=`` and
    ``class_labels=``, as MONAI's U-Net takes them); float arrays go in as float32, integer
    ones as int64.

    Parameters
    ----------
    path : path
        The ``.onnx`` file.
    threads : int, optional
        ``intra_op_num_threads`` (default ``torch.get_num_threads()``).
    """

    #: Like a torch module in eval mode (code that saves and restores ``training`` works).
    training = False

    def __init__(self, path: str | os.PathLike[str], threads: int | None = None) -> None:
        import onnxruntime as ort
        import torch

        opts = ort.SessionOptions()
        self.threads = int(threads or torch.get_num_threads())
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), sess_options=opts, providers=["CPUExecutionProvider"]
        )
        self.input_names = [i.name for i in self.session.get_inputs()]
        self._input = self.input_names[0]

    def _feed(self, arrays: tuple[Any, ...], named: dict[str, Any]) -> dict[str, NDArray[Any]]:
        values = dict(zip(self.input_names, arrays, strict=False))
        values |= {k: v for k, v in named.items() if v is not None}
        missing = [k for k in self.input_names if k not in values]
        unknown = [k for k in values if k not in self.input_names]
        if missing or unknown or len(arrays) > len(self.input_names):
            raise InvalidInputError(
                self.path,
                f"takes the inputs {self.input_names}; got {len(arrays)} positional and "
                f"{sorted(named)} named",
            )
        feed = {}
        for k, v in values.items():
            a = np.asarray(v)
            a = a.astype(np.float32 if a.dtype.kind == "f" else np.int64, copy=False)
            feed[k] = np.ascontiguousarray(a)
        return feed

    def run(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """The first output for a float32 batch ``(N, C, *spatial)``."""
        return self.run_all(x)[0]

    def run_all(self, *arrays: NDArray[Any], **named: NDArray[Any]) -> list[NDArray[Any]]:
        """Every output, for the inputs in order or by name."""
        return [np.asarray(o) for o in self.session.run(None, self._feed(arrays, named))]

    def __call__(self, *tensors: torch.Tensor, **named: torch.Tensor | None) -> torch.Tensor:
        """Tensors in, the first output as a tensor on the first input's device, so sliding
        windows, batching and sampling loops work unchanged."""
        import torch

        def arr(t: torch.Tensor) -> NDArray[Any]:
            return t.detach().cpu().numpy()

        device = (tensors[0] if tensors else next(iter(named.values()))).device  # type: ignore[union-attr]
        outs = self.run_all(
            *(arr(t) for t in tensors),
            **{k: arr(v) for k, v in named.items() if v is not None},
        )
        return torch.from_numpy(outs[0]).to(device)

    def eval(self) -> OnnxNetwork:
        """No-op (an ONNX session is always in inference mode)."""
        return self

    def train(self, mode: bool = True) -> OnnxNetwork:
        """No-op (an ONNX session cannot train); here so ``net.train(was_training)`` works."""
        return self


def onnx_network(package: ModelPackage, backend: str, threads: int | None = None) -> OnnxNetwork:
    """The verified ONNX Runtime session of ``package`` for ``backend`` (``onnx``/``onnx-int8``).

    Raises
    ------
    InvalidInputError
        The package has no such export, or the file changed since it was recorded.
    """
    key = "onnx_int8" if backend == "onnx-int8" else "onnx"
    rec = package.spec.extra.get("backends", {}).get(key)
    if not rec or (key == "onnx_int8" and not rec.get("kept")):
        raise InvalidInputError(
            package.path,
            f"has no {backend} export",
            hint=f"run medsight export {package.path.name} --format onnx"
            + (" --quantize int8" if key == "onnx_int8" else ""),
        )
    path = package.path / rec["file"]
    if not path.is_file() or _sha256(path) != rec["sha256"]:
        raise InvalidInputError(
            path, "is missing or does not match its sha256 in model.json", hint="export again"
        )
    return OnnxNetwork(path, threads)


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """Where the export went and what model.json now records under ``extra["backends"]``."""

    package: Path
    record: dict[str, Any]


def _single_output(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` returning one tensor (MONAI's ViT returns ``(logits, hidden_states)``)."""
    import torch

    class SingleOutput(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.inner(x)
            return out[0] if isinstance(out, tuple | list) else out

    return SingleOutput(net).eval()


def _network_and_shape(package: ModelPackage) -> tuple[torch.nn.Module, tuple[int, ...]]:
    spec = package.spec
    if spec.task is Task.SEGMENTATION:
        from medsight.models.dynunet import register_segmentation_networks
        from medsight.models.seg_plan import PLAN_FILE, SegmentationPlan

        register_segmentation_networks()
        plan = SegmentationPlan.load(package.path / PLAN_FILE)
        spatial = tuple(int(s) for s in plan.patch_size)
    else:
        if not spec.preprocessing.size:
            raise InvalidInputError(
                package.path / SPEC_FILE,
                "preprocessing.size is not set: the classifier's input shape is not fixed",
            )
        spatial = tuple(int(s) for s in spec.preprocessing.size)
    return _single_output(package.build_network()), (spec.input.channels, *spatial)


def _reference_inputs(
    package: ModelPackage, shape: tuple[int, ...], n: int, seed: int
) -> tuple[NDArray[np.float32], str]:
    path = package.path / REFERENCE_FILE
    if path.is_file():
        with np.load(path) as z:
            x = np.asarray(z["x"], dtype=np.float32)
        if x.shape[1:] != shape:
            raise InvalidInputError(path, f"x has shape {x.shape}; the network takes (N, {shape})")
        return x, f"{REFERENCE_FILE} ({len(x)} inputs)"
    x = np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)
    return x, f"synthetic: {n} seeded standard-normal inputs of shape {list(shape)} (seed {seed})"


def _decisions(package: ModelPackage, logits: NDArray[np.float32]) -> NDArray[np.int64]:
    spec = package.spec
    if spec.task is Task.SEGMENTATION:
        regions = spec.extra.get("regions")
        if regions:  # region-based: the label map of the sigmoid outputs
            from scipy.special import expit

            from medsight.models.seg_regions import regions_to_labels

            proba = expit(logits.astype(np.float64))
            return regions_to_labels(proba, regions, axis=1).astype(np.int64)
        return np.argmax(logits, axis=1)
    from medsight.inference.decision import predict_labels
    from medsight.models.calibration import calibrated_probabilities

    proba = calibrated_probabilities(
        logits.astype(np.float64), spec.task, spec.calibration, spec.temperature
    )
    return np.asarray(predict_labels(spec.task.value, proba, spec.thresholds, spec.label_names))


def _compare(
    package: ModelPackage, ref: NDArray[np.float32], out: NDArray[np.float32]
) -> dict[str, float]:
    agree = _decisions(package, ref) == _decisions(package, out)
    return {
        "max_abs_diff": float(np.max(np.abs(ref.astype(np.float64) - out))),
        "decision_agreement": float(agree.mean()),
    }


def _torch_run(
    net: torch.nn.Module, group: tuple[NDArray[Any], ...], batch: int = 16
) -> list[NDArray[Any]]:
    """Every output of ``net`` on one group of inputs (one array per input), in batches."""
    import torch

    chunks: list[list[NDArray[Any]]] = []
    with torch.no_grad():
        for i in range(0, len(group[0]), batch):
            out = net(*(torch.from_numpy(np.ascontiguousarray(a[i : i + batch])) for a in group))
            outs = out if isinstance(out, tuple | list) else (out,)
            chunks.append([o.float().numpy() for o in outs])
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]


def _onnx_run(
    net: OnnxNetwork, group: tuple[NDArray[Any], ...], batch: int = 16
) -> list[NDArray[Any]]:
    chunks = [
        net.run_all(*(a[i : i + batch] for a in group)) for i in range(0, len(group[0]), batch)
    ]
    return [np.concatenate(parts) for parts in zip(*chunks, strict=True)]


def _torch_outputs(
    net: torch.nn.Module, x: NDArray[np.float32], batch: int = 16
) -> NDArray[np.float32]:
    return _torch_run(net, (x,), batch)[0]


def _onnx_outputs(net: OnnxNetwork, x: NDArray[np.float32], batch: int = 16) -> NDArray[np.float32]:
    return _onnx_run(net, (x,), batch)[0]


def export_plan(pkg: ModelPackage, n: int | None = None, seed: int = 0) -> ExportPlan:
    """What :func:`export_onnx` traces and checks for ``pkg`` (see
    :mod:`medsight.inference.onnx_families` for the families beyond classification and
    segmentation).

    Raises
    ------
    InvalidInputError
        The family cannot be exported (:func:`export_support`), or the reference inputs do not
        fit the network.
    """
    from medsight.inference.onnx_families import ExportPlan, family_plan

    spec = pkg.spec
    ok, why = export_support(spec.task)
    if not ok:
        raise InvalidInputError(pkg.path, f"cannot be exported to ONNX: {why}")
    if spec.task not in _CLASSIFY and spec.task is not Task.SEGMENTATION:
        ref = pkg.path / REFERENCE_FILE
        return family_plan(pkg, n, seed, ref if ref.is_file() else None)
    net, shape = _network_and_shape(pkg)
    x, source = _reference_inputs(
        pkg, shape, n or (2 if spec.task is Task.SEGMENTATION else 16), seed
    )

    def decide(ref: Any, out: Any, session: Any) -> dict[str, Any]:
        agree = _decisions(pkg, ref[0][0]) == _decisions(pkg, out[0][0])
        return {"decision_agreement": float(agree.mean())}

    return ExportPlan(
        module=net,
        groups=[(x,)],
        source=source,
        input_names=("input",),
        output_names=("output",),
        dynamic=({0: "batch"},),
        decide=decide,
        decision="the voxel label" if spec.task is Task.SEGMENTATION else "the predicted labels",
    )


#: ONNX Runtime becomes a package's default only when it took at most this share of torch's time.
FASTER_SHARE = 0.9


@functools.cache
def _processor() -> dict[str, Any]:
    """The machine, processor and core count (``platform.processor()`` runs ``uname -p`` each
    call, and backend resolution asks on every Predictor built: asked once per process)."""
    import platform

    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def machine_fingerprint() -> dict[str, Any]:
    """What a backend timing depends on: processor, core count and torch's thread count."""
    import torch

    return _processor() | {"torch_threads": torch.get_num_threads()}


def time_backends(
    net: torch.nn.Module,
    session: OnnxNetwork,
    x: NDArray[np.float32] | list[tuple[NDArray[Any], ...]],
    rounds: int = 5,
) -> dict[str, Any]:
    """Median time of torch and ONNX Runtime on ``x`` (interleaved rounds, one warm-up each).

    ``x`` is one input batch, or groups of inputs (one array per network input, as in
    :class:`~medsight.inference.onnx_families.ExportPlan`).  The result names the faster
    backend (ONNX only when it takes at most :data:`FASTER_SHARE` of torch's time) and the
    machine it was measured on; :func:`resolve_backend` uses it as the package's default on
    that kind of machine only.
    """
    import statistics
    import time

    groups = [(x,)] if isinstance(x, np.ndarray) else list(x)
    runs: dict[str, list[float]] = {"torch": [], "onnx": []}
    calls = {
        "torch": lambda: [_torch_run(net, g) for g in groups],
        "onnx": lambda: [_onnx_run(session, g) for g in groups],
    }
    for fn in calls.values():  # warm-up
        fn()
    for r in range(rounds):
        for name in ("torch", "onnx") if r % 2 == 0 else ("onnx", "torch"):
            t = time.perf_counter()
            calls[name]()
            runs[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in runs.items()}
    share = med["onnx"] / med["torch"] if med["torch"] > 0 else float("inf")
    return {
        "inputs": sum(len(g[0]) for g in groups),
        "rounds": rounds,
        "median_s": med,
        "onnx_share_of_torch": share,
        "faster": "onnx" if share <= FASTER_SHARE else "torch",
        "on": machine_fingerprint(),
    }


def _write_spec_extra(root: Path, backends: dict[str, Any]) -> None:
    """Set ``extra["backends"]`` in ``model.json`` in place (atomic rename), nothing else."""
    raw = json.loads((root / SPEC_FILE).read_text(encoding="utf-8"))
    raw.setdefault("extra", {})["backends"] = backends
    tmp = root / f".{SPEC_FILE}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps(raw, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, root / SPEC_FILE)


def _exporter_reason(exc: BaseException) -> str:
    """The informative line of an exporter error: its "Exception summary" when it has one
    (torch.onnx's errors open with boilerplate), else its first line; colour codes removed."""
    import re

    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(exc).splitlines()]
    lines = [ln for ln in lines if ln]
    if "## Exception summary" in lines:
        after = lines[lines.index("## Exception summary") + 1 :]
        if after:
            return after[0][:300]
    return (lines or [type(exc).__name__])[0][:300]


def _trace(pkg: ModelPackage, plan: ExportPlan, path: Path) -> None:
    """``torch.onnx.export`` of ``plan.module`` to ``path`` (dynamo, :data:`OPSET`), checked;
    any exporter failure is one :class:`InvalidInputError` naming the architecture."""
    import onnx
    import torch

    batch = torch.export.Dim("batch")
    shapes = []
    for name, axes in zip(plan.input_names, plan.dynamic, strict=True):
        dims: dict[int, Any] = {}
        for axis, what in axes.items():
            if what == "batch":
                dims[axis] = batch
            else:
                free = torch.export.Dim(f"{name}_{axis}", min=1)
                dims[axis] = free if int(what) == 1 else int(what) * free
        shapes.append(dims)
    first = plan.groups[0]
    rows = 2 if len(first[0]) >= 2 else 1
    example = tuple(
        torch.from_numpy(np.ascontiguousarray(np.concatenate([a[:rows]] * (3 - rows))[:2]))
        for a in first
    )
    try:
        with torch.no_grad():
            torch.onnx.export(
                plan.module,
                example,
                str(path),
                input_names=list(plan.input_names),
                output_names=list(plan.output_names),
                dynamic_shapes=tuple(shapes),
                opset_version=OPSET,
                dynamo=True,
                external_data=False,
                verbose=False,
            )
        onnx.checker.check_model(str(path))
    except Exception as exc:  # the exporter's many error types: one clear refusal
        line = _exporter_reason(exc)
        raise InvalidInputError(
            pkg.path,
            f"architecture {pkg.spec.architecture.name!r} cannot be exported to ONNX: {line}",
            hint="nothing was written; torch remains the backend",
        ) from exc


def export_onnx(
    package: ModelPackage | str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    tolerance: float = PARITY_TOLERANCE,
    min_agreement: float = MIN_AGREEMENT,
    quantize: str | None = None,
    n_reference: int | None = None,
    seed: int = 0,
    threads: int | None = None,
    evaluation: tuple[NDArray[np.float32], NDArray[np.int64]] | None = None,
) -> ExportResult:
    """Export ``package`` to ONNX, check parity with torch and record it in ``model.json``.

    Parameters
    ----------
    out : path, optional
        A new package folder (a copy of ``package`` with the export); default: in place.
    tolerance, min_agreement
        Refuse the export when the max absolute output difference exceeds ``tolerance`` times
        the output scale ``max(1, max |torch output|)`` or the decision agreement falls below
        ``min_agreement``.
    quantize : {"int8"}, optional
        Also write an int8 dynamic-quantised model, kept only if its measured drop (see
        ``evaluation``) stays within :data:`QUANT_BOUND`.
    n_reference : int, optional
        Number of synthetic reference inputs (default 16 for classifiers, 2 for segmentation).
    evaluation : (x, y), optional
        Classifiers: preprocessed inputs ``(N, C, *spatial)`` and their labels (class indices,
        or ``(N, K)`` indicators for multi-label) on which the int8 model's AUC drop (macro
        one-vs-rest beyond binary) is measured against :data:`QUANT_BOUND`; without it, the
        drop is ``1 -`` decision agreement on the reference inputs.

    Raises
    ------
    InvalidInputError
        Unsupported family, parity failure, or ``out`` exists.
    """
    import torch

    pkg = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
    if quantize not in (None, "int8"):
        raise InvalidInputError("quantize", f"{quantize!r} is not supported (only int8)")
    if quantize and pkg.spec.task not in _CLASSIFY and pkg.spec.task is not Task.SEGMENTATION:
        raise InvalidInputError(
            "quantize",
            f"int8 is offered for classification and segmentation packages only (where its "
            f"accuracy drop is measured), not {pkg.spec.task.value}",
            hint="export without --quantize",
        )
    if out is not None and Path(out).exists():
        raise InvalidInputError(out, "already exists", hint="choose a new folder")
    plan = export_plan(pkg, n_reference, seed)
    net = plan.module
    with tempfile.TemporaryDirectory(prefix="medsight-onnx-") as tmpdir:
        tmp = Path(tmpdir) / ONNX_FILE
        _trace(pkg, plan, tmp)
        session = OnnxNetwork(tmp, threads)
        ref = [_torch_run(net, g) for g in plan.groups]
        got = [_onnx_run(session, g) for g in plan.groups]
        pairs = [
            (a, b) for ra, rb in zip(ref, got, strict=True) for a, b in zip(ra, rb, strict=True)
        ]
        diff = max(float(np.max(np.abs(a.astype(np.float64) - b))) for a, b in pairs)
        scale = max([1.0] + [float(np.max(np.abs(a))) for a, _ in pairs])
        parity: dict[str, Any] = {"max_abs_diff": diff} | plan.decide(ref, got, session)
        agreement = parity["decision_agreement"]
        parity |= {
            "decision": plan.decision,
            "output_scale": scale,
            "tolerance": tolerance,
            "allowed_abs_diff": tolerance * scale,
            "min_agreement": min_agreement,
            "inputs": plan.source,
        }
        if diff > tolerance * scale or (agreement is not None and agreement < min_agreement):
            shown = "not applicable" if agreement is None else f"{agreement:.4f}"
            raise InvalidInputError(
                pkg.path,
                f"ONNX export fails parity with torch: max abs difference {diff:.3g} (allowed "
                f"{tolerance:g} x output scale {scale:.3g}), decision agreement {shown} (at "
                f"least {min_agreement:g} needed; decision: {plan.decision})",
                hint="nothing was written; report the architecture, or raise --tolerance",
            )
        backends: dict[str, Any] = dict(pkg.spec.extra.get("backends", {}))
        backends["onnx"] = {
            "file": ONNX_FILE,
            "sha256": _sha256(tmp),
            "opset": OPSET,
            "inputs": list(plan.input_names),
            "outputs": list(plan.output_names),
            "dynamic_axes": plan.dynamic_record()
            | {name: {"0": "batch"} for name in plan.output_names},
            "exporter": f"torch.onnx.export (dynamo) torch {torch.__version__}",
            "parity": parity,
            "provider": "CPUExecutionProvider",
        }
        backends.pop("onnx_int8", None)
        int8 = Path(tmpdir) / INT8_FILE
        if quantize == "int8":
            x = plan.groups[0][0]
            backends["onnx_int8"] = _quantize(pkg, tmp, int8, net, x, threads, evaluation)
            if not backends["onnx_int8"]["kept"]:
                int8.unlink(missing_ok=True)
        # the default is the backend measured faster here, on the package's reference inputs
        timing = time_backends(net, session, plan.groups)
        backends["timing"] = timing
        backends["default"] = timing["faster"]
        backends["default_reason"] = (
            f"{timing['faster']}: ONNX Runtime took {timing['onnx_share_of_torch']:.2f} of "
            f"torch's time on {timing['inputs']} reference inputs (ONNX is the default only "
            f"at <= {FASTER_SHARE:g}); applies on machines like the one measured"
        )
        target = pkg.path
        if out is not None:
            target = Path(out)
            if target.exists():
                raise InvalidInputError(target, "already exists", hint="choose a new folder")
            shutil.copytree(pkg.path, target)
        shutil.copyfile(tmp, target / ONNX_FILE)
        if int8.is_file():
            shutil.copyfile(int8, target / INT8_FILE)
        elif (target / INT8_FILE).exists():
            (target / INT8_FILE).unlink()
        _write_spec_extra(target, backends)
    return ExportResult(target, backends)


def _auc(pkg: ModelPackage, logits: NDArray[np.float32], y: NDArray[np.int64]) -> float:
    from sklearn.metrics import roc_auc_score

    from medsight.models.calibration import calibrated_probabilities

    spec = pkg.spec
    proba = calibrated_probabilities(
        logits.astype(np.float64), spec.task, spec.calibration, spec.temperature
    )
    try:
        if spec.task is Task.BINARY:
            return float(roc_auc_score(np.asarray(y).reshape(-1), proba[:, 1]))
        if spec.task is Task.MULTILABEL:
            return float(roc_auc_score(y, proba, average="macro"))
        return float(
            roc_auc_score(
                np.asarray(y).reshape(-1), proba, multi_class="ovr", labels=range(proba.shape[1])
            )
        )
    except ValueError as exc:
        raise InvalidInputError(
            "evaluation set", f"AUC cannot be measured: {exc}", hint="use a set with every class"
        ) from None


def _quantize(
    pkg: ModelPackage,
    src: Path,
    dst: Path,
    net: torch.nn.Module,
    x: NDArray[np.float32],
    threads: int | None,
    evaluation: tuple[NDArray[np.float32], NDArray[np.int64]] | None,
) -> dict[str, Any]:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if evaluation is not None and pkg.spec.task not in _CLASSIFY:
        raise InvalidInputError(
            "evaluation set", "is only measured for classifiers so far (AUC drop)"
        )
    on = "reference inputs: 1 - decision agreement with torch (no evaluation set given)"
    if evaluation is not None:
        x = np.asarray(evaluation[0], dtype=np.float32)
        on = f"evaluation set: AUC drop on {len(x)} cases"
    record: dict[str, Any] = {
        "file": INT8_FILE,
        "method": "onnxruntime.quantization.quantize_dynamic, QInt8 weights",
        "bound": QUANT_BOUND,
        "measured_on": on,
    }
    ref = _torch_outputs(net, x)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
        out = _onnx_outputs(OnnxNetwork(dst, threads), x)
    except Exception as exc:  # any ORT failure means: not offered
        return record | {"kept": False, "reason": f"quantisation failed: {exc}"[:300]}
    cmp = _compare(pkg, ref, out)
    drop = 1.0 - cmp["decision_agreement"]
    if evaluation is not None:
        y = np.asarray(evaluation[1])
        cmp |= {"auc_torch": _auc(pkg, ref, y), "auc_int8": _auc(pkg, out, y)}
        drop = cmp["auc_torch"] - cmp["auc_int8"]
    kept = drop <= QUANT_BOUND
    record |= cmp | {"drop": drop, "kept": kept}
    if kept:
        record["sha256"] = _sha256(dst)
    else:
        record["reason"] = f"drop {drop:.4f} exceeds the bound {QUANT_BOUND}"
    return record

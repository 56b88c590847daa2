"""`Predictor` for classification packages: Image in, calibrated probabilities out.

The package's preprocessing spec is applied exactly as in training, the stored calibration is
applied to the logits (:func:`medsight.models.calibration.calibrated_probabilities`: the
fitted temperature, vector scaling or isotonic map; older packages: their temperature), and
the decision uses the stored operating threshold (binary, multi-label) or the arg-max.  An
Image that does not fit the package's input spec (wrong number of spatial axes or channels) is
refused with a clear error.

Test-time augmentation: where the package's ``tta`` is enabled (:mod:`medsight.models.tta`,
chosen by its trainer on validation data), :meth:`Predictor.predict_arrays` runs the network
on each stored view (the identity and flips), averages the probabilities and applies the
calibration fitted on that average.  The views wrap the network call, so the torch and ONNX
backends give the same probabilities, and so does everything built on ``predict_arrays``
(``analyze``, batch runs, ``medsight evaluate``).  Explanations (Grad-CAM, occlusion) and
feature vectors for the out-of-distribution gate stay on the identity view: they run
:attr:`Predictor.network` on the input itself, and the identity view runs first, so a
feature hook sees its rows first.  A package without ``tta`` runs the identity view only, as
before.

Examples
--------
>>> import numpy as np, tempfile, torch
>>> from medsight.core import Image
>>> from medsight.models import ModelPackage
>>> from medsight.models.registry import build_network
>>> from medsight.models.spec import (ArchitectureSpec, InputSpec, LabelSpec, ModelSpec,
...     PreprocessingSpec, Task)
>>> arch = ArchitectureSpec(name="smallcnn", args=dict(spatial_dims=2, in_channels=1,
...     out_channels=2, channels=[4, 8]))
>>> spec = ModelSpec(name="demo", version="1", task=Task.BINARY, architecture=arch,
...     input=InputSpec(spatial_ndim=2), preprocessing=PreprocessingSpec(size=[8, 8]),
...     labels=[LabelSpec(index=0, name="no"), LabelSpec(index=1, name="yes")],
...     thresholds={"yes": 0.3}, temperature=2.0)
>>> _ = torch.manual_seed(0)
>>> pkg = ModelPackage.save(tempfile.mkdtemp() + "/m", spec, build_network(arch).state_dict())
>>> pred = Predictor(pkg).predict(Image(np.zeros((16, 16))))
>>> pred.probabilities.shape, round(float(pred.probabilities.sum()), 6)
((2,), 1.0)
>>> pred.label == int(pred.probabilities[1] >= 0.3)
True
"""

from __future__ import annotations

import dataclasses
import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medsight.core.errors import InvalidInputError
from medsight.core.image import Image
from medsight.models.package import ModelPackage
from medsight.models.spec import Task
from medsight.transforms.preprocess import to_network_input

if TYPE_CHECKING:
    import torch

__all__ = ["ClassPrediction", "Predictor", "logits_of"]


def logits_of(output: Any) -> Any:
    """The logits of a network's output (MONAI's ViT returns ``(logits, hidden_states)``)."""
    return output[0] if isinstance(output, tuple | list) else output


@dataclasses.dataclass(frozen=True)
class ClassPrediction:
    """Calibrated probabilities and the decision at the package's operating point.

    ``label`` is the class index (single-label tasks) or a tuple of label indices
    (multi-label); ``names`` the matching label names.
    """

    probabilities: NDArray[np.float64]
    label: int | tuple[int, ...]
    names: tuple[str, ...]
    model_id: str


class Predictor:
    """Run a classification ModelPackage on Images.

    Parameters
    ----------
    package : ModelPackage or path
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:i]"``.
    backend : {"torch", "onnx", "onnx-int8"}, optional
        Default: :func:`medsight.inference.onnx_backend.resolve_backend` (``--backend``, else
        the package's measured default, else torch).  ONNX Runtime runs on the CPU.
    tta : bool
        Run the package's test-time views where it enables them (default); ``False``: the
        identity view only (e.g. for feature vectors).  A cached Predictor is keyed by this
        option (:func:`medsight.inference.cache.cached_model`), so the two never mix.
    """

    def __init__(
        self,
        package: ModelPackage | str | os.PathLike[str],
        device: str = "cpu",
        backend: str | None = None,
        tta: bool = True,
    ) -> None:
        import torch

        from medsight.inference.onnx_backend import onnx_network, resolve_backend
        from medsight.models.device import select_device

        self._pkg = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
        self._switch = threading.Lock()  # a cached Predictor is shared between threads
        spec = self._pkg.spec
        if spec.task is Task.SEGMENTATION:
            raise InvalidInputError(self._pkg.path, "is a segmentation model, not a classifier")
        self._backend = resolve_backend(self._pkg, backend)
        self._views = spec.tta.views if tta and spec.tta is not None else [()]
        self._torch = torch
        if self._backend == "torch":
            self._device = select_device(device)
            self._net: Any = self._pkg.build_network().to(self._device)
        else:
            self._device = torch.device("cpu")
            self._net = onnx_network(self._pkg, self._backend)

    @property
    def package(self) -> ModelPackage:
        """The package this Predictor runs."""
        return self._pkg

    @property
    def backend(self) -> str:
        """``"torch"``, ``"onnx"`` or ``"onnx-int8"``: what :meth:`predict_arrays` runs."""
        return self._backend

    @property
    def views(self) -> list[tuple[int, ...]]:
        """The test-time views :meth:`predict_arrays` averages (``[()]``: the identity only)."""
        return list(self._views)

    @property
    def network(self) -> torch.nn.Module:
        """The loaded torch network (eval mode), e.g. for saliency maps or feature hooks.

        On an ONNX backend this loads the torch network and switches the Predictor to torch,
        so hooks on it see every later forward pass (once, whichever thread asks first).
        """
        if self._backend != "torch":
            with self._switch:
                if self._backend != "torch":
                    self._net = self._pkg.build_network().to(self._device)
                    self._backend = "torch"
        return self._net  # type: ignore[no-any-return]

    def _check(self, image: Image) -> None:
        inp = self._pkg.spec.input
        if image.spatial_ndim != inp.spatial_ndim:
            raise InvalidInputError(
                "image",
                f"is {image.spatial_ndim}D; model {self._pkg.id} expects {inp.spatial_ndim}D input",
            )
        if image.n_channels not in (1, inp.channels):
            raise InvalidInputError(
                "image",
                f"has {image.n_channels} channels; model {self._pkg.id} expects {inp.channels}",
            )

    def preprocess(self, image: Image) -> NDArray[np.float32]:
        """The network input for one Image ``(C, *spatial)``."""
        self._check(image)
        return to_network_input(image, self._pkg.spec.preprocessing)

    def predict_arrays(self, x: NDArray[np.float32], batch_size: int = 256) -> NDArray[np.float64]:
        """Calibrated probabilities ``(N, K)`` for preprocessed inputs ``(N, C, *spatial)``
        (averaged over the package's test-time views where it enables them)."""
        from medsight.models.calibration import calibrated_probabilities
        from medsight.models.tta import mean_probability_logits, view_logits

        spec = self._pkg.spec
        net = self._net  # one network for the whole call, even if another thread switches it

        def run(inputs: NDArray[np.float32]) -> NDArray[np.float64]:
            outs = []
            with self._torch.no_grad():
                for i in range(0, len(inputs), batch_size):
                    part = np.ascontiguousarray(inputs[i : i + batch_size])
                    batch = self._torch.from_numpy(part).to(self._device)
                    outs.append(logits_of(net(batch)).float().cpu().numpy())
            return np.concatenate(outs).astype(np.float64)

        per_view = view_logits(run, x, self._views)
        logits = mean_probability_logits(per_view, multilabel=spec.task is Task.MULTILABEL)
        return calibrated_probabilities(logits, spec.task, spec.calibration, spec.temperature)

    def decide(self, proba: NDArray[np.float64]) -> NDArray[np.int64]:
        """Decisions at the stored operating point for probabilities ``(N, K)``."""
        from medsight.inference.decision import predict_labels

        spec = self._pkg.spec
        return predict_labels(spec.task.value, proba, spec.thresholds, spec.label_names)

    def decide_by_group(
        self, proba: NDArray[np.float64], values: Sequence[object] | None
    ) -> tuple[NDArray[np.int64], list[str]]:
        """Decisions using the package's per-group thresholds where a case's group value
        (``values``, one per case, ``None`` where unknown) has one, else the global threshold;
        and which operating point each case got (see ``decision.group_decisions``).
        """
        from medsight.inference.decision import group_decisions

        spec = self._pkg.spec
        return group_decisions(
            spec.task.value, proba, spec.thresholds, spec.label_names, spec.group_thresholds, values
        )

    def predict(self, image: Image) -> ClassPrediction:
        """Probabilities and decision for one Image."""
        return self.predict_many([image])[0]

    def predict_many(self, images: Sequence[Image]) -> list[ClassPrediction]:
        """Probabilities and decisions for several Images (batched)."""
        if not images:
            return []
        x = np.stack([self.preprocess(im) for im in images])
        proba = self.predict_arrays(x)
        decisions = self.decide(proba)
        names = self._pkg.spec.label_names
        out = []
        for p, d in zip(proba, decisions, strict=True):
            if self._pkg.spec.task is Task.MULTILABEL:
                label: int | tuple[int, ...] = tuple(int(i) for i in np.flatnonzero(d))
                chosen = tuple(names[i] for i in label)  # type: ignore[union-attr]
            else:
                label = int(d)
                chosen = (names[label],)
            out.append(ClassPrediction(p, label, chosen, self._pkg.id))
        return out

"""Tiny packages whose behaviour the what-if tests know in advance.

* :func:`region_classifier`: a binary classifier whose logit is a scaled mean of the network
  input over one known block (network pixels 2..6 x 2..6 of its 16x16 input, i.e. image pixels
  8..28 of a 64x64 image); every other pixel has weight zero.
* :func:`toy_risk`: a clinical-only risk model whose logit rises with age, male sex and smoking
  (fixed weights), so the direction of a what-if is known.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from medsight.models import ModelPackage

REGION = (2, 7)  # network-input block [2, 7) x [2, 7) of 16 x 16
NETWORK = "whatif_region_probe"


class RegionProbe(nn.Module):
    """1x1 convolution (for Grad-CAM) then one linear layer on the flattened input."""

    def __init__(self, size: int = 16) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.fc = nn.Linear(size * size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.conv(x), 1))


def _register() -> None:
    from medsight.models.registry import available_networks, register_network

    if NETWORK not in available_networks():
        register_network(NETWORK, RegionProbe)


def region_classifier(folder: Path) -> ModelPackage:
    """Logit of 'finding' = 0.01 * mean(input over REGION) - 2 (intensity not normalised)."""
    from medsight.models.spec import (
        ArchitectureSpec,
        InputSpec,
        LabelSpec,
        ModelSpec,
        PreprocessingSpec,
        Task,
    )

    _register()
    net = RegionProbe()
    with torch.no_grad():
        net.conv.weight.fill_(1.0)
        net.conv.bias.zero_()
        w = torch.zeros(16, 16)
        lo, hi = REGION
        w[lo:hi, lo:hi] = 0.01 / (hi - lo) ** 2
        net.fc.weight.zero_()
        net.fc.weight[1] = w.flatten()
        net.fc.bias.copy_(torch.tensor([0.0, -2.0]))
    spec = ModelSpec(
        name="region-probe",
        version="1.0.0",
        task=Task.BINARY,
        architecture=ArchitectureSpec(name=NETWORK, args={"size": 16}),
        input=InputSpec(modalities=["MR", "CT", "OT"], spatial_ndim=2),
        preprocessing=PreprocessingSpec(size=[16, 16]),
        labels=[LabelSpec(index=0, name="clear"), LabelSpec(index=1, name="finding")],
        thresholds={"finding": 0.5},
    )
    return ModelPackage.save(folder / "region-probe", spec, net.state_dict(), overwrite=True)


def toy_risk(folder: Path) -> ModelPackage:
    """Clinical-only risk: logit = (age - 60) / 10 + 0.3 [male] + 0.8 [smoker] - 0.5."""
    from medsight.data.timeline import ClinicalVariable, VariableKind
    from medsight.models.clinical_encoding import ClinicalEncoder, EncodedVariable
    from medsight.models.fusion import RiskNet
    from medsight.models.spec import (
        ArchitectureSpec,
        InputSpec,
        LabelSpec,
        ModelSpec,
        PreprocessingSpec,
        Task,
    )

    enc = ClinicalEncoder(
        [
            EncodedVariable("age", "numeric", mean=60.0, std=10.0),
            EncodedVariable("sex", "categorical", categories=("F", "M")),
            EncodedVariable("smoker", "binary"),
        ]
    )  # columns: age, age:missing, sex=F, sex=M, sex:missing, smoker, smoker:missing
    variables = [
        ClinicalVariable("age", VariableKind.NUMERIC),
        ClinicalVariable("sex", VariableKind.CATEGORICAL, ("F", "M")),
        ClinicalVariable("smoker", VariableKind.BINARY),
    ]
    args = {"arch": "clinical", "embed_dim": 1, "clin_dim": len(enc.columns)}
    net = RiskNet(**args)
    with torch.no_grad():
        net.head.weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.3, 0.0, 0.8, 0.0]]))
        net.head.bias.fill_(-0.5)
    spec = ModelSpec(
        name="toy-risk",
        version="1.0.0",
        task=Task.RISK,
        architecture=ArchitectureSpec(name="risk_fusion", args=args),
        input=InputSpec(spatial_ndim=2),
        preprocessing=PreprocessingSpec(),
        labels=[LabelSpec(index=0, name="no event"), LabelSpec(index=1, name="event")],
        extra={
            "risk": {
                "survival": False,
                "max_visits": 1,
                "variables": [v.to_dict() for v in variables],
                "clinical_encoding": enc.to_dict(),
                "ranges": {"age": [18, 100]},
            }
        },
    )
    return ModelPackage.save(folder / "toy-risk", spec, net.state_dict(), overwrite=True)

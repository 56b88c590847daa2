"""``analyze`` withholds a synthesis package's output on a patient image, with the reason."""

from __future__ import annotations

import numpy as np
import torch

from medsight.analysis.runners import run_package
from medsight.core import Image
from medsight.inference.synth import build_diffusion_unet, synthesis_spec_for_tests
from medsight.models import ModelPackage


def test_a_synthesis_package_does_not_analyse_patient_images(tmp_path):
    spec = synthesis_spec_for_tests(["a", "b"], size=[8, 8])
    torch.manual_seed(0)
    pkg = ModelPackage.save(tmp_path / "p", spec, build_diffusion_unet(spec.architecture.args)
                            .state_dict())  # fmt: skip
    out = run_package(pkg, Image(np.zeros((8, 8), np.uint8)))
    assert out.findings == [] and out.mask is None and out.heatmap is None
    assert out.withheld == ("a synthesis model does not analyse patient images "
                            "(it generates synthetic ones)",)  # fmt: skip

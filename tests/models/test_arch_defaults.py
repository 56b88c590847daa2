"""Architecture defaults live in the models layer; the trainer's old names still reach them."""

from __future__ import annotations

import pytest

from medsight.models import arch_defaults
from medsight.models.registry import build_network
from medsight.models.spec import ArchitectureSpec


def test_the_classification_trainer_re_exports_the_same_objects():
    from medsight.training import classification

    assert classification.default_arch_args is arch_defaults.default_arch_args
    assert classification.default_size is arch_defaults.default_size
    assert classification.MAX_DEFAULT_EDGE is arch_defaults.MAX_DEFAULT_EDGE
    assert classification._stem_stride is arch_defaults.stem_stride


@pytest.mark.parametrize(("arch", "nd", "size"), [("smallcnn", 2, [28, 28]),
                                                  ("smallcnn", 3, [64] * 3),
                                                  ("classifier", 2, [28, 28])])  # fmt: skip
def test_defaults_build_a_network(arch, nd, size):
    args = arch_defaults.default_arch_args(arch, nd, 1, 3, size)
    assert build_network(ArchitectureSpec(name=arch, args=args)) is not None


def test_default_size_caps_each_dimensionality():
    assert arch_defaults.default_size([128, 100]) == [128, 100]
    assert arch_defaults.default_size([129, 100]) == [128, 128]
    assert arch_defaults.default_size([10, 10, 65]) == [64, 64, 64]

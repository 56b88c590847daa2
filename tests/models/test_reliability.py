"""reliability_statement: honest probabilities, unknown sparse bins, weak models; no torch."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from medsight.evaluation.calibration import fit_calibration
from medsight.models.reliability import (
    MIN_BIN_CASES,
    format_probability,
    is_weak,
    reliability_statement,
    weakness,
)
from medsight.models.spec import (
    ArchitectureSpec,
    CalibrationSpec,
    InputSpec,
    LabelSpec,
    MetricValue,
    ModelSpec,
    PreprocessingSpec,
    Task,
)


def _spec(task="binary", calibration=None, temperature=None, acc=(0.9, 0.85, 0.94), auc=None):
    n = 2 if task == "binary" else 3
    metrics = [MetricValue(name="accuracy", value=acc[0], ci_low=acc[1], ci_high=acc[2])]
    if auc:
        metrics.append(MetricValue(name="auc", value=auc[0], ci_low=auc[1], ci_high=auc[2]))
    return ModelSpec(
        name="m", version="1", task=task, architecture=ArchitectureSpec(name="smallcnn"),
        input=InputSpec(spatial_ndim=2), preprocessing=PreprocessingSpec(),
        labels=[LabelSpec(index=i, name=f"c{i}") for i in range(n)], metrics=metrics,
        calibration=calibration, temperature=temperature,
    )  # fmt: skip


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    logits = np.stack([np.zeros(500), 8.0 * (2 * y - 1) + rng.normal(0, 2, 500)], 1)
    return fit_calibration(logits, y, "binary").to_spec()


def test_extreme_probabilities_are_never_one_or_zero(fitted):
    spec = _spec(calibration=fitted, acc=(1.0, 0.999, 1.0), auc=(1.0, 0.998, 1.0))
    for p in (1.0, 0.99999, 0.995, 0.0, 1e-9, 0.004):
        text = reliability_statement(spec, p)
        assert not re.search(r"\b[01]\.00\b", text), text
    assert ">0.99" in reliability_statement(spec, 1.0)
    assert "<0.01" in reliability_statement(spec, 0.0)
    assert format_probability(0.5) == "0.50"


def test_a_well_populated_bin_gives_counts_and_a_sparse_bin_is_unknown(fitted):
    spec = _spec(calibration=fitted)
    rel = fitted.reliability
    top = reliability_statement(spec, 0.97)
    hits = round(rel.observed[-1] * rel.count[-1])
    assert f"{hits} of {rel.count[-1]} times" in top and "'c1'" in top
    assert rel.count[-1] >= MIN_BIN_CASES
    sparse = [b for b, c in enumerate(rel.count) if c < MIN_BIN_CASES]
    assert sparse, rel.count  # well separated classes leave the middle bins (almost) empty
    mid = (rel.edges[sparse[0]] + rel.edges[sparse[0] + 1]) / 2
    assert "reliability there is unknown" in reliability_statement(spec, mid)


def test_old_temperature_only_and_uncalibrated_specs(fitted):
    old = _spec(temperature=1.7)
    text = reliability_statement(old, 0.8)
    assert text.startswith("calibrated probability 0.80 (temperature only)")
    assert "not recorded, so it is unknown" in text
    assert reliability_statement(_spec(), 0.8).startswith("uncalibrated probability 0.80")


def test_weak_models_are_flagged():
    weak = _spec(task="ordinal", acc=(0.53, 0.44, 0.63))
    assert is_weak(weak) and "0.44 is below 0.70" in weakness(weak)
    assert "the model is weak" in reliability_statement(weak, 0.93)
    strong = _spec(acc=(0.9, 0.86, 0.94), auc=(0.95, 0.9, 0.98))
    assert not is_weak(strong) and "weak" not in reliability_statement(strong, 0.93)
    assert is_weak(_spec(acc=(0.9, 0.86, 0.94), auc=(0.85, 0.75, 0.9)))  # AUC bound too low
    # the test split is preferred over validation when both are recorded
    test = MetricValue(name="accuracy", value=0.6, ci_low=0.5, ci_high=0.7, split="test")
    both = strong.model_copy(update={"metrics": [*strong.metrics, test]})
    assert is_weak(both) and "on the test split" in reliability_statement(both, 0.5)


def test_calibration_round_trips_through_model_json(fitted):
    spec = _spec(calibration=fitted)
    again = ModelSpec.model_validate_json(spec.model_dump_json())
    assert again == spec and again.calibration.reliability.n == 500
    assert again.task is Task.BINARY


def test_temperature_and_calibration_must_agree(fitted):
    with pytest.raises(ValueError, match="disagree"):
        _spec(calibration=CalibrationSpec(method="none"), temperature=2.0)


def test_the_module_imports_no_torch():
    code = "import sys, medsight.models.reliability, medsight.models.calibration; "
    code += "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"

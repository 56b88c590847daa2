"""Evaluation: metrics as pure functions and accumulators, bootstrap CIs, calibration, reports."""

from medsight.evaluation.bootstrap import BootstrapResult, bootstrap_ci

__all__ = ["BootstrapResult", "bootstrap_ci"]

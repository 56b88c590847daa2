"""Thresholds of the quality checks (typed, with the reasons for their defaults)."""

from __future__ import annotations

from pydantic import BaseModel, Field

__all__ = ["QCConfig"]


class QCConfig(BaseModel):
    """Parameters of :func:`medsight.data.qc.run_qc`.

    The near-duplicate thresholds were set by looking at pairs: in BUSI every pair with a
    thumbnail correlation of 0.92 or more that we viewed was the same lesion imaged twice;
    28 px RetinaMNIST fundus images all correlate above 0.95 with each other (disc on black),
    hence the second test on the residual after subtracting the mean thumbnail (0.9), which
    keeps 69 of BUSI's 85 raw pairs and drops RetinaMNIST's 7198 to 410; and the distance
    test (0.5 of the median nearest-neighbour distance), which keeps every BUSI pair (at most
    0.47) and 32 of those 410 RetinaMNIST pairs: those whose pixels differ by ~1-2 grey levels
    on average, against ~9 between an image and its nearest neighbour.
    """

    seed: int = 0
    samples_per_case: int = Field(1000, ge=10, description="voxels sampled per case and channel")
    near_dup_hamming: int = Field(10, ge=0, le=64, description="max pHash distance (of 64 bits)")
    near_dup_correlation: float = Field(0.95, gt=0, le=1, description="min thumbnail Pearson r")
    near_dup_residual: float = Field(
        0.9, gt=0, le=1, description="min r after subtracting the mean thumbnail"
    )
    near_dup_nn_ratio: float = Field(
        0.5, gt=0, description="max distance, in median nearest-neighbour distances"
    )
    imbalance_ratio: float = Field(1 / 3, gt=0, le=1, description="flag if min/max class < this")
    outlier_z: float = Field(6.0, gt=0, description="robust z (median/MAD) beyond which to flag")
    size_ratio: float = Field(2.0, gt=1, description="flag sizes this far from the median")
    spacing_ratio: float = Field(1.5, gt=1, description="flag spacings this far from the median")
    scale_gap: float = Field(1.0, gt=0, description="log10 gap separating intensity scales")
    group_shift: float = Field(
        2.0, gt=0, description="shift of a group median from the others, in within-group MADs"
    )
    min_group: int = Field(5, ge=2, description="smallest site/view/scanner group compared")
    negative_classes: tuple[str, ...] = ("normal", "negative", "healthy", "no finding", "control")

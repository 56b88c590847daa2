"""The data-quality report: ``run_qc`` scans a data set once and runs every check.

Checks live in :mod:`~medsight.data.qc.checks` and :mod:`~medsight.data.qc.duplicates` and are
listed in the registry :data:`~medsight.data.qc.checks.CHECKS`; each returns
:class:`~medsight.data.qc.findings.Finding` objects naming the files concerned.  What they look
for (:class:`~medsight.data.qc.findings.CheckKind`):

* files: unreadable images and masks; manifest rows without a file, files without a row,
  repeated rows, malformed annotations, images without a label;
* duplicates: byte-identical pixels (SHA-1) and near duplicates (DCT pHash + thumbnail
  correlation, also after removing the data set's mean image), flagged as errors when a group
  spans splits (leakage), carries different labels, or different patient ids;
* patients: one patient in several splits; patients with several images (information);
* masks: size or affine different from the image, positive cases with an empty mask, values
  outside the declared labels, negative cases with a non-empty mask; boxes outside the image;
* labels: class imbalance (rarest / most common below 1/3), overall and per split;
* pixels: mixed dtypes or channel counts, intensity scales 10x apart, intensity and contrast
  outliers (robust z), constant images, size and spacing outliers, mixed spacings and
  orientations;
* acquisition: sites, views or scanners whose images differ (intensity, contrast, size) from
  the others' by more than 2 within-group MADs; the list of sources (information);
* clinical attributes: age, sex, view, site, scanner, outcome missing for some images.
"""

from medsight.data.qc.config import QCConfig
from medsight.data.qc.findings import CheckKind, Finding, Severity
from medsight.data.qc.report import QCReport, run_qc, write_report

__all__ = ["CheckKind", "Finding", "QCConfig", "QCReport", "Severity", "run_qc", "write_report"]

"""Print the main job's in-scope example input: a held-out BUSI test image.

``scripts/run.sh`` calls this when ``../shared/data`` (or ``MEDSIGHT_DATA``) is present: the
first BUSI breast-ultrasound image (sorted by case id) of the benchmarks' **test** split
(patient-level split, seed 0: never used to train the zoo's BUSI lesion model, to fit its OOD
reference or to choose its settings; BreastMNIST, the classifier's training set, is a 28-pixel
version of BUSI whose split is MedMNIST's own).  Usage:
``python scripts/main_examples.py DATA_ROOT``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> int:
    from segmentation_prepare import SPLIT, busi_dataset

    from medsight.data import make_splits

    data = Path(sys.argv[1])
    busi = busi_dataset(data)
    first = sorted(make_splits(busi, SPLIT).test)[0]
    print(busi.files_of(first)["image"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

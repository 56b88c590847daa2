#!/usr/bin/env bash
# Set up and run the main job: `medsight analyze` with the project's model zoo.
#   Inputs that ship inside installed packages (no ../shared needed):
#   1. scikit-image's colour fundus photograph (declared OP): the retinopathy model is made for
#      fundus photographs, but this camera's images are unlike its training data on the
#      network's own features, so it withholds its grade and says why (OOD abstention).
#   2. pydicom's power-Doppler ultrasound DICOM (lymph node): the breast ultrasound models read
#      grey-scale B-mode only, so both are withheld (intended-use abstention); the report says
#      the file has no pixel calibration, so any size would be in pixels, never in mm.
#   When ../shared/data (or MEDSIGHT_DATA) is present, also held-out TEST images of the zoo's
#   sets (scripts/main_examples.py), in scope:
#   3. a BUSI breast ultrasound PNG: the malignancy classifier's finding with its calibrated
#      probability and validated reliability; sizes would be in pixels (a PNG has no scale);
#   4. a brain MR DICOM study from another collection (TCIA Brain-Tumor-Progression, never seen
#      in training): the hippocampus model picks the crop series among five, both hippocampus
#      parts with volumes in mL and diameters in mm from the DICOM geometry, DICOM SEG, SR and
#      Secondary Capture validated with dciodvfy.
# Reports go to runs/main/*/report.html.  Usage: bash scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
py=.venv/bin/python
fundus=$($py -c "import pathlib, skimage.data; print(pathlib.Path(skimage.data.__file__).parent / 'retina.jpg')")
us=$($py -c "from pydicom.data import get_testdata_file; print(get_testdata_file('examples_rgb_color.dcm', download=False))")
echo "== 1. fundus photograph: $fundus"
.venv/bin/medsight analyze "$fundus" --modality OP --out runs/main/fundus
echo
echo "== 2. power-Doppler ultrasound DICOM: $us"
.venv/bin/medsight analyze "$us" --out runs/main/ultrasound-doppler
data="${MEDSIGHT_DATA:-../shared/data}"
if [ -d "$data/busi" ] && [ -d "$data/hippocampus" ] && [ -d "$data/dicom/brain_mr_study1" ]; then
    mapfile -t examples < <($py scripts/main_examples.py "$data")
    echo
    echo "== 3. breast ultrasound, BUSI test split: ${examples[0]}"
    .venv/bin/medsight analyze "${examples[0]}" --modality US --out runs/main/breast-ultrasound
    echo
    echo "== 4. brain MR DICOM study (external): $data/dicom/brain_mr_study1"
    .venv/bin/medsight analyze "$data/dicom/brain_mr_study1" --out runs/main/brain-mr-dicom
else
    echo
    echo "(no $data: the in-scope examples 3 and 4 need the shared data sets; skipped)"
fi
echo
echo "Reports: runs/main/*/report.html"

#!/usr/bin/env bash
# Set up and run the main job: `medsight analyze` with the project's model zoo on real images
# that ship inside installed packages (no ../shared needed):
#   1. scikit-image's colour fundus photograph (declared OP) -> retinopathy grading, Grad-CAM
#   2. pydicom's ultrasound DICOM (RGB, lymph node) -> the DICOM path: SR, Secondary Capture,
#      FHIR, plausibility warnings (it is not the breast ultrasound the US models were made for)
# Reports go to runs/main/*/report.html.  Usage: bash scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
py=.venv/bin/python
fundus=$($py -c "import pathlib, skimage.data; print(pathlib.Path(skimage.data.__file__).parent / 'retina.jpg')")
us=$($py -c "from pydicom.data import get_testdata_file; print(get_testdata_file('examples_rgb_color.dcm', download=False))")
echo "== fundus photograph: $fundus"
.venv/bin/medsight analyze "$fundus" --modality OP --out runs/main/fundus
echo
echo "== ultrasound DICOM: $us"
.venv/bin/medsight analyze "$us" --out runs/main/ultrasound-dicom
echo
echo "Reports: runs/main/fundus/report.html and runs/main/ultrasound-dicom/report.html"

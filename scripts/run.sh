#!/usr/bin/env bash
# Set up and run the main job on inputs that ship inside installed packages (no ../shared).
# Until `medsight analyze` exists this describes pydicom's bundled CT slice with `medsight info`.
# Usage: bash scripts/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ct=$(.venv/bin/python -c "from pydicom.data import get_testdata_file; print(get_testdata_file('CT_small.dcm', download=False))")
.venv/bin/medsight info "$ct"

#!/usr/bin/env bash
# Create .venv (Python 3.11) and install medsight with torch 2.13.0 (CPU) first, so that no
# other package can pull a newer (CUDA) torch.  Safe to run again: it only installs what is
# missing.  Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '2.13.0')" 2>/dev/null; then
    echo "setup: installing torch==2.13.0 (CPU)"
    "${PIP[@]}" install "torch==2.13.0"
fi
echo "setup: installing medsight and its dependencies"
"${PIP[@]}" install -e ".[ml,test,scale,docs]"
.venv/bin/python -c "import torch; v = torch.__version__; assert v.startswith('2.13.0'), v"
bash scripts/setup-viewer.sh  # OHIF Viewer v3 build for `medsight serve` under /ohif/

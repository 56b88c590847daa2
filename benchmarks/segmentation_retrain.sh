#!/bin/bash
# Retrain the segmentation zoo packages and benchmarks from the public data.
#   DATA: folder holding hippocampus/ (MSD Task04) and busi/ (default ../shared/data)
#   1. CPU: splits, plan.json, preprocessed.npz per data set        -> .gpu/<name>/
#   2. GPU (or CPU, slowly): 3 seeds x 2 data sets, 330 s each, in parallel -> .gpu/results/runs
#   3. CPU: test-set metrics at original resolution                 -> benchmarks/results/
#   4. CPU: best-validation seed of each data set into the zoo      -> src/medsight/zoo/
set -euo pipefail
DATA=${DATA:-../shared/data}
PY=${PY:-.venv/bin/python}
$PY benchmarks/segmentation_prepare.py "$DATA" .gpu
$PY benchmarks/segmentation_train.py .gpu .gpu/results/runs --budget ${BUDGET:-330} --seeds 0 1 2
$PY benchmarks/segmentation_evaluate.py "$DATA" .gpu/results/runs benchmarks/results
$PY benchmarks/segmentation_zoo.py .gpu/results/runs benchmarks/results src/medsight/zoo

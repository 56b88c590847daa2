#!/usr/bin/env bash
# Set up (Debian packages, .venv, medsight) and run lint and the whole test suite.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh
echo "test: ruff"
.venv/bin/ruff check src tests benchmarks scripts
.venv/bin/ruff format --check src tests benchmarks scripts
echo "test: pytest"
set +e
.venv/bin/python -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test: pytest collected no tests; that is a failure" >&2
    exit 1
fi
[ "$rc" -eq 0 ] || exit "$rc"
# Ray's servers listen on every interface whatever address they are given: its tests run
# again (skipped above) in a network namespace that holds only loopback.
echo "test: pytest, Ray tests in a loopback-only network namespace"
set +e
unshare -n sh -c 'ip link set lo up && MEDSIGHT_RAY_ISOLATED=1 exec .venv/bin/python -m pytest -q \
    -p no:cacheprovider tests/batch/test_batch_ray.py tests/batch/test_batch_ray_cluster.py'
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test: the Ray tests collected nothing; that is a failure" >&2
    exit 1
fi
exit "$rc"

#!/usr/bin/env bash
# Debian packages the test suite uses: dicom3tools (dciodvfy validates DICOM objects),
# tesseract-ocr (burned-in text detection), chromium (the report and viewer, driven by
# Playwright from PyPI) and orthanc + orthanc-dicomweb (the PACS the service tests talk to; the
# tests start their own instance on free loopback ports) and postgresql (the service store on
# PostgreSQL; the tests start a throw-away cluster), iproute2 + util-linux (the Ray tests run in a
# loopback-only network namespace: `unshare -n`, `ip link set lo up`).  Installs only what is
# missing; needs root.
set -euo pipefail
need=()
command -v dciodvfy >/dev/null || need+=(dicom3tools)
command -v tesseract >/dev/null || need+=(tesseract-ocr)
command -v chromium >/dev/null || need+=(chromium)
command -v npm >/dev/null || need+=(npm)  # fetches the OHIF viewer build (setup-viewer.sh)
command -v Orthanc >/dev/null || [ -x /usr/sbin/Orthanc ] || need+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need+=(orthanc-dicomweb)
command -v ip >/dev/null || need+=(iproute2)
command -v curl >/dev/null || need+=(curl)  # the service tutorial (docs/tutorials)
command -v unshare >/dev/null || need+=(util-linux)
command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: please install these Debian packages: ${need[*]}" >&2
    exit 1
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null

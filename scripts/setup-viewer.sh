#!/usr/bin/env bash
# Fetch the OHIF Viewer v3 build (npm package @ohif/app, its built dist/ only) into
# .cache/ohif/<version>/dist, which `medsight serve` serves under /ohif/ (setting viewer_dist,
# env MEDSIGHT_VIEWER_DIST).  Idempotent and quiet: does nothing when that version is there.
# Needs npm (scripts/system-deps.sh installs it).  Usage: bash scripts/setup-viewer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION="${OHIF_VERSION:-3.12.0}"
TARGET=".cache/ohif/$VERSION"
if [ -f "$TARGET/dist/index.html" ] && [ -f "$TARGET/dist/app-config.js" ]; then
    ln -sfn "$VERSION" .cache/ohif/current
    exit 0
fi
command -v npm >/dev/null || { echo "setup-viewer: npm is missing (install Debian's npm)" >&2; exit 1; }
echo "setup-viewer: fetching @ohif/app@$VERSION"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent --cache "$work/npm-cache" "@ohif/app@$VERSION" >/dev/null)
tar -xzf "$work"/ohif-app-"$VERSION".tgz -C "$work" package/dist package/LICENSE
rm -rf "$TARGET.partial"
mkdir -p "$TARGET.partial"
mv "$work/package/dist" "$work/package/LICENSE" "$TARGET.partial/"
rm -rf "$TARGET"
mv "$TARGET.partial" "$TARGET"
ln -sfn "$VERSION" .cache/ohif/current

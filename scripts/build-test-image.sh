#!/usr/bin/env bash
# Build the local test image dockyard-test:latest from the host's static busybox.
set -euo pipefail
BUSYBOX=${BUSYBOX:-/bin/busybox}
if [[ ! -x "$BUSYBOX" ]] || [[ "$(ldd "$BUSYBOX" 2>&1 || true)" != *"not a dynamic executable"* ]]; then
  echo "error: $BUSYBOX must be a static busybox (apt-get install busybox-static)" >&2
  exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
here=$(cd "$(dirname "$0")/.." && pwd)
cp "$BUSYBOX" "$ctx/busybox"
cp "$here/tests/images/Dockerfile" "$here/tests/images/index.html" "$ctx/"
DOCKER_BUILDKIT=0 docker build -q -t "${IMAGE:-dockyard-test:latest}" "$ctx" >/dev/null
echo "built ${IMAGE:-dockyard-test:latest}"

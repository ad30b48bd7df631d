#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (an S3-compatible object store) from its Go module, for the archive's S3 tests.
# Output: $HEALTHPIPE_CACHE/seaweedfs-$VERSION/weed. Idempotent: exits at once when the binary exists.
#
# Like InfluxDB, seaweedfs's go.mod has a `replace` line, so `go install pkg@v` refuses it: we build inside
# a writable copy of the module. The first build downloads a large dependency tree (~5 min on 2 cores).
set -euo pipefail

VERSION=${SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}
CACHE=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}
OUT=$CACHE/seaweedfs-$VERSION
[ -x "$OUT/weed" ] && { echo "seaweedfs $VERSION: cached at $OUT/weed"; exit 0; }

BUILD=$CACHE/build
mkdir -p "$BUILD" "$OUT"
echo "seaweedfs: downloading the module $VERSION"
SRC=$(go mod download -json "github.com/seaweedfs/seaweedfs@$VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
WORK=$BUILD/seaweedfs-$VERSION
if [ ! -d "$WORK" ]; then cp -r "$SRC" "$WORK"; chmod -R u+w "$WORK"; fi
echo "seaweedfs: building weed (Go; several minutes the first time)"
(cd "$WORK" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -ldflags "-s -w" -o "$OUT/weed.tmp" ./weed >&2)
mv "$OUT/weed.tmp" "$OUT/weed"
echo "seaweedfs $VERSION: built $OUT/weed"

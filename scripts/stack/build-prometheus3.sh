#!/usr/bin/env bash
# Builds Prometheus 3 from its Go module, for `healthpipe receive`'s tests: a real Prometheus that remote-writes
# (1.0 and 2.0, native histograms). Debian's 2.42 stays the query path of the producer's tests.
# Output: $HEALTHPIPE_CACHE/prometheus-$VERSION/prometheus. Idempotent: exits at once when the binary exists.
#
# The module's go.mod has replace/exclude lines, so `go install pkg@v` refuses it: we build inside a writable copy
# (GOWORK=off: the module has a go.work). No web UI assets (the UI is not used): about 5 min cold on 2 cores.
set -euo pipefail

VERSION=${PROMETHEUS3_VERSION:-v0.316.0}  # the Go module of Prometheus 3.16.0 (module v0.3XY.Z = release 3.XY.Z)
CACHE=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}
OUT=$CACHE/prometheus-$VERSION
[ -x "$OUT/prometheus" ] && { echo "prometheus $VERSION: cached at $OUT/prometheus"; exit 0; }

BUILD=$CACHE/build
mkdir -p "$BUILD" "$OUT"
echo "prometheus: downloading the module $VERSION"
SRC=$(go mod download -json "github.com/prometheus/prometheus@$VERSION" \
      | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
WORK=$BUILD/prometheus-$VERSION
if [ ! -d "$WORK" ]; then cp -r "$SRC" "$WORK"; chmod -R u+w "$WORK"; fi
echo "prometheus: building (Go; about 5 minutes the first time)"
(cd "$WORK" && GOWORK=off CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod nice go build -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=3.${VERSION:4:2}.${VERSION##*.}" \
    -o "$OUT/prometheus.tmp" ./cmd/prometheus >&2)
mv "$OUT/prometheus.tmp" "$OUT/prometheus"
rm -rf "$WORK"
echo "prometheus $VERSION: built $OUT/prometheus"

#!/usr/bin/env bash
# Builds Telefonica's prometheus-kafka-adapter (PKA), the remote-write → Kafka adapter B11 compares the receiver
# with. Benchmarks only: the pipeline never runs it.
#
# The Go module proxy reachable here answers 403 for github.com/Telefonica/prometheus-kafka-adapter (every version,
# and the version list), so the source is a checkout given as PKA_SRC (git clone
# https://github.com/Telefonica/prometheus-kafka-adapter; B11 used commit ccc8413). Its dependencies come from
# the module proxy (-mod=mod): a copy of its vendor/ may lack librdkafka's static archives (large files), which the
# proxy's confluent-kafka-go v1.9.2 carries. cgo: librdkafka is linked in.
# Output: $HEALTHPIPE_CACHE/pka-<commit>/prometheus-kafka-adapter. Idempotent: exits at once when it exists.
set -euo pipefail

SRC=${PKA_SRC:?set PKA_SRC to a checkout of github.com/Telefonica/prometheus-kafka-adapter}
CACHE=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}
# the upstream commit names the cached binary (PKA_COMMIT where the copy is not a git checkout of upstream)
COMMIT=${PKA_COMMIT:-$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unversioned)}
OUT=$CACHE/pka-$COMMIT
[ -x "$OUT/prometheus-kafka-adapter" ] && { echo "$OUT/prometheus-kafka-adapter"; exit 0; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# the sources without vendor/ (a build from the module proxy), in a writable copy
(cd "$SRC" && tar --exclude=./vendor --exclude=./helm --exclude=./.git -cf - .) | tar -xf - -C "$work"
mkdir -p "$OUT"
echo "pka $COMMIT: building (about a minute on 2 cores)" >&2
(cd "$work" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -ldflags "-s -w" -o "$OUT/prometheus-kafka-adapter.tmp" . >&2)
mv "$OUT/prometheus-kafka-adapter.tmp" "$OUT/prometheus-kafka-adapter"
echo "$OUT/prometheus-kafka-adapter"

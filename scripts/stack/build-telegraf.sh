#!/usr/bin/env bash
# Builds Telegraf from its Go module with only what the B2 comparison needs: the kafka_consumer input,
# the influxdb_v2 output and the xpath parser (which reads healthpipe's JSON messages). Benchmarks only:
# the pipeline itself never runs Telegraf.
# Output: $HEALTHPIPE_CACHE/telegraf-$VERSION/telegraf. Idempotent: exits at once when the binary exists.
set -euo pipefail

VERSION=${TELEGRAF_VERSION:-1.37.2}
CACHE=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}
OUT=$CACHE/telegraf-$VERSION
[ -x "$OUT/telegraf" ] && { echo "telegraf $VERSION: cached at $OUT/telegraf"; exit 0; }

mkdir -p "$OUT"
echo "telegraf: building $VERSION (kafka_consumer, influxdb_v2, xpath parser; a few minutes on 2 cores)"
# `custom` switches every plugin off; the other tags switch on the three we use.
GOBIN="$OUT" CGO_ENABLED=0 GOTOOLCHAIN=local go install \
  -tags "custom,inputs.kafka_consumer,outputs.influxdb_v2,parsers.xpath" -ldflags "-s -w -X github.com/influxdata/telegraf/internal.Version=$VERSION" \
  "github.com/influxdata/telegraf/cmd/telegraf@v$VERSION" >&2
echo "telegraf $VERSION: built $OUT/telegraf"

#!/usr/bin/env bash
# Builds Telegraf from its Go module with only what the comparisons need: B2 (the kafka_consumer input, the
# influxdb_v2 output and the xpath parser, which reads healthpipe's JSON messages) and B11 (the http_listener_v2
# input with the prometheusremotewrite parser, the kafka output). Benchmarks only: the pipeline never runs Telegraf.
# Output: $HEALTHPIPE_CACHE/telegraf-$VERSION/telegraf. Idempotent: exits at once when the binary exists.
set -euo pipefail

VERSION=${TELEGRAF_VERSION:-1.37.2}
CACHE=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}
PLUGINS="inputs.kafka_consumer,outputs.influxdb_v2,parsers.xpath,inputs.http_listener_v2,parsers.prometheusremotewrite,outputs.kafka,serializers.influx"
OUT=$CACHE/telegraf-$VERSION-b2-b11  # another set of plugins is another binary
[ -x "$OUT/telegraf" ] && { echo "telegraf $VERSION: cached at $OUT/telegraf"; exit 0; }

mkdir -p "$OUT"
echo "telegraf: building $VERSION ($PLUGINS; a few minutes on 2 cores)"
# `custom` switches every plugin off; the other tags switch on the ones we use.
GOBIN="$OUT" CGO_ENABLED=0 GOTOOLCHAIN=local go install \
  -tags "custom,$PLUGINS" -ldflags "-s -w -X github.com/influxdata/telegraf/internal.Version=$VERSION" \
  "github.com/influxdata/telegraf/cmd/telegraf@v$VERSION" >&2
echo "telegraf $VERSION: built $OUT/telegraf"

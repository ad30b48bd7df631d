#!/usr/bin/env bash
# Stand-in images for docker-compose.yml's third-party services where Docker Hub cannot be reached
# (deploy/standins/README.md): each from the version the native stack caches, so run `make stack-up` once first.
# Tags are the official images' versions under healthpipe-standin/, as compose.local.yml names them.
#   standins.sh     build (or refresh from Docker's build cache) all four
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cache=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}
version() { sed -n "s/^$1 = \"\(.*\)\"/\1/p" "$root/healthpipe/ops/stack/paths.py"; }
kafka=$(version KAFKA_VERSION)
influxdb=$(version INFLUXDB_VERSION)
seaweedfs_module=$(version SEAWEEDFS_VERSION)
weed=$cache/seaweedfs-$seaweedfs_module/weed
influxd=$cache/influxdb-$influxdb/influxd
prometheus=$(command -v prometheus || echo "prometheus (Debian's package)")
for f in "$cache/kafka-$kafka/.complete" "$influxd" "$weed" "$prometheus"; do
  [ -e "$f" ] || { echo "standins: $f is missing: run \`make stack-up\` (with S3) once first" >&2; exit 1; }
done
prometheus_version=$("$prometheus" --version 2>&1 | sed -n 's/^prometheus, version \([0-9.]*\).*/\1/p')
weed_version=$("$weed" version | sed -n 's/.* \([0-9]\+\.[0-9]\+\) .*/\1/p' | head -1)
base=$("$root/scripts/docker/base-image.sh")

# build NAME TAG FILE...: the folder deploy/standins/NAME plus the given files, as the build context
build() {
  local name=$1 tag=$2; shift 2
  local ctx=$cache/standins/$name
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp -a "$root/deploy/standins/$name/." "$ctx/"
  for f in "$@"; do cp -al "$f" "$ctx/" 2>/dev/null || cp -a "$f" "$ctx/"; done
  echo "standins: $tag" >&2
  docker build --network host -q --build-arg "BASE=$base" -t "$tag" "$ctx" >/dev/null
}
build kafka "healthpipe-standin/kafka:$kafka" "$cache/kafka-$kafka/lib"
build influxdb "healthpipe-standin/influxdb:$influxdb" "$influxd"
build prometheus "healthpipe-standin/prometheus:$prometheus_version" "$prometheus"
build seaweedfs "healthpipe-standin/seaweedfs:$weed_version" "$weed"

#!/usr/bin/env bash
# Builds InfluxDB 2.7 (influxd, no UI) from its Go module, with Flux's Rust library libflux.
# Output: $HEALTHPIPE_CACHE/influxdb-$VERSION/influxd. Idempotent: exits at once when the binary exists.
#
# Why it is this long: influxdb's go.mod has `replace` lines, so `go install pkg@v` refuses it and we
# build inside a writable copy; Flux needs libflux through cgo/pkg-config, and its Rust crates pin an old
# toolchain and deny warnings, which today's stable Rust turns into errors.
set -euo pipefail

VERSION=${INFLUXDB_VERSION:-2.7.12}
FLUX_VERSION=${FLUX_VERSION:-0.196.1}
CACHE=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}
OUT=$CACHE/influxdb-$VERSION
[ -x "$OUT/influxd" ] && { echo "influxdb $VERSION: cached at $OUT/influxd"; exit 0; }

BUILD=$CACHE/build
mkdir -p "$BUILD" "$OUT"
module_dir() { go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }

# 1. libflux (Rust, static library)
FLUX_SRC=$(module_dir "github.com/influxdata/flux@v$FLUX_VERSION")
FLUX=$BUILD/flux-$FLUX_VERSION
if [ ! -f "$FLUX/libflux/target/release/libflux.a" ]; then
  rm -rf "$FLUX"; cp -r "$FLUX_SRC" "$FLUX"; chmod -R u+w "$FLUX"
  rm -f "$FLUX/rust-toolchain.toml" "$FLUX/libflux/rust-toolchain.toml"
  echo "influxdb: building libflux $FLUX_VERSION (Rust, release; several minutes on 2 cores)"
  (cd "$FLUX/libflux" && RUSTFLAGS="--cap-lints=warn" CARGO_PROFILE_RELEASE_LTO=false \
     cargo build --release -p flux --lib >&2)
fi

# 2. a pkg-config file for the static libflux
mkdir -p "$BUILD/pkgconfig"
cat > "$BUILD/pkgconfig/flux.pc" <<PC
Name: flux
Description: Flux Rust library (built by healthpipe)
Version: $FLUX_VERSION
Cflags: -I$FLUX/libflux/include
Libs: $FLUX/libflux/target/release/libflux.a -ldl -lpthread -lm
PC

# 3. influxd (Go, cgo for libflux and sqlite)
INFLUX_SRC=$(module_dir "github.com/influxdata/influxdb/v2@v$VERSION")
INFLUX=$BUILD/influxdb-$VERSION
if [ ! -d "$INFLUX" ]; then cp -r "$INFLUX_SRC" "$INFLUX"; chmod -R u+w "$INFLUX"; fi
echo "influxdb: building influxd $VERSION (Go + cgo)"
(cd "$INFLUX" && PKG_CONFIG_PATH="$BUILD/pkgconfig" CGO_ENABLED=1 GOTOOLCHAIN=local GOFLAGS=-mod=mod \
   go build -tags sqlite_foreign_keys,sqlite_json -ldflags "-s -w -X main.version=$VERSION" \
   -o "$OUT/influxd.tmp" ./cmd/influxd >&2)
mv "$OUT/influxd.tmp" "$OUT/influxd"
echo "influxdb $VERSION: built $OUT/influxd"

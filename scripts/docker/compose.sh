#!/usr/bin/env bash
# Docker Compose v2, built from the Go module proxy (Debian has only compose v1, which lacks what docker-compose.yml
# and the README use: several --env-file flags, profiles, `service_completed_successfully`). Cached by version and
# installed as the docker CLI plugin, so `docker compose` works. Prints the binary's path.
#   compose.sh    build once (about 4 min cold on 2 cores), then seconds
set -euo pipefail
VERSION=v2.40.3
cache=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}
out=$cache/docker-compose-$VERSION
plugin=${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins/docker-compose

if [ ! -x "$out/docker-compose" ]; then
  command -v go >/dev/null || { echo "compose: Go is needed to build Compose $VERSION" >&2; exit 1; }
  echo "compose: building Docker Compose $VERSION from its Go module (about 4 min the first time)" >&2
  # `go install …@v` refuses the module (its go.mod has exclude directives): build inside a writable copy
  src=$(go mod download -json "github.com/docker/compose/v2@$VERSION" \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
  work=$cache/build/compose-$VERSION
  rm -rf "$work" && mkdir -p "$cache/build" && cp -r "$src" "$work" && chmod -R u+w "$work"
  mkdir -p "$out"
  (cd "$work" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod nice go build -trimpath \
      -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$VERSION" -o "$out/docker-compose.tmp" ./cmd >&2)
  mv "$out/docker-compose.tmp" "$out/docker-compose"
  rm -rf "$work"
fi
mkdir -p "$(dirname "$plugin")"
ln -sf "$out/docker-compose" "$plugin"
echo "$out/docker-compose"

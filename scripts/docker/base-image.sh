#!/usr/bin/env bash
# The Python base image for machines that cannot pull from Docker Hub: Debian bookworm (mmdebstrap, minbase)
# with Debian's python3 (3.11) and venv, and this machine's CA certificates (HTTPS to the package registries
# may go through an intercepting proxy). Built once and cached by version; `docker import` takes seconds.
#   base-image.sh            print the image name, building it first if the engine lacks it
# Use it as the Dockerfile's base:  docker build --build-arg PYTHON_IMAGE=$(scripts/docker/base-image.sh) ...
set -euo pipefail
version=2  # bump when the package list below changes
image=healthpipe-local/python:3.11-bookworm-v$version
cache=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}/docker
tar=$cache/python-3.11-bookworm-v$version.tar

if docker image inspect "$image" >/dev/null 2>&1; then echo "$image"; exit 0; fi
mkdir -p "$cache"
if [ ! -s "$tar" ]; then
  command -v mmdebstrap >/dev/null || { echo "base image: mmdebstrap missing (apt-get install mmdebstrap)" >&2; exit 1; }
  echo "base image: mmdebstrap bookworm (about a minute)" >&2
  certs=$(mktemp -d)
  cp /usr/local/share/ca-certificates/*.crt "$certs/" 2>/dev/null || true
  # no documentation, manual pages or translations in the image (about 50 MB); copyright files stay
  mmdebstrap --quiet --format=tar --variant=minbase --include=python3,python3-venv,ca-certificates \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="copy-in $certs/. /usr/local/share/ca-certificates" \
    --customize-hook='chroot "$1" update-ca-certificates' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$tar.part" >&2
  rm -rf "$certs"
  mv "$tar.part" "$tar"
fi
# pip in a venv reads its CA bundle from PIP_CERT; python:3.11-slim users need nothing of this
docker import --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$tar" "$image" >/dev/null
echo "$image"

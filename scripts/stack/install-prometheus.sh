#!/usr/bin/env bash
# Installs Debian's prometheus package (the binary only: we run our own process with our own config).
set -euo pipefail
command -v prometheus >/dev/null && { echo "prometheus: $(prometheus --version 2>&1 | head -1)"; exit 0; }
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
# A policy-rc.d that exits 101 stops the package's install script from starting a system instance on :9090.
printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null; $SUDO chmod +x /usr/sbin/policy-rc.d
trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get update -qq >&2 || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null
echo "prometheus: $(prometheus --version 2>&1 | head -1)"

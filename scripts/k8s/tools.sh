#!/usr/bin/env bash
# kustomize and kubeconform, built from the Go module proxy (no release downloads here) and cached by version.
# Prints the folder that holds both binaries.
set -euo pipefail
KUSTOMIZE=v5.8.1
KUBECONFORM=v0.8.0
bin=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}/k8s-tools-kustomize-$KUSTOMIZE-kubeconform-$KUBECONFORM
mkdir -p "$bin"
export GOFLAGS=-mod=mod GOBIN=$bin
[ -x "$bin/kustomize" ] || { echo "k8s tools: building kustomize $KUSTOMIZE (a minute or two)" >&2;
  nice go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE" >&2; }
[ -x "$bin/kubeconform" ] || { echo "k8s tools: building kubeconform $KUBECONFORM" >&2;
  nice go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM" >&2; }
echo "$bin"

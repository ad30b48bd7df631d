#!/usr/bin/env bash
# A Docker engine for the image and compose tests on a machine that allows loopback traffic only:
# no bridge (it would put containers on private-range addresses), no iptables, host networking everywhere.
#   engine.sh start   start dockerd unless one answers already; record the PID of the one we started
#   engine.sh stop    stop only the dockerd this script started (by its PID), never someone else's
set -euo pipefail
state=${HEALTHPIPE_CACHE:-$HOME/.cache/healthpipe}/docker
pidfile=$state/dockerd.pid
mkdir -p "$state"

case "${1:-}" in
  start)
    if docker info >/dev/null 2>&1; then echo "docker engine: already running"; exit 0; fi
    command -v dockerd >/dev/null || { echo "docker engine: dockerd missing (apt-get install docker.io)"; exit 1; }
    nohup dockerd --bridge=none --iptables=false --ip-forward=false >"$state/dockerd.log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 60); do
      docker info >/dev/null 2>&1 && { echo "docker engine: started (pid $(cat "$pidfile"), log $state/dockerd.log)"; exit 0; }
      sleep 0.5
    done
    echo "docker engine: did not answer within 30 s; see $state/dockerd.log"; exit 1 ;;
  stop)
    [ -f "$pidfile" ] || { echo "docker engine: not started by this script, left alone"; exit 0; }
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      echo "docker engine: stopped (pid $pid)"
    fi
    rm -f "$pidfile" ;;
  *) echo "usage: $0 start|stop"; exit 2 ;;
esac

#!/usr/bin/env bash
# Stops what `make run` started in this checkout: its runner (which stops every process it
# started) and its private Redis. Does nothing when nothing runs.
set -euo pipefail
cd "$(dirname "$0")/.."
lock="${PRESENCE_BRIDGE_RUN_DIR:-$PWD/.run}/run.lock"

# scripts/run.py holds an flock on its lock file while it runs, with its pid inside.
if [ -f "$lock" ] && ! flock -n "$lock" true; then
    pid=$(cat "$lock")
    echo "stop: stopping make run (pid $pid)" >&2
    kill -TERM "$pid"
    for _ in $(seq 300); do flock -n "$lock" true && break; sleep 0.1; done
fi
bash scripts/ensure-redis.sh stop

#!/usr/bin/env bash
# Prints a Redis URL that answers: PRESENCE_BRIDGE_REDIS_URL or REDIS_URL when set (an error
# when it does not answer), otherwise this checkout's private redis-server on loopback, which
# this script starts on a free port the first time and finds again later (.run/redis/port).
# With a tenants file (a real run) the private Redis keeps an AOF under .run/redis; the demo's
# keeps nothing. `ensure-redis.sh stop` stops the private one.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
dir="${PRESENCE_BRIDGE_RUN_DIR:-$PWD/.run}/redis"

ping() { "$VENV/bin/python" -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()" "$1" >/dev/null 2>&1; }
# The pid in the pid file, if that process is still our redis-server.
ours() { local pid; pid=$(cat "$dir/redis.pid" 2>/dev/null) || return 1; grep -qa redis-server "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"; }

if [ "${1:-}" = stop ]; then
    if pid=$(ours); then
        kill -TERM "$pid"
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        echo "ensure-redis: stopped the private Redis (pid $pid)" >&2
    fi
    exit 0
fi

given=${PRESENCE_BRIDGE_REDIS_URL:-${REDIS_URL:-}}
if [ -n "$given" ]; then
    if ping "$given"; then echo "$given"; exit 0; fi
    echo "ensure-redis: the Redis at PRESENCE_BRIDGE_REDIS_URL/REDIS_URL does not answer" >&2
    exit 1
fi

mkdir -p "$dir"
if pid=$(ours) && port=$(cat "$dir/port" 2>/dev/null) && ping "redis://127.0.0.1:$port/0"; then
    url="redis://127.0.0.1:$port/0"
else
    # A free port per checkout: a fixed one would be shared by every checkout on the machine.
    port=${PRIVATE_REDIS_PORT:-$("$VENV/bin/python" -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")}
    url="redis://127.0.0.1:$port/0"
    # An AOF written before is loaded again (with `appendonly no` Redis would start empty).
    aof=no
    if [ -n "${PRESENCE_BRIDGE_TENANTS_FILE:-}" ] || [ -d "$dir/appendonlydir" ]; then aof=yes; fi
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly "$aof" \
        --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid" >/dev/null
    for _ in $(seq 50); do ping "$url" && break; sleep 0.1; done
    if ! ping "$url"; then
        echo "ensure-redis: redis-server on port $port did not answer; see $dir/redis.log" >&2
        exit 1
    fi
    echo "$port" > "$dir/port"
fi
if [ -n "${PRESENCE_BRIDGE_TENANTS_FILE:-}" ]; then
    # Real tenants: their sign-ins must survive a restart. Turned on in place, so a Redis the
    # demo started keeps its data and starts its AOF now.
    "$VENV/bin/python" -c "import redis,sys; redis.Redis.from_url(sys.argv[1]).config_set('appendonly', 'yes')" "$url" >/dev/null
fi
echo "$url"

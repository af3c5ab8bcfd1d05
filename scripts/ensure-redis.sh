#!/usr/bin/env bash
# Prints a Redis URL that answers: $REDIS_URL when it does, otherwise a private
# redis-server on loopback that this script starts (data under .run/redis).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

ping() { "$VENV/bin/python" -c "import redis,sys; redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()" "$1" >/dev/null 2>&1; }

if [ -n "${REDIS_URL:-}" ] && ping "$REDIS_URL"; then
    echo "$REDIS_URL"; exit 0
fi
port=${PRIVATE_REDIS_PORT:-6390}
url="redis://127.0.0.1:$port/0"
if ping "$url"; then echo "$url"; exit 0; fi
mkdir -p .run/redis
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no \
    --dir "$PWD/.run/redis" --logfile "$PWD/.run/redis/redis.log" --pidfile "$PWD/.run/redis/redis.pid" >/dev/null
for _ in $(seq 50); do ping "$url" && { echo "$url"; exit 0; }; sleep 0.1; done
echo "ensure-redis: redis-server on port $port did not answer; see .run/redis/redis.log" >&2
exit 1

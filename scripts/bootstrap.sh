#!/usr/bin/env bash
# Makes the machine ready for `make run` and `make test`: a virtualenv with the project
# installed from the lock file (pinned, with hashes), and the Debian packages the real-service
# tests need. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}
APT_PACKAGES=(redis-server kamailio kamailio-presence-modules sip-tester chromium caddy systemd)

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ -x /usr/sbin/kamailio ] || missing+=(kamailio kamailio-presence-modules)
[ -e /usr/lib/x86_64-linux-gnu/kamailio/modules/presence.so ] || [ -e /usr/lib/kamailio/modules/presence.so ] || missing+=(kamailio-presence-modules)
command -v sipp >/dev/null 2>&1 || missing+=(sip-tester)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v caddy >/dev/null 2>&1 || missing+=(caddy)  # the reverse-proxy test (deploy/caddy)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)  # verifies deploy/systemd
if [ ${#missing[@]} -gt 0 ] && [ "${BOOTSTRAP_SKIP_APT:-0}" != 1 ]; then
    echo "bootstrap: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
: "${APT_PACKAGES[@]}"

stamp="$VENV/.installed"
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ requirements-dev.lock -nt "$stamp" ]; then
    # Exactly the locked versions and files (`make lock` regenerates it), then the project alone.
    "$VENV/bin/pip" install -q --require-hashes -r requirements-dev.lock
    "$VENV/bin/pip" install -q --no-deps -e .
    touch "$stamp"
fi

#!/usr/bin/env bash
# Regenerates the lock files from pyproject.toml (`make lock`): requirements-dev.lock (runtime
# and the dev extra: what bootstrap and CI install) and requirements.lock (runtime only, for
# production), both pinned with hashes, the second held to the first's versions.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS=${LOCK_TOOLS_VENV:-build/lock-tools}
PIP_TOOLS=${PIP_TOOLS:-pip-tools==7.6.2}

if [ ! -x "$TOOLS/bin/pip-compile" ]; then
    python3 -m venv "$TOOLS"
    "$TOOLS/bin/pip" install -q "$PIP_TOOLS"
fi
# No index or find-links lines: the lock names packages and hashes, not where they came from.
export CUSTOM_COMPILE_COMMAND="make lock"
compile=("$TOOLS/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras
         --no-emit-index-url --no-emit-find-links
         ${LOCK_UPGRADE:+--upgrade})
"${compile[@]}" --extra dev -o requirements-dev.lock pyproject.toml
"${compile[@]}" -c requirements-dev.lock -o requirements.lock pyproject.toml

#!/usr/bin/env bash
# Installs what building, testing and benchmarking Sluice needs, when missing:
# Debian packages with apt-get and Python packages with pip. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PKGS=(build-essential pkg-config libevent-dev libssl-dev libpcre2-dev libjansson-dev
          libyaml-dev libcmocka-dev liblmdb-dev lmdb-utils libprotobuf-c-dev protobuf-c-compiler
          libzstd-dev zstd libhiredis-dev libmsgpack-dev libnghttp2-dev redis-server openssl wrk nginx-light nghttp2-client clang-format curl
          procps)

missing=()
for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing Debian packages: ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # The nginx package starts a service on port 80; the benchmark runs its own.
    # The nginx and redis packages start services; the benchmark and the tests run their own.
    if command -v service >/dev/null 2>&1; then
        $SUDO service nginx stop >/dev/null 2>&1 || true
        $SUDO service redis-server stop >/dev/null 2>&1 || true
    fi
fi

PY=${PYTHON:-python3}
if ! tools/py-requirements.sh "$PY" >/dev/null 2>&1; then
    echo "deps: installing Python packages from tests/requirements.txt"
    $PY -m pip install -q -r tests/requirements.txt
fi
# go-pdk-examples/ builds with -mod=readonly: fetch its modules now, never during a build.
GO=${GO:-go}
if ! command -v "$GO" >/dev/null 2>&1; then
    echo "deps: '$GO' not found: install Go 1.21 or later and put it on PATH (go-pdk-examples/ needs it)" >&2
    exit 1
fi
(cd go-pdk-examples && "$GO" mod download)
# pdk-examples/js/ runs on Kong's JavaScript PDK (kong-pdk from npm), pinned by
# its package-lock.json.
if ! command -v npm >/dev/null 2>&1; then
    echo "deps: 'npm' not found: install Node.js 18 or later with npm (pdk-examples/js/ needs it)" >&2
    exit 1
fi
if [ ! -x pdk-examples/js/node_modules/.bin/kong-js-pluginserver ]; then
    echo "deps: installing pdk-examples/js/ (npm ci)"
    (cd pdk-examples/js && npm ci --no-audit --no-fund --silent)
fi
echo "deps: ok"

#!/usr/bin/env bash
# Fails loudly when a tool the test suites need is missing (run `make deps`).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
fail=0
need() { echo "missing: $1 -- run 'make deps' to install it" >&2; fail=1; }
for pc in libevent libevent_openssl libevent_pthreads openssl libpcre2-8 jansson yaml-0.1 lmdb cmocka \
    libprotobuf-c libzstd hiredis msgpack libnghttp2; do
    pkg-config --exists "$pc" 2>/dev/null || need "pkg-config module $pc"
done
command -v "$PY" >/dev/null 2>&1 || need "$PY"
command -v protoc-c >/dev/null 2>&1 || need "protoc-c (protobuf-c-compiler)"
command -v redis-server >/dev/null 2>&1 || need "redis-server (rate-limiting's redis policy is tested against it)"
command -v "${GO:-go}" >/dev/null 2>&1 || {
    echo "missing: go -- install Go 1.21 or later and put it on PATH (go-pdk-examples/ is built and tested with it)" >&2
    fail=1
}
$PY -c 'import pytest' 2>/dev/null || need "python module pytest"
command -v node >/dev/null 2>&1 || need "node (Node.js: pdk-examples/js/ runs on it)"
[ -x pdk-examples/js/node_modules/.bin/kong-js-pluginserver ] ||
    need "pdk-examples/js/node_modules (Kong's JavaScript PDK, npm ci)"
for dist in $(tools/py-requirements.sh "$PY" 2>/dev/null); do
    need "python package $dist"
done
[ $fail -eq 0 ] || { echo "check-tools: required tools are missing" >&2; exit 1; }

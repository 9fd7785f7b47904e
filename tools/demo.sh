#!/usr/bin/env bash
# `make run`: starts a demo upstream and a hybrid pair, sluice-cp (control
# plane, Admin API) and sluice-dp (data plane, proxy) from the configuration
# files in deploy/examples/, loads deploy/examples/demo.yaml through the Admin
# API, and prints what to try. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
PREFIX=/tmp/sluice-demo
mkdir -p "$PREFIX"
# A fresh demo each time: the control plane's store and the data plane's
# persisted configuration from an earlier run go away.
rm -rf "$PREFIX/cp" "$PREFIX/dp"
if [ ! -f "$PREFIX/cluster.crt" ] || [ ! -f "$PREFIX/cluster.key" ]; then
    rm -f "$PREFIX/cluster.crt" "$PREFIX/cluster.key"
    "$BUILD/bin/sluice-cp" gen-cert "$PREFIX/cluster.crt" "$PREFIX/cluster.key"
fi

python3 tests/integration/upstream.py --port 9001 --addr-file "$PREFIX/upstream.addr" \
    >"$PREFIX/upstream.log" 2>&1 &
UP=$!
"$BUILD/bin/sluice-cp" -c deploy/examples/sluice-cp-hybrid.conf &
CP=$!
"$BUILD/bin/sluice-dp" -c deploy/examples/sluice-dp-hybrid.conf &
DP=$!
trap 'kill $DP $UP $CP 2>/dev/null; wait $DP $UP $CP 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 100); do
    [ -f "$PREFIX/dp/proxy.addr" ] && [ -f "$PREFIX/upstream.addr" ] &&
        [ -f "$PREFIX/cp/admin.addr" ] && break
    sleep 0.1
done
curl -sf -o /dev/null -X POST http://127.0.0.1:8001/config \
    -H 'Content-Type: application/yaml' --data-binary @deploy/examples/demo.yaml ||
    echo "demo: could not load deploy/examples/demo.yaml into the control plane" >&2
for _ in $(seq 50); do
    curl -sf -o /dev/null http://127.0.0.1:8007/status/ready && break
    sleep 0.1
done
cat <<MSG

  Sluice hybrid demo is running (Ctrl-C to stop):
    control plane http://127.0.0.1:8001   Kong-compatible Admin API; data planes connect to
                                         127.0.0.1:8005 (mutual TLS, $PREFIX/cluster.crt)
    data plane    http://127.0.0.1:8000   proxy; configuration pushed by the control plane
    status API    http://127.0.0.1:8007   (/status, /status/ready, /metrics)
    upstream      http://127.0.0.1:9001   echoes requests as JSON

  Try:
    curl -i http://127.0.0.1:8000/api/hello          # routed, prefix /api stripped
    curl -i http://127.0.0.1:8000/users/42           # regex route with a named capture
    curl -i http://127.0.0.1:8000/private            # 401: key-auth wants a key
    curl -i -H 'apikey: demo-key' http://127.0.0.1:8000/private   # 5 a minute (rate-limiting)
    curl -s localhost:8001/clustering/data-planes    # the connected data plane and its hash

    curl -s -X POST localhost:8001/services -d name=echo -d url=http://127.0.0.1:9001
    curl -s -X POST localhost:8001/services/echo/routes -d 'paths[]=/echo'
    curl -i http://127.0.0.1:8000/echo/x             # served a few milliseconds later
    curl -s localhost:8001/config                    # export as a Kong declarative file
    kill $CP                                         # the data plane keeps serving

MSG
wait $DP

#!/usr/bin/env bash
# `make run`: starts a demo upstream, sluice-dp (DB-less) and sluice-cp in
# the foreground and prints what to try. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
PREFIX=/tmp/sluice-demo
mkdir -p "$PREFIX"
python3 tests/integration/upstream.py --port 9001 --addr-file "$PREFIX/upstream.addr" \
    >"$PREFIX/upstream.log" 2>&1 &
UP=$!
"$BUILD/bin/sluice-dp" -c deploy/examples/sluice-dp.conf &
DP=$!
SLUICE_ADMIN_LISTEN=127.0.0.1:8001 SLUICE_CLUSTER_LISTEN=off "$BUILD/bin/sluice-cp" -p "$PREFIX/cp" &
CP=$!
trap 'kill $DP $UP $CP 2>/dev/null; wait $DP $UP $CP 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 50); do
    [ -f "$PREFIX/proxy.addr" ] && [ -f "$PREFIX/upstream.addr" ] && [ -f "$PREFIX/cp/admin.addr" ] && break
    sleep 0.1
done
cat <<MSG

  Sluice demo is running (Ctrl-C to stop):
    data plane   http://127.0.0.1:8000   (config: deploy/examples/demo.yaml)
    status API   http://127.0.0.1:8007   (/status, /status/ready, /metrics)
    upstream     http://127.0.0.1:9001   (echoes requests as JSON)
    control plane http://127.0.0.1:8001  (Kong-compatible Admin API; store in $PREFIX/cp)

  Try:
    curl -i http://127.0.0.1:8000/api/hello          # routed, prefix /api stripped
    curl -i http://127.0.0.1:8000/users/42           # regex route with a named capture
    curl -i http://127.0.0.1:8000/nowhere            # 404 no Route matched
    curl -s http://127.0.0.1:8007/metrics | head
    kill -HUP $DP                                    # reload the declarative file

    curl -s -X POST localhost:8001/services -d name=demo -d url=http://127.0.0.1:9001
    curl -s -X POST localhost:8001/services/demo/routes -d 'paths[]=/api'
    curl -s localhost:8001/config                    # export as a Kong declarative file
    (the control plane does not push to the data plane yet: hybrid mode comes next)

MSG
wait $DP

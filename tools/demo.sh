#!/usr/bin/env bash
# `make run`: starts a demo upstream and sluice-dp (DB-less) in the
# foreground and prints what to try. Ctrl-C stops both.
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
trap 'kill $DP $UP 2>/dev/null; wait $DP $UP 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 50); do [ -f "$PREFIX/proxy.addr" ] && [ -f "$PREFIX/upstream.addr" ] && break; sleep 0.1; done
cat <<MSG

  Sluice demo is running (Ctrl-C to stop):
    data plane   http://127.0.0.1:8000   (config: deploy/examples/demo.yaml)
    status API   http://127.0.0.1:8007   (/status, /status/ready, /metrics)
    upstream     http://127.0.0.1:9001   (echoes requests as JSON)

  Try:
    curl -i http://127.0.0.1:8000/api/hello          # routed, prefix /api stripped
    curl -i http://127.0.0.1:8000/users/42           # regex route with a named capture
    curl -i http://127.0.0.1:8000/nowhere            # 404 no Route matched
    curl -s http://127.0.0.1:8007/metrics | head
    kill -HUP $DP                                    # reload the declarative file

MSG
wait $DP

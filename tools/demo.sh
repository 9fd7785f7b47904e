#!/usr/bin/env bash
# `make run`: starts a demo upstream and a hybrid pair, sluice-cp (control
# plane, Admin API) and sluice-dp (data plane, proxy) from the configuration
# files in deploy/examples/, with the data plane running the Go example plugin
# `hello` (go-pdk-examples/hello) as a plugin server. Loads
# deploy/examples/demo.yaml through the Admin API, adds a hello plugin to the
# route /api, and prints what to try. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=$(realpath -m "${1:-build}")
PREFIX=/tmp/sluice-demo
HELLO=$BUILD/bin/go-plugins/hello
if [ ! -x "$HELLO" ]; then
    echo "demo: $HELLO is missing: build the Go example plugins with make go-examples" >&2
    exit 1
fi
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
# The control plane is not told about hello: the data plane reports the
# plugins it runs, with their schemas, when it connects, and from then on the
# Admin API validates hello configurations against that schema.
"$BUILD/bin/sluice-cp" -c deploy/examples/sluice-cp-hybrid.conf &
CP=$!
# The data plane starts the plugin server, which listens on
# <-kong-prefix>/hello.socket, and stops it when it exits.
SLUICE_PLUGINS=bundled,hello \
SLUICE_PLUGINSERVER_NAMES=hello \
SLUICE_PLUGINSERVER_HELLO_QUERY_CMD="$HELLO -dump" \
SLUICE_PLUGINSERVER_HELLO_START_CMD="$HELLO -kong-prefix $PREFIX/dp" \
SLUICE_PLUGINSERVER_HELLO_SOCKET="$PREFIX/dp/hello.socket" \
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
# hello is configurable once the data plane has connected and reported it
# (retried until then), on the route /api of demo.yaml.
HELLO_PLUGIN='{"name": "hello", "instance_name": "demo-hello", "config": {"message": "hi"}}'
hello=
for _ in $(seq 100); do
    curl -sf -o /dev/null -X POST http://127.0.0.1:8001/routes/demo-api/plugins \
        -H 'Content-Type: application/json' -d "$HELLO_PLUGIN" && hello=ok && break
    sleep 0.1
done
[ -n "$hello" ] || echo "demo: could not add the hello plugin: the data plane has not" \
    "reported it (see curl -s localhost:8001/clustering/data-planes)" >&2
# Ready, and greeting: the plugin's configuration has reached the data plane.
for _ in $(seq 50); do
    curl -sf -o /dev/null http://127.0.0.1:8007/status/ready &&
        curl -sf -o /dev/null -D - http://127.0.0.1:8000/api/ | grep -qi '^x-hello-from-go:' &&
        break
    sleep 0.1
done
cat <<MSG

  Sluice hybrid demo is running (Ctrl-C to stop):
    control plane http://127.0.0.1:8001   Kong-compatible Admin API; data planes connect to
                                         127.0.0.1:8005 (mutual TLS, $PREFIX/cluster.crt)
    data plane    http://127.0.0.1:8000   proxy (HTTP/1.1 and h2c; https on 8443, with h2);
                                         configuration pushed by the control plane
    status API    http://127.0.0.1:8007   (/status, /status/ready, /metrics)
    Go plugin     hello                   go-pdk-examples/hello, a plugin server the data plane
                                         started ($PREFIX/dp/hello.socket), on the route /api
    upstream      http://127.0.0.1:9001   echoes requests as JSON

  Try:
    curl -i http://127.0.0.1:8000/api/hello          # routed, prefix /api stripped
    curl -si http://127.0.0.1:8000/api/hello -H 'Host: example.com' | grep -i x-hello
                                                     # x-hello-from-go: Go says hi to example.com
    curl -i http://127.0.0.1:8000/users/42           # regex route with a named capture
    curl -i http://127.0.0.1:8000/private            # 401: key-auth wants a key
    curl -i -H 'apikey: demo-key' http://127.0.0.1:8000/private   # 5 a minute (rate-limiting)
    curl -s localhost:8001/clustering/data-planes    # the connected data plane and its hash

    curl -s -X PATCH localhost:8001/plugins/demo-hello -H 'Content-Type: application/json' \\
        -d '{"config": {"message": "bonjour"}}'     # the Go plugin now says bonjour
    curl -s -X POST localhost:8001/services -d name=echo -d url=http://127.0.0.1:9001
    curl -s -X POST localhost:8001/services/echo/routes -d 'paths[]=/echo'
    curl -i http://127.0.0.1:8000/echo/x             # served a few milliseconds later
    curl -i --http2-prior-knowledge http://127.0.0.1:8000/api/hello   # HTTP/2 (h2c)
    curl -ik --http2 https://127.0.0.1:8443/api/hello # HTTP/2 over TLS (self-signed certificate)
    curl -s localhost:8001/config                    # export as a Kong declarative file
    kill $CP                                         # the data plane keeps serving

MSG
wait $DP

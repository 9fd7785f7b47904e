#!/usr/bin/env bash
# Sluice benchmarks: prints figures and ratios, asserts nothing (benchmarks are
# not tests). Builds nothing: uses $SLUICE_BUILD/bin/sluice-dp (default
# build/), wrk, and Debian's nginx (/usr/sbin/nginx).
#
#   1. upstream direct vs sluice-dp (workers=1) vs nginx proxy (1 worker,
#      keepalive 64): requests/s, p50, p99; ratios sluice/nginx; the same
#      over TLS (both proxies' ssl listeners, one certificate), and over
#      HTTP/2 on TLS (h2load, 10 connections x 10 streams).
#   2. sluice-dp with 10,000 routes (mixed hosts, prefixes, 5% regex) vs 1
#      route, same requests.
#   3. sluice-dp (and nginx) resident memory with 10,000 idle keep-alive
#      client connections.
#   4. native plugins: no plugin vs key-auth + rate-limiting (100 consumers)
#      and each bundled plugin alone; ratios to no plugin.
#   5. external plugins: go-pdk's hello through the plugin-server bridge vs
#      the same logic native vs none; the latency a plugin event adds.
#   6. the control plane's Admin API (cp_bench.py).
#
# The upstream is a second nginx returning a small fixed body, so that the
# upstream is never the bottleneck. Environment: BENCH_DURATION (seconds per
# wrk run, default 5), BENCH_ROUNDS (interleaved rounds, median reported,
# default 3), BENCH_CONNS (default 50), BENCH_THREADS (default 2),
# BENCH_IDLE_CONNS (default 10000), H2LOAD, BENCH_SECTIONS (the sections to run, as
# "1 2 3 4 5 6", the default; 1 includes 1b), NGINX, WRK.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
SLUICE_BUILD=${SLUICE_BUILD:-$REPO/build}
case $SLUICE_BUILD in /*) ;; *) SLUICE_BUILD=$REPO/$SLUICE_BUILD ;; esac
DP=$SLUICE_BUILD/bin/sluice-dp
NGINX=${NGINX:-/usr/sbin/nginx}
WRK=${WRK:-wrk}
H2LOAD=${H2LOAD:-h2load}
PYTHON=${PYTHON:-python3}
DURATION=${BENCH_DURATION:-5}
ROUNDS=${BENCH_ROUNDS:-3}
CONNS=${BENCH_CONNS:-50}
THREADS=${BENCH_THREADS:-2}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
SECTIONS=" ${BENCH_SECTIONS:-1 2 3 4 5 6} "

# Whether a section was asked for (BENCH_SECTIONS).
want() { case $SECTIONS in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

die() { echo "bench: $*" >&2; exit 1; }

command -v "$H2LOAD" >/dev/null 2>&1 ||
    die "h2load not found: install it (apt-get install nghttp2-client) or set H2LOAD=/path/to/h2load"
command -v "$WRK" >/dev/null 2>&1 ||
    die "wrk not found: install it (apt-get install wrk) or set WRK=/path/to/wrk"
[ -x "$NGINX" ] ||
    die "nginx not found at $NGINX: install it (apt-get install nginx-light) or set NGINX=/path/to/nginx"
command -v "$PYTHON" >/dev/null 2>&1 || die "python3 not found"
[ -x "$DP" ] || die "sluice-dp not found at $DP: run make first (or set SLUICE_BUILD)"

# Allow many descriptors for the idle-connection run (children inherit it).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

WORK=$(mktemp -d /tmp/sluice-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()

cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill -TERM "$p" 2>/dev/null || true
    done
    for p in "${PIDS[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # host port
    local i
    for i in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    return 1
}

# ---------------------------------------------------------------- nginx

nginx_user_line() { [ "$(id -u)" -eq 0 ] && echo "user root root;" || true; }

start_nginx() { # name port http-block-body
    local dir=$WORK/$1
    mkdir -p "$dir/logs" "$dir/tmp"
    cat >"$dir/nginx.conf" <<EOF
$(nginx_user_line)
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 30000; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
$3
}
EOF
    "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" 2>"$dir/logs/test.log" ||
        die "nginx config for $1 invalid: $(cat "$dir/logs/test.log")"
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" >"$dir/logs/stdout.log" 2>&1 &
    PIDS+=($!)
    eval "${1}_PID=$!"
    wait_port 127.0.0.1 "$2" || die "nginx $1 did not listen on $2: $(cat "$dir/logs/error.log")"
}

# ---------------------------------------------------------------- sluice-dp

start_dp() { # name declarative-file workers [extra conf lines...]
    local name=$1 decl=$2 workers=$3 dir=$WORK/$1 i
    shift 3
    mkdir -p "$dir"
    {
        echo "proxy_listen = 127.0.0.1:0"
        echo "status_listen = 127.0.0.1:0"
        echo "workers = $workers"
        echo "log_level = error"
        echo "access_log = off"
        for line in "$@"; do echo "$line"; done
    } >"$dir/sluice.conf"
    "$DP" -c "$dir/sluice.conf" -p "$dir" --declarative "$decl" >"$dir/stderr.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    eval "${name}_PID=$pid"
    for i in $(seq 1 400); do
        if [ -s "$dir/proxy.addr" ]; then
            eval "${name}_ADDR=$(tr -d '[:space:]' <"$dir/proxy.addr")"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || die "sluice-dp ($name) exited: $(tail -5 "$dir/stderr.log")"
        sleep 0.05
    done
    die "sluice-dp ($name) wrote no proxy.addr in 20 s: $(tail -5 "$dir/stderr.log")"
}

stop_pid() {
    kill -TERM "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# ---------------------------------------------------------------- wrk

to_ms() { # "123.45us" | "1.20ms" | "2.00s" | "1.5m" -> milliseconds
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000
        printf "%.3f", n }'
}

# CPU time (clock ticks) used so far by a process and its children (nginx
# workers); threads are part of their process's figure.
cpu_ticks() { # pid
    local total=0 p
    for p in "$1" $(pgrep -P "$1" 2>/dev/null); do
        [ -r "/proc/$p/stat" ] || continue
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$total"
}

# Runs wrk once and appends "rps p50 p99 cpu_us_per_request" to
# $WORK/res-<key>.txt. CPU per request is the measured process's own CPU time
# divided by the requests it served: unlike requests/s, it barely moves when
# the load generator competes for the same cores.
run_wrk() { # key url pid [lua-script]
    local key=$1 url=$2 pid=$3 script=${4:-} out=$WORK/wrk-$1.txt
    local args=(-t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency)
    [ -n "$script" ] && args+=(-s "$script")
    # A short warm-up so that pools and caches are filled.
    "$WRK" -t1 -c"$CONNS" -d1s ${script:+-s "$script"} "$url" >/dev/null 2>&1 || true
    local t0 t1 s0 s1
    t0=$(cpu_ticks "$pid")
    s0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    "$WRK" "${args[@]}" "$url" >"$out" 2>&1 || die "wrk failed for $key: $(cat "$out")"
    t1=$(cpu_ticks "$pid")
    s1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    local rps p50 p99 non2xx errs reqs cpu self
    reqs=$(awk '/requests in/ {print $1}' "$out")
    cpu=$(awk -v a="$t0" -v b="$t1" -v n="$reqs" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.2f", (b - a) * 1e6 / hz / (n > 0 ? n : 1) }')
    self=$(awk -v a="$s0" -v b="$s1" -v n="$reqs" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.2f", (b - a) * 1e6 / hz / (n > 0 ? n : 1) }')
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    errs=$(awk '/Socket errors:/ {print}' "$out")
    [ -n "$non2xx" ] && echo "  ($key: $non2xx non-2xx responses!)"
    [ -n "$errs" ] && echo "  ($key: $errs)"
    # The fifth column: the process alone, without its children (a
    # data plane's plugin servers, nginx's workers).
    echo "$rps $p50 $p99 $cpu $self" >>"$WORK/res-$key.txt"
}

# As run_wrk, with h2load over HTTP/2 (10 connections, 10 streams each):
# appends "rps mean_ms cpu_us_per_request" to $WORK/res-<key>.txt.
run_h2load() { # key url pid
    local key=$1 url=$2 pid=$3 out=$WORK/h2load-$1.txt
    "$H2LOAD" -D 1 -c 10 -m 10 "$url" >/dev/null 2>&1 || true
    local t0 t1 reqs rps mean cpu
    t0=$(cpu_ticks "$pid")
    "$H2LOAD" -D "$DURATION" -c 10 -m 10 "$url" >"$out" 2>&1 || die "h2load failed for $key: $(cat "$out")"
    t1=$(cpu_ticks "$pid")
    reqs=$(awk '/^requests:/ {print $8}' "$out")
    rps=$(awk '/^finished in/ {print $4}' "$out")
    mean=$(to_ms "$(awk '/^time for request:/ {print $6}' "$out")")
    grep -q "^status codes: $reqs 2xx" "$out" || echo "  ($key: $(grep '^status codes' "$out"))"
    cpu=$(awk -v a="$t0" -v b="$t1" -v n="$reqs" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { printf "%.2f", (b - a) * 1e6 / hz / (n > 0 ? n : 1) }')
    echo "$rps $mean $cpu" >>"$WORK/res-$key.txt"
}

median() { # file column
    awk -v c="$2" '{print $c}' "$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'
}

# Prints the median of each column over the rounds of one key, and sets
# RPS, P99 and CPU to those medians.
report() { # key label
    local f=$WORK/res-$1.txt p50
    RPS=$(median "$f" 1)
    p50=$(median "$f" 2)
    P99=$(median "$f" 3)
    CPU=$(median "$f" 4)
    printf "  %-30s %12.0f %10.3f %10.3f %14.1f\n" "$2" "$RPS" "$p50" "$P99" "$CPU"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

header() {
    printf "  %-30s %12s %10s %10s %14s\n" "" "requests/s" "p50 ms" "p99 ms" "CPU us/req"
}

# ================================================================ setup

UP_PORT=$(free_port)
NGX_PORT=$(free_port)
BODY='ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok ok\n'

start_nginx upstream "$UP_PORT" "
    server {
        listen 127.0.0.1:$UP_PORT reuseport backlog=4096;
        location / { default_type text/plain; return 200 \"$BODY\"; }
    }"

# One certificate for both proxies' TLS listeners (P-256, self-signed).
NGX_TLS_PORT=$(free_port)
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench.test" -keyout "$WORK/tls.key" -out "$WORK/tls.crt" >/dev/null 2>&1 ||
    die "openssl could not make the benchmark's certificate"
start_nginx proxy "$NGX_PORT" "
    upstream backend { server 127.0.0.1:$UP_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$NGX_PORT backlog=4096;
        listen 127.0.0.1:$NGX_TLS_PORT ssl http2 backlog=4096;
        ssl_certificate $WORK/tls.crt;
        ssl_certificate_key $WORK/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"

"$PYTHON" "$HERE/gen_routes.py" --routes 1 --upstream "http://127.0.0.1:$UP_PORT" \
    --out "$WORK/one-route.json" --lua "$WORK/routes.lua"
"$PYTHON" "$HERE/gen_routes.py" --routes 10000 --upstream "http://127.0.0.1:$UP_PORT" \
    --out "$WORK/10k-routes.json"

echo "Sluice benchmark: $("$DP" --version 2>/dev/null | head -1 || true)"
echo "  $(nproc) cores; wrk -t$THREADS -c$CONNS -d${DURATION}s --latency, $ROUNDS interleaved rounds; upstream: nginx return 200 (1 worker)"
echo

# ================================================================ 1. proxy overhead
# The machine is shared with the load generator and the upstream, so each
# configuration runs ROUNDS times, interleaved, and the medians are compared.

if want 1 || want 2; then
start_dp dp1 "$WORK/one-route.json" 1
fi
want 2 && start_dp dp10k "$WORK/10k-routes.json" 1
want 1 && start_dp dptls "$WORK/one-route.json" 1 "proxy_listen = 127.0.0.1:0 ssl http2" \
    "ssl_cert = $WORK/tls.crt" "ssl_cert_key = $WORK/tls.key"
for _ in $(seq "$ROUNDS"); do
    if want 1; then
        run_wrk direct "http://127.0.0.1:$UP_PORT/" "$upstream_PID"
        run_wrk sluice "http://$dp1_ADDR/" "$dp1_PID"
        run_wrk nginx "http://127.0.0.1:$NGX_PORT/" "$proxy_PID"
    fi
    if want 2; then
        run_wrk r1 "http://$dp1_ADDR/" "$dp1_PID" "$WORK/routes.lua"
        run_wrk r10k "http://$dp10k_ADDR/" "$dp10k_PID" "$WORK/routes.lua"
    fi
    if want 1; then
        run_wrk sluice_tls "https://$dptls_ADDR/" "$dptls_PID"
        run_wrk nginx_tls "https://127.0.0.1:$NGX_TLS_PORT/" "$proxy_PID"
        run_h2load sluice_h2 "https://$dptls_ADDR/" "$dptls_PID"
        run_h2load nginx_h2 "https://127.0.0.1:$NGX_TLS_PORT/" "$proxy_PID"
    fi
done
if want 1 || want 2; then stop_pid "$dp1_PID"; fi
want 2 && stop_pid "$dp10k_PID"
want 1 && stop_pid "$dptls_PID"

if want 1; then
echo "1. Proxy overhead (GET /, ${#BODY}-byte body)"
header
report direct "upstream direct"
report sluice "sluice-dp (workers=1)"
S_RPS=$RPS S_P99=$P99 S_CPU=$CPU
report nginx "nginx proxy (1 worker)"
N_RPS=$RPS N_P99=$P99 N_CPU=$CPU
echo "  sluice/nginx: requests/s x$(ratio "$S_RPS" "$N_RPS"), p99 x$(ratio "$S_P99" "$N_P99")," \
     "CPU per request x$(ratio "$S_CPU" "$N_CPU")"
echo "  (medians of $ROUNDS interleaved rounds; requests/s above 1 and p99, CPU below 1 favour sluice)"
echo
echo "1b. TLS termination (TLS 1.3, P-256 certificate, keep-alive connections; same request)"
header
report sluice_tls "sluice-dp, ssl listener"
ST_RPS=$RPS ST_P99=$P99 ST_CPU=$CPU
report nginx_tls "nginx, ssl listener"
echo "  sluice/nginx over TLS: requests/s x$(ratio "$ST_RPS" "$RPS"), p99 x$(ratio "$ST_P99" "$P99")," \
     "CPU per request x$(ratio "$ST_CPU" "$CPU")"
echo
echo "1c. HTTP/2 over TLS (h2load -c10 -m10: 10 connections, 10 streams each; same request)"
printf "  %-30s %12s %10s %14s\n" "" "requests/s" "mean ms" "CPU us/req"
for k in sluice_h2 nginx_h2; do
    f=$WORK/res-$k.txt
    printf "  %-30s %12.0f %10.3f %14.1f\n" "$([ $k = sluice_h2 ] && echo "sluice-dp, ssl http2" || echo "nginx, ssl http2")" \
        "$(median "$f" 1)" "$(median "$f" 2)" "$(median "$f" 3)"
done
echo "  sluice/nginx over HTTP/2: requests/s x$(ratio "$(median "$WORK/res-sluice_h2.txt" 1)" "$(median "$WORK/res-nginx_h2.txt" 1)")," \
     "CPU per request x$(ratio "$(median "$WORK/res-sluice_h2.txt" 3)" "$(median "$WORK/res-nginx_h2.txt" 3)")"
echo

fi

# ================================================================ 2. router scale

if want 2; then
echo "2. Router: 10,000 routes (40% host+prefix, 20% wildcard host, 35% prefix, 5% regex) vs 1 route"
echo "   same 2,000 distinct requests in both runs"
header
report r1 "sluice-dp, 1 route"
R1_RPS=$RPS R1_P99=$P99 R1_CPU=$CPU
report r10k "sluice-dp, 10,000 routes"
R10_RPS=$RPS R10_P99=$P99 R10_CPU=$CPU
echo "  10k/1 routes: requests/s x$(ratio "$R10_RPS" "$R1_RPS"), p99 x$(ratio "$R10_P99" "$R1_P99")," \
     "CPU per request x$(ratio "$R10_CPU" "$R1_CPU")"
echo
fi

# ================================================================ 3. idle connections

if want 3; then
echo "3. Memory with $IDLE_CONNS idle keep-alive client connections (one request each, then idle)"
start_dp dpidle "$WORK/one-route.json" 1 "keepalive_timeout = 300s" "client_header_timeout = 300s"
"$PYTHON" "$HERE/idle_conns.py" --addr "$dpidle_ADDR" --pid "$dpidle_PID" \
    --conns "$IDLE_CONNS" --label "sluice-dp (workers=1)" || echo "  (sluice-dp: some connections failed)"
stop_pid "$dpidle_PID"
"$PYTHON" "$HERE/idle_conns.py" --addr "127.0.0.1:$NGX_PORT" --pid "$proxy_PID" \
    --conns "$IDLE_CONNS" --label "nginx proxy (1 worker)" || echo "  (nginx: some connections failed)"
fi

# ================================================================ 4. plugins

if want 4; then
echo
echo "4. Plugins (native), one route, 100 consumers; each scenario vs no plugin, same run"
mkdir -p "$WORK/plugins"
SCEN=$("$PYTHON" "$HERE/gen_plugins.py" --upstream "http://127.0.0.1:$UP_PORT" --out "$WORK/plugins")
for s in $SCEN; do
    start_dp "pl_${s//[-+]/_}" "$WORK/plugins/$s.json" 1
done
for _ in $(seq "$ROUNDS"); do
    for s in $SCEN; do
        v=pl_${s//[-+]/_}
        eval "addr=\$${v}_ADDR pid=\$${v}_PID"
        run_wrk "$v" "http://$addr/" "$pid" "$WORK/plugins/$s.lua"
    done
done
header
for s in $SCEN; do
    v=pl_${s//[-+]/_}
    report "$v" "$s"
    eval "${v}_RPS=$RPS ${v}_P99=$P99"
    if [ "$s" != none ]; then
        printf "  %-30s requests/s x%s of none, p99 x%s\n" "" "$(ratio "$RPS" "$pl_none_RPS")" \
            "$(ratio "$P99" "$pl_none_P99")"
    fi
    eval "stop_pid \$${v}_PID"
done
echo "  key-auth + rate-limiting (local) vs none: requests/s x$(ratio "$pl_key_auth_rate_limiting_RPS" "$pl_none_RPS")" \
     "(goal >= 0.85; Kong 3.11 publishes 0.74 for the same pair)"
fi

# ================================================================ 5. external plugins

if want 5; then
echo
echo "5. External plugins: go-pdk's hello (its own plugin server; access: one get_header, one"
echo "   set_header) vs the same logic as a native plugin vs none; one route, workers=1"
GO_HELLO=$SLUICE_BUILD/bin/go-plugins/hello
DP_BENCH=$SLUICE_BUILD/bin/sluice-dp-bench
[ -x "$GO_HELLO" ] || die "$GO_HELLO not found: run make (it builds the Go examples)"
[ -x "$DP_BENCH" ] || die "$DP_BENCH not found: make bench builds it"
for p in hello hello-native; do
    "$PYTHON" - "$WORK/one-route.json" "$p" >"$WORK/ext-$p.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["plugins"] = [{"name": sys.argv[2], "config": {"message": "bench"}}]
print(json.dumps(doc))
PY
done
start_dp ext_none "$WORK/one-route.json" 1
DP=$DP_BENCH start_dp ext_native "$WORK/ext-hello-native.json" 1 "plugins = bundled,hello-native"
start_dp ext_go "$WORK/ext-hello.json" 1 "plugins = bundled,hello" "pluginserver_names = hello" \
    "pluginserver_hello_query_cmd = $GO_HELLO -dump" \
    "pluginserver_hello_start_cmd = $GO_HELLO -kong-prefix $WORK/ext_go"
EXT="ext_none ext_native ext_go"
for v in $EXT; do # every plugin answers before anything is measured
    eval "addr=\$${v}_ADDR"
    curl -s -o /dev/null --retry 20 --retry-connrefused "http://$addr/" || true
done
# read(2)/write(2)-family calls of a process so far (/proc/PID/io; not
# recv/send, which go-pdk does not use).
io_calls() { awk '/^sysc[rw]:/ {n += $2} END {print n + 0}' "/proc/$1/io" 2>/dev/null || echo 0; }
GO_PID=$(pgrep -P "$ext_go_PID" | head -1 || true)
for _ in $(seq "$ROUNDS"); do
    for v in $EXT; do
        eval "addr=\$${v}_ADDR pid=\$${v}_PID"
        if [ "$v" = ext_go ] && [ -n "$GO_PID" ]; then
            g0=$(io_calls "$GO_PID")
        fi
        run_wrk "$v" "http://$addr/" "$pid"
        if [ "$v" = ext_go ] && [ -n "$GO_PID" ]; then
            n=$(awk '/requests in/ {print $1}' "$WORK/wrk-ext_go.txt")
            echo "$(io_calls "$GO_PID") $g0 $n" |
                awk '{ printf "%.1f\n", ($1 - $2) / $3 }' >>"$WORK/res-ext_go_io.txt"
        fi
        # One connection: the latency a plugin event adds, without queueing.
        CONNS=1 THREADS=1 run_wrk "${v}_c1" "http://$addr/" "$pid"
    done
done
header
report ext_none "none"
EN_RPS=$RPS EN_CPU=$CPU
report ext_native "hello, native C"
ENA_RPS=$RPS ENA_CPU=$CPU
report ext_go "hello, Go plugin server"
EG_RPS=$RPS EG_CPU=$CPU
echo "  one connection:"
report ext_none_c1 "none"
N50=$(median "$WORK/res-ext_none_c1.txt" 2) N99=$(median "$WORK/res-ext_none_c1.txt" 3)
report ext_native_c1 "hello, native C"
NA50=$(median "$WORK/res-ext_native_c1.txt" 2) NA99=$(median "$WORK/res-ext_native_c1.txt" 3)
report ext_go_c1 "hello, Go plugin server"
G50=$(median "$WORK/res-ext_go_c1.txt" 2) G99=$(median "$WORK/res-ext_go_c1.txt" 3)
added() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (a - b) * 1000 }'; }
EG_SELF=$(median "$WORK/res-ext_go.txt" 5)
echo "  Go plugin vs none: requests/s x$(ratio "$EG_RPS" "$EN_RPS") (goal >= 0.6; Kong's trivial Go" \
     "plugin is reported at about 0.5), CPU per request x$(ratio "$EG_CPU" "$EN_CPU")"
echo "  CPU per request with the Go plugin: data plane $EG_SELF us, plugin server" \
     "$(awk -v a="$EG_CPU" -v b="$EG_SELF" 'BEGIN { printf "%.1f", a - b }') us (none: $EN_CPU us)"
if [ -s "$WORK/res-ext_go_io.txt" ]; then
    echo "  read(2)/write(2) calls per request in the Go plugin server: $(median "$WORK/res-ext_go_io.txt" 1)" \
         "(go-pdk writes a frame's length and its body in two calls, and reads them in two)"
fi
echo "  native vs none: requests/s x$(ratio "$ENA_RPS" "$EN_RPS"); Go vs native: x$(ratio "$EG_RPS" "$ENA_RPS")"
echo "  added latency per plugin event (one connection): Go p50 +$(added "$G50" "$N50") us," \
     "p99 +$(added "$G99" "$N99") us; native p50 +$(added "$NA50" "$N50") us, p99 +$(added "$NA99" "$N99") us"
for v in $EXT; do eval "stop_pid \$${v}_PID"; done
fi

# ================================================================ 6. control plane

if want 6; then
echo
"$PYTHON" "$HERE/cp_bench.py" --cp "$SLUICE_BUILD/bin/sluice-cp" ||
    echo "  (control-plane benchmark failed)"
fi

#!/usr/bin/env bash
# bench/bench-lockd.sh: s3sync-lockd under load, beside nginx serving a small
# static file on the same machine in the same run. wrk on loopback
# (-t2 -c50 -d10s --latency by default) prints requests/s and p99 for
#
#   nginx     GET of a 64-byte static file (the reference)
#   head      GET /v1/repos/R/head with a Bearer token
#   presign   POST /v1/repos/R/presign {op: get, 3 keys}   (bench/lockd-presign.lua)
#   lease     acquire + release cycles, one repository per connection
#             (bench/lockd-lease.lua); a request is half a cycle
#
# for lockd with threads = 0 (a thread per connection) and threads = N (a
# pool; N = BENCH_LOCKD_POOL, default nproc), then runs bench/lockd-writers.c:
# 50 clients doing acquire, presign PUT, PUT to RGW (If-None-Match: *), commit
# with release, for BENCH_LOCKD_WRITERS_S seconds, and checks that log/ in the
# bucket is exactly 1..head, every sequence committed once. Exit 1 if that
# check fails. Then the state backends (issue 19): the same on one SQLite
# lockd and on 1, 2 and 3 replicas of a bucket state, behind one nginx
# balancer, with the bucket requests per second each costs (from RGW's own
# counters and lockd's /metrics). About 5 minutes in all.
#
#   bench/bench-lockd.sh            env: BENCH_LOCKD_WRK="-t2 -c50 -d10s"
#                                        BENCH_LOCKD_POOL=N
#                                        BENCH_LOCKD_WRITERS=50 BENCH_LOCKD_WRITERS_S=10
#                                        BENCH_LOCKD_BUILD=DIR (default build; made
#                                        RelWithDebInfo when it has no CMakeCache.txt)
#
# Owns a private RGW in BENCH_LOCKD_RGW_DIR (default /tmp/s3sync-rgw-benchlockd),
# started with ci/rgw.sh and stopped at the end unless it already ran; its
# lockd, nginx and temporary directory are stopped/removed at exit. Needs
# wrk and nginx (apt-get install wrk nginx-light), python3 (a free port).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export S3SYNC_RGW_DIR=${BENCH_LOCKD_RGW_DIR:-/tmp/s3sync-rgw-benchlockd}
WRK_ARGS=${BENCH_LOCKD_WRK:--t2 -c50 -d10s}
POOL=${BENCH_LOCKD_POOL:-$(nproc)}
WRITERS=${BENCH_LOCKD_WRITERS:-50}
WRITERS_S=${BENCH_LOCKD_WRITERS_S:-10}
# Lease cycles, per threads setting: two repositories per wrk connection.
wconns=$(sed -n 's/.*-c *\([0-9][0-9]*\).*/\1/p' <<<"$WRK_ARGS")
wthreads=$(sed -n 's/.*-t *\([0-9][0-9]*\).*/\1/p' <<<"$WRK_ARGS")
wconns=${wconns:-10} wthreads=${wthreads:-2}
NREPOS=$((2 * wconns))

for t in wrk nginx python3 curl cmake; do
	command -v "$t" >/dev/null || { echo "bench-lockd.sh: needs $t (apt-get install wrk nginx-light)" >&2; exit 1; }
done
NGINX=$(command -v nginx)

# --- build ---------------------------------------------------------------
BUILD=${BENCH_LOCKD_BUILD:-build}
build_log=$(mktemp "${TMPDIR:-/tmp}/bench-lockd-build.XXXXXX")
if ! { [ -f "$BUILD/CMakeCache.txt" ] || cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build_log" 2>&1; } ||
	! cmake --build "$BUILD" --target s3sync-lockd lockd-writers -j2 >"$build_log" 2>&1; then
	echo "bench-lockd.sh: build failed, log: $build_log" >&2
	exit 1
fi
rm -f "$build_log"
BUILD=$(cd "$BUILD" && pwd)
LOCKD=$BUILD/lockd/s3sync-lockd
WRITERS_BIN=$BUILD/bench/lockd-writers

# --- state and cleanup ---------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/bench-lockd.XXXXXX")
lockd_pid='' nginx_pid='' was_running=0
if ci/rgw.sh status 2>/dev/null; then was_running=1; fi
stop_pid() { # pid: SIGTERM, wait
	[ -n "$1" ] || return 0
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	stop_pid "$lockd_pid"
	stop_pid "$nginx_pid"
	rm -rf "$TMP"
	[ "$was_running" = 1 ] || ci/rgw.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
eval "$(ci/rgw.sh start)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- nginx: a small static file --------------------------------------------
mkdir -p "$TMP/www" "$TMP/nginx"
printf '{"repo":"bench","head":1234,"leased":false,"padding":"0123456789ab"}\n' | head -c 64 >"$TMP/www/head.json"
NGINX_PORT=$(free_port)
cat >"$TMP/nginx/nginx.conf" <<EOF
daemon off;
worker_processes auto;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    default_type application/json;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $TMP/www;
    }
}
EOF
chmod 755 "$TMP" "$TMP/www"
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" &
nginx_pid=$!
for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$NGINX_PORT/head.json" 2>/dev/null && break; sleep 0.05; done
curl -fsS -o /dev/null "http://127.0.0.1:$NGINX_PORT/head.json" || { echo "bench-lockd.sh: nginx did not start" >&2; exit 1; }

# --- lockd: config, repositories, devices ---------------------------------
RAND=$(head -c 6 /dev/urandom | od -An -tx1 | tr -d ' \n')
PREFIX="s3://$S3SYNC_TEST_BUCKET/bench-lockd-$RAND"
{
	echo "listen = 127.0.0.1:0"
	echo "db = lockd.db"
	echo "lease_ttl_min = 1"
	echo "repo w0 = $PREFIX/w0"
	echo "repo w$POOL = $PREFIX/w$POOL"
	echo "repo h = $PREFIX/h"
	for m in 0 "$POOL"; do
		for i in $(seq -w 0 $((NREPOS - 1))); do echo "repo c$m-$i = $PREFIX/c$m-$i"; done
	done
} >"$TMP/lockd.conf.base"
conf() { # threads
	{ cat "$TMP/lockd.conf.base"; echo "threads = $1"; } >"$TMP/lockd.conf"
}
conf 0
admin() { "$LOCKD" --config "$TMP/lockd.conf" "$@"; }
TOK_H=$(admin device add dev-h --repo h)
for w in w0 "w$POOL"; do echo "$w $(admin device add "dev-$w" --repo "$w")"; done >"$TMP/tokens.w"
for m in 0 "$POOL"; do
	for i in $(seq -w 0 $((NREPOS - 1))); do echo "c$m-$i $(admin device add "c$m-$i" --repo "c$m-$i")"; done >"$TMP/tokens.$m"
done
lockd_start() { # threads
	conf "$1"
	rm -f "$TMP/port"
	"$LOCKD" --config "$TMP/lockd.conf" --port-file "$TMP/port" 2>>"$TMP/lockd.err" &
	lockd_pid=$!
	for _ in $(seq 500); do [ -s "$TMP/port" ] && break; sleep 0.02; done
	[ -s "$TMP/port" ] || { echo "bench-lockd.sh: s3sync-lockd did not start" >&2; cat "$TMP/lockd.err" >&2; exit 1; }
	LOCKD_URL="http://127.0.0.1:$(cat "$TMP/port")"
	curl -fsS -o /dev/null "$LOCKD_URL/healthz"
}
lockd_stop() { stop_pid "$lockd_pid"; lockd_pid=; }

# --- wrk runs ---------------------------------------------------------------
ROWS=()
# CPU time (clock ticks, user + system) of a server: the pid and its children.
cpu_ticks() {
	local p t=0
	for p in "$1" $(cat "/proc/$1/task/"*/children 2>/dev/null); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}
TCK=$(getconf CLK_TCK)
run_wrk() { # label server-pid url [wrk args...]: one row of the table
	local label=$1 spid=$2 url=$3 out rps p50 p99 non2xx extra c0 c1 n us
	shift 3
	c0=$(cpu_ticks "$spid")
	# shellcheck disable=SC2086
	out=$(wrk $WRK_ARGS --latency "$@" "$url" 2>&1)
	c1=$(cpu_ticks "$spid")
	n=$(awk '/requests in/ {print $1}' <<<"$out")
	us=$(awk -v d=$((c1 - c0)) -v n="${n:-0}" -v t="$TCK" 'BEGIN { if (n > 0) printf "%.0f", d * 1e6 / t / n; else print "-" }')
	echo "$out" >>"$TMP/wrk.log"
	[ -z "${BENCH_LOCKD_DEBUG:-}" ] || echo "$out" >&2
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
	extra=$(sed -n 's/^lease-cycles: //p' <<<"$out")
	[ -n "$rps" ] || { echo "bench-lockd.sh: wrk failed for $label:" >&2; echo "$out" >&2; exit 1; }
	ROWS+=("$(printf '%-38s %11s %9s %9s %8s %10s  %s' "$label" "$rps" "$p50" "$p99" "${non2xx:-0}" "$us" "$extra")")
	printf '%s\n' "${ROWS[-1]}"
	LAST_RPS=$rps
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f%%", 100 * a / b }'; }

echo "== bench-lockd: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
	"$(wrk -v 2>&1 | head -n1 | cut -d' ' -f1-2), $("$NGINX" -v 2>&1 | cut -d' ' -f3)," \
	"wrk $WRK_ARGS --latency, RGW at $AWS_ENDPOINT_URL"
printf '%-38s %11s %9s %9s %8s %10s\n' "run" "requests/s" "p50" "p99" "non-2xx" "server CPU µs/req"

run_wrk "nginx static 64 B" "$nginx_pid" "http://127.0.0.1:$NGINX_PORT/head.json"
nginx1=$LAST_RPS
heads=()
writers_out=()
for threads in 0 "$POOL"; do
	lockd_start "$threads"
	mode="threads=$threads"
	[ "$threads" = 0 ] && mode="threads=0 (per conn)"
	[ "$threads" = 0 ] || mode="threads=$threads (pool)"
	run_wrk "lockd $mode head" "$lockd_pid" "$LOCKD_URL/v1/repos/h/head" -H "Authorization: Bearer $TOK_H"
	heads+=("$mode: $LAST_RPS")
	LOCKD_REPO=h LOCKD_TOKEN=$TOK_H \
		run_wrk "lockd $mode presign get x3" "$lockd_pid" "$LOCKD_URL" -s bench/lockd-presign.lua
	LOCKD_TOKENS=$TMP/tokens.$threads LOCKD_PER_THREAD=$((NREPOS / wthreads)) \
		run_wrk "lockd $mode acquire+release" "$lockd_pid" "$LOCKD_URL" -s bench/lockd-lease.lua
	# The writers: a fresh repository for each mode.
	wrepo=w$threads
	tok_w=$(grep "^$wrepo " "$TMP/tokens.w" | cut -d' ' -f2)
	set +e
	line=$("$WRITERS_BIN" "$LOCKD_URL" "$wrepo" "$tok_w" "$WRITERS" "$WRITERS_S" 5000)
	wrc=$?
	set -e
	writers_out+=("lockd $mode: $line")
	echo "lockd $mode: $line"
	lockd_stop
	[ "$wrc" = 0 ] || { echo "bench-lockd.sh: the writers' check FAILED" >&2; exit 1; }
done
run_wrk "nginx static 64 B (again)" "$nginx_pid" "http://127.0.0.1:$NGINX_PORT/head.json"
nginx2=$LAST_RPS
nginx_mean=$(awk -v a="$nginx1" -v b="$nginx2" 'BEGIN { print (a + b) / 2 }')
for h in "${heads[@]}"; do
	echo "head vs nginx (mean of both nginx runs, $nginx_mean/s): lockd ${h%%:*}: $(pct "${h##*: }" "$nginx_mean") (aim: >= 30%)"
done

# --- state backends (issue 19) ---------------------------------------------
# The same repositories and devices (the threads=$POOL set) on one SQLite lockd
# and on 1, 2 and 3 replicas of a bucket state made from it by migrate, each
# setup behind the same nginx load balancer (so every row pays the same hop),
# threads = $POOL. Per setup: head and acquire+release through the balancer,
# then the writers spread over the replicas' own URLs. The bucket's cost is
# read from RGW itself (its perf counters: every request RGW served in the
# phase, the writers' own PUTs included) and from lockd's /metrics
# (s3sync_lockd_state_requests_total: lockd's state alone).
rgw_reqs() { # requests RGW has served so far
	ceph --admin-daemon "$S3SYNC_RGW_DIR/run/client.rgw.s3sync.asok" perf dump 2>/dev/null |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["rgw"]["req"])'
}
state_reqs() { # sum over the running replicas
	local t=0 p v
	for p in "${REPLICA_PORTS[@]}"; do
		v=$(curl -fsS "http://127.0.0.1:$p/metrics" | awk '$1 == "s3sync_lockd_state_requests_total" {print $2}')
		t=$((t + ${v:-0}))
	done
	echo "$t"
}
lb_pid=''
replica_pids=()
REPLICA_PORTS=()
replicas_stop() {
	local p
	for p in "${replica_pids[@]}"; do stop_pid "$p"; done
	replica_pids=() REPLICA_PORTS=()
	stop_pid "$lb_pid"
	lb_pid=
}
trap 'replicas_stop; cleanup' EXIT
replicas_start() { # state n: n replicas of `state`, then the balancer in front
	local state=$1 n=$2 i port up=''
	# The balancer's kept-alive connections and the writers all come from 127.0.0.1.
	{
		cat "$TMP/lockd.conf.base"
		echo "threads = $POOL"
		echo "state = $state"
		echo "max_connections_per_ip = 1024"
	} >"$TMP/replica.conf"
	for i in $(seq "$n"); do
		rm -f "$TMP/port.$i"
		"$LOCKD" --config "$TMP/replica.conf" --port-file "$TMP/port.$i" 2>>"$TMP/lockd.err" &
		replica_pids+=($!)
		for _ in $(seq 1500); do [ -s "$TMP/port.$i" ] && break; sleep 0.02; done
		[ -s "$TMP/port.$i" ] || { echo "bench-lockd.sh: replica $i did not start" >&2; tail -5 "$TMP/lockd.err" >&2; exit 1; }
		port=$(cat "$TMP/port.$i")
		REPLICA_PORTS+=("$port")
		up="$up server 127.0.0.1:$port;"
	done
	LB_PORT=$(free_port)
	mkdir -p "$TMP/lb"
	sed -e "s|listen 127.0.0.1:$NGINX_PORT;|listen 127.0.0.1:$LB_PORT; location / { proxy_pass http://lockd; proxy_http_version 1.1; proxy_set_header Connection \"\"; }|" \
		-e "s|^http {|http { upstream lockd {$up keepalive 64; }|" \
		-e "s|pid $TMP/nginx/nginx.pid|pid $TMP/lb/nginx.pid|" "$TMP/nginx/nginx.conf" >"$TMP/lb/nginx.conf"
	"$NGINX" -p "$TMP/lb" -c "$TMP/lb/nginx.conf" &
	lb_pid=$!
	for _ in $(seq 100); do curl -fsS -o /dev/null "http://127.0.0.1:$LB_PORT/healthz" 2>/dev/null && break; sleep 0.05; done
	LB_URL="http://127.0.0.1:$LB_PORT"
}
STATE_URL="$PREFIX-state"
conf "$POOL"
admin migrate "$STATE_URL" >/dev/null
tok_w=$(grep "^w$POOL " "$TMP/tokens.w" | cut -d' ' -f2)
STATE_ROWS=()
phase() { # label command...: runs it, then one line of the bucket's cost
	local label=$1 r0 s0 t0 r1 s1 t1
	shift
	r0=$(rgw_reqs) s0=$(state_reqs) t0=$(date +%s.%N)
	"$@"
	r1=$(rgw_reqs) s1=$(state_reqs) t1=$(date +%s.%N)
	STATE_ROWS+=("$(awk -v l="$label" -v r=$((r1 - r0)) -v s=$((s1 - s0)) -v t0="$t0" -v t1="$t1" \
		'BEGIN { printf "%-44s RGW %7.1f req/s   lockd state %7.1f req/s", l, r / (t1 - t0), s / (t1 - t0) }')")
	printf '%s\n' "${STATE_ROWS[-1]}"
}
writers_run() { # urls
	local line
	line=$("$WRITERS_BIN" "$1" "w$POOL" "$tok_w" "$WRITERS" "$WRITERS_S" 5000) || {
		echo "bench-lockd.sh: the writers' check FAILED: $line" >&2
		tail -n 20 "$TMP/lockd.err" >&2
		exit 1
	}
	echo "  $line"
}
echo "== state backends: threads=$POOL, behind one nginx balancer; head, acquire+release, then $WRITERS writers"
for setup in "sqlite 1" "bucket 1" "bucket 2" "bucket 3"; do
	kind=${setup% *} n=${setup#* }
	state="sqlite:$TMP/lockd.db"
	[ "$kind" = bucket ] && state=$STATE_URL
	replicas_start "$state" "$n"
	label="$kind x$n"
	phase "$label head" run_wrk "$label head (via balancer)" "$lb_pid" "$LB_URL/v1/repos/h/head" -H "Authorization: Bearer $TOK_H"
	LOCKD_TOKENS=$TMP/tokens.$POOL LOCKD_PER_THREAD=$((NREPOS / wthreads)) \
		phase "$label acquire+release" run_wrk "$label acquire+release (via balancer)" "$lb_pid" "$LB_URL" -s bench/lockd-lease.lua
	urls=$(printf 'http://127.0.0.1:%s,' "${REPLICA_PORTS[@]}")
	phase "$label writers" writers_run "${urls%,}"
	replicas_stop
done
printf '%s\n' "${STATE_ROWS[@]}"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

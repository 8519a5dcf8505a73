#!/usr/bin/env bash
# bench/bench-peers.sh: peer assist (issue 17) against a bucket behind a slow
# link, in one run.
#
#   bench/bench-peers.sh [BUILD_DIR]        (default BUILD_DIR: ./build)
#
# The bucket (the AWS_* environment and S3SYNC_TEST_BUCKET when
# AWS_ENDPOINT_URL is set, else a private RGW started with ci/rgw.sh) is
# reached by the pulling devices through bench/fpthrottle, the tests' fault
# proxy relaying at most BENCH_PEERS_RATE body bytes a second (default
# 12500000: 100 Mbit/s) over all connections; the writing device A reaches it
# directly. A pushes one file of BENCH_PEERS_BYTES random bytes (default
# 1 GiB) and serves its cache on loopback (s3sync serve). Then:
#   1 B1, without peers, pulls it through the slow link;
#   2 B2, with peers = A, pulls it (the bucket still gives the listing);
#   2b B3, with peers = A and A2, pulls it: A2 serves a copy of A's cache
#     (as a second device holding the same packs would), so each object
#     comes from one of two peers at once;
#   the link's own time for the same bytes (size / rate) is printed beside.
#   3 change propagation, BENCH_PEERS_ROUNDS (5) small pushes by A: B1 and
#     B2 both watch with a 10 s poll interval; B2 serves on loopback and A's
#     peers name it, so A's push tells B2 its head at once; from the end of
#     A's push to the file in each folder (polled every 10 ms), median.
# Prints a Markdown report on stdout, progress on stderr. Everything it
# makes (scratch folder, key prefix bench-peers-*/) is removed at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd)
S3SYNC=$BUILD/cli/s3sync
BYTES=${BENCH_PEERS_BYTES:-$((1 << 30))} RATE=${BENCH_PEERS_RATE:-12500000}
ROUNDS=${BENCH_PEERS_ROUNDS:-5}

[ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2 --target s3sync fpthrottle >/dev/null

STARTED_RGW=0
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
	export S3SYNC_RGW_DIR=${S3SYNC_RGW_DIR:-/tmp/s3sync-rgw-benchpeers}
	eval "$("$ROOT/ci/rgw.sh" start)"
	STARTED_RGW=1
fi
BUCKET=${S3SYNC_TEST_BUCKET:-s3sync-test}
PREFIX=bench-peers-$(date +%s)-$$
STORE=s3://$BUCKET/$PREFIX
W=$(mktemp -d "${TMPDIR:-/tmp}/s3sync-bench-peers.XXXXXX")
PIDS=()

cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	[ -d "$W/A" ] && "$S3SYNC" -q -C "$W/A" gc --keep-last 1 >/dev/null 2>&1 || true
	rm -rf "$W"
	if [ "$STARTED_RGW" = 1 ]; then "$ROOT/ci/rgw.sh" stop >/dev/null || true; fi
}
trap cleanup EXIT

export S3SYNC_PASSWORD=bench-peers-password S3SYNC_KDF=interactive
now() { date +%s.%N; }
say() { echo "bench-peers: $*" >&2; }
json() { sed -n 's/.*"'"$1"'":\([0-9]*\).*/\1/p' "$2"; }

"$BUILD/bench/fpthrottle" "$AWS_ENDPOINT_URL" "$RATE" >"$W/proxy" &
PIDS+=($!)
for _ in $(seq 50); do [ -s "$W/proxy" ] && break; sleep 0.1; done
SLOW=$(cat "$W/proxy")

# Background s3sync serve or watch of DIR on loopback; $PORT is where.
background() { # DIR COMMAND ARGS...
	local dir=$1
	shift
	"$S3SYNC" -C "$dir" config set peer_listen 127.0.0.1:0
	rm -f "$dir.err"
	"$S3SYNC" -C "$dir" "$@" 2>"$dir.err" >/dev/null &
	PIDS+=($!)
	for _ in $(seq 100); do
		PORT=$(sed -n 's/.*serving peers on 127.0.0.1:\([0-9]*\).*/\1/p' "$dir.err")
		[ -n "$PORT" ] && return 0
		sleep 0.1
	done
	say "$* did not start: $(cat "$dir.err")"
	exit 1
}

say "devices: A direct to the bucket; B1 and B2 through a $((RATE * 8 / 1000000)) Mbit/s link"
"$S3SYNC" -q init "$STORE" "$W/A" --endpoint "$AWS_ENDPOINT_URL"
"$S3SYNC" -q init "$STORE" "$W/A2" --endpoint "$AWS_ENDPOINT_URL"
for d in B1 B2 B3; do "$S3SYNC" -q init "$STORE" "$W/$d" --endpoint "$SLOW"; done
for d in A A2 B1 B2 B3; do # each enrolled by a push of its own
	echo "$d" >"$W/$d/$d.txt"
	"$S3SYNC" -q -C "$W/$d" sync
done
"$S3SYNC" -q -C "$W/A2" pull # A2 knows every device
"$S3SYNC" -C "$W/A" config set cache_size $((BYTES * 2))
say "A pushes $BYTES random bytes"
head -c "$BYTES" /dev/urandom >"$W/A/big.bin"
"$S3SYNC" -q -C "$W/A" push
background "$W/A" serve --interval 60
A_PORT=$PORT
"$S3SYNC" -C "$W/A2" config set cache_size $((BYTES * 2))
rm -rf "$W/A2/.s3sync/cache"
cp -a "$W/A/.s3sync/cache" "$W/A2/.s3sync/cache"
background "$W/A2" serve --interval 3600 # no pull of the 1 GiB while B1 pulls
A2_PORT=$PORT

pull() { # DEVICE: timed pull, its --json in $W/DEVICE.json
	local t0 t1
	t0=$(now)
	"$S3SYNC" -C "$W/$1" --json pull >"$W/$1.json"
	t1=$(now)
	echo "$t1 - $t0" | bc
}
say "B1 pulls through the slow link alone"
T1=$(pull B1)
"$S3SYNC" -C "$W/B2" config set peers "127.0.0.1:$A_PORT"
say "B2 pulls with A as its peer"
T2=$(pull B2)
"$S3SYNC" -C "$W/B3" config set peers "127.0.0.1:$A_PORT,127.0.0.1:$A2_PORT"
say "B3 pulls with A and A2 as its peers"
T3=$(pull B3)
for d in B1 B2 B3; do cmp "$W/A/big.bin" "$W/$d/big.bin"; done
LINK=$(echo "scale=3; $BYTES / $RATE" | bc)

say "propagation: $ROUNDS small pushes by A; B1 polls every 10 s, B2 also hears A's head"
background "$W/B2" watch --interval 10
B2_PORT=$PORT
"$S3SYNC" -C "$W/B1" watch --interval 10 >/dev/null 2>"$W/B1.err" &
PIDS+=($!)
"$S3SYNC" -C "$W/A" config set peers "127.0.0.1:$B2_PORT"
sleep 2 # both watches' first sync
: >"$W/lat-B1"
: >"$W/lat-B2"
for r in $(seq "$ROUNDS"); do
	echo "round $r" >"$W/A/round-$r.txt"
	"$S3SYNC" -q -C "$W/A" push
	t0=$(now)
	seen1="" seen2=""
	for _ in $(seq 3000); do
		t=$(now)
		[ -z "$seen2" ] && [ -e "$W/B2/round-$r.txt" ] && seen2=$(echo "$t - $t0" | bc)
		[ -z "$seen1" ] && [ -e "$W/B1/round-$r.txt" ] && seen1=$(echo "$t - $t0" | bc)
		[ -n "$seen1" ] && [ -n "$seen2" ] && break
		sleep 0.01
	done
	echo "${seen1:-30}" >>"$W/lat-B1"
	echo "${seen2:-30}" >>"$W/lat-B2"
	sleep "0.$((RANDOM % 10))"
done
median() { sort -n "$1" | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

cat <<EOF
Pull of $BYTES bytes (one new file) through a bucket link of $RATE B/s ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git -C "$ROOT" rev-parse --short HEAD)):

| pull | seconds | from the bucket | from a peer | requests |
|---|---|---|---|---|
| the link's own time for those bytes (size / rate) | $LINK | | | |
| B1, no peer | $T1 | $(json bytes_down "$W/B1.json") | $(json bytes_peer "$W/B1.json") | $(json requests "$W/B1.json") |
| B2, A as its peer on loopback | $T2 | $(json bytes_down "$W/B2.json") | $(json bytes_peer "$W/B2.json") | $(json requests "$W/B2.json") |
| B3, A and A2 as its peers on loopback | $T3 | $(json bytes_down "$W/B3.json") | $(json bytes_peer "$W/B3.json") | $(json requests "$W/B3.json") |

Change propagation, $ROUNDS small pushes by A, watches polling every 10 s (from the end of A's push to the file in the folder):

| device | median s | all rounds |
|---|---|---|
| B1, polling only | $(median "$W/lat-B1") | $(tr '\n' ' ' <"$W/lat-B1") |
| B2, hearing A's head | $(median "$W/lat-B2") | $(tr '\n' ' ' <"$W/lat-B2") |
EOF

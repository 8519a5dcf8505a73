#!/usr/bin/env bash
# bench/bench-watch.sh: how long a change on device A takes to appear on
# device B when both run `s3sync watch`, beside the same change carried by
# hand (`s3sync sync` on A, then on B: no debounce, no poll wait) in the
# same run, against the same S3 endpoint.
#
#   bench/bench-watch.sh [BUILD_DIR]        (default BUILD_DIR: ./build)
#
# Builds s3sync in BUILD_DIR first (configuring it if new), prints progress
# on stderr and a Markdown report on stdout (~7 minutes with the defaults).
#
# For each poll interval (BENCH_WATCH_INTERVALS, default "1 5" seconds) and
# each size (a 1 KiB file, inlined in the transaction, and a 4 MiB one,
# chunked into packs), BENCH_WATCH_RUNS (default 10) runs of three changes
# made on A, each timed until B shows it (B checked every 10 ms):
#   new     a new file copied into A (cp of a prepared random file), until
#           B's copy holds the same bytes;
#   edit    16 bytes overwritten in place in its middle (dd conv=notrunc),
#           until B's copy holds the edited bytes;
#   delete  the file removed (rm), until B's copy is gone.
# The time from just before the change to the first match is one sample.
# Before each change a random pause (0 to the interval) so it lands at a
# random point of B's poll cycle: the samples spread over [propagation,
# propagation + interval]. Reported per change: median and max, and max
# minus the interval (the aim: under 2 s).
# Reference: the same changes carried by `s3sync -C A sync; s3sync -C B
# sync`, timed the same way (their medians over the same number of runs).
#
# Endpoint: the AWS_* environment and S3SYNC_TEST_BUCKET if AWS_ENDPOINT_URL
# is set; otherwise a private RGW is started with ci/rgw.sh in
# S3SYNC_RGW_DIR (default /tmp/s3sync-rgw-benchwatch) and stopped at the
# end. Everything the run makes (scratch folder under $TMPDIR, key prefix
# bench-watch-*/ in the bucket) is removed at the end (the bucket's part with
# rclone purge; BENCH_WATCH_KEEP=1 keeps both).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd)
S3SYNC=$BUILD/cli/s3sync
RUNS=${BENCH_WATCH_RUNS:-10}
INTERVALS=${BENCH_WATCH_INTERVALS:-"1 5"}

[ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2 --target s3sync >/dev/null

STARTED_RGW=0
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
	export S3SYNC_RGW_DIR=${S3SYNC_RGW_DIR:-/tmp/s3sync-rgw-benchwatch}
	eval "$("$ROOT/ci/rgw.sh" start)"
	STARTED_RGW=1
fi
BUCKET=${S3SYNC_TEST_BUCKET:?S3SYNC_TEST_BUCKET must name the bucket}
export S3SYNC_KDF=interactive S3SYNC_PASSWORD="bench watch"
unset S3SYNC_PASSWORD_FILE S3SYNC_PASSWORD_COMMAND

W=$(mktemp -d "${TMPDIR:-/tmp}/ss-benchwatch-XXXXXX")
PREFIX=bench-watch-$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ -n "${BENCH_WATCH_KEEP:-}" ]; then echo "kept $W and s3://$BUCKET/$PREFIX" >&2; return; fi
	# Leave the bucket as it was (rclone's S3 SDK refuses AWS_CA_BUNDLE; the endpoint is http).
	env -u AWS_CA_BUNDLE rclone purge \
		":s3,provider=Ceph,env_auth=true,endpoint='$AWS_ENDPOINT_URL':$BUCKET/$PREFIX" >/dev/null 2>&1 ||
		echo "bench-watch: could not remove s3://$BUCKET/$PREFIX (needs rclone)" >&2
	rm -rf "$W"
	if [ "$STARTED_RGW" = 1 ]; then "$ROOT/ci/rgw.sh" stop >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
# Seconds since $1, in milliseconds.
ms_since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%d\n", (b - a) * 1000 }'; }
# Median and max of the numbers on stdin.
stats() { sort -n | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%d %d\n", m, v[NR] }'; }

# Wait until B's copy of $1 matches the source $2, or with $2 empty is gone
# (limit 60 s); fail loudly otherwise.
wait_same() {
	local i=0
	until if [ -n "$2" ]; then cmp -s "$2" "$1" 2>/dev/null; else [ ! -e "$1" ]; fi; do
		sleep 0.01
		i=$((i + 1))
		if [ $i -gt 6000 ]; then
			if [ -n "$2" ]; then echo "bench-watch: $1 never arrived; B's log:" >&2; else echo "bench-watch: $1 never went; B's log:" >&2; fi
			tail -5 "$W/B.err" >&2
			exit 1
		fi
	done
}

# Make change $1 (new, edit, delete) of size $2 on A's $3 and wait for it in
# B's $4; print the milliseconds it took.
change() {
	local t0
	t0=$(now)
	case $1 in
	new) cp "$W/src-$2" "$3" ;;
	edit) dd if="$W/patch" of="$3" bs=16 seek="$(($(stat -c %s "$3") / 32))" conv=notrunc status=none ;;
	delete) rm "$3" ;;
	esac
	[ -z "${SYNC_BY_HAND:-}" ] || { "$S3SYNC" -q -C "$W/A" sync && "$S3SYNC" -q -C "$W/B" sync; }
	case $1 in
	new) wait_same "$4" "$W/src-$2" ;;
	edit) wait_same "$4" "$W/src-$2-edit" ;;
	delete) wait_same "$4" "" ;;
	esac
	ms_since "$t0"
}
CHANGES="new edit delete"

# The store: one repository, A creates, B joins.
URL=s3://$BUCKET/$PREFIX
"$S3SYNC" -q --device A init "$URL" "$W/A"
"$S3SYNC" -q --device B init "$URL" "$W/B"
head -c 16 /dev/urandom >"$W/patch"
for size in 1k 4m; do
	case $size in 1k) head -c 1024 /dev/urandom >"$W/src-$size" ;; 4m) head -c $((4 << 20)) /dev/urandom >"$W/src-$size" ;; esac
	# The edited content: the patch at the offset change() writes it to.
	cp "$W/src-$size" "$W/src-$size-edit"
	dd if="$W/patch" of="$W/src-$size-edit" bs=16 seek="$(($(stat -c %s "$W/src-$size") / 32))" conv=notrunc status=none
done

# Reference: the changes carried by hand.
declare -A REF
for size in 1k 4m; do
	for c in $CHANGES; do : >"$W/ref-$c.txt"; done
	for r in $(seq 1 "$RUNS"); do
		for c in $CHANGES; do
			SYNC_BY_HAND=1 change "$c" "$size" "$W/A/ref-$size-$r" "$W/B/ref-$size-$r" >>"$W/ref-$c.txt"
		done
	done
	for c in $CHANGES; do
		REF[$size-$c]=$(stats <"$W/ref-$c.txt")
		echo "bench-watch: by hand, $size, $c: median/max ${REF[$size-$c]} ms" >&2
	done
done

echo "| poll interval | file | change | runs | A to B median | max | max - interval | by hand (sync A; sync B) median |"
echo "|---|---|---|---|---|---|---|---|"
for interval in $INTERVALS; do
	"$S3SYNC" -C "$W/A" --json watch --interval "$interval" >"$W/A.out" 2>"$W/A.err" &
	PIDS+=($!)
	"$S3SYNC" -C "$W/B" --json watch --interval "$interval" >"$W/B.out" 2>"$W/B.err" &
	PIDS+=($!)
	sleep 2 # both made their first sync
	for size in 1k 4m; do
		for c in $CHANGES; do : >"$W/lat-$c.txt"; done
		for r in $(seq 1 "$RUNS"); do
			for c in $CHANGES; do
				sleep "$(awk -v i="$interval" -v s="$RANDOM" 'BEGIN { printf "%.3f", i * s / 32768 }')"
				ms=$(change "$c" "$size" "$W/A/w$interval-$size-$r" "$W/B/w$interval-$size-$r")
				echo "$ms" >>"$W/lat-$c.txt"
				echo "bench-watch: interval $interval s, $size, $c, run $r: $ms ms" >&2
			done
		done
		for c in $CHANGES; do
			read -r med max < <(stats <"$W/lat-$c.txt")
			read -r rmed _ <<<"${REF[$size-$c]}"
			echo "| $interval s | $size | $c | $RUNS | $med ms | $max ms | $((max - interval * 1000)) ms | $rmed ms |"
		done
	done
	for p in "${PIDS[@]}"; do kill -TERM "$p"; done
	for p in "${PIDS[@]}"; do wait "$p" || { echo "bench-watch: a watch exited $?" >&2; exit 1; }; done
	PIDS=()
	if grep -q '"event":"error"' "$W/A.out" "$W/B.out"; then
		echo "bench-watch: a watch met errors:" >&2
		cat "$W/A.err" "$W/B.err" >&2
	fi
done

#!/usr/bin/env bash
# bench/bench-history.sh: what checkpoints and gc buy, on RGW.
#
#   bench/bench-history.sh [BUILD_DIR]        (default BUILD_DIR: ./build)
#
# Builds s3sync and bench/histgen in BUILD_DIR first, prints progress on
# stderr and a Markdown report on stdout.
#
# 1. Join: a repository with N = 10,000 transactions (bench/histgen: one
#    folder open, N pushes, each rewriting one of 10 small files). Reference:
#    a new device joins (s3sync init: join + pull) with no checkpoint, so it
#    verifies log/1..N. Then `s3sync checkpoint` (at N), 10 more
#    transactions, and a new device joins again: the checkpoint and the 10
#    log objects after it. Time (date around init, Argon2id "interactive"
#    KDF included in both) and the requests of init's --json.
# 2. gc: another repository, 10 files of 256 KiB of random bytes, each
#    rewritten 100 times (100 syncs); bucket bytes (log/, checkpoints/,
#    data/, from gc's listing) before and after `s3sync checkpoint` +
#    `s3sync gc --keep-last 1`, then `s3sync verify --data` must pass.
# Sizes: BENCH_HISTORY_N (10000), BENCH_HISTORY_REWRITES (100).
# BENCH_HISTORY_REF=DIR: also join (before the checkpoint) with DIR's s3sync,
# built with -DCMAKE_C_FLAGS=-DENG_PREFETCH_MAX=1: pull fetching one log
# object at a time, as it did before it fetched batches in parallel.
#
# Endpoint: the AWS_* environment and S3SYNC_TEST_BUCKET if AWS_ENDPOINT_URL
# is set; otherwise a private RGW is started with ci/rgw.sh in
# S3SYNC_RGW_DIR (default /tmp/s3sync-rgw-benchhist) and stopped at the end.
# Everything the run makes (scratch folder under $TMPDIR, prefix
# bench-history-*/ in the bucket, removed key by key with histgen --purge)
# is removed. Needs: jq.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd)
S3SYNC=$BUILD/cli/s3sync
HISTGEN=$BUILD/bench/histgen
N=${BENCH_HISTORY_N:-10000} REWRITES=${BENCH_HISTORY_REWRITES:-100}

command -v jq >/dev/null || { echo "bench-history: needs jq" >&2; exit 1; }
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2 --target s3sync histgen >/dev/null

STARTED_RGW=0
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
	export S3SYNC_RGW_DIR=${S3SYNC_RGW_DIR:-/tmp/s3sync-rgw-benchhist}
	eval "$("$ROOT/ci/rgw.sh" start)"
	STARTED_RGW=1
fi
BUCKET=${S3SYNC_TEST_BUCKET:-s3sync-test}
PREFIX=bench-history-$(date +%s)-$$
W=$(mktemp -d "${TMPDIR:-/tmp}/s3sync-bench-history.XXXXXX")
cleanup() {
	rm -rf "$W"
	if [ "$STARTED_RGW" = 1 ]; then "$ROOT/ci/rgw.sh" stop >/dev/null || true; fi
}
trap cleanup EXIT

export S3SYNC_PASSWORD=bench-history-password S3SYNC_KDF=interactive
export S3SYNC_CHECKPOINT_TXNS=0 S3SYNC_CHECKPOINT_BYTES=0 # only the checkpoints made here
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b - a}'; }
log() { echo "bench-history: $*" >&2; }

# join STORE DIR: sets J_T (s), J_REQ, J_DOWN, J_SEQ
join() {
	local t0 j
	t0=$(now)
	j=$("$S3SYNC" --json --device "$(basename "$2")" init "$1" "$2")
	J_T=$(since "$t0")
	J_REQ=$(jq .requests <<<"$j") J_DOWN=$(jq .bytes_down <<<"$j") J_SEQ=$(jq .seq <<<"$j")
}

# --- 1. join with and without a checkpoint ---------------------------------------------
S1=s3://$BUCKET/$PREFIX/join
"$S3SYNC" -q --device A init "$S1" "$W/A" >/dev/null
log "making $N transactions"
t0=$(now)
"$HISTGEN" "$W/A" "$N" >/dev/null
GEN_T=$(since "$t0")
log "$N transactions in ${GEN_T} s; joining without a checkpoint"
join "$S1" "$W/B"
REF_T=$J_T REF_REQ=$J_REQ REF_DOWN=$J_DOWN REF_SEQ=$J_SEQ
diff -r -x .s3sync "$W/A" "$W/B" >/dev/null
if [ -n "${BENCH_HISTORY_REF:-}" ]; then
	log "joining without a checkpoint, one GET at a time ($BENCH_HISTORY_REF)"
	S3SYNC=$BENCH_HISTORY_REF/cli/s3sync join "$S1" "$W/D"
	ONE_T=$J_T ONE_REQ=$J_REQ ONE_DOWN=$J_DOWN
	diff -r -x .s3sync "$W/A" "$W/D" >/dev/null
fi
t0=$(now)
CP=$("$S3SYNC" -C "$W/A" --json checkpoint)
CP_T=$(since "$t0") CP_BYTES=$(jq .bytes <<<"$CP") CP_SEQ=$(jq .checkpoint <<<"$CP")
"$HISTGEN" "$W/A" 10 >/dev/null
log "joining after checkpoints/$CP_SEQ"
join "$S1" "$W/C"
NEW_T=$J_T NEW_REQ=$J_REQ NEW_DOWN=$J_DOWN NEW_SEQ=$J_SEQ
diff -r -x .s3sync "$W/A" "$W/C" >/dev/null

# --- 2. bucket size before and after gc -------------------------------------------------
S2=s3://$BUCKET/$PREFIX/gc
"$S3SYNC" -q --device G init "$S2" "$W/G" >/dev/null
log "rewriting 10 files x 256 KiB $REWRITES times"
for r in $(seq 1 "$REWRITES"); do
	for i in $(seq 0 9); do head -c 262144 /dev/urandom >"$W/G/f$i.bin"; done
	"$S3SYNC" -q -C "$W/G" sync
done
"$S3SYNC" -q -C "$W/G" checkpoint
t0=$(now)
GC=$("$S3SYNC" -C "$W/G" --json gc --keep-last 1)
GC_T=$(since "$t0")
KEPT=$(jq .kept_bytes <<<"$GC") DEL=$(jq .deleted_bytes <<<"$GC") DELN=$(jq .deleted_objects <<<"$GC")
KEPTN=$(jq .kept_objects <<<"$GC")
"$S3SYNC" -q -C "$W/G" verify --data

"$HISTGEN" --purge "$S1"
"$HISTGEN" --purge "$S2"

mib() { awk -v b="$1" 'BEGIN{printf "%.1f", b / 1048576}'; }
cat <<EOF
| join of a repository with $N transactions (RGW) | time | requests | bytes down |
|---|---|---|---|
| no checkpoint: log/1..$REF_SEQ verified and applied | ${REF_T} s | $REF_REQ | $REF_DOWN |
${ONE_T:+| the same, one GET at a time (-DENG_PREFETCH_MAX=1) | ${ONE_T} s | $ONE_REQ | $ONE_DOWN |
}| checkpoints/$CP_SEQ ($CP_BYTES bytes) + log/$((CP_SEQ + 1))..$NEW_SEQ | ${NEW_T} s | $NEW_REQ | $NEW_DOWN |

Making the history: $N pushes in ${GEN_T} s (bench/histgen, in-process);
\`s3sync checkpoint\` at $CP_SEQ: ${CP_T} s.

| 10 files x 256 KiB rewritten $REWRITES times | objects | bytes |
|---|---|---|
| bucket before gc (log/, checkpoints/, data/) | $((KEPTN + DELN)) | $(mib $((KEPT + DEL))) MiB |
| after \`checkpoint\` + \`gc --keep-last 1\` (${GC_T} s) | $KEPTN | $(mib "$KEPT") MiB |
EOF

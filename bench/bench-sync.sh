#!/usr/bin/env bash
# bench/bench-sync.sh: the sync engine beside `rclone sync` to a crypt remote,
# in one run, against the same S3 endpoint and the same generated tree.
#
#   bench/bench-sync.sh [BUILD_DIR]        (default BUILD_DIR: ./build)
#
# Builds s3sync and bench/treegen in BUILD_DIR first (configuring it if new),
# prints progress on stderr and a Markdown report on stdout (~10 minutes here,
# most of it rclone and s3sync's download).
#
# Tree (bench/treegen, deterministic): 10,000 files of 100 B..16 KiB
# (uniform) in a0..a9/b0..b9/, plus four 64 MiB files; pseudo-random bytes
# (incompressible), mtime 2024-01-01. Steps, each run by s3sync then rclone:
#   1 first upload        s3sync: init (create) + sync;  rclone sync DIR crypt:
#   2 no-change sync      the same commands again
#   3 one byte flipped in the middle of big-1.bin, sync
#   4 100 small files edited (first 64 bytes rewritten, same size), sync
#   5 download into an empty folder: s3sync init (join + pull) of a second
#     device; rclone sync crypt: EMPTYDIR. Both results are compared with the
#     tree (diff -r).
# Then a 100,000-file tree (1..256 B each) is uploaded once and s3sync's
# no-change sync on it is timed and its peak RSS taken.
# The store's own time for the same bytes (issue 16), in the same run: the
# objects s3sync's step 1 put (everything under its prefix then) are put
# again under another prefix by curl, 8 at a time (its PUT time), and right
# before step 5 everything under s3sync's prefix is got by curl, 8 at a
# time, into /dev/null (its GET time). Steps 1 and 5 are held to both
# references: "x store" = s3sync time / the store's time.
# Wall times: date around each command. s3sync's bytes and requests: its
# --json summary; peak RSS: /usr/bin/time -f %M (step 1: of the sync, not of
# the init, which runs the passphrase KDF, Argon2id "interactive", 64 MiB;
# step 5: of the joining init, KDF included). rclone: default flags
# (--transfers 4 --checkers 8), bytes from its final stats (--use-json-log).
# Ratio = s3sync time / rclone time. Aims: issue 16's for steps 1 and 5
# (upload at most 0.1x rclone and 2x the store's PUT; download at most
# 0.05x rclone and 3x the store's GET), the earlier ones for the others.
# A quick smoke run with smaller trees: BENCH_SYNC_NSMALL (10000),
# BENCH_SYNC_BIGSIZE (67108864), BENCH_SYNC_NHUGE (100000); the aims are
# meant for the defaults only.
#
# Endpoint: the AWS_* environment and S3SYNC_TEST_BUCKET if AWS_ENDPOINT_URL
# is set; otherwise a private RGW is started with ci/rgw.sh in
# S3SYNC_RGW_DIR (default /tmp/s3sync-rgw-benchsync) and stopped at the end.
# Everything the run makes (scratch folder under $TMPDIR, key prefix
# bench-sync-*/ in the bucket) is removed at the end. Needs: rclone, jq,
# /usr/bin/time (Debian package "time").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd)
S3SYNC=$BUILD/cli/s3sync
TREEGEN=$BUILD/bench/treegen
NSMALL=${BENCH_SYNC_NSMALL:-10000} NBIG=4 BIGSIZE=${BENCH_SYNC_BIGSIZE:-$((64 << 20))}
NEDIT=100 NHUGE=${BENCH_SYNC_NHUGE:-100000}

for t in rclone jq /usr/bin/time curl; do
	command -v "$t" >/dev/null || { echo "bench-sync: needs $t" >&2; exit 1; }
done
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2 --target s3sync treegen >/dev/null

STARTED_RGW=0
if [ -z "${AWS_ENDPOINT_URL:-}" ]; then
	export S3SYNC_RGW_DIR=${S3SYNC_RGW_DIR:-/tmp/s3sync-rgw-benchsync}
	eval "$("$ROOT/ci/rgw.sh" start)"
	STARTED_RGW=1
fi
BUCKET=${S3SYNC_TEST_BUCKET:-s3sync-test}
PREFIX=bench-sync-$(date +%s)-$$
W=$(mktemp -d "${TMPDIR:-/tmp}/s3sync-bench-sync.XXXXXX")

export RCLONE_CONFIG=$W/rclone.conf
cat >"$RCLONE_CONFIG" <<EOF
[store]
type = s3
provider = Ceph
endpoint = $AWS_ENDPOINT_URL
access_key_id = $AWS_ACCESS_KEY_ID
secret_access_key = $AWS_SECRET_ACCESS_KEY
region = ${AWS_REGION:-us-east-1}

[crypt]
type = crypt
remote = store:$BUCKET/$PREFIX/rclone
password = $(rclone obscure bench-sync-password)
EOF
# rclone's S3 SDK refuses AWS_CA_BUNDLE on its transport; the endpoint is http.
rcl() { env -u AWS_CA_BUNDLE rclone "$@"; }

cleanup() {
	rcl purge "store:$BUCKET/$PREFIX" >/dev/null 2>&1 || true
	rm -rf "$W"
	if [ "$STARTED_RGW" = 1 ]; then "$ROOT/ci/rgw.sh" stop >/dev/null || true; fi
}
trap cleanup EXIT

export S3SYNC_PASSWORD=bench-sync-password S3SYNC_KDF=interactive
STORE=s3://$BUCKET/$PREFIX/s3sync
SRC=$W/tree
now() { date +%s.%N; }

# s3sync ARGS...: runs it; sets S_T (s), S_RSS (KiB), S_UP, S_DOWN, S_REQ, S_FILES
# (summed over the calls since s_reset; S_RSS the largest, but not of a call
# made with NORSS=1: step 1's init, which only runs the KDF).
s_reset() { S_T=0 S_RSS=0 S_UP=0 S_DOWN=0 S_REQ=0 S_FILES=0; }
s3() {
	local t0 t1 j rss
	t0=$(now)
	/usr/bin/time -f %M -o "$W/rss" "$S3SYNC" --json "$@" >"$W/json"
	t1=$(now)
	j=$(cat "$W/json") rss=$(tail -1 "$W/rss")
	S_T=$(awk -v a="$S_T" -v b="$t0" -v c="$t1" 'BEGIN{printf "%.3f", a + c - b}')
	[ "${NORSS:-0}" = 1 ] || [ "$rss" -le "$S_RSS" ] || S_RSS=$rss
	S_UP=$((S_UP + $(jq .bytes_up <<<"$j"))) S_DOWN=$((S_DOWN + $(jq .bytes_down <<<"$j")))
	S_REQ=$((S_REQ + $(jq .requests <<<"$j"))) S_FILES=$((S_FILES + $(jq .files <<<"$j")))
}
# rc ARGS...: rclone sync ARGS; sets R_T (s), R_BYTES, R_XFER (files).
rc() {
	local t0 t1 st
	t0=$(now)
	rcl sync "$@" --exclude '/.s3sync/**' --use-json-log -v --stats 1h 2>"$W/rclone.log"
	t1=$(now)
	st=$(grep '"stats"' "$W/rclone.log" | tail -1 | jq -c .stats)
	R_T=$(awk -v b="$t0" -v c="$t1" 'BEGIN{printf "%.3f", c - b}')
	R_BYTES=$(jq .bytes <<<"$st") R_XFER=$(jq .transfers <<<"$st")
}

# The store alone moving the objects s3sync put: curl --aws-sigv4, 8 at a time.
CURL_AUTH=(--aws-sigv4 "aws:amz:${AWS_REGION:-us-east-1}:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY"
	-H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
[ -z "${AWS_CA_BUNDLE:-}" ] || CURL_AUTH+=(--cacert "$AWS_CA_BUNDLE")
BENCH_URL="$AWS_ENDPOINT_URL/$BUCKET"
# store_keys SUBPREFIX: the keys under $PREFIX/SUBPREFIX, one a line, with their total size in KEYS_BYTES.
store_keys() {
	rcl lsf -R --files-only --format sp --separator ' ' "store:$BUCKET/$PREFIX/$1" >"$W/keys.sz"
	KEYS_BYTES=$(awk '{ s += $1 } END { print s + 0 }' "$W/keys.sz")
	awk -v p="$PREFIX/$1/" '{ print p $2 }' "$W/keys.sz" >"$W/keys"
}
# store_get DEST_DIR|-: every key of $W/keys got (into /dev/null for -); sets ST_T (s).
store_get() {
	local t0
	t0=$(now)
	xargs -P 8 -I{} curl -sSf "${CURL_AUTH[@]}" -o "$([ "$1" = - ] && echo /dev/null || echo "$1/{}")" \
		--create-dirs "$BENCH_URL/{}" <"$W/keys"
	ST_T=$(awk -v b="$t0" -v c="$(now)" 'BEGIN{printf "%.3f", c - b}')
}
# store_put SRC_DIR TO_SUBPREFIX: every key of $W/keys put from SRC_DIR/KEY; sets ST_T (s).
store_put() {
	local t0
	t0=$(now)
	xargs -P 8 -I{} curl -sSf "${CURL_AUTH[@]}" -o /dev/null -T "$1/{}" "$BENCH_URL/$2/{}" <"$W/keys"
	ST_T=$(awk -v b="$t0" -v c="$(now)" 'BEGIN{printf "%.3f", c - b}')
}

mib() { awk -v b="$1" 'BEGIN{printf (b >= 1048576 ? "%.1f MiB" : "%.1f KiB"), b / (b >= 1048576 ? 1048576 : 1024)}'; }
ROWS=()
MISSED=0
# row NAME AIM_RATIO EXTRA_OK AIM_TEXT [STORE_T STORE_AIM]: with a store time, s3sync's
# time is also held to STORE_AIM x STORE_T.
row() {
	local ratio ok xs=— st=—
	ratio=$(awk -v a="$S_T" -v b="$R_T" 'BEGIN{printf "%.3f", a / b}')
	ok=$(awk -v r="$ratio" -v m="$2" 'BEGIN{print (r <= m) ? "yes" : "no"}')
	[ "$3" = 1 ] || ok=no
	if [ -n "${5:-}" ]; then
		st=$5
		xs=$(awk -v a="$S_T" -v b="$5" 'BEGIN{printf "%.2f", a / b}')
		[ "$(awk -v x="$xs" -v m="$6" 'BEGIN{print (x <= m)}')" = 1 ] || ok=no
	fi
	[ "$ok" = yes ] || MISSED=$((MISSED + 1))
	ROWS+=("| $1 | $S_T | $R_T | $ratio | $st | $xs | $4 | **$ok** | $(mib "$S_UP") / $(mib "$S_DOWN") / $S_REQ | $((S_RSS / 1024)) MiB | $(mib "$R_BYTES") ($R_XFER files) |")
}

echo "bench-sync: generating the tree in $W" >&2
"$TREEGEN" tree "$SRC" "$NSMALL" 100 16384 "$NBIG" "$BIGSIZE" 1

echo "bench-sync: 1 first upload" >&2
s_reset; NORSS=1 s3 init "$STORE" "$SRC"; s3 -C "$SRC" sync
rc "$SRC" crypt:
echo "bench-sync: the store's PUT of the same objects" >&2
store_keys s3sync
PUT_BYTES=$KEYS_BYTES PUT_OBJS=$(wc -l <"$W/keys")
store_get "$W/objs"
store_put "$W/objs" store-put
PUT_T=$ST_T
rm -rf "$W/objs"
row "1 first upload" 0.1 1 "≤ 0.1×, ≤ 2× store" "$PUT_T" 2

echo "bench-sync: 2 no-change sync" >&2
s_reset; s3 -C "$SRC" sync
rc "$SRC" crypt:
row "2 no-change sync" 0.05 "$([ "$S_REQ" -le 1 ] && echo 1 || echo 0)" "< 5%, ≤ 1 request"

echo "bench-sync: 3 one byte flipped in a 64 MiB file" >&2
"$TREEGEN" flip "$SRC/big-1.bin" $((BIGSIZE / 2))
s_reset; s3 -C "$SRC" sync
rc "$SRC" crypt:
row "3 one byte in $((BIGSIZE >> 20)) MiB" 0.1 "$([ "$S_UP" -lt 1048576 ] && echo 1 || echo 0)" "< 10%, < 1 MiB up"

echo "bench-sync: 4 $NEDIT small files edited" >&2
"$TREEGEN" edit "$SRC" "$NSMALL" "$NEDIT" 2
s_reset; s3 -C "$SRC" sync
rc "$SRC" crypt:
row "4 $NEDIT small edits" 0.1 1 "< 10%"

echo "bench-sync: the store's GET of the same objects" >&2
store_keys s3sync
GET_BYTES=$KEYS_BYTES GET_OBJS=$(wc -l <"$W/keys")
store_get -
GET_T=$ST_T
echo "bench-sync: 5 download into an empty folder" >&2
s_reset; s3 init "$STORE" "$W/down-s3sync"
rc crypt: "$W/down-rclone"
row "5 download to empty dir" 0.05 1 "≤ 0.05×, ≤ 3× store" "$GET_T" 3
SAME=yes
diff -r -q -x .s3sync "$SRC" "$W/down-s3sync" >&2 || SAME="NO (s3sync)"
diff -r -q -x .s3sync "$SRC" "$W/down-rclone" >&2 || SAME="$SAME NO (rclone)"
rm -rf "$W/down-s3sync" "$W/down-rclone"

echo "bench-sync: $NHUGE-file tree" >&2
"$TREEGEN" tree "$W/huge" "$NHUGE" 1 256 0 0 3
s_reset; NORSS=1 s3 init "$STORE-huge" "$W/huge"; s3 -C "$W/huge" sync
HUGE_UP_T=$S_T HUGE_UP_RSS=$S_RSS HUGE_UP_REQ=$S_REQ
s_reset; s3 -C "$W/huge" sync
HUGE_OK=$([ "$S_RSS" -lt 65536 ] && echo yes || echo no)
[ "$HUGE_OK" = yes ] || MISSED=$((MISSED + 1))

cat <<EOF
s3sync $("$S3SYNC" --version | cut -d' ' -f2) vs $(rclone version | head -1), $(date -u +%Y-%m-%d), $(nproc) cores, endpoint $AWS_ENDPOINT_URL
Tree: $NSMALL files of 100 B..16 KiB + $NBIG × $((BIGSIZE >> 20)) MiB, $(du -sm --exclude=.s3sync "$SRC" | cut -f1) MB on disk. Times in seconds. Downloads equal to the tree: $SAME.

| step | s3sync s | rclone s | ratio | store s | × store | aim | met | s3sync up / down / requests | s3sync peak RSS | rclone moved |
|---|---|---|---|---|---|---|---|---|---|---|
EOF
printf '%s\n' "${ROWS[@]}"
cat <<EOF

Store alone (curl --aws-sigv4, 8 at a time): PUT of the $PUT_OBJS objects step 1 put ($(mib "$PUT_BYTES")) $PUT_T s; GET of the $GET_OBJS objects under s3sync's prefix before step 5 ($(mib "$GET_BYTES"), into /dev/null) $GET_T s.

$NHUGE-file tree (1..256 B each): first upload ${HUGE_UP_T} s ($HUGE_UP_REQ requests, peak RSS $((HUGE_UP_RSS / 1024)) MiB); no-change sync $S_T s, $S_REQ request(s), peak RSS $((S_RSS / 1024)) MiB (aim < 64 MiB: **$HUGE_OK**).
Aims missed: $MISSED.
EOF

#!/usr/bin/env bash
# bench/bench-revoke.sh: what `s3sync device revoke` costs (issue 15, key
# epochs), and that it grows with the devices, not with the history.
#
#   bench/bench-revoke.sh [BUILD_DIR]        (default BUILD_DIR: ./build)
#
# Builds s3sync and bench/histgen in BUILD_DIR first, prints progress on
# stderr and a Markdown report on stdout.
#
# For each store (file:// under $TMPDIR, and s3:// on RGW) and each
# repository: a copy of a history of H transactions that bench/histgen
# made once from device A on file:// (in-process, as in bench-history.sh),
# with a checkpoint at its end so that the others join cheaply, and of A's
# folder; then devices 2..N join and push once each (a push enrolls). Device N is revoked; device 2 ("B") is the one that pulls
# afterwards (with N = 2 it is the one revoked, and no other is left). Timed, in this order, on an up-to-date repository:
#   - reference: `s3sync push` of one new one-line file on A (a normal
#     transaction), and B's `pull` of it;
#   - `s3sync device revoke` of device N on A (new passphrase from
#     S3SYNC_PASSWORD): wall time, and requests / bytes up of its --json;
#     what it wrote and deleted, from a listing of the store before and
#     after (histgen --list): epochs/<E>, the log object, the new key file;
#   - B's `pull` that learns the epoch (--json: requests, bytes down);
#   - `s3sync key add` on A with another passphrase: the Argon2id of one
#     key file plus a LIST and a PUT, i.e. what the revocation's new key
#     file costs;
#   - on RGW, a raw `curl --aws-sigv4` PUT of one object as large as all the
#     revocation wrote (one process, as bench-store does).
# Repositories: N = 2, 10, 100 devices on H = 10,000 transactions, and
# N = 10 on H = 100 (the same revocation on a history 100 times shorter).
# Key files use S3SYNC_KDF=interactive (Argon2id opslimit 2, 64 MiB). On
# the N = 10, H = 10,000 repository a second device is then revoked with
# the default KDF limits (opslimit 3, 256 MiB) and timed the same way.
#
# Sizes: BENCH_REVOKE_N ("2 10 100"), BENCH_REVOKE_TXNS (10000),
# BENCH_REVOKE_SHORT (100; empty: no short-history repository),
# BENCH_REVOKE_STORES ("file s3").
# Endpoint: the AWS_* environment and S3SYNC_TEST_BUCKET if AWS_ENDPOINT_URL
# is set; otherwise a private RGW is started with ci/rgw.sh in
# S3SYNC_RGW_DIR (default /tmp/s3sync-rgw-benchrevoke) and stopped at the
# end. Everything the run makes (scratch folder under $TMPDIR, prefix
# bench-revoke-*/ in the bucket, removed with histgen --purge) is removed.
# Needs: jq; for RGW also aws (the copy of the history) and curl.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd)
S3SYNC=$BUILD/cli/s3sync
HISTGEN=$BUILD/bench/histgen
NS=${BENCH_REVOKE_N:-2 10 100} TXNS=${BENCH_REVOKE_TXNS:-10000}
SHORT=${BENCH_REVOKE_SHORT-100} STORES=${BENCH_REVOKE_STORES:-file s3}

command -v jq >/dev/null || { echo "bench-revoke: needs jq" >&2; exit 1; }
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2 --target s3sync histgen >/dev/null

STARTED_RGW=0
if [[ " $STORES " == *" s3 "* ]] && [ -z "${AWS_ENDPOINT_URL:-}" ]; then
	export S3SYNC_RGW_DIR=${S3SYNC_RGW_DIR:-/tmp/s3sync-rgw-benchrevoke}
	eval "$("$ROOT/ci/rgw.sh" start)"
	STARTED_RGW=1
fi
BUCKET=${S3SYNC_TEST_BUCKET:-s3sync-test}
PREFIX=bench-revoke-$(date +%s)-$$
W=$(mktemp -d "${TMPDIR:-/tmp}/s3sync-bench-revoke.XXXXXX")
cleanup() {
	rm -rf "$W"
	# what an interrupted run left, and curl's objects
	[[ " $STORES " != *" s3 "* ]] || "$HISTGEN" --purge "s3://$BUCKET/$PREFIX" || true
	if [ "$STARTED_RGW" = 1 ]; then "$ROOT/ci/rgw.sh" stop >/dev/null || true; fi
}
trap cleanup EXIT

export S3SYNC_PASSWORD=bench-revoke-password S3SYNC_KDF=interactive
export S3SYNC_CHECKPOINT_TXNS=0 S3SYNC_CHECKPOINT_BYTES=0 # only the checkpoint made here
unset S3SYNC_PASSWORD_FILE S3SYNC_PASSWORD_COMMAND
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.3f", b - a}'; }
log() { echo "bench-revoke: $*" >&2; }

# run VAR CMD...: runs an s3sync command with --json, sets VAR_T (s), VAR_REQ, VAR_UP, VAR_DOWN
run() {
	local var=$1 t0 j
	shift
	t0=$(now)
	j=$("$@")
	printf -v "${var}_T" %s "$(since "$t0")"
	printf -v "${var}_REQ" %s "$(jq .requests <<<"$j")"
	printf -v "${var}_UP" %s "$(jq .bytes_up <<<"$j")"
	printf -v "${var}_DOWN" %s "$(jq .bytes_down <<<"$j")"
}

# written BEFORE AFTER: what appeared (SIZE KEY lines) and how many keys went
written() {
	join -v2 -j2 <(sort -k2 "$1") <(sort -k2 "$2") | awk '{print $2, $1}' >"$W/new"
	GONE=$(join -v1 -j2 <(sort -k2 "$1") <(sort -k2 "$2") | wc -l)
	EPOCH_BYTES=$(awk '$2 ~ /^epochs\// {s += $1} END {print s + 0}' "$W/new")
	LOG_BYTES=$(awk '$2 ~ /^log\// {s += $1} END {print s + 0}' "$W/new")
	KEY_BYTES=$(awk '$2 ~ /^keys\// {s += $1} END {print s + 0}' "$W/new")
	NEW_N=$(wc -l <"$W/new")
	NEW_BYTES=$(awk '{s += $1} END {print s + 0}' "$W/new")
}

# curl_put BYTES: one signed PUT of BYTES random bytes to RGW; sets CURL_T
curl_put() {
	head -c "$1" /dev/urandom >"$W/blob"
	local t0
	t0=$(now)
	curl -sS --fail --aws-sigv4 "aws:amz:${AWS_REGION:-us-east-1}:s3" \
		--user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' -T "$W/blob" -o /dev/null \
		"$AWS_ENDPOINT_URL/$BUCKET/$PREFIX/curl-$1"
	CURL_T=$(since "$t0")
}

ROWS=$W/rows DEFAULT_ROWS=$W/default-rows
: >"$ROWS"
: >"$DEFAULT_ROWS"

# seed H: a repository of H transactions and a checkpoint, on file://, with
# device A's folder: each repository below starts as a copy of it (objects
# and A's .s3sync/), as making H transactions costs minutes on RGW (a 45 ms
# stall on each small answer over a kept-alive connection, see "Sync
# engine vs rclone crypt" in docs/BENCHMARKS.md) and each revocation
# changes its repository for good.
seed() {
	local t0
	log "making $1 transactions (histgen, file://)"
	"$S3SYNC" -q --device A init "file://$W/seed-$1-store" "$W/seed-$1-A" >/dev/null
	t0=$(now)
	"$HISTGEN" "$W/seed-$1-A" "$1" >/dev/null
	log "$1 transactions in $(since "$t0") s"
	"$S3SYNC" -q -C "$W/seed-$1-A" checkpoint
}

# repo KIND N H: one repository, one revocation, one row of the report
repo() {
	local kind=$1 n=$2 h=$3 tag="$1-n$2-h$3" store A B R t0 enroll_t
	case $kind in
	file) store=file://$W/$tag-store ;;
	s3) store=s3://$BUCKET/$PREFIX/$tag ;;
	esac
	A=$W/$tag-1 B=$W/$tag-2 R=$W/$tag-$n
	[ -d "$W/seed-$h-A" ] || seed "$h"
	t0=$(now)
	case $kind in
	file) cp -a "$W/seed-$h-store" "${store#file://}" ;;
	s3) aws s3 sync --quiet --exclude '.s3store-tmp/*' "$W/seed-$h-store/" "$store/" ;;
	esac
	cp -a "$W/seed-$h-A" "$A"
	sed -i "s|^store = .*|store = $store|" "$A/.s3sync/config"
	log "$tag: history copied in $(since "$t0") s; enrolling devices 2..$n"
	t0=$(now)
	for i in $(seq 2 "$n"); do
		"$S3SYNC" -q --device "$tag-$i" init "$store" "$W/$tag-$i" >/dev/null
		echo "device $i" >"$W/$tag-$i/device-$i.txt"
		"$S3SYNC" -q -C "$W/$tag-$i" sync
	done
	enroll_t=$(since "$t0")
	"$S3SYNC" -q -C "$A" pull
	"$S3SYNC" -q -C "$B" pull
	local enrolled
	enrolled=$("$S3SYNC" -C "$A" --json device list | jq '[.devices[] | select(.revoked == 0)] | length')
	[ "$enrolled" = "$n" ] || { log "$tag: $enrolled devices enrolled, not $n"; exit 1; }
	log "$tag: $n devices enrolled in $enroll_t s; measuring"

	echo "a normal transaction" >"$A/reference.txt"
	run PUSH "$S3SYNC" -C "$A" --json push
	run PULL0 "$S3SYNC" -C "$B" --json pull
	"$HISTGEN" --list "$store" >"$W/before"
	run REV env S3SYNC_PASSWORD=bench-revoke-new "$S3SYNC" -C "$A" --json device revoke "$tag-$n"
	"$HISTGEN" --list "$store" >"$W/after"
	written "$W/before" "$W/after"
	local pull_col="- (no device left but A)"
	if [ "$n" -gt 2 ]; then
		run PULL "$S3SYNC" -C "$B" --json pull
		[ "$(stat -c %s "$B/.s3sync/epochs")" = 44 ] || { log "$tag: B did not learn the epoch"; exit 1; }
		pull_col="${PULL_T} s, $PULL_REQ req, $PULL_DOWN B"
	fi
	if "$S3SYNC" -q -C "$R" pull 2>/dev/null; then
		log "$tag: the revoked device still pulls"
		exit 1
	fi
	run KEY env S3SYNC_PASSWORD=bench-revoke-other "$S3SYNC" -C "$A" --json key add
	local curl_col=-
	if [ "$kind" = s3 ]; then
		curl_put "$NEW_BYTES"
		curl_col="${CURL_T} s"
	fi
	echo "| $kind | $n | $h | ${REV_T} s, $REV_REQ req, $REV_UP B | $GONE | $NEW_N: epochs/1 $EPOCH_BYTES + log $LOG_BYTES + key $KEY_BYTES = $NEW_BYTES B | $pull_col | ${PUSH_T} s, $PUSH_REQ req, $PUSH_UP B | ${PULL0_T} s, $PULL0_REQ req, $PULL0_DOWN B | ${KEY_T} s | $curl_col |" >>"$ROWS"

	if [ "$n" = 10 ] && [ "$h" = "$TXNS" ]; then
		log "$tag: a second revocation with the default KDF limits"
		"$HISTGEN" --list "$store" >"$W/before"
		run DREV env -u S3SYNC_KDF S3SYNC_PASSWORD=bench-revoke-default \
			"$S3SYNC" -C "$A" --json device revoke "$tag-$((n - 1))"
		"$HISTGEN" --list "$store" >"$W/after"
		written "$W/before" "$W/after"
		run DPULL "$S3SYNC" -C "$B" --json pull
		run DKEY env -u S3SYNC_KDF S3SYNC_PASSWORD=bench-revoke-default2 "$S3SYNC" -C "$A" --json key add
		echo "| $kind | 9 (the 10th revoked) | $h | ${DREV_T} s, $DREV_REQ req, $DREV_UP B | $GONE | $NEW_N: epochs/2 $EPOCH_BYTES + log $LOG_BYTES + key $KEY_BYTES = $NEW_BYTES B | ${DPULL_T} s, $DPULL_REQ req, $DPULL_DOWN B | ${DKEY_T} s |" >>"$DEFAULT_ROWS"
	fi
	case $kind in
	file) rm -rf "${W:?}/$tag"-* ;;
	s3) "$HISTGEN" --purge "$store" ;;
	esac
}

T0=$(now)
for kind in $STORES; do
	for n in $NS; do repo "$kind" "$n" "$TXNS"; done
	[ -z "$SHORT" ] || repo "$kind" 10 "$SHORT"
done
TOTAL_T=$(since "$T0")

cat <<EOF
$(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores; S3SYNC_KDF=interactive for every key file of the first table; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); $TOTAL_T s in all.

| store | devices | transactions | \`device revoke\` (time, requests, bytes up of --json) | keys deleted | objects written (listing) | B's pull learning the epoch | reference: \`push\` of a 1-line file | B's pull of it | \`key add\` (Argon2id + LIST + PUT) | curl PUT of as many bytes |
|---|---|---|---|---|---|---|---|---|---|---|
$(cat "$ROWS")
EOF
if [ -s "$DEFAULT_ROWS" ]; then
	cat <<EOF

Default KDF limits (S3SYNC_KDF unset), a second revocation on the 10-device repository:

| store | devices | transactions | \`device revoke\` (time, requests, bytes up of --json) | keys deleted | objects written (listing) | B's pull learning the epoch | \`key add\` (Argon2id + LIST + PUT) |
|---|---|---|---|---|---|---|---|
$(cat "$DEFAULT_ROWS")
EOF
fi

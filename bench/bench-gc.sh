#!/usr/bin/env bash
# bench/bench-gc.sh S3SYNC [S3SYNC...]: a gc of 1014 dead packs on s3://,
# timed and counted in requests, once with each s3sync binary given (an
# older build beside this one, say).
#
# Each run: a repository under a fresh prefix of S3SYNC_TEST_BUCKET with one
# push, two `gc --keep-last 1` (the first writes checkpoints/1, the second
# deletes log/1), then 1014 pack-shaped keys data/<1>-<hex> put straight
# into the bucket (a push's leftovers: no state references them), then the
# timed `gc --keep-last 1`, which deletes exactly those; its --json counts
# (requests_by_class) and wall time (date) are printed. Needs the AWS_*
# environment of a running store (eval "$(ci/rgw.sh env)"), curl (7.75+,
# for --aws-sigv4) and jq. Removes its prefixes at the end.
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 S3SYNC [S3SYNC...]" >&2; exit 2; }
if [ -z "${AWS_ENDPOINT_URL:-}" ] || [ -z "${S3SYNC_TEST_BUCKET:-}" ]; then
	echo "bench-gc: needs a store's environment (ci/rgw.sh env)" >&2
	exit 2
fi
export S3SYNC_PASSWORD=bench-gc-password S3SYNC_KDF=interactive
REGION=${AWS_REGION:-us-east-1}
SIG=(--aws-sigv4 "aws:amz:$REGION:s3" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD"
	--user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY")
URL=$AWS_ENDPOINT_URL/$S3SYNC_TEST_BUCKET
W=$(mktemp -d "${TMPDIR:-/tmp}/bench-gc.XXXXXX")
PREFIXES=()
cleanup() {
	local keys k
	for p in "${PREFIXES[@]}"; do
		mapfile -t keys < <(curl -s "${SIG[@]}" "$URL?list-type=2&prefix=$p%2F" |
			grep -o '<Key>[^<]*</Key>' | sed 's|<Key>\(.*\)</Key>|\1|')
		for k in "${keys[@]}"; do
			curl -s "${SIG[@]}" -X DELETE "$URL/$k" -o /dev/null </dev/null || true
		done
	done
	rm -rf "$W"
}
trap cleanup EXIT

n=0
for bin in "$@"; do
	n=$((n + 1))
	p=bench-gc-$n-$RANDOM$RANDOM
	PREFIXES+=("$p")
	d=$W/folder$n
	mkdir -p "$d"
	echo one >"$d/f.txt"
	"$bin" --json init "s3://$S3SYNC_TEST_BUCKET/$p" "$d" >/dev/null
	"$bin" --json -C "$d" sync >/dev/null
	"$bin" --json -C "$d" gc --keep-last 1 >/dev/null
	"$bin" --json -C "$d" gc --keep-last 1 >/dev/null
	seq 0 1013 | P=$p SIGV="aws:amz:$REGION:s3" URL=$URL xargs -P 8 -I{} sh -c \
		'k=$(printf "data/%020d-%016x" 1 $((0xdead0000 + {})));
		 curl -sf --aws-sigv4 "$SIGV" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" \
		   --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -X PUT --data-binary dead \
		   "$URL/$P/$k" >/dev/null'
	s=$(date +%s.%N)
	"$bin" --json -C "$d" gc --keep-last 1 >"$W/gc.json"
	e=$(date +%s.%N)
	echo "$bin: $(echo "$e - $s" | bc) s $(jq -c '{deleted_objects, requests, requests_by_class}' "$W/gc.json")"
done

#!/usr/bin/env bash
# bench/bench-small-push.sh S3SYNC [S3SYNC...]: the cost of publishing one
# tiny file (issue 16), with each s3sync binary given (an older build beside
# this one, say), against the store of the AWS_* environment
# (eval "$(ci/rgw.sh env)").
#
# Per binary: a repository under a fresh key prefix of S3SYNC_TEST_BUCKET,
# one file pushed first (so the watermark is 1, as in a folder in use), then
# RUNS (default 15) rounds of: write a 2-byte file, `sync --json`; and as
# many of: write a 2-byte file, `push --json`. Prints, per binary and
# command, the median and the fastest wall time (date around the process,
# its start-up included) and the requests by class of the last run; then
# `--help`'s wall time, the process start-up alone (dynamic loading of
# libcurl's 40-odd libraries). Needs jq. Removes its prefixes at the end
# (with bench/histgen --purge from BUILD_DIR, default ./build).
set -euo pipefail

[ $# -ge 1 ] || { echo "usage: $0 S3SYNC [S3SYNC...]" >&2; exit 2; }
if [ -z "${AWS_ENDPOINT_URL:-}" ] || [ -z "${S3SYNC_TEST_BUCKET:-}" ]; then
	echo "bench-small-push: needs a store's environment (ci/rgw.sh env)" >&2
	exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
HISTGEN=${BUILD_DIR:-$ROOT/build}/bench/histgen
RUNS=${RUNS:-15}
export S3SYNC_PASSWORD=bench-small-password S3SYNC_KDF=interactive
W=$(mktemp -d "${TMPDIR:-/tmp}/bench-small-push.XXXXXX")
STORES=()
cleanup() {
	for s in "${STORES[@]}"; do "$HISTGEN" --purge "$s" >/dev/null 2>&1 || true; done
	rm -rf "$W"
}
trap cleanup EXIT
ms() { echo $(((($(date +%s%N) - $1)) / 1000000)); }
stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END{printf "median %d ms, fastest %d ms", a[int((NR+1)/2)], a[1]}'; }

i=0
for bin in "$@"; do
	i=$((i + 1))
	store=s3://$S3SYNC_TEST_BUCKET/bench-small-$(date +%s)-$$-$i
	STORES+=("$store")
	dir=$W/d$i
	mkdir "$dir"
	"$bin" init "$store" "$dir" >/dev/null
	echo first >"$dir/first"
	"$bin" -C "$dir" push >/dev/null
	echo "== $bin"
	for cmd in sync push; do
		t=()
		for r in $(seq 1 "$RUNS"); do
			echo "$r" >"$dir/$cmd-$r"
			t0=$(date +%s%N)
			"$bin" --json -C "$dir" "$cmd" >"$W/json"
			t+=("$(ms "$t0")")
		done
		printf '  %-5s %s; requests %s\n' "$cmd" "$(stats "${t[@]}")" \
			"$(jq -c '[.requests, .requests_by_class]' "$W/json")"
	done
	t=()
	for r in $(seq 1 "$RUNS"); do
		t0=$(date +%s%N)
		"$bin" --help >/dev/null 2>&1 || true
		t+=("$(ms "$t0")")
	done
	printf '  %-5s %s\n' "--help" "$(stats "${t[@]}")"
done

#!/usr/bin/env bash
# bench/strace-join.sh [BUILD_DIR]: the file-system calls of a join, counted.
#
# A tree of BENCH_JOIN_N (10,000) small files of 100 B..16 KiB in
# a0..a9/b0..b9/ (bench/treegen, as bench/bench-sync.sh makes it) is pushed
# to a store, then a second device joins it (s3sync init: join and pull)
# under `strace -f -c -e trace=openat,openat2,close,fsync`, whose table is
# printed with the per-file figures. The store is STORE if set, else a
# file:// store in the scratch folder (its own opens of packs are counted
# too: a few dozen). Needs strace; removes its scratch folder at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
S3SYNC=$BUILD/cli/s3sync
TREEGEN=$BUILD/bench/treegen
N=${BENCH_JOIN_N:-10000}

command -v strace >/dev/null || { echo "strace-join: needs strace" >&2; exit 1; }
cmake --build "$BUILD" -j2 --target s3sync treegen >/dev/null
W=$(mktemp -d "${TMPDIR:-/tmp}/strace-join.XXXXXX")
trap 'rm -rf "$W"' EXIT
export S3SYNC_PASSWORD=strace-join-password S3SYNC_KDF=interactive
STORE=${STORE:-file://$W/store}

"$TREEGEN" tree "$W/src" "$N" 100 16384 0 0 1 >/dev/null
"$S3SYNC" --json init "$STORE" "$W/src" >/dev/null
"$S3SYNC" --json -C "$W/src" sync >/dev/null
strace -f -c -e trace=openat,openat2,close,fsync -o "$W/counts" \
	"$S3SYNC" --json init "$STORE" "$W/dst" >/dev/null
diff -r -x .s3sync "$W/src" "$W/dst" >/dev/null || { echo "strace-join: trees differ" >&2; exit 1; }
cat "$W/counts"
awk -v n="$N" '$NF ~ /^(openat|openat2|close|fsync)$/ { printf "%s: %.2f per file\n", $NF, $4 / n }' \
	"$W/counts"

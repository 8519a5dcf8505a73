#!/usr/bin/env bash
# bench/strace-join.sh [BUILD_DIR]: the file-system calls of a join, counted.
#
# A tree of BENCH_JOIN_N (10,000) small files of 100 B..16 KiB in
# a0..a9/b0..b9/ (bench/treegen, as bench/bench-sync.sh makes it) is pushed
# to a store, then a second device joins it (s3sync init: join and pull)
# under `strace -f -c` (opens, closes, syncs and renames), whose table is
# printed with the per-file figures, after the wall time of the same join
# without strace (a third device, best of BENCH_JOIN_RUNS, 3). The store is
# STORE if set, else a file:// store in the scratch folder (its own opens
# of packs are counted too: a few dozen). Needs strace; removes its scratch folder at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
S3SYNC=${S3SYNC:-$BUILD/cli/s3sync} # another binary (a baseline) to measure: S3SYNC=...
TREEGEN=$BUILD/bench/treegen
N=${BENCH_JOIN_N:-10000}
CALLS=openat,openat2,close,fsync,fdatasync,syncfs,sync_file_range,renameat,renameat2

command -v strace >/dev/null || { echo "strace-join: needs strace" >&2; exit 1; }
targets=(treegen)
[ "$S3SYNC" != "$BUILD/cli/s3sync" ] || targets+=(s3sync)
cmake --build "$BUILD" -j2 --target "${targets[@]}" >/dev/null
W=$(mktemp -d "${TMPDIR:-/tmp}/strace-join.XXXXXX")
trap 'rm -rf "$W"' EXIT
export S3SYNC_PASSWORD=strace-join-password S3SYNC_KDF=interactive
STORE=${STORE:-file://$W/store}

"$TREEGEN" tree "$W/src" "$N" 100 16384 0 0 1 >/dev/null
"$S3SYNC" --json init "$STORE" "$W/src" >/dev/null
"$S3SYNC" --json -C "$W/src" sync >/dev/null
best=
for r in $(seq "${BENCH_JOIN_RUNS:-3}"); do
	rm -rf "$W/timed"
	sync
	t0=$(date +%s.%N)
	"$S3SYNC" --json init "$STORE" "$W/timed" >/dev/null
	t=$(echo "$(date +%s.%N) - $t0" | bc)
	if [ -z "$best" ] || [ "$(echo "$t < $best" | bc)" = 1 ]; then best=$t; fi
done
printf 'join of %d files without strace: %.2f s (best of %d)\n' "$N" "$best" "${BENCH_JOIN_RUNS:-3}"
strace -f -c -e trace=$CALLS -o "$W/counts" \
	"$S3SYNC" --json init "$STORE" "$W/dst" >/dev/null
diff -r -x .s3sync "$W/src" "$W/dst" >/dev/null || { echo "strace-join: trees differ" >&2; exit 1; }
cat "$W/counts"
awk -v n="$N" '$NF ~ /^(openat|openat2|close|fsync|fdatasync|syncfs|sync_file_range|renameat|renameat2)$/ { printf "%s: %.2f per file\n", $NF, $4 / n }' \
	"$W/counts"

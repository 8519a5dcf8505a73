#!/usr/bin/env bash
# bench/bench-padding.sh: what size padding (docs/FORMAT.md "Size padding")
# costs in bytes on bench-sync.sh's tree, object by object.
#
#   bench/bench-padding.sh [BUILD_DIR]        (default BUILD_DIR: ./build)
#
# Builds s3sync, treegen and padcost in BUILD_DIR, writes bench-sync.sh's
# tree (treegen tree ... 10000 files of 100 B..16 KiB, four 64 MiB files,
# seed 1; BENCH_SYNC_NSMALL and BENCH_SYNC_BIGSIZE as there), pushes it with
# `s3sync init` + `sync` into a file:// store (the bytes are the same on any
# store), then edits 100 small files and flips one byte of big-1.bin and
# syncs twice more (bench-sync.sh's steps 3 and 4). padcost then reads every
# object back and prints, beside each kind's padded size, the size the same
# objects have without padding (the reference), as a Markdown table.
# Everything is made under a scratch dir in $TMPDIR and removed at the end.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd)
NSMALL=${BENCH_SYNC_NSMALL:-10000} BIGSIZE=${BENCH_SYNC_BIGSIZE:-$((64 << 20))}
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2 --target s3sync treegen padcost >/dev/null

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-padding.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export S3SYNC_KDF=interactive S3SYNC_PASSWORD=bench-padding
S3SYNC=$BUILD/cli/s3sync TREEGEN=$BUILD/bench/treegen
"$TREEGEN" tree "$WORK/src" "$NSMALL" 100 16384 4 "$BIGSIZE" 1
"$S3SYNC" -q init "file://$WORK/store" "$WORK/src"
"$S3SYNC" -q -C "$WORK/src" sync
"$TREEGEN" flip "$WORK/src/big-1.bin" $((BIGSIZE / 2))
"$S3SYNC" -q -C "$WORK/src" sync
"$TREEGEN" edit "$WORK/src" "$NSMALL" 100 2
"$S3SYNC" -q -C "$WORK/src" sync
echo "Tree: $NSMALL files of 100 B..16 KiB and 4 x $BIGSIZE B (incompressible); three pushes."
echo
"$BUILD/bench/padcost" "file://$WORK/store" "$WORK/src/.s3sync/master.key"

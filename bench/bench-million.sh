#!/usr/bin/env bash
# bench/bench-million.sh: s3sync on a folder of 1,000,000 small files, beside
# `find DIR -printf '%s %T@\n'` of the same tree in the same run (issue 16).
#
#   bench/bench-million.sh [BUILD_DIR]        (default BUILD_DIR: ./build)
#
# Builds s3sync, treegen and histgen in BUILD_DIR (configuring it if new),
# generates the tree with bench/treegen (BENCH_MILLION_N files, default
# 1000000, of 1..256 bytes, pseudo-random, in 1,000 folders a*/b*/c*/ of
# 1,000 files; ~40 s and ~4.5 GB of inodes and blocks), and on each store:
#   file://   a store folder beside the tree
#   s3://     $S3SYNC_TEST_BUCKET/bench-million-*/ when AWS_ENDPOINT_URL is set
#             (eval "$(ci/rgw.sh env)"); otherwise this row is skipped
# runs, timed with date and /usr/bin/time (peak RSS):
#   b  first push:       init (create; its KDF not timed) then `sync --json`
#   a  no-change sync:   3 rounds of find then `sync --json`; the medians
#   c  join:             `init STORE EMPTYDIR` of a second device (join and
#                        pull, the KDF included); its files counted after;
#                        beside it, tar -x of the same tree into an empty
#                        folder and a sync -f (the disk's own pace).
#                        BENCH_MILLION_MKFS=1 (root): each into a freshly
#                        made ext4 on a loop image (12 GB sparse, in $TMPDIR).
#                        Stopped after BENCH_MILLION_JOIN_MAX seconds (300):
#                        the row then says so, with the files written by then
# find runs once untimed first, so both sides read a warm dentry and inode
# cache. Prints progress on stderr and a Markdown table on stdout. Aims
# (issue 16): a at or below find's time and < 64 MiB; b < 20 s and
# < 128 MiB; c < 30 s. Everything the run makes (under $TMPDIR, and the key
# prefix in the bucket, removed with histgen --purge) is removed at the end.
# Needs jq and /usr/bin/time (Debian package "time").
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd)
S3SYNC=$BUILD/cli/s3sync
N=${BENCH_MILLION_N:-1000000}
JOIN_MAX=${BENCH_MILLION_JOIN_MAX:-300} # seconds; a join still running then is stopped

for t in jq /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "bench-million: needs $t" >&2; exit 1; }
done
[ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j2 --target s3sync treegen histgen >/dev/null

W=$(mktemp -d "${TMPDIR:-/tmp}/s3sync-bench-million.XXXXXX")
S3STORE=
cleanup() {
	if mountpoint -q "$W/mnt" 2>/dev/null; then umount "$W/mnt"; fi
	if [ -n "$S3STORE" ]; then "$BUILD/bench/histgen" --purge "$S3STORE" >/dev/null 2>&1 || true; fi
	rm -rf "$W"
}
trap cleanup EXIT
export S3SYNC_PASSWORD=bench-million-password S3SYNC_KDF=interactive
TREE=$W/tree
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.2f", b - a}'; }

# run_s3 ARGS...: s3sync --json ARGS; sets T (s), RSS (MiB), REQ, FILES.
run_s3() {
	local t0
	t0=$(now)
	/usr/bin/time -f %M -o "$W/rss" "$S3SYNC" --json "$@" >"$W/json"
	T=$(since "$t0")
	RSS=$(($(tail -1 "$W/rss") / 1024))
	REQ=$(jq .requests "$W/json") FILES=$(jq .files "$W/json")
}
# run_find: sets FT (s).
run_find() {
	local t0
	t0=$(now)
	find "$TREE" -printf '%s %T@\n' >/dev/null
	FT=$(since "$t0")
}
median3() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
yes_no() { awk -v c="$1" 'BEGIN{print c ? "**yes**" : "no"}'; }

echo "bench-million: generating $N files in $TREE" >&2
t0=$(now)
"$BUILD/bench/treegen" tree "$TREE" "$N" 1 256 0 0 1
echo "bench-million: generated in $(since "$t0") s" >&2
find "$TREE" -printf '%s %T@\n' >/dev/null # warm, untimed

# The tar reference: the same tree, written by tar into an empty folder as the join is.
tar -C "$TREE" -cf "$W/tree.tar" .

# join_fs: J, an empty place for a join (or tar -x): with BENCH_MILLION_MKFS=1
# (root) a freshly made ext4 on a sparse image under $W, as a new device's
# disk would be (ext4 searches past the inodes of a million files just
# deleted on the same file system); else $W itself.
J=$W
join_fs() {
	join_fs_end
	[ "${BENCH_MILLION_MKFS:-0}" = 1 ] || return 0
	truncate -s 12G "$W/fs.img" && mkfs.ext4 -q -F -N 4800000 "$W/fs.img"
	mkdir -p "$W/mnt" && mount -o loop "$W/fs.img" "$W/mnt"
	J=$W/mnt
}
join_fs_end() {
	rm -rf "$J/tarx"
	if [ "$J" != "$W" ]; then umount "$W/mnt" && rm -f "$W/fs.img"; fi
	J=$W
}

ROWS=()
bench_store() { # NAME STORE
	local name=$1 store=$2 ft=() st=() rss=() req i
	rm -rf "$TREE/.s3sync"
	echo "bench-million: $name: first push" >&2
	"$S3SYNC" init "$store" "$TREE" >/dev/null
	run_find
	local fb=$FT
	run_s3 -C "$TREE" sync
	ROWS+=("| $name | b first push | $T | $fb | $(awk -v a="$T" -v b="$fb" 'BEGIN{printf "%.2f", a / b}') | $RSS MiB | $REQ | $FILES | < 20 s, < 128 MiB | $(yes_no "$(awk -v t="$T" -v r="$RSS" 'BEGIN{print t < 20 && r < 128}')") |")
	echo "bench-million: $name: no-change sync, 3 rounds" >&2
	for i in 1 2 3; do
		run_find
		ft+=("$FT")
		run_s3 -C "$TREE" sync
		st+=("$T") rss+=("$RSS")
		req=$REQ
	done
	local sm fm
	sm=$(median3 "${st[@]}") fm=$(median3 "${ft[@]}")
	ROWS+=("| $name | a no-change sync (median of 3: ${st[*]} / ${ft[*]}) | $sm | $fm | $(awk -v a="$sm" -v b="$fm" 'BEGIN{printf "%.2f", a / b}') | $(median3 "${rss[@]}") MiB | $req | 0 | ≤ find, < 64 MiB | $(yes_no "$(awk -v a="$sm" -v b="$fm" -v r="$(median3 "${rss[@]}")" 'BEGIN{print a <= b && r < 64}')") |")
	echo "bench-million: $name: tar -x of the tree into an empty folder, then sync -f" >&2
	join_fs
	t0=$(now)
	mkdir "$J/tarx" && tar -xf "$W/tree.tar" -C "$J/tarx" && sync -f "$J/tarx"
	local tx
	tx=$(since "$t0")
	join_fs
	echo "bench-million: $name: join into an empty folder (at most $JOIN_MAX s)" >&2
	mkdir "$J/join"
	run_find
	local fj=$FT t0 got what
	t0=$(now)
	if timeout "$JOIN_MAX" /usr/bin/time -f %M -o "$W/rss" "$S3SYNC" --json init "$store" "$J/join" >"$W/json"; then
		T=$(since "$t0") RSS=$(($(tail -1 "$W/rss") / 1024)) REQ=$(jq .requests "$W/json") FILES=$(jq .files "$W/json")
		what="c join (init: join + pull"
	else
		T=$(since "$t0") RSS=? REQ=? FILES=?
		what="c join **stopped at $JOIN_MAX s** (init: join + pull"
	fi
	got=$(find "$J/join" -path "$J/join/.s3sync" -prune -o -type f -print | wc -l)
	ROWS+=("| $name | $what; $got files there, $(awk -v g="$got" -v t="$T" 'BEGIN{printf "%.0f", g / t}') a second; tar -x and sync -f: $tx s) | $T | $fj | $(awk -v a="$T" -v b="$fj" 'BEGIN{printf "%.2f", a / b}') | $RSS MiB | $REQ | $FILES | < 30 s | $(yes_no "$(awk -v t="$T" -v g="$got" -v n="$N" 'BEGIN{print t < 30 && g == n}')") |")
	rm -rf "$J/join"
	join_fs_end
}

bench_store "file://" "file://$W/store"
rm -rf "$W/store"
if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
	S3STORE=s3://${S3SYNC_TEST_BUCKET:-s3sync-test}/bench-million-$(date +%s)-$$
	bench_store "s3:// (RGW)" "$S3STORE"
else
	echo "bench-million: AWS_ENDPOINT_URL not set: no s3:// row" >&2
fi

echo "Tree: $N files of 1..256 bytes in a*/b*/c*/ (1,000 leaf folders at 1M) (bench/treegen, seed 1); $(nproc) cores; $(date -u +%Y-%m-%dT%H:%MZ)."
echo
echo "| store | step | s3sync s | find s | ratio | s3sync peak RSS | requests | files | aim | met |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${ROWS[@]}"

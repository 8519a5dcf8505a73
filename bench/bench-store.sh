#!/usr/bin/env bash
# bench/bench-store.sh: s3store beside curl, moving 256 MiB to and from a
# local Ceph RGW (bench/bench-store.c does the work and prints the table).
#
#   bench/bench-store.sh [bench-store options: -r RUNS, -n CURL_SMALL]
#
# Owns a private RGW in BENCH_STORE_RGW_DIR (default /tmp/s3sync-rgw-bench),
# never the tests' one: it starts it with ci/rgw.sh and stops it at the end,
# unless it was already running before. Builds bench-store in ./build
# (cmake) if needed; if that fails (the tree mid-edit), compiles it on its
# own with gcc from bench-store.c and s3store/*.c. Between passes, RGW's garbage collector is run by hand
# (radosgw-admin gc process --include-all) so overwritten objects do not
# fill the RAM-backed store.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

# A state folder of our own: the tests' RGW (S3SYNC_RGW_DIR, perhaps set in
# this shell) is never started, used or stopped here.
export S3SYNC_RGW_DIR=${BENCH_STORE_RGW_DIR:-/tmp/s3sync-rgw-bench}
command -v curl >/dev/null || { echo "bench-store.sh: needs curl" >&2; exit 1; }

# --- build ---------------------------------------------------------------
BIN=$ROOT/build/bench/bench-store
tmp_bin=
build_log=$(mktemp "${TMPDIR:-/tmp}/bench-store-build.XXXXXX")
if { [ -f build/CMakeCache.txt ] || cmake -S . -B build >"$build_log" 2>&1; } &&
	cmake --build build --target bench-store >"$build_log" 2>&1; then
	rm -f "$build_log"
else
	echo "bench-store.sh: cmake build failed (log: $build_log); compiling bench-store alone" >&2
	tmp_bin=${TMPDIR:-/tmp}/bench-store.$$
	BIN=$tmp_bin
	# shellcheck disable=SC2046
	gcc -O2 -g -std=c11 -D_GNU_SOURCE -Is3store -o "$BIN" bench/bench-store.c s3store/*.c \
		$(pkg-config --cflags --libs libcurl libxml-2.0 libsodium)
fi

# --- RGW -----------------------------------------------------------------
was_running=0
if ci/rgw.sh status 2>/dev/null; then was_running=1; fi
cleanup() {
	[ -z "$tmp_bin" ] || rm -f "$tmp_bin"
	[ "$was_running" = 1 ] || ci/rgw.sh stop >/dev/null 2>&1 || true
}
trap cleanup EXIT
eval "$(ci/rgw.sh start)"

reclaim="radosgw-admin -c $(printf %q "$S3SYNC_RGW_DIR/ceph.conf") gc process --include-all >/dev/null 2>&1"

echo "== bench-store: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
	"$(curl --version | head -n1 | cut -d' ' -f1-2), RGW at $AWS_ENDPOINT_URL"
"$BIN" -g "$reclaim" "$@" "$S3SYNC_TEST_BUCKET"

#!/usr/bin/env bash
# ci/test.sh: the one command that runs every test, on a fresh Debian 12
# machine or a developer's: installs dependencies, checks the C sources'
# format (ci/format.sh), builds twice (-Werror; ASan+UBSan), checks core's
# layers (ci/layers.sh), runs the README's ci/demo.sh on the plain build,
# starts a private Ceph RGW, runs ctest on both builds, runs
# each libFuzzer target briefly (ci/fuzz.sh), builds and installs the Debian
# packages (ci/package.sh), and stops RGW even when a test fails. The plain
# build's ctest summary is last. Not here: ci/valgrind.sh (memcheck on the
# integration tests, ~30 min: run before a release; see docs/RELIABILITY.md).
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
jobs=$(nproc 2>/dev/null || echo 2)

ci/deps.sh
# First: a formatting slip fails in a second, not after the builds.
ci/format.sh

build() { # dir, extra cmake args...
  local dir=$1
  shift
  cmake -S "$top" -B "$dir" -DSS_WERROR=ON "$@" >/dev/null
  cmake --build "$dir" -j "$jobs" >/dev/null 2>"$dir.log" || { cat "$dir.log" >&2; return 1; }
}
build build -DCMAKE_BUILD_TYPE=RelWithDebInfo
build build-asan -DCMAKE_BUILD_TYPE=Debug -DSS_SANITIZE=ON
echo "== ci/layers.sh: core's layers, by includes and by calls"
ci/layers.sh build

export S3SYNC_RGW_DIR=${S3SYNC_RGW_DIR:-$top/build/rgw}
trap 'ci/rgw.sh stop >/dev/null 2>&1 || true' EXIT
eval "$(ci/rgw.sh start)"

status=0
echo "== ci/demo.sh, the README's first command (its output only when it fails)"
demo_tmp=$(mktemp -d)
TMPDIR=$demo_tmp ci/demo.sh "$top/build/cli/s3sync" >"$demo_tmp/log" 2>&1 || {
  cat "$demo_tmp/log" >&2
  status=1
}
rm -rf "$demo_tmp"
echo "== ctest under ASan+UBSan"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j "$jobs") || status=1
echo "== fuzz targets, ${S3SYNC_FUZZ_SECONDS:-15} s each"
ci/fuzz.sh "${S3SYNC_FUZZ_SECONDS:-15}" || status=1
echo "== Debian packages: build, install, run"
S3SYNC_PACKAGE_INSTALL=1 ci/package.sh || status=1
echo "== ctest (with the 200 MiB file test)"
(cd build && S3SYNC_TEST_BIG=1 ctest --output-on-failure -j "$jobs") || status=1
exit $status

#!/usr/bin/env bash
# ci/valgrind.sh: the s3sync binary under valgrind memcheck, driven by the
# integration tests. Every s3sync the tests start runs through a wrapper
# (S3SYNC_TEST_BIN, honoured by tests/cli-fixture.c; test-cli.sh takes the
# binary as its argument) that logs each process to its own file. Clean
# means: no memcheck error and no definite or indirect leak in any process.
#
# Subset (representative, ~40 min on 2 cores): test-cli.sh (passphrase
# sources, ignore rules, status, the folder lock), test-history on file://
# (log, verify, restore, tampered objects), test-sync on file:// (devices,
# conflicts, concurrent syncs, every crash point, tampering, failures) and
# test-malicious on file:// (forged transactions refused), test-devices on
# file:// (signed transactions: device list, revoke, forged, impersonated
# and revoked signers) and test-checkpoint on file:// (checkpoint, join
# from it, gc, restore by time, the 1,000-transaction join). The s3:// groups
# are left out: the same engine code, plus libcurl under valgrind's ~30x
# slowdown. The KDF runs at S3SYNC_KDF=interactive as in every test.
#
# Usage: ci/valgrind.sh [BUILD_DIR] [TEST...]   (default build-valgrind;
#        tests: cli history sync malicious devices checkpoint). Not run by ci/test.sh: it
#        alone takes longer than the whole CI budget allows (see
#        docs/RELIABILITY.md); run it before a release.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
build=${1:-build-valgrind}
shift || true
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(cli history sync malicious devices checkpoint)

command -v valgrind >/dev/null || { echo "valgrind: not installed (apt-get install valgrind)" >&2; exit 1; }
cmake -S "$top" -B "$build" -DSS_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" >/dev/null

logs=$(mktemp -d /tmp/ss-valgrind-XXXXXX)
wrapper=$logs/s3sync
cat >"$wrapper" <<EOF
#!/bin/sh
exec valgrind --tool=memcheck --quiet --error-exitcode=99 --leak-check=full \\
  --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \\
  --track-origins=yes --child-silent-after-fork=yes --log-file=$logs/vg.%p.log \\
  "$top/$build/cli/s3sync" "\$@"
EOF
chmod +x "$wrapper"

# Only file:// groups: the C tests pick s3:// only when AWS_ENDPOINT_URL is set.
unset AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3
export S3SYNC_TEST_BIN=$wrapper
status=0
for t in "${tests[@]}"; do
  start=$(date +%s)
  case $t in
  cli) bash tests/test-cli.sh "$wrapper" >"$logs/test-$t.out" 2>&1 || status=1 ;;
  *) "$build/tests/test-$t" >"$logs/test-$t.out" 2>&1 || status=1 ;;
  esac
  echo "== test-$t under memcheck: $(( $(date +%s) - start )) s, $(grep -c . "$logs/test-$t.out") lines of output"
done

runs=$(ls "$logs"/vg.*.log 2>/dev/null | wc -l)
bad=$(grep -l -E "ERROR SUMMARY: [1-9]|definitely lost: [1-9]|indirectly lost: [1-9]" "$logs"/vg.*.log 2>/dev/null || true)
# With --quiet a clean process logs nothing; anything logged is a finding.
noisy=$(find "$logs" -name 'vg.*.log' -size +0 | wc -l)
echo "== memcheck: $runs s3sync processes, $noisy with findings"
if [ -n "$bad" ] || [ "$noisy" -gt 0 ]; then
  find "$logs" -name 'vg.*.log' -size +0 -exec sh -c 'echo "--- $1"; head -60 "$1"' _ {} \;
  status=1
fi
if [ $status -ne 0 ]; then
  echo "valgrind: FAILED (logs and test output kept in $logs)" >&2
  exit 1
fi
rm -rf "$logs"
echo "valgrind: clean"

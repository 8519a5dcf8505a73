#!/usr/bin/env bash
# ci/demo.sh: build s3sync and sync two folders through the embedded file://
# store, showing each command as a newcomer would type it; exits non-zero
# unless the desktop's edit reached the laptop. Leaves its work in a temp
# folder (under $TMPDIR) it names at the end.
# Usage: ci/demo.sh [S3SYNC_BINARY]: with a binary, no dependency install and
# no build (ci/test.sh runs the demo on the binary it built).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ $# -ge 1 ]; then
  s3sync=$(realpath "$1")
else
  ci/deps.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j "$(nproc)" >/dev/null
  s3sync=$PWD/build/cli/s3sync
fi

demo=$(mktemp -d "${TMPDIR:-/tmp}/s3sync-demo.XXXXXX")
cd "$demo"
unset S3SYNC_PASSWORD_FILE S3SYNC_PASSWORD_COMMAND   # they would come before the variable
export S3SYNC_PASSWORD="correct horse battery staple" # a passphrase never goes on the command line
export S3SYNC_KDF=interactive                          # quicker key derivation for a demo

run() {
  printf '\n$ %s\n' "$*"
  "$@"
}
s3sync() { "$s3sync" "$@"; }

mkdir -p laptop/notes
echo "first note" >laptop/notes/todo.txt
head -c 3000000 /dev/urandom >laptop/photo.raw
run s3sync init "file://$demo/store" laptop
run s3sync -C laptop push
run s3sync init "file://$demo/store" desktop
run ls -R desktop
echo "edited on the desktop" >>desktop/notes/todo.txt
run s3sync -C desktop sync
run s3sync -C laptop sync
run cat laptop/notes/todo.txt
grep -qx "edited on the desktop" laptop/notes/todo.txt ||
  { echo "demo: the desktop's edit did not reach the laptop" >&2; exit 1; }
run cmp laptop/photo.raw desktop/photo.raw
printf '\nThe folders are in sync. The store holds only encrypted objects:\n'
run ls -R store
printf '\nDemo files: %s\n' "$demo"

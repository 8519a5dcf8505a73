# cli-lib.sh: what the shell CLI tests share, sourced after `set -euo pipefail`.
# cli_setup NAME BIN PASSPHRASE: $bin (absolute), a work dir $w removed on exit,
# fast key files, the passphrase from the environment only; then check (a
# description and a command that must succeed), exits (a code and a command that
# must exit with it; its stdout and stderr in $w/out and $w/err), cli_done.
cli_setup() {
  bin=$(realpath "$2")
  w=$(mktemp -d "/tmp/ss-$1-XXXXXX")
  trap 'rm -rf "$w"' EXIT
  export S3SYNC_KDF=interactive
  unset S3SYNC_PASSWORD_FILE S3SYNC_PASSWORD_COMMAND
  export S3SYNC_PASSWORD="$3"
  fails=0 passed=0
}
check() {
  local what=$1
  shift
  if "$@"; then echo "ok   $what"; passed=$((passed + 1)); else echo "FAIL $what"; fails=$((fails + 1)); fi
}
exits() {
  local want=$1 got=0
  shift
  "$@" >"$w/out" 2>"$w/err" || got=$?
  [ "$got" = "$want" ] || { echo "  exit $got, wanted $want: $(cat "$w/err")"; return 1; }
}
# S3SYNC_TEST_BUCKET and credentials set, and the aws CLI there: RGW runs.
cli_have_rgw() {
  [ -n "${S3SYNC_TEST_BUCKET:-}" ] && [ -n "${AWS_ACCESS_KEY_ID:-}" ] && command -v aws >/dev/null
}
# cli_part NAME: whether the part NAME of the script runs now: every part unless
# S3SYNC_TEST_PART names one (as fixture_part in cli-fixture.h: tests/CMakeLists.txt runs
# a long script's parts side by side).
cli_part() {
  [ -z "${S3SYNC_TEST_PART:-}" ] || [ "$S3SYNC_TEST_PART" = "$1" ]
}
cli_done() {
  echo "$passed passed, $fails failed"
  # A part that checked nothing: S3SYNC_TEST_PART misspelt, not a pass.
  [ -z "${S3SYNC_TEST_PART:-}" ] || [ $((passed + fails)) -gt 0 ] || {
    echo "no part $S3SYNC_TEST_PART (S3SYNC_TEST_PART)"
    return 1
  }
  [ "$fails" = 0 ]
}

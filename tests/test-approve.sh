#!/usr/bin/env bash
# test-approve: approved enrollment (#15). On a file:// store, and on RGW
# when S3SYNC_TEST_BUCKET and credentials are set: with `device enrollment
# approve`, a new device's push is a request (exit 75, naming its id), its
# files are applied nowhere and `device list` shows the request, until an
# enrolled device runs `device approve`; then its push lands everywhere.
# `device enrollment open` goes back to devices enrolling themselves.
# A request tampered with in the store is refused, naming it.
# Usage: test-approve.sh S3SYNC_BIN
set -euo pipefail
. "$(dirname "$0")/cli-lib.sh"
cli_setup approve "$1" "approve test secret"
requests() { # STORE: how many requests it holds
  case $1 in
  file://*) find "${1#file://}/requests" -type f 2>/dev/null | wc -l ;;
  s3://*) aws s3 ls "$1/requests/" | wc -l ;;
  esac
}

one_store() { # STORE, a name for the checks
  local store=$1 t=$2 A="$w/$2-A" B="$w/$2-B" C="$w/$2-C" id
  "$bin" -q --device "$t-A" init "$store" "$A"
  echo a >"$A/a.txt"
  "$bin" -q -C "$A" sync
  check "$t: enrollment by approval" exits 0 "$bin" -C "$A" device enrollment approve
  check "$t: says so" grep -q "wait for approval" "$w/out"
  check "$t: device list --json says so" bash -c "'$bin' -C '$A' --json device list | grep -q '\"enrollment\":\"approve\"'"

  "$bin" -q --device "$t-B" init "$store" "$B"
  check "$t: B pulled what is there" test -e "$B/a.txt"
  echo b >"$B/b.txt"
  check "$t: B's sync asks for approval (exit 75)" exits 75 "$bin" -C "$B" sync
  check "$t: and names what to run" grep -q "s3sync device approve" "$w/err"
  id=$(sed -n 's/.*device approve \([0-9a-f]*\).*/\1/p' "$w/err")
  check "$t: the id B gives is its own" \
    test -n "$id" -a "$("$bin" -C "$B" --json device list | jq -r .device_id | cut -c1-16)" = "$id"
  check "$t: one request in the store" test "$(requests "$store")" = 1
  check "$t: B asking again leaves one" exits 75 "$bin" -C "$B" sync
  check "$t: (still one)" test "$(requests "$store")" = 1
  check "$t: A syncs" exits 0 "$bin" -C "$A" sync
  check "$t: B's file is applied nowhere" test ! -e "$A/b.txt"
  check "$t: A's device list shows the request" exits 0 "$bin" -C "$A" device list
  check "$t: with B's id and name" grep -q "^$id.*  $t-B$" "$w/out"
  check "$t: an id no request has is refused" exits 1 "$bin" -C "$A" device approve 0000
  check "$t: saying so" grep -q "no enrollment request" "$w/err"
  check "$t: A approves B" exits 0 "$bin" -C "$A" device approve "$id"
  check "$t: and says so" grep -q "approved $t-B" "$w/out"
  check "$t: the request is answered" test "$(requests "$store")" = 0
  check "$t: B's sync now lands" exits 0 "$bin" -C "$B" sync
  check "$t: A gets B's file" exits 0 "$bin" -C "$A" sync
  check "$t: (b.txt)" grep -qx b "$A/b.txt"
  check "$t: B is listed enrolled" bash -c "'$bin' -C '$A' device list | grep -q '$t-B'"

  "$bin" -q --device "$t-C" init "$store" "$C"
  echo c >"$C/c.txt"
  check "$t: C waits too" exits 75 "$bin" -C "$C" sync
  case $store in
  file://*)
    local req
    req=$(find "${store#file://}/requests" -type f | head -1)
    printf '\x01' | dd of="$req" bs=1 seek=60 conv=notrunc status=none
    check "$t: a tampered request is refused" exits 3 "$bin" -C "$A" device list
    check "$t: naming it" grep -q "requests/" "$w/err"
    rm -f "$req"
    ;;
  esac
  check "$t: enrollment open again" exits 0 "$bin" -C "$A" device enrollment open
  check "$t: C enrolls itself now" exits 0 "$bin" -C "$C" sync
  check "$t: A gets C's file" exits 0 "$bin" -C "$A" sync
  check "$t: (c.txt)" grep -qx c "$A/c.txt"
}

one_store "file://$w/store" file
if cli_have_rgw; then
  one_store "s3://$S3SYNC_TEST_BUCKET/approve-$$-$RANDOM" rgw
else
  echo "skip rgw: S3SYNC_TEST_BUCKET, credentials or aws missing"
fi
cli_done

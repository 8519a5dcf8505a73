#!/usr/bin/env bash
# test-revoke: revocation keeps a device out (#15, key epochs). On a file://
# store, and on RGW when S3SYNC_TEST_BUCKET and credentials are set: after
# `device revoke B`, B and a copy of B's .s3sync/ taken before the
# revocation cannot read anything pushed afterwards (exit 1, "revoked", the
# file never appears), while A and C (offline during the revocation) read
# everything and go on writing; `key rotate` begins one more epoch that
# every enrolled device follows; verify passes on the devices that hold the
# epochs. Usage: test-revoke.sh S3SYNC_BIN
set -euo pipefail
. "$(dirname "$0")/cli-lib.sh"
cli_setup revoke "$1" "revoke test secret"
keyfiles() { # STORE: how many key files it holds
  case $1 in
  file://*) find "${1#file://}/keys" -type f | wc -l ;;
  s3://*) aws s3 ls "$1/keys/" | wc -l ;;
  esac
}
retired() { # STORE: how many retired key files it holds
  case $1 in
  file://*) find "${1#file://}/retired" -type f 2>/dev/null | wc -l ;;
  s3://*) aws s3 ls "$1/retired/" | wc -l ;;
  esac
}
has_epoch() { # STORE, E: the store holds epochs/<E>
  local key
  key=$(printf 'epochs/%010d' "$2")
  case $1 in
  file://*) [ -f "${1#file://}/$key" ] ;;
  s3://*) aws s3 ls "$1/$key" >/dev/null ;;
  esac
}

one_store() { # STORE, a name for the checks
  local store=$1 t=$2 A="$w/$2-A" B="$w/$2-B" C="$w/$2-C" G="$w/$2-G"
  "$bin" -q --device "$t-A" init "$store" "$A"
  "$bin" -q --device "$t-B" init "$store" "$B"
  "$bin" -q --device "$t-C" init "$store" "$C"
  "$bin" -q --device "$t-G" init "$store" "$G" # offline from its first sync to the end
  for d in "$A" "$B" "$C" "$G"; do # each enrolls with its first push
    echo "from $(basename "$d")" >"$d/$(basename "$d").txt"
    "$bin" -q -C "$d" sync
  done
  "$bin" -q -C "$A" sync
  cp -a "$B" "$w/$t-Bcopy" # what a thief took before the revocation

  check "$t: revoke B" exits 0 env S3SYNC_PASSWORD="new after B" "$bin" -C "$A" --json device revoke "$t-B"
  # epochs/1, log/<S>, the new key file, the old one copied to retired/; the old one deleted
  check "$t: --json counts every request it made ($(cat "$w/out"))" \
    test "$(jq .requests_by_class.put "$w/out")" = 4 -a "$(jq .requests_by_class.delete "$w/out")" = 1
  check "$t: epochs/0000000001 is in the store" has_epoch "$store" 1
  echo "after the revocation" >"$A/secret.txt"
  "$bin" -q -C "$A" push

  for thief in "$B" "$w/$t-Bcopy"; do
    check "$t: $(basename "$thief") cannot pull (exit 1)" exits 1 "$bin" -C "$thief" pull
    check "$t: $(basename "$thief") is told it was revoked" grep -q "was revoked" "$w/err"
    check "$t: $(basename "$thief") never gets the new file" test ! -e "$thief/secret.txt"
    check "$t: $(basename "$thief") cannot push either" exits 1 "$bin" -C "$thief" sync
  done

  check "$t: one key file is left, of the new passphrase" test "$(keyfiles "$store")" = 1
  check "$t: the old passphrase no longer joins" exits 1 "$bin" init "$store" "$w/$t-Old"
  check "$t: it says the passphrase was retired at epoch 1" \
    grep -q "passphrase was retired when key epoch 1 began" "$w/err"
  check "$t: the old key file was moved to retired/" test "$(retired "$store")" = 1
  check "$t: a wrong passphrase is still just wrong" exits 1 env S3SYNC_PASSWORD=nonsense \
    "$bin" init "$store" "$w/$t-Wrong"
  check "$t: and says so" grep -q "wrong passphrase" "$w/err"
  check "$t: the new passphrase joins D" exits 0 env S3SYNC_PASSWORD="new after B" \
    "$bin" --device "$t-D" init "$store" "$w/$t-D"
  check "$t: D reads what was written before the revocation" grep -qx "from $t-B" "$w/$t-D/$t-B.txt"
  check "$t: and after it" grep -qx "after the revocation" "$w/$t-D/secret.txt"
  echo "from D" >"$w/$t-D/d.txt"
  check "$t: D writes" exits 0 "$bin" -C "$w/$t-D" sync

  check "$t: C, offline meanwhile, catches up" exits 0 "$bin" -C "$C" pull
  check "$t: C has D's file" grep -qx "from D" "$C/d.txt"
  check "$t: C reads what was written after" grep -qx "after the revocation" "$C/secret.txt"
  check "$t: C keeps the epoch key" test -s "$C/.s3sync/epochs"
  echo "from C in epoch 1" >"$C/c2.txt"
  check "$t: C writes in the new epoch" exits 0 "$bin" -C "$C" sync
  check "$t: A reads it" exits 0 "$bin" -C "$A" sync
  check "$t: A has C's new file" grep -qx "from C in epoch 1" "$A/c2.txt"

  check "$t: key rotate begins epoch 2" exits 0 env S3SYNC_PASSWORD="epoch two pass" \
    "$bin" -C "$C" key rotate
  check "$t: and says so" grep -q "key epoch 2 began" "$w/out"
  check "$t: epochs/0000000002 is in the store" has_epoch "$store" 2
  echo "epoch two" >"$C/e2.txt"
  "$bin" -q -C "$C" push
  check "$t: A follows into epoch 2" exits 0 "$bin" -C "$A" sync
  check "$t: A reads epoch 2's file" grep -qx "epoch two" "$A/e2.txt"
  check "$t: the thief's copy still reads nothing" exits 1 "$bin" -C "$w/$t-Bcopy" pull
  check "$t: the epoch-1 passphrase is retired" exits 1 env S3SYNC_PASSWORD="new after B" \
    "$bin" init "$store" "$w/$t-Old1"
  check "$t: at epoch 2" grep -q "passphrase was retired when key epoch 2 began" "$w/err"
  check "$t: E joins with the epoch-2 passphrase" exits 0 env S3SYNC_PASSWORD="epoch two pass" \
    "$bin" --device "$t-E" init "$store" "$w/$t-E"
  check "$t: E reads epoch 0, 1 and 2" bash -c "grep -qx 'from $t-A' '$w/$t-E/$t-A.txt' &&
    grep -qx 'from C in epoch 1' '$w/$t-E/c2.txt' && grep -qx 'epoch two' '$w/$t-E/e2.txt'"
  check "$t: verify on E" exits 0 "$bin" -C "$w/$t-E" verify
  check "$t: E restores a file as it was in epoch 0" \
    exits 0 "$bin" -C "$w/$t-E" restore "$t-A.txt" --at 1 --to "$w/$t-restored"
  check "$t: with its epoch-0 content" grep -qx "from $t-A" "$w/$t-restored"
  check "$t: the thief's copy cannot restore what came after" \
    exits 1 "$bin" -C "$w/$t-Bcopy" restore secret.txt --to "$w/$t-stolen"
  check "$t: and gets nothing" test ! -e "$w/$t-stolen"
  check "$t: verify on A walks every epoch" exits 0 "$bin" -C "$A" verify

  # G slept through both epochs, and gc took the log it would have read: it
  # starts again from a checkpoint of epoch 2, learning epochs 2 and 1 at once.
  check "$t: a checkpoint in epoch 2" exits 0 "$bin" -C "$A" checkpoint
  check "$t: gc drops the log before it" exits 0 "$bin" -C "$A" gc --keep-days 0
  check "$t: G rebases on it across two epochs" exits 0 "$bin" -C "$G" pull
  check "$t: G reads epoch 2's file" grep -qx "epoch two" "$G/e2.txt"
  check "$t: G keeps both epoch keys" test "$(stat -c %s "$G/.s3sync/epochs")" = 88
  check "$t: the thief's copy cannot rebase either" exits 1 "$bin" -C "$w/$t-Bcopy" pull
  check "$t: verify on C too" exits 0 "$bin" -C "$C" verify
}

# A device whose first transaction is the revocation signs the epoch object
# before it is enrolled: the revoked device still learns only that it was.
# pair NAME: devices NAME-A and NAME-B on file://$w/NAME, B enrolled (it pushed b.txt).
pair() {
  "$bin" -q --device "$1-A" init "file://$w/$1" "$w/$1-A"
  "$bin" -q --device "$1-B" init "file://$w/$1" "$w/$1-B"
  echo b >"$w/$1-B/b.txt"
  "$bin" -q -C "$w/$1-B" sync
}

first_is_revoke() {
  local A="$w/first-A" B="$w/first-B"
  pair first
  check "first: A's first transaction revokes B" exits 0 "$bin" -C "$A" device revoke first-B
  check "first: it says a key epoch began" grep -q "where key epoch 1 began" "$w/out"
  echo a >"$A/a.txt"
  "$bin" -q -C "$A" sync
  check "first: B is refused" exits 1 "$bin" -C "$B" pull
  check "first: and told it was revoked" grep -q "was revoked" "$w/err"
}

# A rotation killed between epochs/<E> and its transaction (E4): another
# device cannot begin that epoch meanwhile, and the same device's next try
# knows the object for its own and finishes.
crashed_rotation() {
  local A="$w/crash-A" B="$w/crash-B"
  pair crash # B enrolls: the epoch is granted to it
  echo a >"$A/a.txt"
  "$bin" -q -C "$A" sync
  "$bin" -q --device crash-N init "file://$w/crash" "$w/crash-N" # N never pushes
  check "crash: rotation killed after its epoch object" \
    exits 137 env S3SYNC_CRASH_AT=epoch.after-object "$bin" -C "$A" key rotate
  check "crash: epochs/0000000001 is there" test -f "$w/crash/epochs/0000000001"
  check "crash: another device cannot begin epoch 1 meanwhile" exits 75 "$bin" -C "$B" key rotate
  check "crash: it says why" grep -q "another device is beginning key epoch 1" "$w/err"
  check "crash: the same device's next try finishes" exits 0 "$bin" -C "$A" key rotate
  check "crash: and says epoch 1 began" grep -q "key epoch 1 began" "$w/out"
  check "crash: no pending key is left" test ! -e "$A/.s3sync/epoch-pending"
  echo after >"$A/after.txt"
  "$bin" -q -C "$A" sync
  check "crash: B follows" exits 0 "$bin" -C "$B" sync
  check "crash: (after.txt)" grep -qx after "$B/after.txt"
  check "crash: N, never enrolled, holds no key of epoch 1" exits 1 "$bin" -C "$w/crash-N" pull
  check "crash: and is told to join again, not that it was revoked" \
    grep -q "had not enrolled.*join again with the current passphrase" "$w/err"
}

one_store "file://$w/store" file
first_is_revoke
crashed_rotation
if cli_have_rgw; then
  one_store "s3://$S3SYNC_TEST_BUCKET/revoke-$$-$RANDOM" rgw
else
  echo "skip rgw: S3SYNC_TEST_BUCKET, credentials or aws missing"
fi
cli_done

#!/usr/bin/env bash
# test-dryrun: push --dry-run and sync --dry-run (#18) on a file:// store,
# and on RGW when S3SYNC_TEST_BUCKET and credentials are set. After local
# edits here and transactions from another device, a dry run counts them
# right (paths and bytes either way, requests estimated), changes nothing
# (the folder's files and .s3sync/state.db hash the same, the store lists
# the same objects), and the real run then does what it said. The same for
# devices that must start from a checkpoint (gc took the log before it).
# Usage: test-dryrun.sh S3SYNC_BIN
set -euo pipefail
bin=$(realpath "$1")
w=$(mktemp -d /tmp/ss-dryrun-XXXXXX)
trap 'rm -rf "$w"' EXIT
export S3SYNC_KDF=interactive
unset S3SYNC_PASSWORD_FILE S3SYNC_PASSWORD_COMMAND
export S3SYNC_PASSWORD="dry run secret"
fails=0 passed=0
check() { # description, then a command that must succeed
  local what=$1
  shift
  if "$@"; then echo "ok   $what"; passed=$((passed + 1)); else echo "FAIL $what"; fails=$((fails + 1)); fi
}
json() { sed -n 's/.*"'"$1"'":\([0-9]*\).*/\1/p'; }
# Every file's bytes and path under DIR (.s3sync/ aside but for state.db), one hash.
folder_hash() { (cd "$1" && find . -path ./.s3sync -prune -o -type f -print0 | sort -z | xargs -0 sha256sum; sha256sum .s3sync/state.db) | sha256sum; }
listing() { # the store's objects (key and size), sorted
  case $1 in
  file://*) (cd "${1#file://}" && find . -type f -printf '%p %s\n' | sort) ;;
  s3://*) aws s3 ls --recursive "$1/" | awk '{print $3, $4}' | sort ;;
  esac
}

one_store() { # STORE, a name for the checks
  local store=$1 tag=$2 A="$w/$2-A" B="$w/$2-B" out before after lbefore lafter
  "$bin" -q init "$store" "$A"
  "$bin" -q init "$store" "$B"
  mkdir -p "$A/docs"
  echo one >"$A/docs/one.txt"
  head -c 300000 /dev/urandom >"$A/big.bin"
  "$bin" -q -C "$A" push
  "$bin" -q -C "$B" pull
  # Remote: A publishes a new file, an edit and a delete, in two transactions.
  head -c 200000 /dev/urandom >"$A/second.bin"
  "$bin" -q -C "$A" push
  echo more >>"$A/docs/one.txt"
  rm "$A/big.bin"
  "$bin" -q -C "$A" push
  # Local in B: a new file of 12345 bytes and a new folder.
  head -c 12345 /dev/urandom >"$B/mine.bin"
  mkdir "$B/newdir"

  before=$(folder_hash "$B")
  lbefore=$(listing "$store")
  out=$("$bin" -C "$B" sync --dry-run --json)
  check "$tag: sync --dry-run counts the 2 local paths to send" test "$(echo "$out" | json files_up)" -eq 2
  check "$tag: and their 12345 bytes" test "$(echo "$out" | json bytes_up)" -eq 12345
  check "$tag: and the 3 remote ops to receive" test "$(echo "$out" | json files_down)" -eq 3
  check "$tag: and more than the 200000 new bytes down" test "$(echo "$out" | json bytes_down)" -gt 200000
  # LIST the log, GET 2 log objects and 1 pack; LIST (fork check), PUT 1 pack and the log.
  check "$tag: requests estimated: 7" test "$(echo "$out" | json requests_estimated)" -eq 7
  check "$tag: by class" bash -c "echo '$out' | grep -q '\"requests_estimated_by_class\":{\"put\":2,\"get\":3,\"list\":2,'"
  check "$tag: and says it is a dry run" bash -c "echo '$out' | grep -q '\"dry_run\":true'"
  "$bin" -C "$B" push --dry-run >"$w/human" # a pipe: the answer is printed all the same
  check "$tag: push --dry-run in a pipe: human units" grep -q "would send     2 paths, 12.1 KiB" "$w/human"
  check "$tag: push --dry-run receives nothing" grep -q "would receive  0 paths, 0 B" "$w/human"
  check "$tag: and says the requests are an estimate" grep -q "about 3 (an estimate: 2 put, 1 list)" "$w/human"
  after=$(folder_hash "$B")
  lafter=$(listing "$store")
  check "$tag: the folder's files and state.db are unchanged" test "$before" = "$after"
  check "$tag: the store's objects are unchanged" test "$lbefore" = "$lafter"
  check "$tag: nothing arrived" test ! -e "$B/second.bin"

  local dry=$out
  out=$("$bin" -C "$B" sync --json)
  check "$tag: the real sync changes the 5 paths the dry run counted" test "$(echo "$out" | json files)" -eq 5
  # The objects' bytes, as said; over HTTP the LIST responses' XML comes on top.
  local got said
  got=$(echo "$out" | json bytes_down)
  said=$(echo "$dry" | json bytes_down)
  check "$tag: and received the bytes it said" test "$got" -ge "$said" -a "$got" -le $((said + 8192))
  check "$tag: in the requests it estimated" bash -c "echo '$out' | grep -q '\"requests\":7,\"requests_by_class\":{\"put\":2,\"get\":3,\"list\":2,'"
  check "$tag: and sent the new file" test "$(echo "$out" | json bytes_up)" -gt 12345
  check "$tag: the remote changes arrived" bash -c "cmp -s '$A/second.bin' '$B/second.bin' && ! test -e '$B/big.bin' && grep -q more '$B/docs/one.txt'"
  out=$("$bin" -C "$B" sync --dry-run --json)
  check "$tag: afterwards a dry run has nothing to do" test "$(echo "$out" | json files_up)-$(echo "$out" | json files_down)" = 0-0
  check "$tag: but the LIST" test "$(echo "$out" | json requests_estimated)" -eq 1
}

# A device that must start from a checkpoint: B joined before anything was
# pushed (watermark 0), C after the first push (watermark 1); then A wrote a
# checkpoint and gc took the log before it. A dry run plans from the
# checkpoint as pull starts there, changes nothing, and the real run does
# what it said, in the requests it estimated.
from_checkpoint() { # STORE, a name for the checks
  local store=$1 tag=$2 A="$w/$2-cA" B="$w/$2-cB" C="$w/$2-cC" d out real before after lbefore lafter
  "$bin" -q init "$store" "$A"
  "$bin" -q init "$store" "$B"
  echo one >"$A/one.txt"
  head -c 300000 /dev/urandom >"$A/big.bin"
  "$bin" -q -C "$A" push
  "$bin" -q init "$store" "$C"
  echo two >"$A/two.txt"
  "$bin" -q -C "$A" push
  "$bin" -q -C "$A" checkpoint
  echo three >"$A/three.txt"
  "$bin" -q -C "$A" push
  "$bin" -q -C "$A" gc --keep-last 1
  lbefore=$(listing "$store")
  check "$tag: gc took log/1 and log/2 (the test's premise)" \
    bash -c '! echo "$1" | grep -q "log/0000000000000000000[12] "' _ "$lbefore"
  head -c 12345 /dev/urandom >"$B/mine.bin"
  echo c >"$C/c.txt"
  for d in B C; do
    local dir=$B want_down=4 # B: the checkpoint's one, big, two; log/3's three
    # C holds one and big alike already: two, three and B's mine.bin (B synced first)
    [ $d = C ] && dir=$C want_down=3
    before=$(folder_hash "$dir")
    lbefore=$(listing "$store")
    check "$tag: $d: push --dry-run answers" bash -c "'$bin' -C '$dir' push --dry-run >/dev/null"
    # status counts as pull starts: the checkpoint (one) and log/3 (B: and nothing of its own)
    out=$("$bin" -C "$dir" status --json) || out=failed
    check "$tag: $d: status counts the checkpoint and the log after it ($out)" \
      test "$(echo "$out" | json pending_remote)" = $([ $d = B ] && echo 2 || echo 3)
    out=$("$bin" -C "$dir" sync --dry-run --json) || out=failed
    check "$tag: $d: sync --dry-run plans from the checkpoint ($out)" test "$(echo "$out" | json files_down)" = $want_down
    check "$tag: $d: and sends the local path" test "$(echo "$out" | json files_up)" = 1
    after=$(folder_hash "$dir")
    lafter=$(listing "$store")
    check "$tag: $d: the folder's files and state.db are unchanged" test "$before" = "$after"
    check "$tag: $d: the store's objects are unchanged" test "$lbefore" = "$lafter"
    real=$("$bin" -C "$dir" sync --json) || real=failed
    check "$tag: $d: the real sync changes the paths the dry run counted" \
      test "$(echo "$real" | json files)" = $((want_down + 1))
    check "$tag: $d: in the requests it estimated" \
      test "$(echo "$real" | json requests)" = "$(echo "$out" | json requests_estimated)"
    check "$tag: $d: and received about the bytes it said" \
      test "$(echo "$real" | json bytes_down)" -ge "$(echo "$out" | json bytes_down)" -a \
      "$(echo "$real" | json bytes_down)" -le $(($(echo "$out" | json bytes_down) + 8192))
    check "$tag: $d: the remote files arrived" bash -c "cmp -s '$A/big.bin' '$dir/big.bin' && test -e '$dir/three.txt'"
  done
}

# gc --dry-run on a repository without a checkpoint: gc would write one first, and says so.
"$bin" -q init "file://$w/gc-store" "$w/gcA"
echo a >"$w/gcA/a"
"$bin" -q -C "$w/gcA" push
check "gc --dry-run without a checkpoint says gc would write one" \
  bash -c "'$bin' -C '$w/gcA' gc --dry-run --keep-last 1 | grep -q 'gc would write one at the head first'"
check "and writes none" test ! -e "$w/gc-store/checkpoints"

check "--dry-run goes with push, sync and gc only" bash -c "! '$bin' pull --dry-run 2>/dev/null"
# log's refusal named gc alone, as if push and sync had no dry run.
check "log --dry-run says where --dry-run goes" \
  bash -c "! '$bin' log --dry-run 2>'$w/err' && grep -q 'dry-run goes with push, sync and gc' '$w/err'"
one_store "file://$w/store" file
from_checkpoint "file://$w/cp-store" file
if [ -n "${S3SYNC_TEST_BUCKET:-}" ] && [ -n "${AWS_ACCESS_KEY_ID:-}" ] && command -v aws >/dev/null; then
  one_store "s3://$S3SYNC_TEST_BUCKET/dryrun-$$-$RANDOM" rgw
  from_checkpoint "s3://$S3SYNC_TEST_BUCKET/dryrun-cp-$$-$RANDOM" rgw
else
  echo "skip RGW checks: no S3SYNC_TEST_BUCKET, credentials or aws"
fi

echo "$passed passed, $fails failed"
[ "$fails" -eq 0 ]

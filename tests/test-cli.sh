#!/usr/bin/env bash
# test-cli: what a user meets at the command line, on a file:// store:
# .s3syncignore, special files skipped with a warning, status, every
# passphrase source, a command run in a subfolder (the folder found upward),
# a .s3sync/ inside a synced folder never adopted nor synced, init --device
# checked, the conflict warning, and two commands at once on one folder (the lock).
# Usage: test-cli.sh S3SYNC_BIN
set -euo pipefail
bin=$(realpath "$1") # the subfolder test runs it from elsewhere
w=$(mktemp -d /tmp/ss-cli-XXXXXX)
trap 'rm -rf "$w"' EXIT
export S3SYNC_KDF=interactive
unset S3SYNC_PASSWORD S3SYNC_PASSWORD_FILE S3SYNC_PASSWORD_COMMAND
fails=0
check() { # description, then a command that must succeed
  local what=$1
  shift
  if "$@"; then echo "ok   $what"; else echo "FAIL $what"; fails=$((fails + 1)); fi
}
json() { sed -n 's/.*"'"$1"'":\([0-9]*\).*/\1/p'; }

# Passphrase sources: a file, a command, the variable; a wrong one refuses.
printf 'secret one\n' >"$w/pass"
check "init with --password-file" "$bin" -q init "file://$w/store" "$w/A" --password-file "$w/pass"
check "join with S3SYNC_PASSWORD_COMMAND" env S3SYNC_PASSWORD_COMMAND="cat $w/pass" "$bin" -q init "file://$w/store" "$w/B"
check "join with S3SYNC_PASSWORD_FILE" env S3SYNC_PASSWORD_FILE="$w/pass" "$bin" -q init "file://$w/store" "$w/F" </dev/null
check "a wrong passphrase exits 1" bash -c "env S3SYNC_PASSWORD_COMMAND='echo nope' '$bin' -q init 'file://$w/store' '$w/C' 2>/dev/null; test \$? -eq 1"
check "a failing passphrase command exits 1" bash -c "env S3SYNC_PASSWORD_COMMAND=false '$bin' -q init 'file://$w/store' '$w/D' 2>/dev/null; test \$? -eq 1"
check "no passphrase and no terminal exits 1" bash -c "'$bin' -q init 'file://$w/store' '$w/E' </dev/null 2>/dev/null; test \$? -eq 1"
check "nothing was made for the refused joins" bash -c "! test -e '$w/C/.s3sync' && ! test -e '$w/D/.s3sync' && ! test -e '$w/E/.s3sync'"

# .s3syncignore and special files.
printf '*.tmp\nbuild/\n!keep.tmp\n' >"$w/A/.s3syncignore"
mkdir -p "$w/A/build" "$w/A/src"
echo a >"$w/A/src/a.c"
echo x >"$w/A/x.tmp"
echo k >"$w/A/keep.tmp"
echo o >"$w/A/build/out.o"
mkfifo "$w/A/pipe"
"$bin" -C "$w/A" push 2>"$w/warn"
check "a fifo is skipped with a warning" grep -q "skipping pipe" "$w/warn"
"$bin" -C "$w/B" pull 2>/dev/null
check "ignored files stay local" bash -c "! test -e '$w/B/x.tmp' && ! test -e '$w/B/build'"
check "the rest arrives, negation included" bash -c "test -f '$w/B/src/a.c' && test -f '$w/B/keep.tmp' && test -f '$w/B/.s3syncignore' && ! test -e '$w/B/pipe'"

# status: changed nothing, counts both ways.
echo new >"$w/B/new.txt"
"$bin" -C "$w/A" push >/dev/null 2>&1
echo edit >>"$w/A/src/a.c"
"$bin" -C "$w/A" push >/dev/null 2>&1
out=$("$bin" -C "$w/B" status --json)
check "status counts the local new file, and it alone" test "$(echo "$out" | json pending_local)" -eq 1
check "status counts the remote transaction" test "$(echo "$out" | json pending_remote)" -eq 1
check "status changed nothing" bash -c "! grep -q edit '$w/B/src/a.c'"

# Without -C, the folder is the one holding the current directory, found upward.
echo sub >"$w/B/src/from-sub.txt"
check "sync in a subfolder without -C succeeds" bash -c "cd '$w/B/src' && '$bin' sync >/dev/null 2>&1"
"$bin" -C "$w/A" sync >/dev/null 2>&1
check "and synced the folder above" test -f "$w/A/src/from-sub.txt"
check "and makes no folder of the subfolder" test ! -e "$w/B/src/.s3sync"

# A .s3sync/ below a synced folder's root (another repository's, as an older
# s3sync applied from a hostile device's sub/.s3sync/...) is never adopted:
# not from the subfolder, not by init, and B's push never syncs it.
"$bin" -q init "file://$w/evil" "$w/X" --password-file "$w/pass"
cp -a "$w/X/.s3sync" "$w/B/src/.s3sync"
echo "B's secret" >"$w/B/src/secret.txt"
check "a command in the subfolder refuses the nested .s3sync" bash -c "cd '$w/B/src' && ! '$bin' sync >/dev/null 2>'$w/nested' && grep -q 'lies inside the synced folder' '$w/nested'"
check "and said so in one line" test "$(wc -l <"$w/nested")" -eq 1
check "and sent nothing to the other repository" bash -c "! ls '$w/evil/log' 2>/dev/null | grep -q ."
check "-C naming the subfolder refuses it too" bash -c "! '$bin' -C '$w/B/src' status >/dev/null 2>&1"
check "init inside a synced folder is refused" bash -c "! '$bin' -q init 'file://$w/evil2' '$w/B/src/inner' --password-file '$w/pass' 2>/dev/null && ! test -e '$w/B/src/inner/.s3sync'"
"$bin" -C "$w/B" push 2>"$w/warn"
check "B's push skips the nested control folder, with a warning" grep -q "skipping src/.s3sync" "$w/warn"
"$bin" -C "$w/A" pull 2>/dev/null
check "so no other device gets it" bash -c "test -f '$w/A/src/secret.txt' && ! test -e '$w/A/src/.s3sync'"
rm -rf "$w/B/src/.s3sync"

# init --device is held to what config set device takes: no control characters, no '/'.
check "init --device with an escape sequence is refused" bash -c "! '$bin' -q --device \$'ev\\x1b[8mil' init 'file://$w/store' '$w/G' --password-file '$w/pass' 2>/dev/null && ! test -e '$w/G/.s3sync'"
check "init --device with a C1 control (U+009B) is refused" bash -c "! '$bin' -q --device \$'ev\\xc2\\x9bil' init 'file://$w/store' '$w/G' --password-file '$w/pass' 2>/dev/null && ! test -e '$w/G/.s3sync'"
check "init --device that is not UTF-8 is refused" bash -c "! '$bin' -q --device \$'ev\\xffil' init 'file://$w/store' '$w/G' --password-file '$w/pass' 2>/dev/null && ! test -e '$w/G/.s3sync'"
check "init --device with a '/' is refused" bash -c "! '$bin' -q --device 'a/b' init 'file://$w/store' '$w/G' --password-file '$w/pass' 2>/dev/null && ! test -e '$w/G/.s3sync'"

# A conflict is told on stderr, even without a terminal, naming both paths.
echo "A's side" >"$w/A/both.txt"
echo "B's side" >"$w/B/both.txt"
"$bin" -C "$w/A" sync >/dev/null 2>&1
check "a sync that makes a conflict copy succeeds" bash -c "'$bin' -C '$w/B' sync >/dev/null 2>'$w/conflict'"
check "the conflict warning names the path and its copy" \
  grep -Eqx 's3sync: conflict: both\.txt changed here and on another device; the local version is kept as both\.sync-conflict-[0-9]{8}-[0-9]{6}-[^/]+\.txt' "$w/conflict"
check "and is the only line" test "$(wc -l <"$w/conflict")" -eq 1

# Two commands at once on one folder: the second waits for the lock.
for i in 1 2 3 4; do echo "$i" >"$w/A/f$i"; done
"$bin" -C "$w/A" sync >/dev/null 2>&1 &
p1=$!
"$bin" -C "$w/A" sync >/dev/null 2>&1 &
p2=$!
r1=0 r2=0
wait $p1 || r1=$?
wait $p2 || r2=$?
check "two syncs on one folder both succeed" test "$r1$r2" = 00
"$bin" -C "$w/B" sync >/dev/null 2>&1
"$bin" -C "$w/A" sync >/dev/null 2>&1
check "and the other device has everything" bash -c "test -f '$w/B/f4' && grep -q edit '$w/B/src/a.c' && test -f '$w/A/new.txt'"

# Queries answer in a pipe, and only with their answer; summaries in human units.
out=$("$bin" -C "$w/A" status | cat)
check "status answers in a pipe" grep -q "^at sequence [0-9]*; " <<<"$out"
out=$("$bin" -C "$w/A" key list | cat)
check "key list prints its keys and no sync summary" bash -c "! grep -q 'paths changed' <<<'$out' && grep -Eq '^[0-9a-f]{16}' <<<'$out'"
out=$("$bin" -C "$w/A" device list 2>&1 | cat)
check "device list prints no sync summary" bash -c "grep -q '^ID ' <<<'$out' && ! grep -q 'paths changed' <<<'$out'"
"$bin" -v -C "$w/A" key list >"$w/kl.out" 2>"$w/kl.err"
check "-v adds the request count on stderr, the answer stays clean" bash -c "grep -Eq '^s3sync key: [0-9]+ requests?, ' '$w/kl.err' && ! grep -q request '$w/kl.out'"

# Key labels: which key is whose. init's first key and key add's default carry the device
# name; --label names one; a key file written before labels lists as "(no label)".
printf 'work pass\n' >"$w/pass2"
dev=$(hostname | tr './ ' '---')
out=$("$bin" -C "$w/A" key add --label "work laptop" --password-file "$w/pass2")
kid=$(sed -n 's/^added key \([0-9a-f]\{16\}\)$/\1/p' <<<"$out")
check "key add --label adds a key" test -n "$kid"
"$bin" -C "$w/A" key list >"$w/kl2.out"
check "key list: id, local time of creation, label" grep -Eq "^$kid  [0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}  work laptop\$" "$w/kl2.out"
check "init's first key is labelled with the device name" grep -Eq "^[0-9a-f]{16}  [0-9-]{10} [0-9:]{8}  $dev\$" "$w/kl2.out"
"$bin" -C "$w/A" key list --json >"$w/kl2.json"
check "key list --json: id, created (Unix seconds), label" python3 -c "
import json, sys, time
k = {e['id']: e for e in json.load(open('$w/kl2.json'))['keys']}
e = k['$kid']
sys.exit(not (e['label'] == 'work laptop' and abs(e['created'] - time.time()) < 600))"
check "--label goes with key add only (exit 2)" bash -c "'$bin' -C '$w/A' key list --label x 2>/dev/null; test \$? -eq 2"
check "a label with a control character is refused (exit 1)" bash -c "'$bin' -C '$w/A' key add --label \$'a\\tb' --password-file '$w/pass2' 2>/dev/null; test \$? -eq 1"
# A key file without its trailer (the 120 bytes) still lists, and its passphrase joins.
head -c 120 "$w/store/keys/$kid" >"$w/store/keys/00000000000000aa"
"$bin" -C "$w/A" key list >"$w/kl3.out"
check "a key file without trailer lists as (no label)" grep -Eq '^00000000000000aa  -  +\(no label\)$' "$w/kl3.out"
check "and --json gives it created 0, label null" bash -c "'$bin' -C '$w/A' key list --json | grep -q '\"id\":\"00000000000000aa\",\"created\":0,\"label\":null'"
"$bin" -C "$w/A" key remove "$kid"
check "a trailerless key file's passphrase joins" env S3SYNC_PASSWORD="work pass" "$bin" -q init "file://$w/store" "$w/KL1"
# A trailer that does not open: key list refuses naming the key file (exit 3); joining works.
out=$("$bin" -C "$w/A" key add --label relabel-me --password-file "$w/pass2")
kid=$(sed -n 's/^added key \([0-9a-f]\{16\}\)$/\1/p' <<<"$out")
"$bin" -C "$w/A" key remove 00000000000000aa
python3 -c "f = open('$w/store/keys/$kid', 'r+b'); f.seek(300); b = f.read(1); f.seek(300); f.write(bytes([b[0] ^ 1]))"
check "a tampered label: key list exits 3 naming the key file, listing nothing" bash -c "'$bin' -C '$w/A' key list >'$w/kl4.out' 2>'$w/kl4.err'; test \$? -eq 3 && grep -q 'keys/$kid: .*info trailer' '$w/kl4.err' && ! test -s '$w/kl4.out'"
# verify does not read key files, and key list applies nothing: no hint saying either.
check "and sends nobody to verify, nor says nothing was applied" bash -c "! grep -Eq 'verify|applied' '$w/kl4.err'"
check "and its passphrase still joins (the 120 bytes open it)" env S3SYNC_PASSWORD="work pass" "$bin" -q init "file://$w/store" "$w/KL2"
"$bin" -C "$w/A" key remove "$kid"
check "key remove of an id that is not there says where the ids are" \
  bash -c "! '$bin' -C '$w/A' key remove '$kid' 2>'$w/kr.err' && grep -q 'no key file $kid (s3sync key list shows them)' '$w/kr.err'"
"$bin" -v -C "$w/A" sync >/dev/null 2>"$w/sy.err"
check "-v on a sync says the requests in human units" grep -Eq '^s3sync sync: [0-9]+ requests?, [0-9.]+ (B|KiB|MiB) up, ' "$w/sy.err"

# checkpoint: a second one on the same head says it was there, blaming no other device.
"$bin" -C "$w/A" checkpoint >/dev/null
out=$("$bin" -C "$w/A" checkpoint)
check "a second checkpoint says it was there already" bash -c "grep -q 'there already' <<<'$out' && ! grep -q 'another device' <<<'$out'"

# init says what it did, without a terminal too, and counts its requests.
out=$("$bin" init "file://$w/store2" "$w/I1" --password-file "$w/pass")
check "a creating init prints what it made and the fingerprint, in a pipe" bash -c "grep -q '^created a new repository at file://$w/store2' <<<'$out' && grep -Eq '^repository fingerprint: [0-9a-f]{4}(-[0-9a-f]{4}){7}$' <<<'$out'"
check "and does not claim the folder is synced" bash -c "! grep -q 'now synced' <<<'$out'"
check "file:// init leaves no probe/ in the store" test ! -e "$w/store2/probe"
"$bin" doctor "file://$w/store2" >/dev/null
check "file:// doctor's probes leave no probe/ in the store either" test ! -e "$w/store2/probe"
out=$("$bin" init "file://$w/store2" "$w/I2" --password-file "$w/pass")
check "joining an empty repository says nothing was pulled" bash -c "grep -q 'nothing to pull yet' <<<'$out' && grep -q 'repository fingerprint' <<<'$out'"
echo f >"$w/I1/f.txt"
"$bin" -C "$w/I1" push 2>/dev/null
out=$("$bin" init "file://$w/store2" "$w/I3" --password-file "$w/pass")
check "joining with files says it is now synced, and how many" grep -q "I3 is now synced (1 path pulled" <<<"$out"
out=$("$bin" init "file://$w/store3" "$w/I4" --password-file "$w/pass" --json)
check "a creating init counts its requests in --json" test "$(echo "$out" | json requests)" -gt 0
check "-q init prints nothing" test -z "$("$bin" -q init "file://$w/store2" "$w/I5" --password-file "$w/pass")"

# A failed init leaves the folder as it was: no folder init made, no .s3sync/.
check "a wrong passphrase leaves no folder behind" bash -c "! env S3SYNC_PASSWORD=nope '$bin' -q init 'file://$w/store2' '$w/J1' 2>/dev/null && ! test -e '$w/J1'"
mkdir "$w/J2"
check "an existing folder stays, without .s3sync" bash -c "! env S3SYNC_PASSWORD=nope '$bin' -q init 'file://$w/store2' '$w/J2' 2>/dev/null && test -d '$w/J2' && ! test -e '$w/J2/.s3sync'"
fp=$("$bin" -C "$w/I1" key fingerprint)
check "a wrong fingerprint leaves no folder behind" bash -c "! '$bin' -q init 'file://$w/store2' '$w/J3' --password-file '$w/pass' --expect-fingerprint 0000-0000-0000-0000-0000-0000-0000-0000 2>/dev/null && ! test -e '$w/J3'"
check "an unreachable store leaves no folder behind" bash -c "! env AWS_MAX_ATTEMPTS=1 AWS_ACCESS_KEY_ID=k AWS_SECRET_ACCESS_KEY=s '$bin' -q init s3://bucket-x/p '$w/J4' --endpoint http://127.0.0.1:9 --password-file '$w/pass' 2>/dev/null && ! test -e '$w/J4'"
if [ -n "${S3SYNC_TEST_BUCKET:-}" ] && [ -n "${AWS_ACCESS_KEY_ID:-}" ]; then
  nb="ss-missing-$$"
  check "a missing bucket: exit 1, no folder" bash -c "! '$bin' init 's3://$nb/p' '$w/J5' --password-file '$w/pass' 2>'$w/nb.err' && ! test -e '$w/J5'"
  check "and the one line names the bucket and how to create it" bash -c "test \$(wc -l <'$w/nb.err') -eq 1 && grep -q 'bucket $nb does not exist' '$w/nb.err' && grep -q 'aws s3 mb s3://$nb' '$w/nb.err'"
else
  echo "skip missing-bucket checks: no S3SYNC_TEST_BUCKET"
fi

# A TLS store whose certificate is not trusted: the error says how to trust it.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$w/tls.key" -out "$w/tls.crt" -days 1 -subj /CN=127.0.0.1 2>/dev/null
port=$((20000 + $$ % 20000))
openssl s_server -quiet -accept "$port" -cert "$w/tls.crt" -key "$w/tls.key" -www </dev/null >/dev/null 2>&1 &
tls=$!
sleep 0.5
env AWS_MAX_ATTEMPTS=1 AWS_ACCESS_KEY_ID=k AWS_SECRET_ACCESS_KEY=s "$bin" -q init s3://bucket-x/p "$w/J6" --endpoint "https://127.0.0.1:$port" --password-file "$w/pass" 2>"$w/tls.err" || true
kill "$tls" 2>/dev/null || true
check "an untrusted certificate: the error names AWS_CA_BUNDLE" bash -c "grep -q certificate '$w/tls.err' && grep -q AWS_CA_BUNDLE '$w/tls.err' && ! test -e '$w/J6'"

passed=$(( $(grep -c '^ *check "' "$0") - fails ))
echo "$passed passed, $fails failed"
[ "$fails" -eq 0 ]

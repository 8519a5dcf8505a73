#!/usr/bin/env bash
# test-peers: peer assist through the binary (#17, docs/PEERS.md), on a
# file:// store and on RGW when S3SYNC_TEST_BUCKET and credentials are set;
# peers on loopback only. A serves its cache (`s3sync serve`, peer_listen
# 127.0.0.1:0); B, with peers set to A, pulls A's new file from A (bytes_peer
# the file, bytes_down only the listing's worth). A's cache is then altered:
# C gets the next file from the store after A's bytes fail verification, A
# named in a warning, exit 0. A device not enrolled yet is refused by A and
# pulls from the store; a peer that is off, and one of another repository,
# leave the pull as it was. serve refuses a folder with cache_size 0 or
# peer_listen off.
# Usage: test-peers.sh S3SYNC_BIN
set -euo pipefail
. "$(dirname "$0")/cli-lib.sh"
cli_setup peers "$1" "peers secret"
json() { sed -n 's/.*"'"$1"'":\([0-9]*\).*/\1/p'; }
serve_pid="" serving=""
stop_serving() { # and check it ended cleanly (an ASan build reports there)
  [ -z "$serve_pid" ] || kill "$serve_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  [ -z "$serve_pid" ] || check "serve of $(basename "$serving") ended cleanly" \
    bash -c "! grep -q 'Sanitizer\|runtime error' '$serving.serve.err'"
  serve_pid=""
}
trap 'stop_serving; rm -rf "$w"' EXIT

serve() { # DIR [watch [INTERVAL]]: serve it (or watch it) in the background; $port is where
  "$bin" -C "$1" config set peer_listen 127.0.0.1:0
  rm -f "$1.serve.err" # not the last one's port
  "$bin" -C "$1" "${2:-serve}" -v --interval "${3:-1}" >"$1.serve.out" 2>"$1.serve.err" &
  serve_pid=$! serving=$1
  for _ in $(seq 50); do
    port=$(sed -n 's/.*serving peers on 127.0.0.1:\([0-9]*\).*/\1/p' "$1.serve.err")
    [ -n "$port" ] && return 0
    sleep 0.1
  done
  echo "  serve did not start: $(cat "$1.serve.err")"
  return 1
}

one_store() { # STORE, a name for the checks
  local store=$1 tag=$2 A="$w/$2-A" B="$w/$2-B" C="$w/$2-C" E="$w/$2-E" X="$w/$2-X" out
  for d in "$A" "$B" "$C"; do # each enrolled by a push of its own
    "$bin" -q init "$store" "$d"
    echo "$d" >"$d/$(basename "$d").txt"
    "$bin" -q -C "$d" sync
  done
  "$bin" -q -C "$A" sync
  big=3000000
  [ "$tag" = file ] && big=$((200 << 20)) # the issue's 200 MiB, once
  head -c "$big" /dev/urandom >"$A/big.bin"
  "$bin" -q -C "$A" push
  check "$tag: A's push keeps its pack and log object in .s3sync/cache" \
    test "$(find "$A/.s3sync/cache/data" "$A/.s3sync/cache/log" -type f | wc -l)" -ge 2
  serve "$A"

  "$bin" -C "$B" config set peers "127.0.0.1:$port"
  out=$("$bin" -C "$B" --json pull)
  check "$tag: B pulls A's new file from A" cmp -s "$A/big.bin" "$B/big.bin"
  check "$tag: bytes_peer counts it ($(echo "$out" | json bytes_peer))" \
    test "$(echo "$out" | json bytes_peer)" -ge "$big"
  check "$tag: under 1 MiB came from the store ($(echo "$out" | json bytes_down))" \
    test "$(echo "$out" | json bytes_down)" -lt 1048576
  check "$tag: A logged the session and no error" \
    bash -c "grep -q 'served ' '$A.serve.err' && ! grep -q 'error\\|not enrolled' '$A.serve.err'"

  # A's cache altered: what A serves fails verification at C, which reads the store instead.
  head -c 2000000 /dev/urandom >"$A/big2.bin"
  "$bin" -q -C "$A" push
  pack=$(ls -t "$A/.s3sync/cache/data" | head -1)
  printf 'X' | dd of="$A/.s3sync/cache/data/$pack" bs=1 seek=100000 conv=notrunc 2>/dev/null
  "$bin" -C "$C" config set peers "127.0.0.1:$port"
  check "$tag: C pulls past A's altered bytes (exit 0)" exits 0 "$bin" -C "$C" --json pull
  check "$tag: C has the files as A pushed them" \
    bash -c "cmp -s '$A/big.bin' '$C/big.bin' && cmp -s '$A/big2.bin' '$C/big2.bin'"
  check "$tag: C names A's peer as failing verification" grep -q "127.0.0.1:$port left out: what it sent of log/.* failed verification" "$w/err"
  check "$tag: C read big2.bin from the store ($(json bytes_down <"$w/out"))" \
    test "$(json bytes_down <"$w/out")" -ge 2000000

  # A's server killed in the middle of an answer: C finishes from the store.
  stop_serving
  head -c 4000000 /dev/urandom >"$A/cut.bin"
  "$bin" -q -C "$A" push
  S3SYNC_CRASH_AT=peer.mid-answer:3 serve "$A"
  "$bin" -C "$C" config set peers "127.0.0.1:$port"
  check "$tag: C pulls while A's server dies mid-answer (exit 0)" exits 0 "$bin" -C "$C" --json pull
  check "$tag: ... and has the file whole" cmp -s "$A/cut.bin" "$C/cut.bin"
  check "$tag: ... from the store ($(json bytes_down <"$w/out") down)" test "$(json bytes_down <"$w/out")" -ge 4000000
  for _ in $(seq 50); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
  kill "$serve_pid" 2>/dev/null && died=0 || { wait "$serve_pid" 2>/dev/null && died=0 || died=$?; }
  check "$tag: A's server was killed there (status $died)" test "$died" = 137
  serve_pid=""
  serve "$A"

  # E joined but never pushed: not enrolled, so A refuses it, and E pulls from the store.
  "$bin" -q init "$store" "$E"
  "$bin" -C "$E" config set peers "127.0.0.1:$port"
  head -c 500000 /dev/urandom >"$A/e.bin"
  "$bin" -q -C "$A" push
  check "$tag: a device not enrolled pulls from the store" exits 0 "$bin" -C "$E" --json pull
  check "$tag: ... all of it" cmp -s "$A/e.bin" "$E/e.bin"
  check "$tag: ... and got nothing from A" test "$(json bytes_peer <"$w/out")" = 0
  sleep 0.3
  check "$tag: A said it refused a device not enrolled" grep -q "is not enrolled here" "$A.serve.err"
  stop_serving

  # B's watch serves too once peer_listen is set: A gets what B's watch pushed from B.
  serve "$B" watch
  "$bin" -C "$A" config set peers "127.0.0.1:$port"
  head -c 1000000 /dev/urandom >"$B/w.bin"
  for _ in $(seq 100); do
    "$bin" -C "$A" --json pull >"$w/out" 2>"$w/err" || true
    [ -e "$A/w.bin" ] && break
    sleep 0.1
  done
  check "$tag: A gets what B's watch pushed" cmp -s "$B/w.bin" "$A/w.bin"
  check "$tag: ... from B's watch ($(json bytes_peer <"$w/out"))" test "$(json bytes_peer <"$w/out")" -ge 1000000
  stop_serving
  "$bin" -C "$A" config unset peers

  # Heads: A watches, polling only every 60 s; B's push tells A at once, and A pulls it.
  serve "$A" watch 60
  "$bin" -C "$B" config set peers "127.0.0.1:$port"
  sleep 1 # A's first sync is done
  echo "told at once" >"$B/told.txt"
  "$bin" -q -C "$B" push
  for _ in $(seq 50); do [ -e "$A/told.txt" ] && break; sleep 0.1; done
  check "$tag: B's head reaches A's watch, which pulls at once (not in 60 s)" cmp -s "$B/told.txt" "$A/told.txt"
  stop_serving
  # Discovery (file:// run only: one broadcast port at a time), on loopback's broadcast
  # address, which stays on this machine: B, with no peers set, finds A's serve.
  if [ "$tag" = file ]; then
    dport=$((20000 + RANDOM % 20000))
    "$bin" -C "$A" config set peer_discovery "127.255.255.255:$dport"
    "$bin" -C "$B" config set peer_discovery "127.255.255.255:$dport"
    serve "$A"
    head -c 700000 /dev/urandom >"$A/found.bin"
    "$bin" -q -C "$A" push
    check "$tag: B finds A by discovery and pulls from it" exits 0 "$bin" -C "$B" --json pull
    check "$tag: ... ($(json bytes_peer <"$w/out") bytes from A)" test "$(json bytes_peer <"$w/out")" -ge 700000
    check "$tag: ... the file whole" cmp -s "$A/found.bin" "$B/found.bin"
    stop_serving
    "$bin" -C "$A" config unset peer_discovery
    "$bin" -C "$B" config unset peer_discovery
    check "$tag: peer_discovery must be on, off or HOST:PORT" exits 2 "$bin" -C "$B" config set peer_discovery loud
  fi

  # A peer that is off, then one of another repository: the pull is the store's, as without peers.
  echo more >>"$A/a-more.txt"
  "$bin" -q -C "$A" push
  check "$tag: a peer that is off changes nothing" exits 0 "$bin" -C "$B" --json pull
  check "$tag: ... quietly" test ! -s "$w/err"
  "$bin" -q init "file://$w/$tag-other-store" "$X"
  echo x >"$X/x.txt"
  "$bin" -q -C "$X" push
  serve "$X"
  "$bin" -C "$B" config set peers "127.0.0.1:$port"
  echo again >>"$A/a-more.txt"
  "$bin" -q -C "$A" push
  check "$tag: a peer of another repository changes nothing" exits 0 "$bin" -C "$B" --json pull
  check "$tag: ... and B says it does not serve this repository" \
    grep -q "does not serve this repository" "$w/err"
  check "$tag: B has A's last change" cmp -s "$A/a-more.txt" "$B/a-more.txt"
  stop_serving

  # Last, as it leaves B on another store: a store that does not show what B announced: A says so after three polls.
  if [ "$tag" = file ]; then # a copy of the store, which B then writes alone
    cp -a "${store#file://}" "$w/$tag-hiding"
    "$bin" -C "$B" config set store "file://$w/$tag-hiding"
    serve "$A" watch 1
    "$bin" -C "$B" config set peers "127.0.0.1:$port"
    echo "hidden" >"$B/hidden.txt"
    "$bin" -q -C "$B" push
    for _ in $(seq 80); do grep -q withholding "$A.serve.err" && break; sleep 0.1; done
    check "$tag: A reports a store not showing B's signed head" grep -q "announced log/.*the store still does not show it" "$A.serve.err"
    check "$tag: ... and did not get the file" test ! -e "$A/hidden.txt"
    stop_serving
    check "$tag: A's status says what the store withholds" \
      bash -c "S3SYNC_PEER_HEAD_GRACE=0 '$bin' -C '$A' --json status 2>'$w/err' | grep -q '\"withheld\":[1-9]' && grep -q 'withholding' '$w/err'"
    check "$tag: A's verify fails on it (exit 3)" exits 3 env S3SYNC_PEER_HEAD_GRACE=0 "$bin" -C "$A" verify
    check "$tag: ... naming the log object" grep -q "announced log/.*does not show it" "$w/out" "$w/err"
    check "$tag: within the grace, verify passes" exits 0 "$bin" -C "$A" verify
  fi

  "$bin" -C "$X" config set cache_size 0
  check "$tag: serve refuses cache_size 0" exits 1 "$bin" -C "$X" serve
  check "$tag: ... saying why" grep -q "cache_size is 0" "$w/err"
  "$bin" -C "$X" config unset cache_size
  "$bin" -C "$X" config set peer_listen off
  check "$tag: serve refuses peer_listen off" exits 1 "$bin" -C "$X" serve
  check "$tag: peers must be HOST:PORT" exits 2 "$bin" -C "$X" config set peers "nohost"
}

# Parts (cli_part): file, and s3 on RGW.
if cli_part file; then
  one_store "file://$w/store" file
fi
if cli_part s3 && cli_have_rgw; then
  one_store "s3://$S3SYNC_TEST_BUCKET/peers-$$-$RANDOM" s3
elif cli_part s3; then
  echo "skip RGW (S3SYNC_TEST_BUCKET or the aws CLI missing)"
  [ "${S3SYNC_TEST_PART:-}" != s3 ] || exit 77 # the part is all RGW: a skip
fi
# Two serving peers (#17 "several peers at once, each object from one"): B's pull
# gets objects from both A and D (each server's log counts what it sent), the
# pack D lacks from A, and converges; then D's copies of the packs are altered: C's pull names D alone,
# and A and the store finish.
served_bytes() { # SERVE-ERR: the bytes its sessions sent, summed
  sed -n 's/.*served .* (\([0-9]*\) bytes).*/\1/p' "$1" | awk '{s += $1} END {print s + 0}'
}
two_peers() { # STORE, a name for the checks
  local store=$1 tag=$2 A="$w/$2-2A" B="$w/$2-2B" C="$w/$2-2C" D="$w/$2-2D" pa pd pida
  local size=3000000 n=6
  [ "$tag" = file ] && size=6000000
  for d in "$A" "$D" "$B" "$C"; do
    "$bin" -q init "$store" "$d"
    echo "$d" >"$d/$(basename "$d").txt"
    "$bin" -q -C "$d" sync
  done
  "$bin" -q -C "$D" sync # D knows B and C
  for i in $(seq "$n"); do # a log object and a pack each
    head -c "$size" /dev/urandom >"$A/two-$i.bin"
    "$bin" -q -C "$A" push
  done
  rm -rf "$D/.s3sync/cache"
  cp -a "$A/.s3sync/cache" "$D/.s3sync/cache" # D holds what A pushed, as if it had
  rm "$(ls -d "$D"/.s3sync/cache/data/* | head -1)" # but one pack: D asked for it, A is next
  serve "$A"
  pa=$port pida=$serve_pid
  serve "$D"
  pd=$port
  "$bin" -C "$B" config set peers "127.0.0.1:$pa,127.0.0.1:$pd"
  check "$tag: B pulls with two peers (exit 0)" exits 0 "$bin" -C "$B" --json pull
  check "$tag: ... and has every file" \
    bash -c "for i in \$(seq $n); do cmp -s '$A/two-'\$i.bin '$B/two-'\$i.bin || exit 1; done"
  check "$tag: ... from the peers ($(json bytes_peer <"$w/out") bytes)" \
    test "$(json bytes_peer <"$w/out")" -ge $((n * size))
  check "$tag: ... none of it from the store, the pack D lacks too ($(json bytes_down <"$w/out"))" \
    test "$(json bytes_down <"$w/out")" -lt 1048576
  sleep 0.5 # the servers log a session when it ends
  check "$tag: ... A sent some of it ($(served_bytes "$A.serve.err") bytes)" \
    test "$(served_bytes "$A.serve.err")" -ge "$size"
  check "$tag: ... and D sent some of it ($(served_bytes "$D.serve.err") bytes)" \
    test "$(served_bytes "$D.serve.err")" -ge "$size"

  # D's packs altered (A's are not): C names D alone, and finishes from A and the store.
  for f in "$D"/.s3sync/cache/data/*; do
    printf 'X' | dd of="$f" bs=1 seek=1000 conv=notrunc 2>/dev/null
  done
  : >"$A.serve.err.before" && cp "$A.serve.err" "$A.serve.err.before"
  "$bin" -C "$C" config set peers "127.0.0.1:$pd,127.0.0.1:$pa"
  check "$tag: C pulls past D's altered bytes (exit 0)" exits 0 "$bin" -C "$C" --json pull
  check "$tag: ... and has every file" \
    bash -c "for i in \$(seq $n); do cmp -s '$A/two-'\$i.bin '$C/two-'\$i.bin || exit 1; done"
  check "$tag: ... naming D as failing verification" \
    grep -q "127.0.0.1:$pd left out: what it sent of .* failed verification" "$w/err"
  check "$tag: ... and not A" bash -c "! grep -q '127.0.0.1:$pa left out' '$w/err'"
  sleep 0.5
  check "$tag: ... A kept serving C ($(($(served_bytes "$A.serve.err") - $(served_bytes "$A.serve.err.before"))) bytes)" \
    test "$(($(served_bytes "$A.serve.err") - $(served_bytes "$A.serve.err.before")))" -ge "$size"
  kill "$pida" 2>/dev/null || true
  stop_serving
  check "$tag: A's serve ended cleanly" bash -c "! grep -q 'Sanitizer\|runtime error' '$A.serve.err'"
}
if cli_part file; then
  two_peers "file://$w/store2" file
fi
if cli_part s3 && cli_have_rgw; then
  two_peers "s3://$S3SYNC_TEST_BUCKET/peers2-$$-$RANDOM" s3
fi
# status -v and --json list the peers: those of the peers setting contacted now
# (reachable or why not), each with its device, the head it announced here and
# the bytes exchanged over all runs (.s3sync/peers, kept by pull and serve).
peer_field() { # JSON-FILE ADDR-OR-DEVICE FIELD: that peer's field in status --json
  python3 -c 'import json,sys
d=json.load(open(sys.argv[1]))
p=[p for p in d["peers"] if sys.argv[2] in (p["addr"], p["device"])]
print(json.dumps(p[0][sys.argv[3]]) if p else "none")' "$@"
}
status_peers() { # STORE, a name for the checks
  local store=$1 tag=$2 A="$w/$2-3A" B="$w/$2-3B" pa idb
  for d in "$A" "$B"; do
    "$bin" -q init "$store" "$d"
    echo "$d" >"$d/$(basename "$d").txt"
    "$bin" -q -C "$d" sync
  done
  "$bin" -q -C "$A" sync
  head -c 1500000 /dev/urandom >"$A/st.bin"
  "$bin" -q -C "$A" push
  serve "$A"
  pa=$port
  "$bin" -C "$B" config set peers "127.0.0.1:$pa,127.0.0.1:1"
  check "$tag: status -v before any exchange (exit 0)" exits 0 "$bin" -C "$B" -v status
  check "$tag: ... lists A's serve as reachable" grep -q "^peer 127.0.0.1:$pa .*: reachable; .* 0 B received" "$w/out"
  check "$tag: ... and the peer that is off, saying why" grep -q "^peer 127.0.0.1:1 .*not reachable: not reached" "$w/out"
  "$bin" -q -C "$B" pull
  echo "b's" >"$B/b.txt"
  "$bin" -q -C "$B" push # B tells A its head
  idb=$("$bin" -C "$B" --json status | python3 -c 'import json,sys; print(json.load(sys.stdin)["seq"])')
  check "$tag: status --json after B's pull (exit 0)" exits 0 "$bin" -C "$B" --json status
  cp "$w/out" "$w/status-B.json"
  check "$tag: ... A reachable" test "$(peer_field "$w/status-B.json" "127.0.0.1:$pa" reachable)" = true
  check "$tag: ... with what it delivered ($(peer_field "$w/status-B.json" "127.0.0.1:$pa" received))" \
    test "$(peer_field "$w/status-B.json" "127.0.0.1:$pa" received)" -ge 1500000
  check "$tag: ... A's device named" test "$(peer_field "$w/status-B.json" "127.0.0.1:$pa" device)" != '""'
  check "$tag: ... the peer that is off not reachable" \
    test "$(peer_field "$w/status-B.json" "127.0.0.1:1" reachable)" = false
  stop_serving
  sleep 0.2
  check "$tag: A's status --json, A having no peers set (exit 0)" exits 0 "$bin" -C "$A" --json status
  cp "$w/out" "$w/status-A.json"
  check "$tag: ... lists B from its serve's sessions, the bytes served and B's head (seq $idb)" python3 -c '
import json,sys
p=[p for p in json.load(open(sys.argv[1]))["peers"] if p["addr"]==""][0]
sys.exit(0 if p["served"] >= 1500000 and p["head"] == int(sys.argv[2]) else 1)' "$w/status-A.json" "$idb"
  check "$tag: plain status lists no peers" bash -c "! '$bin' -C '$B' status | grep -q '^peer '"
}
if cli_part file; then
  status_peers "file://$w/store3" file
fi
if cli_part s3 && cli_have_rgw; then
  status_peers "s3://$S3SYNC_TEST_BUCKET/peers3-$$-$RANDOM" s3
fi
cli_done

#!/usr/bin/env bash
# test-peer-propagation: the issue's figure for heads (#17, docs/PEERS.md
# "Heads"): a watching B applies A's push within 300 ms of A's push ending,
# median of 20, on loopback, with a 60 s poll interval (so only A's head,
# told over the peer session, can bring it). B watches a file:// store and
# serves on 127.0.0.1; A's peers name B. Each round A pushes one small new
# file; the time from the end of A's push to the file in B's folder is
# measured ($EPOCHREALTIME, no forks in the polling loop). Prints every
# figure and the median; a round not seen within 5 s counts as 5 s.
# Usage: test-peer-propagation.sh S3SYNC_BIN
set -euo pipefail
. "$(dirname "$0")/cli-lib.sh"
cli_setup propagation "$1" "propagation secret"
rounds=20 watch_pid=""
stop() {
  [ -z "$watch_pid" ] || kill "$watch_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap 'stop; rm -rf "$w"' EXIT

A="$w/A" B="$w/B"
for d in "$A" "$B"; do # each enrolled by a push of its own
  "$bin" -q init "file://$w/store" "$d"
  echo "$d" >"$d/$(basename "$d").txt"
  "$bin" -q -C "$d" sync
done
"$bin" -q -C "$A" sync
"$bin" -C "$B" config set peer_listen 127.0.0.1:0
"$bin" -C "$B" watch -v --interval 60 >"$w/watch.out" 2>"$w/watch.err" &
watch_pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*serving peers on 127.0.0.1:\([0-9]*\).*/\1/p' "$w/watch.err")
  [ -n "$port" ] && grep -q 'watch: sync (start)' "$w/watch.err" && break
  sleep 0.1
done
check "B's watch serves and made its first sync" test -n "$port"
"$bin" -C "$A" config set peers "127.0.0.1:$port"

us() { echo "${EPOCHREALTIME/./}"; } # microseconds, no fork
figures=()
for r in $(seq "$rounds"); do
  echo "round $r" >"$A/round-$r.txt"
  "$bin" -q -C "$A" push
  t0=$(us)
  t=$t0
  while [ ! -e "$B/round-$r.txt" ] && [ $((t - t0)) -lt 5000000 ]; do
    sleep 0.002
    t=$(us)
  done
  figures+=("$(((t - t0) / 1000))")
  sleep "0.0$((RANDOM % 10))" # rounds not in step with anything
done
median=$(printf '%s\n' "${figures[@]}" | sort -n |
  awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : int((v[NR/2]+v[NR/2+1])/2)}')
echo "  ms from the end of A's push to the file in B, $rounds rounds: ${figures[*]}"
echo "  median: $median ms"
check "every round reached B ($(printf '%s\n' "${figures[@]}" | sort -n | tail -1) ms the slowest)" \
  test "$(printf '%s\n' "${figures[@]}" | sort -n | tail -1)" -lt 5000
check "B applies A's push within 300 ms, median of $rounds (60 s poll): $median ms" \
  test "$median" -lt 300
check "... because A told B its head: B pulled at once, each time ($(grep -c 'watch: pull (head)' "$w/watch.err") pulls for a head)" \
  test "$(grep -c 'watch: pull (head)' "$w/watch.err")" -ge "$rounds"
stop
watch_pid=""
check "B's watch ended cleanly" bash -c "! grep -q 'Sanitizer\|runtime error' '$w/watch.err'"
cli_done

#!/usr/bin/env bash
# test-peer-net: discovery and IPv6 peers (#17, docs/PEERS.md "Discovery")
# in network namespaces this test makes itself, so no datagram leaves the
# machine and the defaults a user gets (peer_discovery on, port 21470,
# peer_listen [::]:21470) can be used as they are. The test runs in a new
# namespace (unshare -rn); a second one, held by a sleeping process, is
# joined to it by a veth pair (10.77.0.1/24 and fe80::a here, 10.77.0.2/24
# and fe80::b there; no default route, so the limited broadcast
# 255.255.255.255 reaches nobody: the interfaces' own broadcast addresses
# and the IPv6 group must). A serves here; B, C, D, E and X (another
# repository) live there. Checked: A's announcements, over IPv4 and IPv6,
# at start and then every period (S3SYNC_PEER_DISC_EVERY_MS, the tests'
# seam for 30 s); B's watch hears A and pulls from it, X's does not; a pull
# with discovery on finds A; discovery over IPv6 alone; [V6]:PORT peers,
# link-local with a scope and ::1. Without a veth pair (a kernel without
# the module) only the ::1 checks run and the test says SKIP, naming why,
# and exits 77; without a namespace at all it exits 77 at once.
# Usage: test-peer-net.sh S3SYNC_BIN
set -euo pipefail
if [ -z "${SS_PEER_NET_INSIDE:-}" ]; then
  if ! why=$(unshare -rn true 2>&1); then
    echo "SKIP: no network namespace can be made here (unshare -rn: $why)"
    exit 77
  fi
  SS_PEER_NET_INSIDE=1 exec unshare -rn bash "$0" "$@"
fi
. "$(dirname "$0")/cli-lib.sh"
cli_setup peernet "$1" "peer net secret"
json() { sed -n 's/.*"'"$1"'":\([0-9]*\).*/\1/p'; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$w"
}
trap cleanup EXIT
ip link set lo up
unshare -n sleep 600 & # the second namespace, "there", held by a sleeping process
there_pid=$!
pids+=("$there_pid")
there() { nsenter -t "$there_pid" -n "$@"; }
for _ in $(seq 50); do [ "$(readlink /proc/$there_pid/ns/net)" != "$(readlink /proc/self/ns/net)" ] && break; sleep 0.05; done
veth=1
if ! why=$(ip link add va type veth peer name vb netns "$there_pid" 2>&1); then
  veth=0
  echo "SKIP discovery across namespaces: this kernel makes no veth pair (ip link add type veth: $why)"
else
  ip link set va addrgenmode none
  ip addr add 10.77.0.1/24 dev va
  ip addr add fe80::a/64 dev va nodad
  ip link set va up
  there ip link set lo up
  there ip link set vb addrgenmode none
  there ip addr add 10.77.0.2/24 dev vb
  there ip addr add fe80::b/64 dev vb nodad
  there ip link set vb up
fi

# Devices, each enrolled by a push of its own; X of another repository.
for d in A B C D E F; do
  "$bin" -q init "file://$w/store" "$w/$d"
  "$bin" -C "$w/$d" config set device "dev$d"
  echo "$d" >"$w/$d/$d.txt"
  "$bin" -q -C "$w/$d" sync
done
"$bin" -q init "file://$w/other" "$w/X"
echo x >"$w/X/x.txt"
"$bin" -q -C "$w/X" push
"$bin" -q -C "$w/A" sync # A's device table: every device above
for d in A B C X; do "$bin" -C "$w/$d" config set peer_discovery on; done
"$bin" -C "$w/B" config set peer_listen "[::]:21470" # a watch serves only when asked
"$bin" -C "$w/X" config set peer_listen "[::]:21471"

started() { # FILE: wait for "serving peers on" in it
  for _ in $(seq 100); do grep -q 'serving peers on' "$1" && return 0; sleep 0.05; done
  echo "  did not start: $(cat "$1")"
  return 1
}
now() { echo "${EPOCHREALTIME}"; }

if [ "$veth" = 1 ]; then
  # A probe there hears what the network carries to port 21470 for 5 s from
  # when it says it listens (a python started under load can take more than
  # half a second: A's first announcement must not go out before).
  there python3 - "$w/heard" "$w/probe-ready" <<'EOF' &
import socket, struct, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", 21470))
g = socket.inet_pton(socket.AF_INET6, "ff02::5333:5044")
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, g + struct.pack("@I", socket.if_nametoindex("vb")))
open(sys.argv[2], "w").close()
end = time.time() + 5
with open(sys.argv[1], "w") as out:
    while time.time() < end:
        s.settimeout(max(end - time.time(), 0.01))
        try:
            d, a = s.recvfrom(100)
        except socket.timeout:
            break
        if len(d) == 48 and d[:4] == b"S3PD":
            out.write("%.3f %d %s\n" % (time.time(), d[5], a[0]))
            out.flush()
EOF
  probe=$!
  for _ in $(seq 200); do [ -e "$w/probe-ready" ] && break; sleep 0.05; done
  [ -e "$w/probe-ready" ] || { echo "  the probe did not start listening in 10 s"; exit 1; }
  S3SYNC_PEER_DISC_EVERY_MS=1500 "$bin" -C "$w/A" serve -v --interval 60 2>"$w/A.err" &
  pids+=($!)
  started "$w/A.err"
  t_serving=$(now)
  wait "$probe" || true
  echo "  heard there (time, kind, from): $(tr '\n' ';' <"$w/heard")"
  check "A serves on the default [::]:21470" grep -q 'serving peers on \[::\]:21470' "$w/A.err"
  for from in 10.77.0.1 fe80::a; do
    awk -v f="$from" '$2 == 1 && index($3, f) {print $1}' "$w/heard" >"$w/times"
    check "A announced itself over $from at start (first $(head -1 "$w/times") vs serving at $t_serving)" \
      awk -v t="$t_serving" 'NR == 1 {exit !($1 - t < 0.5 && t - $1 < 0.5)} END {if (!NR) exit 1}' "$w/times"
    check "... then every 1.5 s, the seam set ($(wc -l <"$w/times") in 4.5 s)" \
      awk 'NR > 1 {d = $1 - p; if (d < 1.2 || d > 2.2) bad = 1} {p = $1} END {exit bad || NR < 3}' "$w/times"
  done

  # B watches there, serving on its default port; X too (another repository).
  nsenter -t "$there_pid" -n "$bin" -C "$w/B" watch -v --interval 1 >/dev/null 2>"$w/B.err" &
  pids+=($!)
  nsenter -t "$there_pid" -n "$bin" -C "$w/X" watch -v --interval 1 >/dev/null 2>"$w/X.err" &
  pids+=($!)
  started "$w/B.err"
  started "$w/X.err"
  for _ in $(seq 60); do grep -q 'heard a peer' "$w/B.err" && break; sleep 0.1; done
  sleep 3.2 # two more of A's announcements
  check "B's watch hears A's announcement" grep -q 'heard a peer announce itself at \(10.77.0.1\|\[fe80::a%vb\]\):21470' "$w/B.err"
  check "... and takes A once, though A says it over IPv4 and IPv6 ($(grep -c 'heard a peer' "$w/B.err"))" \
    test "$(grep -c 'heard a peer' "$w/B.err")" = 1
  check "A hears B's, announced at B's start" grep -q 'heard a peer announce itself at \(10.77.0.2\|\[fe80::b%va\]\):21470' "$w/A.err"
  check "X's watch, of another repository, takes none of them" bash -c "! grep -q 'heard a peer' '$w/X.err'"
  check "... nor does A take X's" bash -c "! grep -q 'at 10.77.0.2:21471\|at \[fe80::b%va\]:21471' '$w/A.err'"

  head -c 700000 /dev/urandom >"$w/A/heard.bin"
  "$bin" -q -C "$w/A" push
  for _ in $(seq 100); do cmp -s "$w/A/heard.bin" "$w/B/heard.bin" && break; sleep 0.1; done
  check "B's watch pulls A's push" cmp -s "$w/A/heard.bin" "$w/B/heard.bin"
  check "... from A, the peer it heard" grep -q 'served devB at \(10.77.0.2\|fe80::b%va\):' "$w/A.err"

  # C: a one-shot pull with discovery on and no peers set asks the network, and finds A.
  head -c 800000 /dev/urandom >"$w/A/asked.bin"
  "$bin" -q -C "$w/A" push
  check "C's pull, peer_discovery on, finds A over the veth" exits 0 there "$bin" -C "$w/C" --json pull
  check "... and gets the file from it ($(json bytes_peer <"$w/out") bytes)" \
    test "$(json bytes_peer <"$w/out")" -ge 800000
  check "... whole" cmp -s "$w/A/asked.bin" "$w/C/asked.bin"

  # D: discovery over IPv6 alone, the group on vb; A answers from fe80::a, D dials it.
  "$bin" -C "$w/D" config set peer_discovery "[ff02::5333:5044%vb]:21470"
  check "D's pull, discovery on the IPv6 group only, finds A" exits 0 there "$bin" -C "$w/D" --json pull
  check "... and gets the files from it ($(json bytes_peer <"$w/out") bytes)" \
    test "$(json bytes_peer <"$w/out")" -ge 1500000
  check "... over IPv6" grep -q 'served devD at fe80::b%va' "$w/A.err"

  # E: a static peer at A's link-local address, with its scope.
  "$bin" -C "$w/E" config set peers "[fe80::a%vb]:21470"
  check "E pulls from [fe80::a%vb]:21470, its peers setting" exits 0 there "$bin" -C "$w/E" --json pull
  check "... ($(json bytes_peer <"$w/out") bytes from A)" test "$(json bytes_peer <"$w/out")" -ge 1500000

  # X: a pull with discovery on meets only A, of another repository.
  check "X's pull with discovery on gets nothing from A" exits 0 there "$bin" -C "$w/X" --json pull
  check "... ($(json bytes_peer <"$w/out") bytes from peers)" test "$(json bytes_peer <"$w/out")" = 0
else
  "$bin" -C "$w/A" serve -v --interval 60 2>"$w/A.err" &
  pids+=($!)
  started "$w/A.err"
  head -c 1500000 /dev/urandom >"$w/A/asked.bin"
  "$bin" -q -C "$w/A" push
fi

# F, here: a static peer at [::1], which A's dual-stack default listener takes.
"$bin" -C "$w/F" config set peers "[::1]:21470"
check "F pulls from [::1]:21470, its peers setting" exits 0 "$bin" -C "$w/F" --json pull
check "... ($(json bytes_peer <"$w/out") bytes from A)" test "$(json bytes_peer <"$w/out")" -ge 1500000
check "... A served it over IPv6 loopback" grep -q 'served devF at ::1' "$w/A.err"
check "peers takes [V6]:PORT entries only with the brackets" exits 2 "$bin" -C "$w/F" config set peers "::1:21470x"

for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
check "every serve and watch ended cleanly" bash -c "! cat '$w'/*.err | grep -q 'Sanitizer\|runtime error'"
cli_done
[ "$veth" = 1 ] || exit 77

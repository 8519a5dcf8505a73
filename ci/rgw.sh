#!/usr/bin/env bash
# ci/rgw.sh: a one-machine Ceph RGW (S3 endpoint) for s3sync's tests.
#
#   ci/rgw.sh start    start (or reuse) the cluster and its bucket s3sync-test;
#                      stdout: `export` lines only
#   ci/rgw.sh env      print the same `export` lines for a running cluster
#   ci/rgw.sh status   exit 0 if the S3 endpoint answers, non-zero otherwise
#   ci/rgw.sh stop     stop the daemons this script started (idempotent)
#   ci/rgw.sh restart-gateway
#                      stop radosgw alone if it still runs (a test may have
#                      killed it) and start it again on the same port and
#                      state; the mon and the OSD, and so the data, stay.
#                      Every client of this cluster sees the gateway go away
#                      meanwhile: a test that uses it starts a private cluster
#                      (its own S3SYNC_RGW_DIR), never the shared one
#
# Usage: eval "$(ci/rgw.sh start)"  ...tests...  ci/rgw.sh stop
#
# What it owns: the state folder DIR = ${S3SYNC_RGW_DIR:-${TMPDIR:-/tmp}/s3sync-rgw}
# and only that. In it: ceph.conf, keyring, monmap, creds.env (S3 keys, kept
# across rebuilds), port files, mon/ and osd/ data, rgw/, run/ (pid files,
# admin sockets), log/, crash/, and a lock file. Every ceph tool gets
# `-c DIR/ceph.conf`; nothing under /etc/ceph, /var/lib/ceph, /var/run/ceph or
# /var/log/ceph is touched. The daemons (ceph-mon "a", ceph-osd 0 on memstore,
# radosgw "client.rgw.s3sync") run as the current user, in the background, each
# with DIR/ceph.conf on its command line: that is how `stop` finds them, and it
# never kills anything by name alone.
#
# memstore keeps objects in the OSD's RAM: when the OSD dies, the data is gone.
# So `start` reuses a cluster only when it is fully healthy; otherwise it stops
# whatever is left and rebuilds from scratch: about 2 s on the 2-core CI
# machine (RGW creates 4 pools on first start; the short paxos propose
# interval below is what keeps that from taking ~10 s). Set
# S3SYNC_RGW_VERBOSE=1 for progress on stderr.
#
# Needs: ceph-mon ceph-osd radosgw ceph-common (Debian 12: Ceph 16.2), curl,
# python3 (to find free loopback ports), util-linux (flock, setsid).

set -euo pipefail

DIR=${S3SYNC_RGW_DIR:-${TMPDIR:-/tmp}/s3sync-rgw}
case "$DIR" in /*) ;; *) DIR="$PWD/$DIR" ;; esac # daemons chdir to /
DIR=${DIR%/}
CONF="$DIR/ceph.conf"
RGW_NAME=client.rgw.s3sync
RGW_UID=s3sync-test
TEST_BUCKET=s3sync-test # made at start: tests work under random prefixes in it
MEMSTORE_BYTES=${S3SYNC_RGW_MEMSTORE_BYTES:-4294967296} # 4 GiB of RAM at most
START_TIMEOUT=${S3SYNC_RGW_START_TIMEOUT:-120}           # seconds for RGW to answer
STOP_TIMEOUT=${S3SYNC_RGW_STOP_TIMEOUT:-15}              # seconds before SIGKILL
VERBOSE=${S3SYNC_RGW_VERBOSE:-0}
# What a rebuild removes (creds.env and lock survive).
STATE_ITEMS=(ceph.conf keyring monmap mon.port rgw.port user.ok mon osd rgw run log crash)

say() { [ "$VERBOSE" = 1 ] && printf 'rgw.sh: %s\n' "$*" >&2; return 0; }
err() { printf 'rgw.sh: error: %s\n' "$*" >&2; }
die() { err "$*"; exit 1; }

usage() {
	echo "usage: $0 start|stop|env|status|restart-gateway   (state folder: $DIR)" >&2
	exit 2
}

check_dir() {
	case "$DIR" in
	'' | / | /tmp | /etc* | /var/lib/ceph* | /var/run/ceph* | /run/ceph*)
		die "refusing to use '$DIR' as the state folder" ;;
	esac
}

need_tools() {
	local t missing=()
	for t in ceph ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph-authtool curl python3 flock setsid timeout; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (apt-get install --no-install-recommends ceph-mon ceph-osd radosgw ceph-common curl python3)"
}

# --- processes ------------------------------------------------------------

# A pid counts as ours only if it is alive (not a zombie) and its command line
# names our ceph.conf, so a reused pid is never touched.
is_ours() {
	local pid=$1 stat cmd
	read -r stat 2>/dev/null <"/proc/$pid/stat" || return 1
	stat=${stat##*) }
	[ "${stat%% *}" != Z ] || return 1
	cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
	case " $cmd" in
	*" $CONF "*) return 0 ;; # a whole argument, not a suffix of another path
	*) return 1 ;;
	esac
}

# The pid of daemon NAME: its pid file (ceph-mon and ceph-osd write one;
# radosgw run with -f does not) or else the pid launch() recorded; empty if
# neither names a live daemon of ours.
daemon_pid() {
	local f pid
	for f in "$DIR/run/$1.pid" "$DIR/run/$1.launch"; do
		read -r pid 2>/dev/null <"$f" || continue
		case "$pid" in '' | *[!0-9]*) continue ;; esac
		if is_ours "$pid"; then
			echo "$pid"
			return 0
		fi
	done
	return 0
}

daemon_alive() { [ -n "$(daemon_pid "$1")" ]; }

# Every live process of ours, pid files or not (a daemon that died before
# writing one, or stale files after a crash): ceph-mon, ceph-osd or radosgw
# whose command line names our ceph.conf. Never matched by name alone.
our_pids() {
	local p pid comm
	for p in /proc/[0-9]*; do
		pid=${p#/proc/}
		read -r comm 2>/dev/null <"$p/comm" || continue
		case "$comm" in
		ceph-mon | ceph-osd | radosgw) if is_ours "$pid"; then echo "$pid"; fi ;;
		esac
	done
	return 0
}

# --- ports and http -------------------------------------------------------

free_port() { # ceph-common depends on /usr/bin/python3; prefer it to any shim
	local py=/usr/bin/python3
	[ -x "$py" ] || py=python3
	"$py" - <<'EOF'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
EOF
}

rgw_port() { cat "$DIR/rgw.port" 2>/dev/null || true; }

# HTTP status of GET / (000 when nothing answers). Local endpoint only: no
# proxy, and the CA bundle variables do not matter for http.
http_code() {
	env -u CURL_CA_BUNDLE -u SSL_CERT_FILE curl -s --noproxy '*' -o /dev/null \
		-m 5 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null || true
}

rgw_answers() {
	local port code
	port=$(rgw_port)
	[ -n "$port" ] || return 1
	code=$(http_code "$port")
	[ -n "$code" ] && [ "$code" != 000 ]
}

healthy() {
	[ -f "$DIR/user.ok" ] && [ -f "$DIR/creds.env" ] || return 1
	daemon_alive mon.a && daemon_alive osd.0 && daemon_alive "$RGW_NAME" || return 1
	rgw_answers
}

print_env() {
	local port
	port=$(rgw_port)
	# shellcheck disable=SC1091
	. "$DIR/creds.env"
	printf 'export AWS_ACCESS_KEY_ID=%q\n' "$ACCESS_KEY"
	printf 'export AWS_SECRET_ACCESS_KEY=%q\n' "$SECRET_KEY"
	printf 'export AWS_REGION=us-east-1\n'
	printf 'export AWS_ENDPOINT_URL=%q\n' "http://127.0.0.1:$port"
	printf 'export S3SYNC_RGW_DIR=%q\n' "$DIR"
	printf 'export S3SYNC_TEST_BUCKET=%q\n' "$TEST_BUCKET"
}

# --- logs -----------------------------------------------------------------

tail_logs() { # the logs of the names given, to stderr: 30 lines of the first, 10 of the others
	local n f lines=30
	for n in "$@"; do
		for f in "$DIR/log/$n.log" "$DIR/log/$n.out"; do
			[ -s "$f" ] || continue
			printf '%s\n' "--- last lines of $f ---" >&2
			tail -n "$lines" "$f" >&2 || true
		done
		lines=10
	done
}

fail() { # message, then daemon names whose logs to show; stops everything
	err "$1"
	shift
	tail_logs "$@"
	err "state folder kept for inspection: $DIR (logs in $DIR/log)"
	stop_daemons 3
	exit 1
}

# --- stop -----------------------------------------------------------------

now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }

# Send SIGTERM to the pids given, wait up to TIMEOUT seconds for them to go,
# then SIGKILL what is left and wait for it.
term_wait() { # timeout pid...
	local timeout=$1 deadline p left
	shift
	[ $# -gt 0 ] || return 0
	kill -TERM "$@" 2>/dev/null || true
	deadline=$(($(now_ms) + timeout * 1000))
	while :; do
		left=()
		for p in "$@"; do if is_ours "$p"; then left+=("$p"); fi; done
		[ ${#left[@]} -gt 0 ] || return 0
		[ "$(now_ms)" -lt "$deadline" ] || break
		sleep 0.05
	done
	say "SIGKILL after ${timeout}s: ${left[*]}"
	kill -KILL "${left[@]}" 2>/dev/null || true
	set -- "${left[@]}"
	deadline=$(($(now_ms) + 5000))
	while [ "$(now_ms)" -lt "$deadline" ]; do
		left=()
		for p in "$@"; do if is_ours "$p"; then left+=("$p"); fi; done
		[ ${#left[@]} -gt 0 ] || return 0
		sleep 0.05
	done
}

# Stop in order radosgw, osd, mon: radosgw exits in well under a second while
# the osd and mon still answer, but hangs in its shutdown when they are gone.
stop_daemons() { # [timeout]
	local timeout=${1:-$STOP_TIMEOUT} name pid pids
	for name in "$RGW_NAME" osd.0 mon.a; do
		pid=$(daemon_pid "$name")
		[ -z "$pid" ] || { say "stopping $name ($pid)"; term_wait "$timeout" "$pid"; }
	done
	pids=$(our_pids)
	if [ -n "$pids" ]; then
		say "stopping strays: ${pids//$'\n'/ }"
		# shellcheck disable=SC2086
		term_wait "$timeout" $pids
	fi
	pids=$(our_pids)
	[ -z "$pids" ] || die "could not stop pids: ${pids//$'\n'/ }"
	rm -f "$DIR"/run/*.pid "$DIR"/run/*.launch
	return 0
}

# --- build ----------------------------------------------------------------

wipe_state() {
	local i
	for i in "${STATE_ITEMS[@]}"; do
		rm -rf "${DIR:?}/$i"
	done
}

ensure_creds() {
	[ -s "$DIR/creds.env" ] && return 0
	local a s
	a=$(head -c 4096 /dev/urandom | LC_ALL=C tr -dc 'A-Z0-9')
	s=$(head -c 4096 /dev/urandom | LC_ALL=C tr -dc 'A-Za-z0-9')
	if [ ${#a} -lt 20 ] || [ ${#s} -lt 40 ]; then die "could not generate keys"; fi
	(
		umask 077
		printf 'ACCESS_KEY=%s\nSECRET_KEY=%s\n' "${a:0:20}" "${s:0:40}" >"$DIR/creds.env.tmp"
	)
	mv "$DIR/creds.env.tmp" "$DIR/creds.env"
}

write_conf() {
	local fsid=$1 mon_port=$2 rgw_port=$3
	cat >"$CONF" <<EOF
# Written by ci/rgw.sh: a throwaway one-machine cluster for s3sync's tests.
[global]
fsid = $fsid
mon host = [v2:127.0.0.1:$mon_port]
mon initial members = a
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
ms bind ipv4 = true
ms bind msgr1 = false
ms bind msgr2 = true
# auth none cannot do "secure" mode; radosgw asks the mon for secure only
ms mon client mode = crc
ms mon cluster mode = crc
ms mon service mode = crc
ms client mode = crc
ms cluster mode = crc
ms service mode = crc
auth cluster required = none
auth service required = none
auth client required = none
keyring = $DIR/keyring
run dir = $DIR/run
crash dir = $DIR/crash
pid file = $DIR/run/\$name.pid
log file = $DIR/log/\$name.log
log to syslog = false
err to syslog = false
mon cluster log file = $DIR/log/cluster.log
mon cluster log to syslog = false
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
mon data avail warn = 2
mon data avail crit = 1
# propose map changes quickly: each pool RGW creates is a map change
paxos propose interval = 0.1
paxos min wait = 0.01

[mon]
mon data = $DIR/mon/\$cluster-\$id
admin socket = $DIR/run/\$name.asok

[osd]
osd data = $DIR/osd/\$cluster-\$id
admin socket = $DIR/run/\$name.asok
osd objectstore = memstore
memstore device bytes = $MEMSTORE_BYTES
osd crush update on start = false
osd scrub auto repair = false
osd op num shards = 2
osd op num threads per shard = 2

[$RGW_NAME]
# tcp_nodelay: without it beast sends a GET's body only once the headers are
# ACKed, and the client delays that ACK: 40 ms on every GET of a kept-alive
# connection (measured: a 60-byte GET 43 ms, 2 ms with it), which is what
# lockd's bucket state does on every transition.
admin socket = $DIR/run/\$name.asok
rgw data = $DIR/rgw
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
rgw thread pool size = 64
EOF
}

ceph_cli() { timeout 60 ceph -c "$CONF" --connect-timeout 30 "$@"; }

# Run a daemon in the foreground (-f), detached in its own session, its
# stdout/stderr to DIR/log/NAME.out; it writes DIR/run/NAME.pid itself.
launch() { # name, command...
	local name=$1
	shift
	setsid "$@" -f </dev/null >>"$DIR/log/$name.out" 2>&1 9>&- &
	echo $! >"$DIR/run/$name.launch"
}

# name -> 0 if the process launch() started still runs (right after launch its
# command line may not show our ceph.conf yet, so do not use is_ours here).
launched_alive() {
	local pid state
	pid=$(cat "$DIR/run/$1.launch" 2>/dev/null || true)
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
	state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null || true)
	[ "$state" != Z ]
}

build() {
	local t0=$SECONDS fsid mon_port rgw_port uuid osd_id code n
	fsid=$(cat /proc/sys/kernel/random/uuid)
	uuid=$(cat /proc/sys/kernel/random/uuid)
	mon_port=$(free_port)
	rgw_port=$(free_port)
	while [ "$rgw_port" = "$mon_port" ]; do rgw_port=$(free_port); done
	mkdir -p "$DIR"/{mon,osd/ceph-0,rgw,run,log,crash}
	write_conf "$fsid" "$mon_port" "$rgw_port"
	echo "$mon_port" >"$DIR/mon.port"

	say "mon on 127.0.0.1:$mon_port, rgw on 127.0.0.1:$rgw_port"
	ceph-authtool -C "$DIR/keyring" -n mon. --gen-key --cap mon 'allow *' >>"$DIR/log/setup.log" 2>&1 ||
		fail "ceph-authtool failed" setup
	ceph-authtool "$DIR/keyring" -n client.admin --gen-key --cap mon 'allow *' \
		--cap osd 'allow *' --cap mgr 'allow *' >>"$DIR/log/setup.log" 2>&1 ||
		fail "ceph-authtool failed" setup
	monmaptool -c "$CONF" --create --fsid "$fsid" --addv a "[v2:127.0.0.1:$mon_port]" \
		"$DIR/monmap" >>"$DIR/log/setup.log" 2>&1 || fail "monmaptool failed" setup
	ceph-mon -c "$CONF" --mkfs -i a --monmap "$DIR/monmap" --keyring "$DIR/keyring" \
		>>"$DIR/log/setup.log" 2>&1 || fail "ceph-mon --mkfs failed" setup mon.a
	launch mon.a ceph-mon -c "$CONF" -i a
	say "mon started ($((SECONDS - t0))s)"

	osd_id=$(ceph_cli osd create "$uuid" 2>>"$DIR/log/setup.log") ||
		fail "ceph osd create failed (mon not answering?)" setup mon.a
	[ "$osd_id" = 0 ] || fail "ceph osd create gave id '$osd_id', expected 0" setup mon.a
	ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$uuid" >>"$DIR/log/setup.log" 2>&1 ||
		fail "ceph-osd --mkfs failed" setup osd.0
	ceph_cli osd crush add osd.0 1 root=default host=localhost >>"$DIR/log/setup.log" 2>&1 ||
		fail "ceph osd crush add failed" setup mon.a
	launch osd.0 ceph-osd -c "$CONF" -i 0
	say "osd started ($((SECONDS - t0))s)"

	echo "$rgw_port" >"$DIR/rgw.port"
	launch "$RGW_NAME" radosgw -c "$CONF" -n "$RGW_NAME"
	say "radosgw started, waiting for http://127.0.0.1:$rgw_port/ ($((SECONDS - t0))s)"
	n=0
	while :; do
		for d in mon.a osd.0 "$RGW_NAME"; do
			launched_alive "$d" || fail "$d exited during start" "$d"
		done
		code=$(http_code "$rgw_port")
		[ "$code" != 000 ] && [ -n "$code" ] && break
		[ $n -lt $((START_TIMEOUT * 5)) ] ||
			fail "RGW did not answer on 127.0.0.1:$rgw_port within ${START_TIMEOUT}s" "$RGW_NAME" osd.0 mon.a
		sleep 0.2
		n=$((n + 1))
	done
	say "RGW answers (HTTP $code) ($((SECONDS - t0))s)"

	# shellcheck disable=SC1091
	. "$DIR/creds.env"
	timeout 60 radosgw-admin -c "$CONF" user create --uid="$RGW_UID" \
		--display-name="s3sync tests" --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" \
		>>"$DIR/log/setup.log" 2>&1 || fail "radosgw-admin user create failed" setup "$RGW_NAME"
	code=$(env -u CURL_CA_BUNDLE curl -s --noproxy '*' -o /dev/null -m 10 -w '%{http_code}' -X PUT \
		--aws-sigv4 "aws:amz:us-east-1:s3" --user "$ACCESS_KEY:$SECRET_KEY" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "http://127.0.0.1:$rgw_port/$TEST_BUCKET") || true
	[ "$code" = 200 ] || fail "creating bucket $TEST_BUCKET failed (HTTP $code)" "$RGW_NAME"
	touch "$DIR/user.ok"
	say "user $RGW_UID and bucket $TEST_BUCKET created; ready in $((SECONDS - t0))s"
}

# --- commands -------------------------------------------------------------

lock() {
	mkdir -p "$DIR"
	exec 9>"$DIR/lock"
	flock -w 300 9 || die "timed out waiting for the lock on $DIR/lock"
}

cmd_start() {
	need_tools
	lock
	if healthy; then
		say "already running"
		print_env
		return 0
	fi
	say "not running (or not healthy): rebuilding in $DIR"
	stop_daemons 3 # what is left of a broken cluster is thrown away anyway
	wipe_state
	ensure_creds
	build
	print_env
}

cmd_stop() {
	[ -d "$DIR" ] || return 0
	lock
	stop_daemons
	# memstore may have dumped the OSD's objects here on a clean shutdown;
	# they are never reused (start rebuilds), so free the disk.
	rm -rf "${DIR:?}/osd"
	say "stopped"
}

# radosgw alone, as after a crash of the gateway: the mon and the OSD keep
# running, so memstore keeps every object. Same ceph.conf, so the same port.
cmd_restart_gateway() {
	local t0=$SECONDS pid port code n=0
	need_tools
	lock
	if ! { [ -f "$DIR/user.ok" ] && daemon_alive mon.a && daemon_alive osd.0; }; then
		die "no running cluster in $DIR to restart the gateway of (run: $0 start)"
	fi
	port=$(rgw_port)
	[ -n "$port" ] || die "no rgw.port in $DIR"
	pid=$(daemon_pid "$RGW_NAME")
	if [ -n "$pid" ]; then
		say "stopping radosgw ($pid)"
		term_wait "$STOP_TIMEOUT" "$pid"
	fi
	rm -f "$DIR/run/$RGW_NAME.pid" "$DIR/run/$RGW_NAME.launch"
	launch "$RGW_NAME" radosgw -c "$CONF" -n "$RGW_NAME"
	while :; do # not fail(): the rest of the cluster is fine, and the caller decides
		if ! launched_alive "$RGW_NAME"; then
			err "radosgw exited during its restart (port 127.0.0.1:$port taken?)"
			tail_logs "$RGW_NAME"
			exit 1
		fi
		code=$(http_code "$port")
		[ "$code" != 000 ] && [ -n "$code" ] && break
		if [ $n -ge $((START_TIMEOUT * 5)) ]; then
			err "restarted radosgw did not answer on 127.0.0.1:$port within ${START_TIMEOUT}s"
			tail_logs "$RGW_NAME"
			exit 1
		fi
		sleep 0.2
		n=$((n + 1))
	done
	say "radosgw answers again on 127.0.0.1:$port (HTTP $code) ($((SECONDS - t0))s)"
}

cmd_env() {
	healthy || { err "not running (state folder: $DIR); run: $0 start"; exit 1; }
	print_env
}

cmd_status() {
	if daemon_alive "$RGW_NAME" && rgw_answers; then
		say "RGW answers on 127.0.0.1:$(rgw_port)"
		return 0
	fi
	say "not running"
	return 1
}

main() {
	[ $# -eq 1 ] || usage
	check_dir
	case "$1" in
	start) cmd_start ;;
	stop) cmd_stop ;;
	env) cmd_env ;;
	status) cmd_status ;;
	restart-gateway) cmd_restart_gateway ;;
	*) usage ;;
	esac
}

main "$@"

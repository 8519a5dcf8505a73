#!/usr/bin/env python3
"""test-cli-tty: the s3sync command as a person at a terminal and as cron see it.

Runs the real binary under a pseudo-terminal (python's pty: the child gets it
as its controlling terminal, so the passphrase prompt opens /dev/tty) and
with plain pipes, on a file:// store, and on the Ceph RGW when
S3SYNC_TEST_BUCKET is set (the ~/.aws profile part):

  - the progress bar drawn under a pty for a long push and pull, its file
    counter moving with the bytes and ending at N/N, nothing at all on
    stderr without one, -q silent and -v per file at a terminal;
  - colour only at a terminal and never with NO_COLOR;
  - the passphrase prompt: joining with it, a wrong one (exit 1, nothing made),
    the passphrase never echoed;
  - every exit code path: 0, 1, 2, 3 (a tampered log object), 75 (an
    unreachable store, a busy folder), with --json saying the same;
  - --json on every command; config get/set/unset/list and what each setting does;
  - two syncs at once on one folder while files change;
  - AWS_PROFILE and ~/.aws/credentials (RGW only).
Usage: test-cli-tty.py S3SYNC_BIN
"""
import fcntl
import json
import os
import pty
import select
import signal
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

BIN = sys.argv[1]
W = tempfile.mkdtemp(prefix="ss-tty-")
BASE_ENV = {k: v for k, v in os.environ.items()
            if not k.startswith("S3SYNC_PASSWORD") and k != "NO_COLOR"}
BASE_ENV["S3SYNC_KDF"] = "interactive"
BASE_ENV["S3SYNC_PASSWORD"] = "tty secret"
FAILS = []
PASSED = [0]


def check(what, ok, detail=""):
    if ok:
        PASSED[0] += 1
        print("ok   " + what)
    else:
        FAILS.append(what)
        print("FAIL " + what + (": " + detail if detail else ""))


def env_with(**kw):
    e = dict(BASE_ENV)
    for k, v in kw.items():
        if v is None:
            e.pop(k, None)
        else:
            e[k] = v
    return e


def run_pty(args, env=None, answers=(), timeout=120):
    """Run under a pty; answers: (prompt, reply) pairs typed when prompt appears.
    Returns (exit code, everything the terminal showed, as text)."""
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execve(BIN, [BIN] + list(args), env or BASE_ENV)
        finally:
            os._exit(127)
    # 100 columns: wide enough for the bar itself, not just its figures.
    fcntl.ioctl(fd, __import__("termios").TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    out = b""
    pending = list(answers)
    seen = 0  # answered prompts lie before this offset
    deadline = time.time() + timeout
    while time.time() < deadline:
        r, _, _ = select.select([fd], [], [], 0.5)
        if not r and os.waitpid(pid, os.WUNTRACED | os.WNOHANG)[0] == pid:
            os.kill(pid, signal.SIGCONT)  # stopped at S3SYNC_PAUSE_AT for half a second: go on
        if fd in r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break  # EIO: the child closed the terminal
            if not chunk:
                break
            out += chunk
            if pending and pending[0][0].encode() in out[seen:]:
                os.write(fd, pending.pop(0)[1].encode() + b"\n")
                seen = len(out)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")


def run(args, env=None, stdin=subprocess.DEVNULL, cwd=None):
    """Run with pipes (cron); returns (exit code, stdout, stderr)."""
    p = subprocess.run([BIN] + list(args), env=env or BASE_ENV, stdin=stdin, cwd=cwd,
                       capture_output=True, text=True, timeout=300)
    return p.returncode, p.stdout, p.stderr


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def sgr(text):  # colour escapes (ESC [ ... m), not the bar's erase-line
    import re
    return re.findall(r"\x1b\[[0-9;]*m", text)


STORE = "file://" + W + "/store"
A, B = W + "/A", W + "/B"

# --- init, and the passphrase prompt at a terminal ----------------------------------
code, _, err = run(["init", STORE, A])
check("init creates (exit 0), silent without a terminal", code == 0 and err == "", err)
write(A + "/hello.txt", b"hello\n")
run(["-C", A, "push"])

# 75: the folder busy (its lock held by another process for longer than the wait). A
# folder of its own, so the 30 s the sync waits for the lock overlap the prompt and progress
# checks below instead of adding 30 idle seconds to the suite; checked with the exit codes.
BUSY = W + "/busy"
run(["init", STORE, BUSY])
holder = subprocess.Popen([sys.executable, "-c", """
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack('hhqqi', fcntl.F_WRLCK, 0, 0, 0, 0))
print('held', flush=True)
time.sleep(60)
""", BUSY + "/.s3sync/lock"], stdout=subprocess.PIPE, text=True)
holder.stdout.readline()
busy = {}


def busy_sync():
    t0 = time.time()
    busy["outcome"] = run(["-C", BUSY, "sync", "--json"])
    busy["seconds"] = time.time() - t0


busy_thread = threading.Thread(target=busy_sync)
busy_thread.start()

noenv = env_with(S3SYNC_PASSWORD=None)
code, out = run_pty(["init", STORE, W + "/wrong"], env=noenv, answers=[("Passphrase: ", "not it")])
check("a wrong passphrase at the prompt exits 1", code == 1, out)
check("and says so in one line naming the store", "s3sync init:" in out and "passphrase" in out.lower(), out)
check("and makes nothing", not os.path.exists(W + "/wrong/.s3sync"))
# ^C at the prompt: the process dies of SIGINT and the terminal gets its echo back.
pid, fd = pty.fork()
if pid == 0:
    os.execve(BIN, [BIN, "init", STORE, W + "/int"], noenv)
import termios
buf = b""
while b"Passphrase: " not in buf:
    buf += os.read(fd, 1024)
echo_off = not termios.tcgetattr(fd)[3] & termios.ECHO
os.write(fd, b"\x03")
_, status = os.waitpid(pid, 0)
echo_back = bool(termios.tcgetattr(fd)[3] & termios.ECHO)
os.close(fd)
check("^C at the prompt: echo was off, the process ends by SIGINT, echo is back",
      echo_off and os.WIFSIGNALED(status) and os.WTERMSIG(status) == 2 and echo_back,
      "%s %s %s" % (echo_off, status, echo_back))
check("and nothing was made", not os.path.exists(W + "/int/.s3sync"))

# Creating at a prompt: the passphrase is asked twice; a mismatch is said and asked again.
code, out = run_pty(["init", "file://" + W + "/store-new", W + "/N"], env=noenv,
                    answers=[("Passphrase: ", "new one"), ("Repeat it: ", "new won"),
                             ("Passphrase: ", "new one"), ("Repeat it: ", "new one")])
check("init creating at a prompt asks twice, and again after a mismatch",
      code == 0 and out.count("Repeat it: ") == 2 and "differ; try again" in out and
      "created a new repository" in out, out)
code, _, _ = run(["init", "file://" + W + "/store-new", W + "/N2"], env=env_with(S3SYNC_PASSWORD="new one"))
check("and the confirmed passphrase joins it", code == 0)
code, out = run_pty(["init", "file://" + W + "/store-new2", W + "/N3"], env=noenv,
                    answers=[("Passphrase: " if i % 2 == 0 else "Repeat it: ", "x%d" % i)
                             for i in range(6)])
check("three mismatches: exit 2, nothing made in the folder or the store",
      code == 2 and "differed 3 times" in out and not os.path.exists(W + "/N3") and
      not os.path.exists(W + "/store-new2/keys"), out)
# A confirmation that fails another way: exit 1, and nothing made locally or in the store.
def made_nothing(dirname, store):
    return (not os.path.exists(W + "/" + dirname) and not os.path.exists(W + "/" + store + "/keys")
            and not os.path.exists(W + "/" + store + "/config"))


code, out = run_pty(["init", "file://" + W + "/store-e1", W + "/E1"], env=noenv,
                    answers=[("Passphrase: ", "new one"), ("Repeat it: ", "")])
check("init creating: an empty passphrase at Repeat it exits 1, nothing made",
      code == 1 and "empty passphrase" in out and made_nothing("E1", "store-e1"), out)
code, out = run_pty(["init", "file://" + W + "/store-e2", W + "/E2"], env=noenv,
                    answers=[("Passphrase: ", "new one"), ("Repeat it: ", "\x04")])
check("init creating: end of input at Repeat it exits 1, nothing made",
      code == 1 and "end of input" in out and made_nothing("E2", "store-e2"), out)
code, out = run_pty(["init", "file://" + W + "/store-e3", W + "/E3"], env=noenv,
                    answers=[("Passphrase: ", "")])
check("init creating: an empty first passphrase exits 1, nothing made",
      code == 1 and "empty passphrase" in out and made_nothing("E3", "store-e3"), out)
code, out = run_pty(["init", STORE, W + "/N4"], env=noenv, answers=[("Passphrase: ", "tty secret")])
check("joining at a prompt asks once", code == 0 and "Repeat it" not in out, out)
shutil.rmtree(W + "/N4")

code, out = run_pty(["init", STORE, B], env=noenv, answers=[("Passphrase: ", "tty secret")])
check("joining with the passphrase typed at the prompt exits 0", code == 0, out)
check("the passphrase is not echoed", "tty secret" not in out, out)
check("the joined folder has the files", os.path.exists(B + "/hello.txt"))
check("a terminal is told what happened", "joined the repository" in out, out)

# key add at a terminal: asked twice; two different answers add nothing.
code, out = run_pty(["-C", A, "key", "add"], env=noenv,
                    answers=[("New passphrase: ", "second one"), ("Repeat it: ", "second won")] +
                    [("New passphrase: ", "second one"), ("Repeat it: ", "second won")] * 2)
check("key add: two different passphrases three times at the prompt exit 2",
      code == 2 and out.count("differ; try again") == 2 and "differed 3 times" in out, out)
keys_before = run(["-C", A, "key", "list"])[1].splitlines()
code, out = run_pty(["-C", A, "key", "add"], env=noenv,
                    answers=[("New passphrase: ", "second one"), ("Repeat it: ", "")])
check("key add: an empty passphrase at Repeat it exits 1 and adds nothing",
      code == 1 and "empty passphrase" in out and
      run(["-C", A, "key", "list"])[1].splitlines() == keys_before, out)
code, out = run_pty(["-C", A, "key", "add"], env=noenv,
                    answers=[("New passphrase: ", "second one"), ("Repeat it: ", "\x04")])
check("key add: end of input at Repeat it exits 1 and adds nothing",
      code == 1 and "end of input" in out and
      run(["-C", A, "key", "list"])[1].splitlines() == keys_before, out)
code, out = run_pty(["-C", A, "key", "add"], env=noenv,
                    answers=[("New passphrase: ", "second one"), ("Repeat it: ", "second one")])
check("key add: the same twice adds a key", code == 0 and "added key" in out and "second one" not in out, out)
keys_after = run(["-C", A, "key", "list"])[1].splitlines()
check("key list shows one more key", len(keys_after) == len(keys_before) + 1, repr(keys_after))
host = os.uname().nodename.replace(".", "-").replace(" ", "-")
check("labelled with the device name by default, init's first key too",
      all(line.endswith("  " + host) for line in keys_after), repr(keys_after))
code, _, _ = run(["init", STORE, W + "/K"], env=env_with(S3SYNC_PASSWORD="second one"))
check("and the new passphrase joins", code == 0)

# --- progress: drawn at a terminal, silent in cron -----------------------------------
write(A + "/big.bin", os.urandom(128 << 20))
for i in range(20):
    write(A + "/small/%02d" % i, os.urandom(1000 + i))
code, out = run_pty(["-C", A, "push"])
check("a long push at a terminal exits 0", code == 0, out[-300:])
check("and draws the bar: files, bytes, rate, ETA",
      "\r\x1b[K" in out and "files" in out and "MiB/s" in out and "ETA" in out and "push [" in out,
      repr(out[-400:]))
check("the bar is in colour at a terminal", "\x1b[32m" in out, repr(out[-200:]))
check("the bar is erased before the summary", "push:" in out.split("\r\x1b[K")[-1], repr(out[-200:]))
import re
check("the push summary is in human units",
      re.search(r"push: \d+ paths? changed, at sequence \d+ \([0-9.]+ MiB up, [0-9.]+ (B|KiB) down\)",
                out) is not None, repr(out[-200:]))
code, out = run_pty(["-C", A, "key", "list"])
check("key list at a terminal: its keys, no sync summary", code == 0 and "paths changed" not in out
      and "key:" not in out, repr(out))
code, out = run_pty(["-C", A, "device", "list"])
check("device list at a terminal: no sync summary", code == 0 and "paths changed" not in out
      and "ID" in out, repr(out))
code, out = run_pty(["-C", B, "pull"], env=env_with(NO_COLOR="1"))
check("a long pull at a terminal draws its bar", code == 0 and "pull [" in out and "ETA" in out,
      repr(out[-300:]))
check("NO_COLOR: the bar has no colour", not sgr(out), repr(sgr(out)[:3]))
check("the pull brought the big file", os.path.getsize(B + "/big.bin") == 128 << 20)

# The file counter (#20): many files big enough to be chunked between two large ones.
# It must move while the bytes do, on push and on pull (a pull stages every file's
# data before it applies any: it counts a file when its data has landed), and show
# N/N at the end. Each frame: "N/M files  DONE/TOTAL".
def counter_frames(out):
    got = []
    for f in out.split("\r\x1b[K"):
        m = re.search(r"(\d+)/(\d+) files +([0-9.]+ \S+)/([0-9.]+ \S+)", f)
        if m:
            got.append((int(m.group(1)), int(m.group(2)), m.group(3) != m.group(4)))
    return got


write(A + "/count/a-first.bin", os.urandom(40 << 20))
for i in range(600):
    write(A + "/count/m/%03d.txt" % i, os.urandom(20000 + i))
write(A + "/count/z-last.bin", os.urandom(40 << 20))
# The pull is paused half-way through its files (S3SYNC_PAUSE_AT: SIGSTOP at the 300th
# file staged, run_pty resumes it), so it is drawn then however fast the machine is.
for who, d, verb, pause in (("push", A, "push", {}), ("pull", B, "pull", {"S3SYNC_PAUSE_AT": "stage.file:300"})):
    code, out = run_pty(["-C", d, verb], env=env_with(NO_COLOR="1", **pause))
    frames = counter_frames(out)
    n = frames[-1][1] if frames else 0
    check("%s at a terminal: the file counter moves while bytes do" % who,
          code == 0 and any(0 < done < total and moving for done, total, moving in frames),
          repr(frames))
    check("%s at a terminal: the counter ends at N/N (N=%d)" % (who, n),
          code == 0 and n >= 602 and frames[-1][0] == n, repr(frames[-3:]))

write(A + "/big.bin", os.urandom(128 << 20))
code, so, se = run(["-C", A, "push"])
check("without a terminal: push exits 0 and prints nothing at all", code == 0 and so == "" and se == "",
      repr(se[:200]))
code, so, se = run(["-C", B, "pull"])
check("without a terminal: pull prints nothing at all", code == 0 and so == "" and se == "", repr(se[:200]))
write(A + "/big.bin", os.urandom(128 << 20))
code, out = run_pty(["-q", "-C", A, "push"])
check("-q at a terminal: no bar, nothing", code == 0 and out == "", repr(out[:200]))
write(A + "/v1.txt", b"1")
write(A + "/v2.txt", b"2")
code, out = run_pty(["-v", "-C", A, "push"])
check("-v names each file pushed", code == 0 and "v1.txt" in out and "v2.txt" in out, out)
code, out = run_pty(["-v", "-C", B, "pull"])
check("-v names each file pulled", code == 0 and "pull   v1.txt" in out, out)
os.mkfifo(A + "/a-fifo")
code, out = run_pty(["-C", A, "push"])
check("a warning at a terminal is said once (the bar's counting pass is silent)",
      code == 0 and out.count("a-fifo") == 1 and "\x1b[33m" in out, repr(out))
os.remove(A + "/a-fifo")

# --- colour of errors ----------------------------------------------------------------
code, out = run_pty(["-C", W, "status"])
check("an error at a terminal is red", code == 1 and "\x1b[31m" in out, repr(out))
code, out = run_pty(["-C", W, "status"], env=env_with(NO_COLOR="1"))
check("NO_COLOR: no colour at all", code == 1 and not sgr(out) and "s3sync status:" in out, repr(out))
code, out = run_pty(["-C", W, "status"], env=env_with(NO_COLOR=""))
check("an empty NO_COLOR does not count (no-color.org)", "\x1b[31m" in out, repr(out))
code, so, se = run(["-C", W, "status"])
check("no colour without a terminal", code == 1 and not sgr(se), repr(se))

# --- exit codes, each with its one line, and --json agreeing ---------------------------
def expect_code(what, args, want, env=None, needle=None):
    code, so, se = run(args, env=env)
    ok = code == want and (len(se.strip().splitlines()) >= 1 if want else se == "")
    if want:
        first = se.splitlines()[0] if se else ""
        ok = ok and first.startswith("s3sync")
        if needle:
            ok = ok and needle in se
    check("exit %d: %s" % (want, what), ok, "got %d: %s" % (code, se[:300]))
    code, so, se = run(args + ["--json"], env=env)
    try:
        j = json.loads(so.strip().splitlines()[-1])
        ok = code == want and j["ok"] == (want == 0) and (want == 0 or j["exit"] == want)
    except (ValueError, IndexError, KeyError) as e:
        ok = False
        so = "%s: %r" % (e, so)
    check("exit %d with --json says so too: %s" % (want, what), ok, so[:300])


expect_code("sync with nothing to do", ["-C", A, "sync"], 0)
expect_code("not a synced folder", ["-C", W, "sync"], 1, needle="run s3sync init")
expect_code("a wrong passphrase", ["init", STORE, W + "/C"], 1, env=env_with(S3SYNC_PASSWORD="nope"))
expect_code("an unknown command", ["-C", A, "frobnicate"], 2, needle="unknown command")
expect_code("a bad option", ["-C", A, "sync", "--no-such-option"], 2)
expect_code("an unknown setting", ["-C", A, "config", "set", "colour", "blue"], 2, needle="known:")
expect_code("an unreachable store", ["init", "s3://bucket-x/p", W + "/D", "--endpoint", "http://127.0.0.1:9"],
            75, env=env_with(AWS_MAX_ATTEMPTS="1", AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s"),
            needle="try again")

# 3: flip a byte of the newest log object; B fails verification and applies nothing of it.
write(A + "/tamper.txt", b"before\n")
run(["-C", A, "push"])
logs = sorted(os.listdir(W + "/store/log"))
victim = W + "/store/log/" + logs[-1]
data = bytearray(open(victim, "rb").read())
data[len(data) // 2] ^= 1
os.chmod(victim, 0o644)
write(victim, bytes(data))
expect_code("a tampered log object", ["-C", B, "pull"], 3, needle="log/")
check("nothing of the tampered transaction was applied", not os.path.exists(B + "/tamper.txt"))
data[len(data) // 2] ^= 1
write(victim, bytes(data))

# 75: the folder busy, started after init (see there).
busy_thread.join()
holder.kill()
holder.wait()
code, so, se = busy["outcome"]
check("exit 75: the folder busy (lock held)", code == 75 and "busy" in se, "%d %s" % (code, se))
check("after waiting about 30 s for it", 25 < busy["seconds"] < 60, "%.1f s" % busy["seconds"])
code, so, se = run(["-C", BUSY, "sync"])
check("and it runs once the holder is gone", code == 0, se)
code, so, se = run(["-C", B, "sync"])
check("and B syncs once the tampered log object is whole again", code == 0, se)

# --- --json on every command -----------------------------------------------------------
def one_json(args, what):
    code, so, se = run(args + ["--json"])
    try:
        j = json.loads(so)
        ok = code == 0 and j.get("ok") is True and so.count("\n") == 1
    except ValueError:
        ok, j = False, None
    check("--json: " + what, ok, "%d %r %r" % (code, so[:200], se[:200]))
    return j


for args, what in [(["push"], "push"), (["pull"], "pull"), (["sync"], "sync"), (["status"], "status"),
                   (["log"], "log"), (["verify"], "verify"), (["key", "list"], "key list"),
                   (["config"], "config"), (["config", "list"], "config list"),
                   (["config", "get", "store"], "config get"),
                   (["restore", "hello.txt", "--to", W + "/restored.txt"], "restore")]:
    j = one_json(["-C", A] + args, what)
    if j and args[0] in ("push", "pull", "sync", "status"):
        check("--json %s has the contract's fields" % what,
              all(k in j for k in ("command", "seq", "files", "bytes_up", "bytes_down", "requests",
                                   "conflicts")), str(j))
j = one_json(["init", STORE, W + "/E"], "init")

# --- config ----------------------------------------------------------------------------
code, so, _ = run(["-C", A, "config", "get", "store"])
check("config get store", code == 0 and so == STORE + "\n", so)
code, so, se = run(["-C", A, "config", "get", "region"])
check("config get of an unset key: exit 1, naming its default", code == 1 and so == "" and "us-east-1" in se, se)
check("config set region", run(["-C", A, "config", "set", "region", "eu-central-1"])[0] == 0)
check("config get region", run(["-C", A, "config", "get", "region"])[1] == "eu-central-1\n")
check("config set region again replaces it",
      run(["-C", A, "config", "set", "region", "eu-west-3"])[0] == 0 and
      open(A + "/.s3sync/config").read().count("region") == 1)
check("config unset region", run(["-C", A, "config", "unset", "region"])[0] == 0 and
      run(["-C", A, "config", "get", "region"])[0] == 1)
for args, what in [(["set", "device", "has space"], "a device name with a space"),
                   (["set", "device", "a/b"], "a device name with a slash"),
                   (["set", "endpoint", "ftp://x"], "an endpoint that is not http(s)"),
                   (["set", "store", "gopher://x"], "a store URL of no known kind"),
                   (["set", "checkpoint_txns", "1.5"], "a count that is not whole"),
                   (["set", "checkpoint_txns", "ten"], "a count that is not a number"),
                   (["set", "device_id", "00"], "the read-only device_id"),
                   (["unset", "store"], "unsetting store"),
                   (["set", "region"], "set without a value"),
                   (["get"], "get without a key"),
                   (["frob", "x"], "an unknown config command")]:
    code, so, se = run(["-C", A, "config"] + args)
    check("config refuses %s (exit 2, one line)" % what, code == 2 and len(se.splitlines()) == 1, se)
check("refused sets changed nothing", "has space" not in open(A + "/.s3sync/config").read())
code, so, _ = run(["-C", A, "config", "list"])
check("config list names every key", all(k in so for k in ("store", "endpoint", "region", "profile",
                                                            "token_file", "device", "ignore_file",
                                                            "checkpoint_txns")), so)
code, so, se = run(["-C", A + "/small", "config", "get", "device"])
check("config finds the folder from a subdirectory", code == 0 and so.strip(), se)

# What the settings do: device names the next transaction, ignore_file is honoured,
# endpoint is used (and a command-line --endpoint beats it).
run(["-C", A, "config", "set", "device", "laptop-a"])
write(A + "/by-laptop.txt", b"x")
run(["-C", A, "push"])
code, so, _ = run(["-C", A, "log", "--json"])
check("the device setting names the next transaction",
      json.loads(so)["transactions"][0]["device"] == "laptop-a", so[:300])
write(A + "/.myignore", b"*.skip\n")
run(["-C", A, "config", "set", "ignore_file", ".myignore"])
write(A + "/x.skip", b"skip me")
write(A + "/y.keep", b"keep me")
run(["-C", A, "push"])
run(["-C", B, "pull"])
check("ignore_file is honoured", os.path.exists(B + "/y.keep") and not os.path.exists(B + "/x.skip"))
run(["-C", A, "config", "set", "ignore_file", "missing-file"])
code, so, se = run(["-C", A, "push"])
check("a missing ignore_file is an error naming it", code == 1 and "missing-file" in se, se)
run(["-C", A, "config", "unset", "ignore_file"])

# checkpoint_txns: the automatic checkpoint rule reads it.
run(["-C", A, "config", "set", "checkpoint_txns", "2"])
for i in range(3):
    write(A + "/cp%d.txt" % i, b"%d" % i)
    run(["-C", A, "push"])
check("checkpoint_txns 2: pushes write checkpoints",
      os.path.isdir(W + "/store/checkpoints") and len(os.listdir(W + "/store/checkpoints")) >= 1)
run(["-C", A, "config", "set", "checkpoint_txns", "0"])

# init records --endpoint and --profile in the folder's config, not --token-file.
write(W + "/tok", b"t\n")
code, so, se = run(["init", STORE, W + "/R", "--endpoint", "http://127.0.0.1:9", "--profile", "p1",
                    "--token-file", "tok"], cwd=W)
check("init records --endpoint", code == 0 and run(["-C", W + "/R", "config", "get", "endpoint"])[1]
      == "http://127.0.0.1:9\n", se)
check("init records --profile", run(["-C", W + "/R", "config", "get", "profile"])[1] == "p1\n")
code, so, _ = run(["-C", W + "/R", "config", "get", "token_file"])
check("init records --token-file, made absolute, for the next command", code == 0 and so == W + "/tok\n", so)

# XDG: a lockd token in $XDG_CONFIG_HOME/s3sync/token (default ~/.config) is used when
# nothing names one. Told apart by the failure: without a token exit 1 ("no device
# token"), with one the unreachable lockd (exit 75).
xdg_home = W + "/xdg-home"
os.makedirs(xdg_home + "/.config/s3sync")
lockd_url = "lockd:http://127.0.0.1:9/notes"
xenv = env_with(HOME=xdg_home, XDG_CONFIG_HOME=None, S3SYNC_TOKEN_FILE=None, AWS_MAX_ATTEMPTS="1")
code, so, se = run(["init", lockd_url, W + "/X"], env=xenv)
check("lockd without any token: exit 1, saying so", code == 1 and "no device token" in se, se)
check("and naming config set token_file too", "config set token_file" in se, se)
write(xdg_home + "/.config/s3sync/token", b"some-token\n")
code, so, se = run(["init", lockd_url, W + "/X"], env=xenv)
check("~/.config/s3sync/token is used when nothing names a token", code == 75, se)
write(W + "/xdg/s3sync/token", b"some-token\n")
os.remove(xdg_home + "/.config/s3sync/token")
code, so, se = run(["init", lockd_url, W + "/X"], env=env_with(HOME=xdg_home, XDG_CONFIG_HOME=W + "/xdg",
                                                               S3SYNC_TOKEN_FILE=None, AWS_MAX_ATTEMPTS="1"))
check("$XDG_CONFIG_HOME/s3sync/token is used when XDG_CONFIG_HOME is set", code == 75, se)

# store: only a copy of the folder's own repository is accepted; an empty prefix (a typo) or
# another repository is refused when set, so no push starts a history nobody else sees.
run(["init", "file://" + W + "/other", W + "/O"])
write(W + "/O/o.txt", b"other repo")
run(["-C", W + "/O", "push"])
shutil.copytree(W + "/store", W + "/moved")
for where, what in (("other", "another repository"), ("empty", "an empty store")):
    code, so, se = run(["-C", A, "config", "set", "store", "file://" + W + "/" + where])
    _, now, _ = run(["-C", A, "config", "get", "store"])
    check("store set to %s: refused (exit 1), one line naming it, setting kept" % what,
          code == 1 and se.count("\n") == 1 and where in se and now == STORE + "\n",
          "%d %s %s" % (code, se, now))
code, so, se = run(["-C", A, "pull"])
check("after the refusals A still syncs with its own store", code == 0 and not os.path.exists(A + "/o.txt"),
      "%d %s" % (code, se))
code, so, se = run(["-C", A, "config", "set", "store", "file://" + W + "/moved"])
check("store set to a copy of the same repository: accepted", code == 0, se)
code, so, se = run(["-C", A, "sync"])
check("store set to a copy of the same repository: syncs", code == 0, se)
run(["-C", A, "config", "set", "store", STORE])

# --- two syncs at once on one folder, while files change ----------------------------------
for i in range(30):
    write(A + "/conc/%02d" % i, os.urandom(5000))
procs = [subprocess.Popen([BIN, "-C", A, "sync"], env=BASE_ENV, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) for _ in range(2)]
for i in range(30, 40):
    write(A + "/conc/%02d" % i, os.urandom(5000))
codes = [p.wait() for p in procs]
errs = [p.stderr.read() for p in procs]
check("two syncs at once on one folder both succeed", codes == [0, 0], str(codes) + str(errs))
run(["-C", A, "sync"])
run(["-C", B, "sync"])
same = all(open(A + "/conc/%02d" % i, "rb").read() == open(B + "/conc/%02d" % i, "rb").read()
           for i in range(40))
check("and the other device has every file, byte for byte", same)
code, so, _ = run(["-C", A, "verify", "--json"])
check("and the repository verifies", code == 0, so[:300])

# --- watch says what it did: one line per sync that changed something -------------------
import re
wp = subprocess.Popen([BIN, "-C", A, "watch", "--interval", "1"], env=BASE_ENV,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
time.sleep(2)
write(A + "/watched.txt", b"seen by watch\n")
time.sleep(3)
write(B + "/from-b.txt", b"from b\n")
run(["-C", B, "push"])
time.sleep(4)
wp.terminate()
wout, werr = wp.communicate(timeout=30)
lines = wout.splitlines()
stamp = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d  "
check("watch without a terminal: a line for the local change (time, synced, paths, sequence)",
      any(re.match(stamp + r"synced 1 path, at sequence \d+$", l) for l in lines), repr(wout))
check("and one for what it pulled", any(re.match(stamp + r"pulled 1 path, at sequence \d+$", l)
                                        for l in lines), repr(wout))
check("and idle polls print nothing", len(lines) == 2, repr(wout))

# --- ~/.aws/credentials and AWS_PROFILE against the RGW ------------------------------------
bucket = os.environ.get("S3SYNC_TEST_BUCKET")
if bucket and os.environ.get("AWS_ACCESS_KEY_ID"):
    home = W + "/home"
    os.makedirs(home + "/.aws")
    write(home + "/.aws/credentials", ("[rgwtest]\naws_access_key_id = %s\naws_secret_access_key = %s\n"
                                       % (os.environ["AWS_ACCESS_KEY_ID"],
                                          os.environ["AWS_SECRET_ACCESS_KEY"])).encode())
    write(home + "/.aws/config", ("[profile rgwtest]\nregion = %s\ns3 =\n  endpoint_url = %s\n"
                                  % (os.environ.get("AWS_REGION", "us-east-1"),
                                     os.environ["AWS_ENDPOINT_URL"])).encode())
    prof_env = env_with(HOME=home, AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None,
                        AWS_SESSION_TOKEN=None, AWS_ENDPOINT_URL=None, AWS_ENDPOINT_URL_S3=None,
                        AWS_PROFILE="rgwtest", AWS_MAX_ATTEMPTS="2")
    url = "s3://%s/tty-%d-%d" % (bucket, os.getpid(), int(time.time()))
    code, so, se = run(["init", url, W + "/P"], env=prof_env)
    check("RGW: init with keys and endpoint from AWS_PROFILE's files only", code == 0, se)
    write(W + "/P/p.txt", b"through a profile\n")
    check("RGW: push through the profile", run(["-C", W + "/P", "push"], env=prof_env)[0] == 0)
    noprof = env_with(HOME=home, AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None,
                      AWS_ENDPOINT_URL=None, AWS_PROFILE=None, AWS_MAX_ATTEMPTS="2")
    code, so, se = run(["-C", W + "/P", "push"], env=noprof)
    check("RGW: without AWS_PROFILE the default profile has no keys: exit 1, saying where to put them",
          code == 1 and "no credentials" in se and "aws configure" in se, se)
    run(["-C", W + "/P", "config", "set", "profile", "rgwtest"], env=noprof)
    code, so, se = run(["-C", W + "/P", "sync"], env=noprof)
    check("RGW: the folder's profile setting is enough", code == 0, se)
    code, so, se = run(["-C", W + "/P", "sync"], env=env_with(HOME=home, AWS_PROFILE="nosuch",
                                                             AWS_ACCESS_KEY_ID=None))
    check("RGW: the folder's profile beats AWS_PROFILE", code == 0, se)
    run(["-C", W + "/P", "config", "unset", "profile"], env=noprof)
    code, so, se = run(["-C", W + "/P", "sync"], env=env_with(HOME=home, AWS_PROFILE="nosuch",
                                                             AWS_ACCESS_KEY_ID=None))
    check("RGW: an AWS_PROFILE that no file has: exit 1 naming it and the files",
          code == 1 and "'nosuch'" in se and ".aws/credentials" in se, se)
    run(["-C", W + "/P", "config", "set", "endpoint", "http://127.0.0.1:9"], env=noprof)
    code, so, se = run(["-C", W + "/P", "sync"], env=prof_env)
    check("RGW: the folder's endpoint setting is used (a dead port: exit 75)", code == 75, se)
    code, so, se = run(["-C", W + "/P", "--endpoint", os.environ["AWS_ENDPOINT_URL"], "sync"], env=prof_env)
    check("RGW: --endpoint beats the folder's endpoint", code == 0, se)
else:
    print("skip RGW profile checks: no S3SYNC_TEST_BUCKET")

shutil.rmtree(W, ignore_errors=True)
print("%d passed, %d failed" % (PASSED[0], len(FAILS)))
sys.exit(1 if FAILS else 0)

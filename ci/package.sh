#!/usr/bin/env bash
# ci/package.sh: builds the Debian packages s3sync and s3sync-lockd with
# dpkg-buildpackage and checks them, on Debian 12.
#
#   1. installs the build tools and the Build-Depends of debian/control when
#      missing (quiet and idempotent, like ci/deps.sh);
#   2. copies the work tree (tracked and untracked files, not the ignored
#      ones such as build*/) to a temporary directory and builds there, so the
#      work tree gets no debian/ build litter;
#   3. checks what each .deb holds, unpacks both with dpkg -x into a
#      throwaway root and runs `s3sync --version` and `s3sync-lockd --version`
#      from there, checks the man pages render without warnings, and checks
#      the systemd units with `systemd-analyze verify` (skipped, saying so,
#      where systemd-analyze cannot run);
#   4. with S3SYNC_PACKAGE_INSTALL=1, also installs both with apt-get (as
#      dpkg -i, plus their dependencies), runs the installed programs and
#      verifies the installed units in place.
#
# The .debs are left in ${S3SYNC_DEB_DIR:-build/deb}. The last line is the
# one-line result; on failure it says which step failed, the step's log is
# printed above it, and the exit status is 1.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
t0=$(date +%s)
out=${S3SYNC_DEB_DIR:-$top/build/deb}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/s3sync-package.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
log=$tmp/log

fail() { # step
  [ -s "$log" ] && tail -n 40 "$log" >&2
  echo "ci/package.sh: FAILED: $1" >&2
  exit 1
}

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() { # packages...
  [ $apt_updated -eq 1 ] || { $sudo apt-get update -qq >/dev/null && apt_updated=1; }
  $sudo apt-get install -y -qq --no-install-recommends "$@" >"$log" 2>&1
}

# 1. Tools, then what debian/control asks for.
tools=(build-essential dpkg-dev debhelper fakeroot man-db)
missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# systemd-analyze checks the units; containers often lack the systemd package
# (a few MB, and installing it starts nothing).
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  echo "ci/package.sh: installing ${missing[*]}" >&2
  apt_install "${missing[@]}" || fail "apt-get install ${missing[*]}"
fi
if ! dpkg-checkbuilddeps >/dev/null 2>&1; then
  echo "ci/package.sh: installing the Build-Depends of debian/control" >&2
  [ $apt_updated -eq 1 ] || { $sudo apt-get update -qq >/dev/null && apt_updated=1; }
  $sudo apt-get build-dep -y -qq --no-install-recommends "$top" >"$log" 2>&1 ||
    fail "apt-get build-dep"
  dpkg-checkbuilddeps >"$log" 2>&1 || fail "build dependencies"
fi

# The package version and the CMake project version are one number.
version=$(dpkg-parsechangelog -S Version)
cmake_version=$(sed -n 's/^project(s3sync VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
[ "$version" = "$cmake_version" ] ||
  fail "debian/changelog says $version, CMakeLists.txt says $cmake_version"

# 2. Build in a copy of the work tree.
src=$tmp/s3sync-$version
mkdir -p "$src"
# (a tracked file deleted in the work tree is skipped with a warning)
{ git ls-files -z --cached --others --exclude-standard |
  tar --null --no-recursion --ignore-failed-read -T - -cf - 2>"$log" | tar -xf - -C "$src"; } ||
  fail "copy of the work tree"
(cd "$src" && DEB_BUILD_OPTIONS="nocheck parallel=$(nproc)" \
  dpkg-buildpackage -us -uc -b >"$log" 2>&1) || fail "dpkg-buildpackage (log above)"
: >"$log" # a later step's failure is not the build's
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
debs=("$tmp/s3sync_${version}_$arch.deb" "$tmp/s3sync-lockd_${version}_$arch.deb")
for d in "${debs[@]}"; do [ -f "$d" ] || fail "no $(basename "$d")"; done

# 3. Contents, unpacked programs, man pages.
check_has() { # deb, paths...
  local deb=$1 list
  shift
  list=$(dpkg-deb -c "$deb" | awk '{print $6}')
  for p in "$@"; do
    grep -qx "\./$p" <<<"$list" || fail "$(basename "$deb") lacks /$p"
  done
}
check_has "${debs[0]}" usr/bin/s3sync usr/share/man/man1/s3sync.1.gz \
  usr/share/bash-completion/completions/s3sync usr/lib/systemd/user/s3sync@.service \
  usr/lib/systemd/user/s3sync@.timer usr/lib/systemd/user/s3sync-watch@.service \
  usr/share/doc/s3sync/copyright
check_has "${debs[1]}" usr/sbin/s3sync-lockd usr/share/man/man8/s3sync-lockd.8.gz \
  lib/systemd/system/s3sync-lockd.service usr/lib/sysusers.d/s3sync-lockd.conf \
  usr/share/doc/s3sync/lockd.conf.example usr/share/doc/s3sync/PROTOCOL.md
root=$tmp/root
for d in "${debs[@]}"; do dpkg -x "$d" "$root"; done
got=$("$root/usr/bin/s3sync" --version 2>&1) || fail "unpacked s3sync --version: $got"
[[ $got =~ ^s3sync\ $version\ \(repository\ format\ [0-9]+\)$ ]] ||
  fail "s3sync --version printed '$got'"
lockd=$("$root/usr/sbin/s3sync-lockd" --version 2>&1) || fail "unpacked s3sync-lockd --version: $lockd"
[ "$lockd" = "s3sync-lockd $version" ] || fail "s3sync-lockd --version printed '$lockd'"
for m in usr/share/man/man1/s3sync.1.gz usr/share/man/man8/s3sync-lockd.8.gz; do
  if ! w=$(man -l --warnings "$root/$m" 2>&1 >/dev/null) || [ -n "$w" ]; then fail "man $m: $w"; fi
done

# The units under ROOT ("" the installed system) through `systemd-analyze
# verify`: keys and values, the programs of ExecStart= (under ROOT: copies of
# the units name them there), the Documentation= man pages (MANPATH: the
# packages' own, when ROOT is set), the timer's service. The templates get an
# instance, a folder as systemd-escape --path makes it. verify exits 0 on an
# unknown key or a bad value and only prints them: any output is a failure.
verify_units() { # root
  local r=$1 d man=() w
  d=$(mktemp -d "$tmp/units.XXXXXX")
  mkdir -m 0700 "$d/run" # a --user manager wants XDG_RUNTIME_DIR
  [ -z "$r" ] || man=(env "MANPATH=$r/usr/share/man")
  sed "s|^ExecStart=/|ExecStart=$r/|" "$r/lib/systemd/system/s3sync-lockd.service" >"$d/s3sync-lockd.service"
  for u in s3sync@.service s3sync@.timer s3sync-watch@.service; do
    sed "s|^ExecStart=/|ExecStart=$r/|" "$r/usr/lib/systemd/user/$u" >"$d/${u/@/@home-u-Notes}"
  done
  if ! w=$(cd "$d" && "${man[@]}" systemd-analyze verify ./s3sync-lockd.service 2>&1) ||
    [ -n "$w" ]; then
    fail "systemd-analyze verify s3sync-lockd.service${r:+ (unpacked)}: $w"
  fi
  if ! w=$(cd "$d" && XDG_RUNTIME_DIR=$d/run "${man[@]}" systemd-analyze --user verify \
    ./s3sync@home-u-Notes.service ./s3sync@home-u-Notes.timer ./s3sync-watch@home-u-Notes.service 2>&1) ||
    [ -n "$w" ]; then
    fail "systemd-analyze --user verify of the user units${r:+ (unpacked)}: $w"
  fi
}
# systemd-analyze verify needs no running systemd (this works in a plain
# container or VM), but where it cannot run at all a unit it likes fails too:
# then the units are left unchecked, saying so.
probe=$tmp/probe
mkdir "$probe" && mkdir -m 0700 "$probe/run"
printf '[Unit]\nDescription=probe\n[Service]\nType=oneshot\nExecStart=/bin/true\n' >"$probe/probe.service"
can_verify=0
if ! command -v systemd-analyze >/dev/null; then
  echo "ci/package.sh: no systemd-analyze: the systemd units are not verified" >&2
  units_ok="; systemd units NOT verified (no systemd-analyze)"
elif ! w=$(cd "$probe" && XDG_RUNTIME_DIR=$probe/run systemd-analyze verify ./probe.service 2>&1 &&
  XDG_RUNTIME_DIR=$probe/run systemd-analyze --user verify ./probe.service 2>&1) || [ -n "$w" ]; then
  echo "ci/package.sh: systemd-analyze cannot run here, the units are not verified: $w" >&2
  units_ok="; systemd units NOT verified (systemd-analyze cannot run here)"
else
  verify_units "$root"
  can_verify=1
  units_ok="; units verified"
fi

# 4. Optionally, a real install.
installed=""
if [ "${S3SYNC_PACKAGE_INSTALL:-0}" = 1 ]; then
  apt_install "${debs[@]}" || fail "apt-get install of the .debs"
  [ "$(s3sync --version)" = "$got" ] || fail "installed s3sync --version"
  [ "$(s3sync-lockd --version)" = "$lockd" ] || fail "installed s3sync-lockd --version"
  [ $can_verify = 0 ] || verify_units ""
  installed=", installed"
fi

mkdir -p "$out"
cp "${debs[@]}" "$out/"
size() { echo "$(($(stat -c %s "$1") / 1024)) KiB"; }
echo "ci/package.sh: ok: $(basename "${debs[0]}") ($(size "${debs[0]}")), $(basename "${debs[1]}")" \
  "($(size "${debs[1]}")) in ${out#"$top"/}; '$got'$units_ok$installed; $(($(date +%s) - t0)) s"

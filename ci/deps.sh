#!/usr/bin/env bash
# ci/deps.sh: installs what s3sync needs to build and test on Debian 12.
# Idempotent and quiet: when every package is present it prints nothing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git ca-certificates
  libcurl4-openssl-dev libxml2-dev libsodium-dev libzstd-dev libsqlite3-dev
  libmicrohttpd-dev libjansson-dev libcmocka-dev
  clang-format
  ceph-mon ceph-osd radosgw ceph-common
  curl python3 procps openssl bash-completion
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "ci/deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

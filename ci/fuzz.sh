#!/usr/bin/env bash
# ci/fuzz.sh [SECONDS [TARGET...]]: builds the libFuzzer targets
# (tests/fuzz/fuzz-*.c, or the TARGETs named, e.g. fuzz-lockd-body) with
# clang in build-fuzz/ and runs each for SECONDS (default 20) over its seed
# corpus tests/fuzz/corpus-<name>/, one target per core at a time. Exits 1
# when any target crashes, leaks, times out or runs out of memory, printing
# the input that did it.
# Installs clang and libclang-rt-14-dev (the fuzzer runtime) when missing.
#
# Owns build-fuzz/ (SS_FUZZ_BUILD=DIR: another build directory, e.g. beside
# someone else's) and build-fuzz/fuzz-run/<target>/ (new inputs the fuzzer
# found, crash artifacts, the log); the seed corpora are only read. Reproduce
# a crash with: build-fuzz/tests/<target> <crash file>.
#
# The long run, e.g. overnight or before a release (an hour per target on
# both cores; keeps what it finds in build-fuzz/fuzz-run/<target>/corpus):
#   ci/fuzz.sh 3600
#   build-fuzz/tests/fuzz-frame -jobs=2 -workers=2 -max_total_time=3600 \
#       build-fuzz/fuzz-run/fuzz-frame/corpus tests/fuzz/corpus-frame
# After one, worthwhile new seeds can be minimized into the committed corpus:
#   build-fuzz/tests/fuzz-frame -merge=1 tests/fuzz/corpus-frame build-fuzz/fuzz-run/fuzz-frame/corpus
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
secs=${1:-20}
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [SECONDS [TARGET...]]" >&2; exit 2 ;; esac
shift $(($# > 0 ? 1 : 0))
jobs=$(nproc 2>/dev/null || echo 2)
build=${SS_FUZZ_BUILD:-build-fuzz}
case "$build" in /*) ;; *) build=$top/$build ;; esac

ci/deps.sh

# clang and its fuzzer runtime, quietly, as ci/deps.sh installs the rest.
missing=()
for p in clang libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "ci/fuzz.sh: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for src in tests/fuzz/fuzz-*.c; do
    targets+=("$(basename "$src" .c)")
  done
fi
for t in "${targets[@]}"; do
  [ -f "tests/fuzz/$t.c" ] || { echo "$0: no target $t (tests/fuzz/$t.c)" >&2; exit 2; }
done

cmake -S "$top" -B "$build" -DCMAKE_C_COMPILER=clang -DSS_FUZZ=ON -DSS_WERROR=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$jobs" --target "${targets[@]}" >/dev/null 2>"$build/build.log" ||
  { cat "$build/build.log" >&2; exit 1; }

# One target's run; its exit code in fuzz-run/<target>/rc.
fuzz_one() { # target
  local t=$1 seeds run rc=0
  seeds=$top/tests/fuzz/corpus-${t#fuzz-}
  run=$build/fuzz-run/$t
  mkdir -p "$run/corpus" "$run/artifacts" "$seeds"
  rm -f "$run"/artifacts/* "$run/rc"
  # New inputs go to the first directory, so the committed seeds stay as they are.
  "$build/tests/$t" -max_total_time="$secs" -timeout=30 -print_final_stats=1 \
    -artifact_prefix="$run/artifacts/" "$run/corpus" "$seeds" >"$run/log" 2>&1 || rc=$?
  echo "$rc" >"$run/rc"
}

# A target is one process on one core: as many at once as there are cores, each still
# fuzzing for SECONDS (on CI's 2 cores the stage takes half the time it took one by one).
running=0
for t in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n || true
    running=$((running - 1))
  fi
  fuzz_one "$t" &
  running=$((running + 1))
done
wait

status=0
for t in "${targets[@]}"; do
  run=$build/fuzz-run/$t
  rc=$(cat "$run/rc" 2>/dev/null || echo "none")
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$run/log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$run/log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$run/log" | tail -n 1 || true)
  crashes=$(find "$run/artifacts" -type f | sort)
  if [ "$rc" != 0 ] || [ -n "$crashes" ]; then
    status=1
    echo "FAIL $t (exit $rc) after ${execs:-?} runs; log: $run/log"
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*runtime error)' "$run/log" | head -n 5 || true
    for c in $crashes; do echo "  crashing input: $c"; done
    [ -n "$crashes" ] || tail -n 20 "$run/log"
  else
    echo "ok   $t: ${execs:-?} runs in ${secs}s (${rate:-?}/s), ${cov:-cov: ?}"
  fi
done
exit $status

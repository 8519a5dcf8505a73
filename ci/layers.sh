#!/usr/bin/env bash
# ci/layers.sh [BUILD_DIR]: core's layers hold (docs/DESIGN.md). A file may
# use its own layer and those below, never one above:
#   base/ < core/format/ < core/local/ < core/peer/ < core/engine/ < core/commands/
# core/include/s3sync.h, the public header, is for engine/, commands/ and
# cli/ (which may include nothing else of core/). Checked twice: every
# #include "..." in the sources, and every call between the built objects
# (nm on BUILD_DIR, default build/); the call graph between core's files
# must have no cycle (tsort). Prints each violation; exits 1 if any.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
layers=(base format local peer engine commands)
rank() { # a source path -> its layer's rank, or nothing for what has none
  case $1 in
  base/*) echo 0 ;; core/format/*) echo 1 ;; core/local/*) echo 2 ;; core/peer/*) echo 3 ;;
  core/engine/*) echo 4 ;; core/commands/*) echo 5 ;; cli/*) echo 6 ;;
  esac
}
bad=0
fail() { echo "layers: $*" >&2; bad=1; }

# --- includes -----------------------------------------------------------------------------
declare -A home # header name -> its path
for h in base/*.h core/*/*.h s3store/*.h; do home[$(basename "$h")]=$h; done
for src in base/*.[ch] core/*/*.[ch] cli/*.[ch]; do
  r=$(rank "$src")
  [ -n "$r" ] || continue
  while read -r inc; do
    [ "$src" != "${src#cli/}" ] && [ -e "cli/$inc" ] && continue # cli's own headers
    h=${home[$inc]:-}
    [ -n "$h" ] || continue # a system header, or one of another part
    case $h in
    core/include/*) [ "$r" -ge 4 ] || fail "$src includes $inc: the public header is for engine/ and above" ;;
    s3store/*) [ "$r" -ge 4 ] || fail "$src includes $inc: the store is for engine/ and above" ;;
    *)
      hr=$(rank "$h")
      if [ "$r" -eq 6 ] && [ "$hr" -ge 1 ]; then
        fail "$src includes $inc ($h): cli/ includes only core/include/s3sync.h"
      elif [ "$hr" -gt "$r" ] && [ "$r" -lt 6 ]; then
        fail "$src includes $inc: ${layers[$r]}/ may not use ${layers[$hr]}/ ($h)"
      fi
      ;;
    esac
  done < <(sed -n 's/^#include "\([^"]*\)".*/\1/p' "$src")
done

# --- calls, from the built objects --------------------------------------------------------
objs=$(find "$build/base/CMakeFiles/ss_base.dir" "$build/core/CMakeFiles/ss_core.dir" -name '*.c.o' 2>/dev/null | sort)
[ -n "$objs" ] || { echo "layers: no objects under $build/ (build first)" >&2; exit 1; }
src_of() { # an object path -> its source path
  local o=${1%.c.o}
  case $o in
  */ss_base.dir/*) echo "base/${o##*/ss_base.dir/}.c" ;;
  *) echo "core/${o##*/ss_core.dir/}.c" ;;
  esac
}
live=""
for o in $objs; do # objects of sources since moved or removed are stale: not counted
  [ -e "$(src_of "$o")" ] && live="$live $o"
done
objs=$live
declare -A def # symbol -> the source defining it
for o in $objs; do
  s=$(src_of "$o")
  for sym in $(nm --defined-only -g "$o" | awk '{print $3}'); do def[$sym]=$s; done
done
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
for o in $objs; do
  s=$(src_of "$o")
  r=$(rank "$s")
  for sym in $(nm -u "$o" | awk '{print $2}'); do
    t=${def[$sym]:-}
    [ -n "$t" ] && [ "$t" != "$s" ] || continue
    echo "$s $t" >>"$edges"
    tr=$(rank "$t")
    [ "$tr" -le "$r" ] || fail "$s calls $sym: ${layers[$r]}/ may not use ${layers[$tr]}/ ($t)"
  done
done
if ! sort -u "$edges" | tsort >/dev/null 2>"$edges.err"; then
  fail "a cycle among core's files (each arrow: calls):"
  grep -v "input contains a loop" "$edges.err" | sed 's/^tsort: /  /' >&2
fi
rm -f "$edges.err"
exit $bad

#!/usr/bin/env bash
# ci/format.sh [PATH...]: checks that C sources follow the repository's
# .clang-format, changing nothing: `clang-format --dry-run --Werror` over the
# *.c and *.h files git knows (tracked, or new and not ignored: so build
# directories are skipped) of the PATHs given, files or folders, else of the
# whole tree. Prints each file that would change and exits 1 when any
# would. To fix one: clang-format -i FILE. Nothing is excluded: the fuzz
# targets, tests and benches are C like the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v clang-format >/dev/null ||
  { echo "ci/format.sh: clang-format not installed (ci/deps.sh installs it)" >&2; exit 2; }
[ -f .clang-format ] || { echo "ci/format.sh: no .clang-format at $PWD" >&2; exit 2; }

mapfile -d '' files < <(git ls-files -z --cached --others --exclude-standard -- "${@:-.}" | grep -zE '\.[ch]$' || true)
if [ ${#files[@]} -eq 0 ]; then
  echo "ci/format.sh: no tracked C files under: ${*:-.}" >&2
  exit 2
fi
bad=()
for f in "${files[@]}"; do
  clang-format --style=file --dry-run --Werror "$f" >/dev/null 2>&1 || bad+=("$f")
done
if [ ${#bad[@]} -gt 0 ]; then
  printf 'ci/format.sh: not clang-formatted (clang-format -i FILE):\n' >&2
  printf '  %s\n' "${bad[@]}" >&2
  exit 1
fi
echo "ci/format.sh: ${#files[@]} files formatted"

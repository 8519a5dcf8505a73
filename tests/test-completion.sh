#!/usr/bin/env bash
# test-completion: dist/bash-completion/s3sync as bash-completion runs it.
# Sources Debian's bash-completion and the file, then drives _s3sync the way
# bash does on <TAB>: COMP_LINE and COMP_POINT, and COMP_WORDS split at
# blanks and at the COMP_WORDBREAKS characters `:` and `=` (so
# `lockd:ht` is three words, as readline hands them over). Checks the
# suggestions for commands, subcommands, config keys, options, store URLs,
# directories and files; and that the lists agree with the binary: the
# commands of `s3sync --help` and the keys of `s3sync config list`.
# Usage: test-completion.sh COMPLETION_FILE S3SYNC_BIN
# Exit 77 (skipped) without bash-completion (ci/deps.sh installs it).
set -uo pipefail
export LC_ALL=C # sort as the expectations are written
comp_file=$(realpath "$1")
bin=$(realpath "$2")
bc=/usr/share/bash-completion/bash_completion
[ -r "$bc" ] || { echo "test-completion: skipped: no $bc (apt install bash-completion)"; exit 77; }
w=$(mktemp -d /tmp/ss-completion-XXXXXX)
trap 'rm -rf "$w"' EXIT

# bash-completion is written for interactive shells: not under set -e or -u.
# shellcheck source=/dev/null
. "$bc"
# shellcheck source=/dev/null
. "$comp_file"
complete -p s3sync >/dev/null || { echo "FAIL the file registers no completion for s3sync"; exit 1; }

# compopt works only inside a completion readline started; record what it is asked.
opts=""
# shellcheck disable=SC2317 # called by _s3sync
compopt() { opts+=" $*"; }

# The suggestions for LINE with the cursor at its end, sorted, one line.
complete_line() { # line
  local line=$1 c word='' i
  local -a words=()
  for ((i = 0; i < ${#line}; i++)); do
    c=${line:i:1}
    case $c in
      ' ') [ -z "$word" ] || words+=("$word"); word='' ;;
      ':' | '=') [ -z "$word" ] || words+=("$word"); words+=("$c"); word='' ;;
      *) word+=$c ;;
    esac
  done
  words+=("$word") # the word at the cursor, empty after a blank
  COMP_LINE=$line
  COMP_POINT=${#line}
  COMP_WORDS=("${words[@]}")
  COMP_CWORD=$((${#words[@]} - 1))
  COMPREPLY=()
  opts=""
  _s3sync s3sync "${words[COMP_CWORD]}" "${words[COMP_CWORD - 1]}"
  printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort | tr '\n' ' ' | sed 's/ $//'
}

fails=0
expect() { # line, the suggestions it must give (sorted, blank-separated)
  local got
  got=$(complete_line "$1")
  if [ "$got" = "$2" ]; then
    echo "ok   '$1<TAB>' -> ${2:-(nothing)}"
  else
    echo "FAIL '$1<TAB>': expected '${2}', got '${got}'"
    fails=$((fails + 1))
  fi
}
expect_nospace() { # line: the suggestion is a prefix to type on from (compopt -o nospace)
  complete_line "$1" >/dev/null
  case $opts in
    *"-o nospace"*) echo "ok   '$1<TAB>' leaves the cursor on the word" ;;
    *) echo "FAIL '$1<TAB>' adds a blank after a prefix"; fails=$((fails + 1)) ;;
  esac
}

commands="checkpoint config cost device doctor gc init key log pull push restore serve status sync verify watch"
keys="cache_size checkpoint_bytes checkpoint_txns device device_id endpoint ignore_file max_requests peer_discovery peer_listen peers preserve_modes price_delete price_download price_get price_head price_list price_put profile region store token_file"

# Commands and subcommands.
expect "s3sync " "$commands"
expect "s3sync con" "config"
expect "s3sync c" "checkpoint config cost"
expect "s3sync do" "doctor"
expect "s3sync --max" "--max-requests="
expect "s3sync p" "pull push"
expect "s3sync config " "get list set unset"
expect "s3sync config get " "$keys"
expect "s3sync config set reg" "region"
expect "s3sync config unset check" "checkpoint_bytes checkpoint_txns"
expect "s3sync config set region " ""
expect "s3sync config set preserve_modes " "false true"
expect "s3sync config set preserve_modes t" "true"
expect "s3sync config get preserve_modes " ""
expect "s3sync device " "approve enrollment list revoke"
expect "s3sync device r" "revoke"
expect "s3sync device enrollment " "approve open"
expect "s3sync device enrollment o" "open"
expect "s3sync device revoke " ""
expect "s3sync key " "add fingerprint list remove rotate"
expect "s3sync key re" "remove"
expect "s3sync key add " ""
expect "s3sync key add --la" "--label="
expect "s3sync key add --label " ""
expect "s3sync key add --label work " ""
expect "s3sync sync " ""
# Options before the command, with their arguments, do not count as the command.
expect "s3sync -C notes con" "config"
expect "s3sync --json -v key " "add fingerprint list remove rotate"
expect "s3sync --token-file tok --endpoint http://x device " "approve enrollment list revoke"
expect "s3sync --endpoint=http://x config get end" "endpoint"
# Options.
expect "s3sync --js" "--json"
expect "s3sync watch --int" "--interval="
expect_nospace "s3sync watch --int"
expect "s3sync --endpoint " ""
# Store URLs after init, the word split at the colon as readline splits it.
expect "s3sync init " "file:/// lockd:http:// lockd:https:// s3://"
expect "s3sync init s" "s3://"
expect "s3sync init lockd:ht" "http:// https://"
expect_nospace "s3sync init s"

# Directories for -C and init's DIR; files for log, restore and --password-file.
mkdir -p "$w/cwd/notes" "$w/cwd/nothing"
: >"$w/cwd/notes.txt"
cd "$w/cwd" || exit 1
expect "s3sync -C no" "notes nothing"
expect "s3sync init file:///tmp/store no" "notes nothing"
expect "s3sync log no" "notes notes.txt nothing"
expect "s3sync restore notes." "notes.txt"
expect "s3sync --password-file notes." "notes.txt"
cd - >/dev/null || exit 1

# The lists agree with the binary. Commands: the first lowercase word of each
# alternative on the usage lines of --help, brackets taken out.
from_help=$("$bin" --help 2>&1 | grep '^  [a-z]' | sed -e 's/^  //' -e 's/  \+[^ ].*$//' -e ':a' -e 's/\[[^][]*\]//g' -e 'ta' |
  tr '|' '\n' | awk '$1 ~ /^[a-z]+$/ { print $1 }' | sort -u | tr '\n' ' ' | sed 's/ $//')
if [ "$from_help" = "$commands" ]; then
  echo "ok   the commands are those of s3sync --help"
else
  echo "FAIL s3sync --help names '$from_help', the completion '$commands'"
  fails=$((fails + 1))
fi
if ! S3SYNC_KDF=interactive S3SYNC_PASSWORD=completion "$bin" -q init "file://$w/store" "$w/A" </dev/null; then
  echo "FAIL s3sync init, to read the config keys"
  fails=$((fails + 1))
fi
from_config=$("$bin" -C "$w/A" config list | awk '{ print $1 }' | sort | tr '\n' ' ' | sed 's/ $//')
if [ "$from_config" = "$keys" ]; then
  echo "ok   the config keys are those of s3sync config list"
else
  echo "FAIL s3sync config list names '$from_config', the completion '$keys'"
  fails=$((fails + 1))
fi

[ $fails -eq 0 ] && echo "test-completion: all passed" && exit 0
echo "test-completion: $fails failed"
exit 1

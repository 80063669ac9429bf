#!/usr/bin/env bash
# What both halves of the command-line test share (cli_test.sh, cli_test_more.sh): the binary, a
# temporary working folder, and the check helpers. Sourced, with the binary's path as $1.
set -u
softreg=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
passed=0
failed=0

ok() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

# expect CODE PATTERN -- ARGS...: exit code CODE and PATTERN (grep -E) in stdout+stderr; for non-zero
# codes also exactly one line on stderr.
expect() {
  local code=$1 pattern=$2
  shift 3
  "$softreg" "$@" >out.txt 2>err.txt
  local got=$?
  if [ "$got" -ne "$code" ]; then fail "softreg $* exited $got, expected $code: $(cat err.txt)"; return; fi
  if ! cat out.txt err.txt | grep -qE -- "$pattern"; then fail "softreg $*: no '$pattern' in: $(cat out.txt err.txt)"; return; fi
  if [ "$code" -ne 0 ] && [ "$(wc -l <err.txt)" -ne 1 ]; then fail "softreg $*: stderr is not one line: $(cat err.txt)"; return; fi
  ok
}


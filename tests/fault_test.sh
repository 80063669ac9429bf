#!/usr/bin/env bash
# Faults a training run must survive, as a user would meet them: SIGKILL at moments spread over a run
# (the folder must then hold only whole files, and --resume must finish it), a full disk (RLIMIT_FSIZE,
# and a small tmpfs where the test may mount one), a read-only output folder, and two runs started into
# the same --out at once.
# Usage: fault_test.sh path/to/softreg
set -u
softreg=$(realpath "$1")
work=$(mktemp -d)
cleanup() { umount "$work/tiny" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
cd "$work" || exit 1
passed=0 failed=0
ok() { passed=$((passed + 1)); }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }

# A run folder holds only whole files: the model loads, metrics.csv has one row per finished epoch,
# and no temp file stays under a final name.
check_whole() {
  local run=$1 what=$2
  if [ -e "$run/model.safetensors" ]; then
    "$softreg" eval --model "$run/model.safetensors" --json >/dev/null 2>eval.err || {
      fail "$what: model.safetensors does not load: $(cat eval.err)"; return; }
  fi
  if [ -e "$run/metrics.csv" ]; then
    awk -F, 'NR == 1 { n = NF } NF != n { bad = 1 } END { exit bad }' "$run/metrics.csv" ||
      { fail "$what: metrics.csv has a ragged row"; return; }
  fi
  ok
}

# 1. SIGKILL at 12 moments from start-up to the end of a 20-epoch run that writes its folder after every
# epoch (--save-every 0), then --resume to the end.
for delay in 0.02 0.05 0.1 0.15 0.2 0.3 0.4 0.5 0.7 0.9 1.2 1.6; do
  run=kill-$delay
  "$softreg" train --epochs 20 --no-plots --quiet --threads 2 --save-every 0 --out "$run" >/dev/null 2>&1 &
  pid=$!
  sleep "$delay"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  check_whole "$run" "SIGKILL after $delay s"
  if [ -e "$run/model.safetensors" ]; then
    if "$softreg" train --resume "$run" --no-plots --quiet >resume.out 2>resume.err; then
      rows=$(($(wc -l <"$run/metrics.csv") - 1))
      [ "$rows" -eq 20 ] && ok || fail "SIGKILL after $delay s: resumed run has $rows epochs, expected 20"
    else
      fail "SIGKILL after $delay s: --resume failed: $(cat resume.err)"
    fi
  fi
done

# 2. A full disk, as RLIMIT_FSIZE (16 KB: metrics.csv fits, the 31 KB model file does not). SIGXFSZ is
# ignored, so a write beyond the limit fails with EFBIG as on a full disk.
(
  trap '' XFSZ
  ulimit -f 16
  "$softreg" train --epochs 2 --no-check --out fsize >fsize.out 2>fsize.err
  echo $? >fsize.code
)
code=$(cat fsize.code)
if [ "$code" -ne 1 ]; then fail "file size limit: exit $code, expected 1: $(cat fsize.err)";
elif [ "$(wc -l <fsize.err)" -ne 1 ]; then fail "file size limit: stderr is not one line: $(cat fsize.err)";
elif ! grep -q "File too large" fsize.err; then fail "file size limit: no 'File too large' in: $(cat fsize.err)";
else ok; fi
check_whole fsize "file size limit"
if ls -a fsize | grep -q "\.tmp\."; then fail "file size limit: temp files left: $(ls -a fsize)"; else ok; fi

# The same on a real full file system where one can be mounted (root, outside a restricted container).
mkdir -p tiny
if mount -t tmpfs -o size=16k tmpfs tiny 2>/dev/null; then
  "$softreg" train --epochs 2 --no-check --out tiny/run >tiny.out 2>tiny.err
  code=$?
  if [ "$code" -ne 1 ] || [ "$(wc -l <tiny.err)" -ne 1 ] || ! grep -q "No space left" tiny.err; then
    fail "full tmpfs: exit $code: $(cat tiny.err)"
  else
    ok
  fi
  check_whole tiny/run "full tmpfs"
  umount tiny
else
  echo "note: cannot mount a tmpfs here; the full-disk case ran under RLIMIT_FSIZE only"
fi

# 3. A read-only output folder (as an unprivileged user: root writes anywhere).
mkdir -p readonly && chmod 555 readonly && chmod 755 "$work"
if command -v setpriv >/dev/null && [ "$(id -u)" -eq 0 ]; then
  as_nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups)
  cache=$(mktemp -d) && chmod 777 "$cache"
  SOFTREG_CACHE=$cache "${as_nobody[@]}" "$softreg" train --epochs 1 --no-check --out readonly/run >ro.out 2>ro.err
  code=$?
  if [ "$code" -ne 1 ] || [ "$(wc -l <ro.err)" -ne 1 ] || ! grep -q "readonly/run" ro.err; then
    fail "read-only folder: exit $code: $(cat ro.err)"
  else
    ok
  fi
  rm -rf "$cache"
elif [ "$(id -u)" -ne 0 ]; then
  "$softreg" train --epochs 1 --no-check --out readonly/run >ro.out 2>ro.err
  code=$?
  [ "$code" -eq 1 ] && grep -q "readonly/run" ro.err && ok || fail "read-only folder: exit $code: $(cat ro.err)"
else
  echo "note: no setpriv: the read-only case was not run"
fi

# 4. Two runs into the same --out at once: one trains, the other stops with a clear error.
"$softreg" train --epochs 40 --no-plots --quiet --out same >a.out 2>a.err &
pa=$!
"$softreg" train --epochs 40 --no-plots --quiet --out same >b.out 2>b.err &
pb=$!
wait "$pa"; ca=$?
wait "$pb"; cb=$?
if [ $((ca + cb)) -ne 1 ] || ! grep -qh "another softreg process is training into this run folder" a.err b.err; then
  fail "same --out: exit codes $ca and $cb: $(cat a.err b.err)"
else
  ok
fi
check_whole same "same --out"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

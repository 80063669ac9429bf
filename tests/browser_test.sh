#!/usr/bin/env bash
# softreg serve in a real browser: Debian's chromium, headless, over runs trained on Fashion-MNIST.
# It loads the dashboard and asserts on the page as the browser built it (--dump-dom): the runs table
# lists the run, the curves chart holds one point per epoch, the confusion matrix is drawn, and a test
# image submitted through the page's predictor comes back named as its true class. Then a live run:
# softreg train --serve, read through chromedriver while it trains. Usage: browser_test.sh path/to/softreg
set -uo pipefail
cli=$1
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  if [ "${CI:-}" = "true" ]; then echo "FAIL: chromium is not installed (scripts/setup installs it)"; exit 1; fi
  echo "SKIP: chromium is not installed (scripts/setup installs it)"
  exit 77
fi

failures=0
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@"; then echo "ok: $what"; else echo "FAIL: $what"; failures=$((failures + 1)); fi
}

# The browser, headless; as root it needs --no-sandbox. Its profile lives in the work folder.
chrome() {
  timeout 90 "$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage --no-first-run \
    --user-data-dir="$work/profile" --hide-scrollbars "$@" 2>>"$work/chromium.log"
}

# Starts a server command in the background and waits for the URL it prints; sets $url.
start_and_wait_for_url() {  # LOG COMMAND...
  local log=$1
  shift
  "$@" >"$log" 2>&1 &
  pids+=($!)
  url=""
  for _ in $(seq 1 200); do
    url=$(grep -o 'http://127\.0\.0\.1:[0-9]*/' "$log" | head -1)
    [ -n "$url" ] && return 0
    sleep 0.05
  done
  echo "FAIL: no URL from: $*"
  cat "$log"
  return 1
}

mkdir -p "$work/runs"
"$cli" train --epochs 5 --out "$work/runs/fashion" --quiet || { echo "FAIL: training"; exit 1; }

# A test image the model gets right with confidence, and its class name.
read -r index name < <("$cli" predict --model "$work/runs/fashion/model.safetensors" --index 1..60 --json |
  sed -n 's/.*"input":"test:\([0-9]*\)","label":\([0-9]*\),"top":\[{"class":\2,"name":"\([^"]*\)","prob":0\.9.*/\1 \3/p' |
  head -1)
check "a confidently right test image among the first 60 (index '${index:-}', '${name:-}')" test -n "${index:-}"

start_and_wait_for_url "$work/serve.log" "$cli" serve --runs "$work/runs" --port 0 || exit 1
chrome --dump-dom --virtual-time-budget=10000 "${url}#run=fashion&test=${index}" >"$work/page.html"
check "the page was built" grep -q '<table id="runs"' "$work/page.html"
check "the runs table lists the run" grep -q '<tr data-run="fashion"' "$work/page.html"
check "the run is shown as finished" grep -q '<span id="run-state" class="state finished">finished' "$work/page.html"
check "the curves chart has one point per epoch (5)" grep -q '<canvas id="curves" data-points="5"' "$work/page.html"
check "the epochs table has 5 rows" test "$(grep -o '<tr><td>[0-9]*</td>' "$work/page.html" | wc -l)" -eq 5
check "the confusion matrix is drawn (10 x 10 cells)" \
  test "$(grep -o 'data-cell="[0-9]*,[0-9]*"' "$work/page.html" | sort -u | wc -l)" -eq 100
check "test image $index was submitted through the page" grep -q "<ol id=\"top\" data-input=\"test:${index}\"><li " "$work/page.html"
check "the page's prediction names its true class ($name)" \
  grep -q "<ol id=\"top\" data-input=\"test:${index}\"><li data-class=\"[0-9]*\" data-name=\"${name}\"" "$work/page.html"
check "the weight templates and prediction grid are shown" \
  grep -q 'src="/api/runs/fashion/files/weights.png' "$work/page.html"
check "a run that learned has no note" grep -q '<p id="run-note" class="note" hidden="">' "$work/page.html"
# A table no model can learn (each row twice, once a class): its run's note is shown.
for i in $(seq 1 40); do echo "yes,1,$((i % 3))"; echo "no,1,$((i % 3))"; done >"$work/coin.csv"
"$cli" train --train-csv "$work/coin.csv" --test-csv "$work/coin.csv" --out "$work/runs/coin" --quiet --no-plots ||
  echo "FAIL: training on coin.csv"
chrome --dump-dom --virtual-time-budget=5000 "${url}#run=coin" >"$work/coin.html"
check "a run no better than one class shows its note" \
  grep -q '<p id="run-note" class="note">Note: test accuracy 0.5000 is no better than always answering "no"' "$work/coin.html"

chrome --window-size=1400,1500 --virtual-time-budget=10000 --screenshot="$work/dashboard.png" \
  "${url}#run=fashion&test=${index}" >/dev/null
# PNG signature, then the IHDR width and height (1400 x 1500).
check "a screenshot of the dashboard" test "$(od -An -tx1 -N24 "$work/dashboard.png" 2>/dev/null | tr -d ' \n')" = \
  "89504e470d0a1a0a0000000d4948445200000578000005dc"
check "the screenshot is not blank (over 60 KB of PNG)" test "$(stat -c %s "$work/dashboard.png" 2>/dev/null || echo 0)" -gt 60000
if [ -n "${SOFTREG_SCREENSHOT_OUT:-}" ]; then cp "$work/dashboard.png" "$SOFTREG_SCREENSHOT_OUT"; fi

# A live run: train --serve prints the dashboard's URL; a page open on it (driven through WebDriver by
# Debian's chromedriver, so it is read while it runs) shows the run in training with its chart growing
# epoch by epoch, then finished with every epoch; the event stream itself brings each epoch once, in order.
driver=$(command -v chromedriver || true)
if [ -z "$driver" ]; then
  echo "FAIL: chromedriver is not installed (scripts/setup installs chromium-driver)"
  exit 1
fi
# The browser and its WebDriver session start before the run does, so that the page is read from the
# run's first epochs on whatever the browser's start costs on a loaded machine (the 200 epochs take
# about 8 s).
driver_port=""
for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 20000))
  "$driver" --port=$port >"$work/chromedriver.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/status" >/dev/null 2>&1 && break; sleep 0.05; done
  if curl -sf "http://127.0.0.1:$port/status" >/dev/null 2>&1; then pids+=($pid); driver_port=$port; break; fi
  kill $pid 2>/dev/null
done
check "chromedriver started" test -n "$driver_port"
webdriver() {  # webdriver METHOD PATH [JSON]
  curl -s -X "$1" "http://127.0.0.1:$driver_port$2" -H 'Content-Type: application/json' ${3:+-d "$3"}
}
session=$(webdriver POST /session '{"capabilities":{"alwaysMatch":{"goog:chromeOptions":{"binary":"'"$browser"'",
  "args":["--headless","--no-sandbox","--disable-gpu","--disable-dev-shm-usage"]}}}}' |
  sed -n 's/.*"sessionId":"\([0-9a-f]*\)".*/\1/p')
check "a WebDriver session" test -n "$session"

epochs=200
start_and_wait_for_url "$work/live.log" "$cli" train --serve --serve-port 0 --epochs $epochs --batch-size 8 \
  --threads 1 --out "$work/runs/live" --no-plots --no-check || exit 1
live_pid=${pids[-1]}
live_url=$url
timeout 120 curl -sN "${live_url}api/runs/live/events" >"$work/events.txt" &
events_pid=$!
webdriver POST "/session/$session/url" "{\"url\":\"${live_url}#run=live\"}" >/dev/null
# What the page shows: "<points on the curves chart> <run state>".
read_page() {
  webdriver POST "/session/$session/execute/sync" \
    '{"script":"return document.getElementById(\"curves\").dataset.points + \" \" + document.getElementById(\"run-state\").textContent","args":[]}' |
    sed -n 's/.*"value":"\([0-9]* [a-z]*\)".*/\1/p'
}
seen=()
for _ in $(seq 1 600); do
  page=$(read_page)
  [ -n "$page" ] && { [ ${#seen[@]} -eq 0 ] || [ "${seen[-1]}" != "$page" ]; } && seen+=("$page")
  [ "$page" = "$epochs finished" ] && break
  sleep 0.2
done
echo "the page showed: ${seen[*]:0:6} ... ${seen[-1]:-}"
training=$(printf '%s\n' "${seen[@]}" | grep -c ' training$')
check "the page showed the run in training at 3 or more epoch counts" test "$training" -ge 3
grown=yes
previous=0
for reading in "${seen[@]}"; do
  n=${reading%% *}
  [ "$n" -lt "$previous" ] && grown=no
  previous=$n
done
check "its chart grew epoch by epoch, never back" test "$grown" = yes
check "and ended with all $epochs epochs, finished" test "${seen[-1]:-}" = "$epochs finished"

# The finished run, by hand: clicking a confusion-matrix cell shows its test images (as many as the API
# lists), and drawing on the pad (pointer actions) shows predictions that change as the drawing grows.
webdriver POST "/session/$session/url" "{\"url\":\"${url}#run=fashion\"}" >/dev/null
run_script() {  # run_script JS: the string the script returns
  webdriver POST "/session/$session/execute/sync" "{\"script\":\"$1\",\"args\":[]}" | sed -n 's/.*"value":"\(.*\)"}$/\1/p'
}
# The fashion run's own matrix: until it has loaded, the page still shows the live run's, whose cells a
# click would open.
for _ in $(seq 1 100); do
  [ "$(run_script "return String(document.querySelectorAll('#confusion table[data-run=\\\"fashion\\\"] td[data-cell]').length)")" = 100 ] && break
  sleep 0.1
done
cell_count=$(curl -sf "${url}api/runs/fashion/confusion/6/0" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
run_script "document.querySelector('#confusion table[data-run=\\\"fashion\\\"] td[data-cell=\\\"6,0\\\"]').click(); return ''" >/dev/null
shown=""
for _ in $(seq 1 100); do
  shown=$(run_script "return String(document.querySelectorAll('#cell img').length)")
  [ "${shown:-0}" -gt 0 ] && break
  sleep 0.1
done
check "clicking cell (shirt, t-shirt) shows its ${cell_count:-?} test images (shown: ${shown:-none})" \
  test "${shown:-0}" -eq "$(( ${cell_count:-0} < 200 ? ${cell_count:-0} : 200 ))" -a "${cell_count:-0}" -gt 0
pad=$(webdriver POST "/session/$session/element" '{"using":"css selector","value":"#pad"}' |
  sed -n 's/.*"element-6066-11e4-a52e-4f735466cecf":"\([^"]*\)".*/\1/p')
stroke() {  # stroke X0 Y0 DX DY: a mouse stroke from (X0, Y0) off the pad's centre, by (DX, DY)
  webdriver POST "/session/$session/actions" '{"actions":[{"type":"pointer","id":"mouse","parameters":{"pointerType":"mouse"},"actions":[
    {"type":"pointerMove","duration":0,"origin":{"element-6066-11e4-a52e-4f735466cecf":"'"$pad"'"},"x":'"$1"',"y":'"$2"'},
    {"type":"pointerDown","button":0},{"type":"pointerMove","duration":150,"origin":"pointer","x":'"$3"',"y":'"$4"'},
    {"type":"pointerUp","button":0}]}]}' >/dev/null
}
top_now() {
  run_script "const t = document.getElementById('top'); return t.dataset.input + ' ' + [...t.children].map(li => li.dataset.name + '=' + li.lastChild.textContent).join(',')"
}
wait_top_change() {  # wait_top_change PREVIOUS: echoes the list once it differs from PREVIOUS
  local now=""
  for _ in $(seq 1 50); do
    now=$(top_now)
    [ -n "$now" ] && [ "$now" != "$1" ] && [ "${now#drawing }" != "$now" ] && [ "$(tr -cd ',' <<<"$now" | wc -c)" -eq 9 ] && break
    sleep 0.1
  done
  echo "$now"
}
stroke -30 -90 0 180
first=$(wait_top_change "")
stroke 30 -90 0 180
second=$(wait_top_change "$first")
echo "after one stroke: ${first:0:80}..."
echo "after two:        ${second:0:80}..."
check "drawing on the pad shows all ten classes with their probabilities" test "$(tr -cd ',' <<<"$first" | wc -c)" -eq 9
check "and the prediction changes as the drawing grows" test -n "$second" -a "$second" != "$first"
webdriver DELETE "/session/$session" >/dev/null

wait "$events_pid"
check "the event stream brought all $epochs epochs, once each, in order" \
  test "$(grep '^id: ' "$work/events.txt" | cut -d' ' -f2 | tr '\n' ' ')" = "$(seq -s ' ' 1 $epochs) "
check "and then its end, the run finished" grep -q '^data: {"state":"finished"}' "$work/events.txt"
for _ in $(seq 1 100); do grep -q "the dashboard stays up" "$work/live.log" && break; sleep 0.05; done
check "train --serve keeps serving after training" curl -sf -o /dev/null "${live_url}api/runs/live"
kill -INT "$live_pid"
wait "$live_pid"
check "Ctrl-C then ends train --serve with its training's exit code (0)" test $? -eq 0

if [ "$failures" -gt 0 ]; then
  echo "$failures check(s) failed; chromium's log:"
  tail -20 "$work/chromium.log"
  exit 1
fi
echo "all browser checks passed"

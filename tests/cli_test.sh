#!/usr/bin/env bash
# The softreg command line as a user meets it: help and version, exit codes (0 ok, 1 error, 2 usage),
# one-line error messages, and the files a training run leaves behind.
# Usage: cli_test.sh path/to/softreg
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

expect 0 '^softreg [0-9]+\.[0-9]+\.[0-9]+$' -- --version
expect 0 'train' -- --help
expect 0 '--batch-size' -- train --help
expect 2 'softreg: error: .*subcommand' --
expect 2 "softreg: error: unknown command 'frobnicate'" -- frobnicate
expect 2 'softreg: error: .*--wat' -- train --wat
expect 2 'softreg: error: --lr must be > 0, got 0' -- train --lr 0
expect 2 'softreg: error: --lr must be > 0, got -1' -- train --lr -1
expect 2 'softreg: error: .*--lr' -- train --lr abc
expect 2 'softreg: error: --batch-size must be >= 1, got 0' -- train --batch-size 0
expect 2 'softreg: error: --epochs must be between 1 and' -- train --epochs 0
expect 2 'softreg: error: --threads must be between 1 and' -- train --threads 0
expect 2 'softreg: error: .*--epochs' -- train --epochs 1.5
expect 1 'softreg: error: --data /nonexistent: not a folder' -- train --data /nonexistent
# Data sets by name (the downloads themselves: test_download.cpp, against a loopback server).
expect 2 "softreg: error: unknown data set 'cifar' \(known: fashion-mnist, mnist, kmnist\)" -- train --dataset cifar
expect 2 "softreg: error: unknown data set 'cifar'" -- data download cifar
expect 2 'softreg: error: --download needs --dataset NAME' -- train --download
expect 2 'softreg: error: --mirror applies to --download' -- train --dataset mnist --mirror http://127.0.0.1:9/
expect 2 'softreg: error: --retries must be between 0 and 20, got -1' -- data download mnist --retries -1
expect 2 'softreg: error: --stall-timeout must be between 1 and 3600, got 0' -- data download mnist --stall-timeout 0
expect 2 'softreg: error: --connect-timeout must be between 1 and 600, got 1e\+06' -- data download mnist --connect-timeout 1e6
expect 2 "softreg: error: --mirror must be an http://, https:// or file:// URL, got 'ftp://x/'" -- data download mnist --mirror ftp://x/
expect 2 'softreg: error: --dataset names IDX files' -- train --dataset mnist --train-csv x.csv
HOME=/nonexistent SOFTREG_DATA= XDG_CACHE_HOME= expect 1 "softreg: error: data set 'mnist' not found \(looked in /nonexistent/.cache/softreg/mnist\); fetch it with 'softreg data download mnist'" -- data --dataset mnist
expect 0 '"name": "kmnist"' -- data --json
expect 2 'softreg: error: --momentum must be in \[0, 1\), got 1' -- train --momentum 1
expect 2 'softreg: error: --beta1 must be in \[0, 1\), got 1.5' -- train --beta1 1.5
expect 2 'softreg: error: --beta2 must be in \[0, 1\), got -0.1' -- train --beta2 -0.1
expect 2 'softreg: error: --l2 must be >= 0, got nan' -- train --l2 nan
expect 2 'softreg: error: --l2 must be >= 0, got -1' -- train --l2 -1
expect 2 'softreg: error: --eps must be > 0, got 0' -- train --eps 0
expect 2 'softreg: error: --weight-decay must be >= 0, got -1' -- train --weight-decay -1
expect 2 'softreg: error: --optimizer: rmsprop not in' -- train --optimizer rmsprop
expect 2 'softreg: error: --schedule: linear not in' -- train --schedule linear
expect 2 'softreg: error: --warmup must be between 0 and the number of epochs \(10\), got 20' -- train --warmup 20
expect 2 'softreg: error: --lr-step must be between 1 and' -- train --lr-step 0
expect 2 'softreg: error: --lr-gamma must be in \(0, 1\], got 0' -- train --lr-gamma 0
expect 2 'softreg: error: --seed: must be >= 0, got -1' -- train --seed -1
expect 2 'softreg: error: --init-std must be between 0 and 1, got 1e\+30' -- train --init-std 1e30
expect 2 'softreg: error: --init-std must be between 0 and 1, got -0.5' -- train --init-std -0.5

# A data folder with one malformed file: the error names the file and what is wrong.
mkdir bad
printf '\x00\x00\x08\x01\x00\x00\x00\x02\x00\x01' >bad/train-labels-idx1-ubyte
printf '\x00\x00\x08\x01\x00\x00\x00\x02\x00\x01' >bad/t10k-labels-idx1-ubyte
printf '\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x01\x00\x00\x00\x02\x01\x02\x03' >bad/train-images-idx3-ubyte
cp bad/train-images-idx3-ubyte bad/t10k-images-idx3-ubyte
expect 1 'train-images-idx3-ubyte: truncated: header says 2x1x2 = 4 bytes of data, found 3' -- train --data bad
expect 2 'softreg: error: --lr must be > 0' -- train --data bad --lr 0  # flags are checked before data
rm bad/t10k-labels-idx1-ubyte
expect 1 'softreg: error: --data bad: missing t10k-labels-idx1-ubyte\[.gz\]' -- train --data bad
# Labels file where images are expected: the magic check says so.
mkdir swapped
cp /usr/share/datasets/fashion-mnist/* swapped/ 2>/dev/null
if [ -f swapped/t10k-labels-idx1-ubyte.gz ]; then
  cp swapped/t10k-labels-idx1-ubyte.gz swapped/t10k-images-idx3-ubyte.gz
  # Copies in a temp folder: their decoded bytes go to a cache that goes away with it.
  SOFTREG_CACHE="$work/cache" expect 1 \
    't10k-images-idx3-ubyte.gz: expected magic 2051, found 2049 \(is this a labels file\?\)' -- train --data swapped
fi

# A short real run: one epoch fails the seed's checks (train loss is still ~0.79), --no-check skips them.
expect 1 'acceptance check failed: train loss < 0.5 \(got 0\.7' -- train --epochs 1 --out run1 --quiet
expect 0 'test accuracy' -- train --epochs 1 --no-check --out run2 --threads 2
[ "$(head -1 run2/metrics.csv)" = "epoch,train_loss,train_acc,test_acc,test_loss,seconds" ] && ok || fail "metrics.csv header"
[ "$(wc -l <run2/metrics.csv)" -eq 2 ] && ok || fail "metrics.csv has $(wc -l <run2/metrics.csv) lines, expected 2"
grep -q '"seconds_total"' run2/summary.json && ok || fail "summary.json lacks seconds_total"
[ -z "$(find run1 run2 -name '*.tmp*')" ] && ok || fail "temp files left behind"

# --json: the summary is the only thing on stdout.
"$softreg" train --epochs 2 --no-check --json --seed 3 --threads 2 --out run3 >json.txt 2>/dev/null && ok || fail "--json run"
[ "$(head -c1 json.txt)" = "{" ] && [ "$(tail -c2 json.txt)" = "}" ] && grep -q '"test_acc"' json.txt && ok ||
  fail "--json stdout is not just the summary: $(head -3 json.txt)"
cmp -s json.txt run3/summary.json && ok || fail "--json output differs from summary.json"

# Same seed and threads: bit-identical metrics apart from the seconds column.
"$softreg" train --epochs 2 --no-check --quiet --seed 3 --threads 2 --out run4 && ok || fail "repeat run"
cmp -s <(cut -d, -f1-5 run3/metrics.csv) <(cut -d, -f1-5 run4/metrics.csv) && ok || fail "repeat run differs"

# Default run folder: runs/<UTC timestamp> and runs/latest pointing at it.
"$softreg" train --epochs 1 --no-check --quiet && ok || fail "default run folder"
[ -L runs/latest ] && [ -f runs/latest/summary.json ] && ok || fail "runs/latest missing"
ls runs | grep -qE '^[0-9]{8}T[0-9]{6}Z$' && ok || fail "no timestamped run folder: $(ls runs)"

# Pictures: a default run draws all four; --no-plots none; plot redraws them with other choices.
for f in curves.png curves.svg predictions.png confusion.png confusion.csv weights.png; do
  [ -s "run2/$f" ] && ok || fail "run2/$f missing"
done
"$softreg" train --epochs 1 --no-check --quiet --no-plots --out noplots && [ -z "$(ls noplots | grep -E '\.(png|svg)$')" ] && ok ||
  fail "--no-plots still drew: $(ls noplots)"
expect 0 'wrote curves.png, curves.svg, predictions.png, confusion.png, confusion.csv, weights.png in pics' -- \
  plot run2 --n 30 --misclassified --out pics
[ "$(head -1 pics/confusion.csv | tr ',' '\n' | wc -l)" -eq 11 ] && ok || fail "confusion.csv header"
expect 2 'softreg: error: --n must be >= 1, got 0' -- plot run2 --n 0
expect 1 'softreg: error: nowhere/model.safetensors: cannot open for reading' -- plot nowhere

# A saved model: eval and predict.
[ -f run2/model.safetensors ] && ok || fail "train left no model.safetensors"
expect 0 'accuracy 0\.[0-9]+ ± 0\.00[0-9]+' -- eval --model run2/model.safetensors
expect 0 '"accuracy_stderr"' -- eval --model run2/model.safetensors --json --split train
grep -q '"per_class":\[{"class":0,"name":"t-shirt"' out.txt && grep -q '"confusion":\[\[' out.txt && ok ||
  fail "eval --json lacks per_class/confusion: $(head -c 300 out.txt)"
expect 2 'softreg: error: .*--split' -- eval --model run2/model.safetensors --split valid
expect 2 'softreg: error: .*--model' -- eval
expect 1 'softreg: error: nope.safetensors: cannot open for reading' -- eval --model nope.safetensors
printf 'not a model' >junk.safetensors
expect 1 'junk.safetensors: header length .* does not fit' -- eval --model junk.safetensors
expect 0 '^test:0: [a-z -]+ 0\.[0-9]{3}, ' -- predict --model run2/model.safetensors --index 0..2
[ "$(wc -l <out.txt)" -eq 3 ] && ok || fail "predict --index 0..2 printed $(wc -l <out.txt) lines"
expect 0 '^\{"input":"test:7","label":[0-9],"top":\[\{"class":[0-9],"name":"[a-z -]+","prob":0\.[0-9]+\}\]\}$' -- \
  predict --model run2/model.safetensors --index 7 --json --top 1
expect 2 'softreg: error: --index must be I or I\.\.J' -- predict --model run2/model.safetensors --index x..3
expect 2 'softreg: error: --index 10000 is past the last test image \(9999\)' -- predict --model run2/model.safetensors --index 10000
expect 2 'softreg: error: give image files \(or, for a model trained on features, .npy/.csv files\) to predict' -- predict --model run2/model.safetensors
# Image files: a 56x56 binary PGM (a bright block on black) and a file that is not an image.
{ printf 'P5\n56 56\n255\n'; for y in $(seq 56); do
    if [ "$y" -gt 10 ] && [ "$y" -lt 46 ]; then head -c 16 /dev/zero; head -c 24 /dev/zero | tr '\0' '\310'; head -c 16 /dev/zero
    else head -c 56 /dev/zero; fi; done; } >block.pgm
printf 'hello' >notes.txt
"$softreg" predict --model run2/model.safetensors --json block.pgm notes.txt block.pgm >out.txt 2>err.txt
[ $? -eq 1 ] && ok || fail "predict with one bad file should exit 1"
[ "$(grep -c '"input":"block.pgm"' out.txt)" -eq 2 ] && ok || fail "good files not predicted: $(cat out.txt)"
grep -q 'notes.txt: cannot read as an image' err.txt && [ "$(wc -l <err.txt)" -eq 1 ] && ok || fail "bad file error: $(cat err.txt)"
expect 0 'block.pgm: ' -- predict --model run2/model.safetensors --invert --top 10 block.pgm
# A 21-byte PGM whose header claims 8 x 6,506,266 pixels: refused at once, no prediction.
printf 'P5\n 8\n6506266p000\n\n\n9' >lying.pgm
expect 1 'lying.pgm: the header claims 8x6506266 pixels, more than a 21-byte file can hold' -- \
  predict --model run2/model.safetensors lying.pgm
[ ! -s out.txt ] && ok || fail "predict printed a prediction for lying.pgm: $(cat out.txt)"

# Ctrl-C saves a checkpoint; --resume continues it to the same weights as an uninterrupted run.
"$softreg" train --epochs 40 --threads 2 --seed 4 --quiet --no-check --no-plots --out straight && ok || fail "straight run"
"$softreg" train --epochs 40 --threads 2 --seed 4 --quiet --no-check --no-plots --out stopped 2>stop.txt &
pid=$!
for _ in $(seq 100); do [ -f stopped/metrics.csv ] && break; sleep 0.02; done
kill -INT $pid
wait $pid
code=$?
if [ $code -eq 130 ]; then
  grep -qE '^softreg: interrupted .*; resume with: softreg train --resume stopped$' stop.txt && ok || fail "interrupt message: $(cat stop.txt)"
  expect 2 '--lr cannot be changed with --resume' -- train --resume stopped --lr 0.5
  "$softreg" train --resume stopped --quiet --no-check && ok || fail "resume failed"
elif [ $code -eq 0 ]; then
  echo "note: the run finished before Ctrl-C arrived; resume not exercised"
else
  fail "interrupted run exited $code: $(cat stop.txt)"
fi
cmp -s straight/model.safetensors stopped/model.safetensors && ok || fail "resumed model differs from the uninterrupted one"
cmp -s <(cut -d, -f1-5 straight/metrics.csv) <(cut -d, -f1-5 stopped/metrics.csv) && ok || fail "resumed metrics differ"
"$softreg" train --resume stopped --epochs 41 --quiet --no-check && [ "$(wc -l <stopped/metrics.csv)" -eq 42 ] && ok ||
  fail "resume with more epochs"
expect 2 '--epochs 5 is less than the 41 epochs stopped already has' -- train --resume stopped --epochs 5
expect 1 '--resume nowhere: no model.safetensors there' -- train --resume nowhere

# Adam with L2, warmup and a step schedule: stopped after 2 epochs and resumed to 3, it ends with the same
# weights and moments as one run of 3 (the optimizer's state travels in model.safetensors).
adam=(--optimizer adam --lr 0.002 --l2 1e-4 --schedule step --lr-step 1 --lr-gamma 0.5 --warmup 1 --threads 2
      --seed 5 --no-check --quiet --no-plots)
"$softreg" train "${adam[@]}" --epochs 3 --out adam3 && ok || fail "adam run"
"$softreg" train "${adam[@]}" --epochs 2 --out adam2 && "$softreg" train --resume adam2 --epochs 3 --quiet --no-check &&
  ok || fail "adam run resumed"
cmp -s adam3/model.safetensors adam2/model.safetensors && ok || fail "resumed adam model differs from one run"
grep -q '"optimizer": "adam"' adam3/summary.json && grep -q '"l2": 0.0001' adam3/summary.json && ok ||
  fail "summary.json lacks the optimizer: $(head -c 300 adam3/summary.json)"
expect 2 '--optimizer cannot be changed with --resume' -- train --resume adam2 --optimizer sgd
awk -F, 'NR == 4 { exit !($4 > 0.8) }' adam3/metrics.csv && ok || fail "adam: test acc $(tail -1 adam3/metrics.csv)"

# --standardize: model.safetensors' weights act on raw pixels (the scaling folded in), so eval, which
# knows nothing of it, gives the run's test accuracy; the flag is part of the recipe.
"$softreg" train --standardize --epochs 2 --threads 2 --no-check --quiet --no-plots --out standardized && ok ||
  fail "standardized run"
grep -q '"standardize": true' standardized/summary.json && ok || fail "summary.json lacks standardize"
st_acc=$(grep -o '"test_acc": [0-9.]*' standardized/summary.json | head -1 | cut -d' ' -f2)
"$softreg" eval --model standardized/model.safetensors --json | grep -q "\"accuracy\":$st_acc" && ok ||
  fail "eval of the standardized model does not give summary.json's test_acc $st_acc"
expect 2 '--standardize cannot be changed with --resume' -- train --resume standardized --standardize

# softreg tune: the sweep on a validation split, the refit as an ordinary run folder, its JSON.
expect 2 'softreg: error: --l2 is what tune chooses' -- tune --l2 1e-3
expect 2 "softreg: error: --grid is FROM:TO:COUNT or a list X,Y,..., got '1e-3:1'" -- tune --grid 1e-3:1
expect 2 "softreg: error: --grid needs numbers >= 0, got '-1'" -- tune --grid 1e-3,-1
expect 2 'softreg: error: --lrs does not apply to --optimizer lbfgs' -- tune --lrs 0.1
expect 2 "softreg: error: --lrs needs learning rates > 0, got '0'" -- tune --optimizer sgd --lrs 0
expect 2 'softreg: error: --early-stop does not apply to tune' -- tune --early-stop 2
expect 2 'softreg: error: --val-fraction must be in \(0, 1\), got 0' -- tune --val-fraction 0
expect 2 'softreg: error: --refit-tol must be >= 0, got -1' -- tune --refit-tol -1
"$softreg" tune --grid 1e-2,1e-3,1e-4 --threads 2 --json --no-plots --out tuned >tune.json 2>tune.err && ok ||
  fail "tune: $(tail -2 tune.err)"
/usr/bin/python3 - tune.json <<'PY' && ok || fail "tune JSON: $(head -c 400 tune.json)"
import json, sys
j = json.load(open(sys.argv[1]))
assert j["best"]["optimizer"] == "lbfgs" and j["selected_by"] == "val_loss", j["best"]
assert [t["l2"] for t in j["trials"]] == [1e-2, 1e-3, 1e-4], j["trials"]
assert min(t["val_loss"] for t in j["trials"]) == j["val_loss"]
assert j["train_rows"] == 54000 and j["val_rows"] == 6000, (j["train_rows"], j["val_rows"])
assert 0.83 < j["test_acc"] < 0.86 and j["run_folder"] == "tuned", j
PY
grep -q "\"l2\": $(/usr/bin/python3 -c 'import json; print(json.load(open("tune.json"))["best"]["l2"])')" tuned/summary.json &&
  grep -q '"val_fraction"' tuned/model.safetensors && ok || fail "the refit's recipe is not the winner's"
tuned_acc=$(/usr/bin/python3 -c 'import json; print(json.load(open("tune.json"))["test_acc"])')
"$softreg" eval --model tuned/model.safetensors --json | grep -q "\"accuracy\":$tuned_acc" && ok ||
  fail "eval of the refit does not give tune's test_acc $tuned_acc"
cmp -s tuned/tune.json tune.json && ok || fail "tuned/tune.json differs from what --json printed"
"$softreg" tune --optimizer sgd --epochs 1 --lrs 0.1,1e4 --grid 1e-4 --threads 2 --no-check --out tuned-sgd >tune.txt 2>&1 &&
  grep -qE '^ +0\.0001 +1e\+04 +nan +nan +nan +1 +[0-9.]+ +diverged$' tune.txt &&
  grep -q 'best validation loss: l2 0.0001, lr 0.1' tune.txt && [ -s tuned-sgd/tune.png ] && ok ||
  fail "tune with a diverging learning rate: $(cat tune.txt)"

# softreg data: what was found and what is in it.
expect 0 '^data: /usr/share/datasets/fashion-mnist \(all four files pass the checks\)' -- data --data /usr/share/datasets/fashion-mnist
grep -qE '^  9  ankle boot     6000    1000$' out.txt && ok || fail "data: class table: $(cat out.txt)"
expect 0 '"per_class": \[' -- data --json
expect 1 'softreg: error: --data bad: missing t10k-labels-idx1-ubyte' -- data --data bad

# Validation and early stopping: the chosen epoch's model is kept, and eval sees it.
expect 2 'softreg: error: --val-fraction must be in \(0, 1\), got 1' -- train --val-fraction 1
expect 2 'softreg: error: --val-fraction must be in \(0, 1\), got 0' -- train --val-fraction 0
expect 2 'softreg: error: --early-stop needs --val-fraction' -- train --early-stop 3
expect 0 'early stop after epoch [0-9]+: no better validation accuracy for 1 epochs; kept epoch [0-9]+' -- \
  train --val-fraction 0.1 --early-stop 1 --optimizer momentum --lr 0.05 --epochs 40 --threads 2 --no-plots --out early
[ "$(head -1 early/metrics.csv)" = "epoch,train_loss,train_acc,test_acc,test_loss,seconds,val_loss,val_acc" ] && ok ||
  fail "metrics.csv header with validation: $(head -1 early/metrics.csv)"
kept_acc=$(grep -o '"test_acc": [0-9.]*' early/summary.json | head -1 | cut -d' ' -f2)
"$softreg" eval --model early/model.safetensors --json | grep -q "\"accuracy\":$kept_acc" && ok ||
  fail "eval of the kept model does not give summary.json's test_acc $kept_acc"

# Full-batch L-BFGS: one line per iteration, its figures in summary.json, its flags checked.
expect 2 'softreg: error: --epochs does not apply to --optimizer lbfgs' -- train --optimizer lbfgs --epochs 3
expect 2 'softreg: error: --max-iter must be between 1 and 1000000, got 0' -- train --optimizer lbfgs --max-iter 0
expect 2 'softreg: error: --tol must be >= 0, got -1' -- train --optimizer lbfgs --tol -1
expect 2 'softreg: error: --history-size must be between 1 and 10000, got 0' -- train --optimizer lbfgs --history-size 0
expect 0 '^   20  +0\.[0-9]+  +[0-9.e+-]+  ' -- train --optimizer lbfgs --l2 1e-3 --max-iter 20 --no-check --no-plots --out lbfgs
grep -q '"stop_reason": "max_iter"' lbfgs/summary.json && grep -q '"iterations": 20' lbfgs/summary.json &&
  grep -q '"epochs": 1,' lbfgs/summary.json && grep -q '"history": 100' lbfgs/summary.json && ok ||
  fail "lbfgs summary: $(grep -A5 '"lbfgs"' lbfgs/summary.json)"
awk -F, 'NR == 2 { exit !($4 > 0.8) }' lbfgs/metrics.csv && ok || fail "lbfgs: test acc $(tail -1 lbfgs/metrics.csv)"

# A learning rate far too large: stopped at the first runaway batch, one line, nothing written.
expect 1 '^softreg: error: training diverged in epoch 1, batch [0-9]+: mean batch loss .*; try a smaller --lr than 10000; no checkpoint was written$' -- \
  train --lr 1e4 --quiet --no-plots --out diverged
[ -z "$(ls diverged)" ] && ok || fail "a diverged run left files: $(ls diverged)"

# A batch larger than the training set is one batch of all of it, not an allocation failure.
"$softreg" train --batch-size 100000000000 --epochs 1 --no-check --quiet --no-plots --out huge && ok ||
  fail "train --batch-size 1e11"

# softreg bench: the JSON has the promised keys; the naive kernel trains to the same accuracy.
"$softreg" bench --epochs 1 --probe-seconds 0.05 --json >bench.json 2>err.txt && ok || fail "bench: $(cat err.txt)"
for key in train_seconds_per_epoch floor_seconds_per_epoch load_seconds seconds_load eval_seconds checkpoint_seconds \
  barrier_wait_fraction forward_seconds_per_epoch backward_seconds_per_epoch process_seconds probe_gflops probe_gflops_per_thread peak_rss_mb threads; do
  grep -q "\"$key\": [0-9]" bench.json && ok || fail "bench --json lacks $key"
done
expect 2 'softreg: error: --simd NOPE: not available here' -- bench --simd NOPE
"$softreg" train --epochs 1 --no-check --quiet --no-plots --kernel naive --out naive && ok || fail "train --kernel naive"
fast_acc=$(cut -d, -f4 run2/metrics.csv | tail -1)
naive_acc=$(cut -d, -f4 naive/metrics.csv | tail -1)
awk -v a="$fast_acc" -v b="$naive_acc" 'BEGIN { d = a - b; exit !(d < 0.002 && d > -0.002) }' && ok ||
  fail "fast and naive test accuracy differ: $fast_acc vs $naive_acc"

# Own data: CSV tables with text labels train, evaluate and predict; bad tables and flags are clear errors.
{
  echo "species,x,y"
  for i in $(seq 1 60); do echo "ant,$((i % 5)).5,9"; echo "bee,9,$((i % 7)).25"; echo "cat,-9,-$((i % 3))"; done
} >own-train.csv
head -31 own-train.csv >own-test.csv
expect 0 'test accuracy 1\.0000' -- train --train-csv own-train.csv --test-csv own-test.csv --no-plots --out own
expect 0 '^model: own/model.safetensors \(3 classes, 2 f32 features\)' -- eval --model own/model.safetensors
printf '9,1\n-9,-1\n' >own-rows.csv
expect 0 'own-rows.csv:1: cat' -- predict --model own/model.safetensors own-rows.csv
expect 0 '"class_names": \[' -- data --train-csv own-train.csv --test-csv own-test.csv --json
printf 'species,x,y\nant,1,2\nbee,3\n' >ragged.csv
expect 1 'softreg: error: ragged.csv: line 3 has 2 cells, but the first line has 3' -- train --train-csv ragged.csv --test-fraction 0.5
printf 'species,x,y\nant,1,oops\n' >text.csv
expect 1 "softreg: error: text.csv: line 2, column 3: 'oops' is not a number" -- data --train-csv text.csv --test-csv text.csv
expect 2 'softreg: error: no test set: give --test-csv, or --test-fraction F' -- train --train-csv own-train.csv
expect 2 'softreg: error: --classes must be between 2 and 4096, got 1' -- train --classes 1
expect 2 "softreg: error: --image-size must be HxW" -- train --image-size 28 --train-csv own-train.csv --test-fraction 0.2
expect 2 'softreg: error: give one kind of data' -- train --data /usr/share/datasets/fashion-mnist --train-csv own-train.csv
expect 2 'softreg: error: --test-fraction must be in \(0, 1\), got 1.5' -- train --test-fraction 1.5

# softreg serve (its API and the page: test_serve.cpp, browser_test.sh): refusals before serving.
expect 1 'softreg: error: --runs /nonexistent: no such folder' -- serve --runs /nonexistent
expect 2 "softreg: error: --serve-port requires --serve" -- train --serve-port 0
expect 2 "softreg: error: --serve-host requires --serve" -- train --serve-host 0.0.0.0
expect 1 'softreg: error: cannot listen on 256.0.0.1 \(any port\)' -- serve --runs . --host 256.0.0.1 --port 0
"$softreg" serve --runs . --port 0 >serve.out 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do grep -q 'http://' serve.out && break; sleep 0.05; done
serve_port=$(grep -o '127\.0\.0\.1:[0-9]*' serve.out | head -1 | cut -d: -f2)
if [ -n "$serve_port" ]; then
  ok
  expect 1 "softreg: error: cannot listen on 127.0.0.1:$serve_port: Address already in use" -- serve --runs . --port "$serve_port"
  expect 1 "softreg: error: cannot listen on 127.0.0.1:$serve_port: Address already in use" -- train --serve --serve-port "$serve_port" --epochs 1 --quiet --out serve-busy
  if [ -e serve-busy/model.safetensors ]; then fail "train --serve on a busy port trained anyway"; else ok; fi
else
  fail "softreg serve --port 0 printed no address: $(cat serve.out)"
fi
kill -INT "$serve_pid"
wait "$serve_pid"
if [ $? -eq 0 ]; then ok; else fail "softreg serve did not exit 0 on Ctrl-C"; fi

# Every numeric flag's range, at its edges: just outside is a usage error naming the flag (exit 2);
# the edge itself is accepted. Columns: command (with what it needs), flag, outside, message, edge.
range_table=$(cat <<'TABLE'
train|--epochs|0|--epochs must be between 1 and 1000000, got 0|1
train|--epochs|1000001|--epochs must be between 1 and 1000000|1
train|--batch-size|0|--batch-size must be >= 1, got 0|1
train|--lr|0|--lr must be > 0, got 0|1e-9
train|--lr|inf|--lr must be > 0, got inf|1e-9
train|--seed|-1|--seed: must be >= 0|18446744073709551615
train|--init-std|-0.1|--init-std must be between 0 and 1|0
train|--init-std|1.01|--init-std must be between 0 and 1|1
train|--threads|0|--threads must be between 1 and 1024|1
train|--threads|1025|--threads must be between 1 and 1024|1
train|--momentum|1|--momentum must be in \[0, 1\)|0
train|--beta1|1|--beta1 must be in \[0, 1\)|0
train|--beta2|-0.1|--beta2 must be in \[0, 1\)|0
train|--eps|0|--eps must be > 0|1e-30
train|--weight-decay|-1e-9|--weight-decay must be >= 0|0
train|--l2|-1e-9|--l2 must be >= 0|0
train|--warmup|-1|--warmup must be between 0 and the number of epochs|1
train --epochs 1|--warmup|2|--warmup must be between 0 and the number of epochs \(1\)|1
train|--lr-step|0|--lr-step must be between 1 and 1000000|1
train|--lr-gamma|0|--lr-gamma must be in \(0, 1\]|1
train|--lr-gamma|1.01|--lr-gamma must be in \(0, 1\]|1
train|--val-fraction|0|--val-fraction must be in \(0, 1\)|0.5
train|--val-fraction|1|--val-fraction must be in \(0, 1\)|0.5
train --val-fraction 0.1|--early-stop|-1|--early-stop is out of range|0
train --optimizer lbfgs|--max-iter|0|--max-iter must be between 1 and 1000000|1
train --optimizer lbfgs|--tol|-1e-9|--tol must be >= 0|0
train --optimizer lbfgs|--history-size|0|--history-size must be between 1 and 10000|1
train --optimizer lbfgs|--history-size|10001|--history-size must be between 1 and 10000|1
train|--n|0|--n must be >= 1, got 0|1
train|--classes|1|--classes must be between 2 and 4096|10
train|--classes|4097|--classes must be between 2 and 4096|10
tune --grid 1e-3|--refit-tol|-1|--refit-tol must be >= 0|0
tune --grid 1e-3 --optimizer sgd|--lrs|0|--lrs|0.1
eval --model run2/model.safetensors|--threads|0|--threads must be between 1 and 1024|1
plot run2 --out range-pics|--n|0|--n must be >= 1|1
plot run2 --out range-pics|--threads|0|--threads must be between 1 and 1024|1
predict --model run2/model.safetensors --index 0..1|--top|0|--top must be|1
bench --epochs 1 --probe-seconds 0.1 --rows 300|--threads|0|--threads must be between 1 and 1024|1
bench --probe-seconds 0.1 --rows 300|--epochs|0|--epochs must be between 1 and 1000|1
bench --epochs 1 --rows 300|--probe-seconds|0|--probe-seconds must be in \(0, 10\]|0.1
bench --epochs 1 --probe-seconds 0.1 --rows 300 --features 8|--classes|1|--classes must be between 2 and 4096|2
bench --epochs 1 --probe-seconds 0.1 --rows 300 --classes 2|--features|1048577|--features must be between 1 and 1048576|1
bench --epochs 1 --probe-seconds 0.1 --classes 2 --features 8|--rows|100000001|--rows must be between 1 and 1e8|1
data download mnist --to never|--retries|21|--retries must be between 0 and 20|-
data download mnist --to never|--connect-timeout|0.5|--connect-timeout must be between 1 and 600|-
data download mnist --to never|--stall-timeout|3601|--stall-timeout must be between 1 and 3600|-
serve --runs .|--port|65536|--port must be from 0 to 65535|-
serve --runs .|--port|-1|--port must be from 0 to 65535|-
train --serve|--serve-port|65536|--serve-port must be from 0 to 65535|-
TABLE
)
row=0
while IFS='|' read -r command flag outside message edge; do
  row=$((row + 1))
  read -ra base <<<"$command"
  expect 2 "softreg: error: $message" -- "${base[@]}" "$flag" "$outside"
  [ "$edge" = "-" ] && continue
  extra=()
  case "${base[0]}" in
    train | tune) extra=(--no-check --no-plots --quiet --out "range-$row") ;;
  esac
  [ "${base[0]}" = train ] && ! grep -qE -- "--epochs|lbfgs" <<<"$command" && [ "$flag" != --epochs ] && extra+=(--epochs 1)
  "$softreg" "${base[@]}" "$flag" "$edge" "${extra[@]}" >edge.out 2>edge.err
  code=$?
  if [ "$code" -eq 2 ]; then fail "softreg ${base[*]} $flag $edge (the edge) is a usage error: $(cat edge.err)"; else ok; fi
done <<<"$range_table"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

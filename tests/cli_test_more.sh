#!/usr/bin/env bash
# The second half of the command-line test (the first: cli_test.sh): runaway and oversized runs, bench,
# own data, serve's refusals, and every numeric flag's range.
# Usage: cli_test_more.sh path/to/softreg
source "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" "$1"

# What this half uses from the first: a one-epoch model (run2, as the first half trains it).
"$softreg" train --epochs 1 --no-check --quiet --out run2 --threads 2 && ok || fail "the one-epoch run2"

# A learning rate far too large: stopped at the first runaway batch, one line, nothing written.
expect 1 '^softreg: error: training diverged in epoch 1, batch [0-9]+: mean batch loss .*; try a smaller --lr than 10000; no checkpoint was written$' -- \
  train --lr 1e4 --quiet --no-plots --out diverged
[ -z "$(ls diverged)" ] && ok || fail "a diverged run left files: $(ls diverged)"

# Feature values of a large scale (not pixels): --standardize is suggested beside a smaller step.
awk 'BEGIN { print "label,a,b"; for (i = 0; i < 600; i++) printf "%d,%d,%d\n", i % 2, (i % 7) * 30000 - 90000, (i % 5) * 40000 }' >wide.csv
expect 1 '^softreg: error: training diverged in epoch 1, batch [0-9]+: .*; try --standardize or a smaller --lr than 0\.1; no checkpoint was written$' -- \
  train --train-csv wide.csv --test-fraction 0.2 --quiet --no-plots --out wide

# Diverging in epoch 3 (an id column, 1..150, among the features): the message names the checkpoint the
# folder holds, none where the two epochs before took less than --save-every, epoch 2's with --save-every 0.
awk 'BEGIN { print "Id,a,b,Species"; for (i = 1; i <= 150; i++) { k = int((i - 1) / 50); printf "%d,%.1f,%.1f,%d\n", i, k * 2 + (i % 7) / 7, (i % 5) / 5 - k, k } }' >ids.csv
expect 1 '^softreg: error: training diverged in epoch 3, batch 1: .*; no checkpoint was written$' -- \
  train --train-csv ids.csv --label-column Species --test-fraction 0.2 --save-every 1000 --quiet --no-plots --out ids
expect 1 '^softreg: error: training diverged in epoch 3, batch 1: .*; ids-saved keeps the checkpoint of epoch 2$' -- \
  train --train-csv ids.csv --label-column Species --test-fraction 0.2 --save-every 0 --quiet --no-plots --out ids-saved
grep -q '^2,' ids-saved/metrics.csv && ! grep -q '^3,' ids-saved/metrics.csv && ok || fail "ids-saved: $(cat ids-saved/metrics.csv)"
# Its labels by default are the Id column, different in every row: refused, naming the column.
expect 1 "^softreg: error: ids.csv: the labels \\(column 'Id'\\) differ in every one of the 150 rows: an id, not classes" -- \
  train --train-csv ids.csv --test-fraction 0.2 --quiet --no-plots --out ids-default
# Left unread with --ignore-columns, the id no longer makes the run diverge; the model has the other two
# columns, and eval and predict read them by name.
expect 0 'test accuracy' -- train --train-csv ids.csv --label-column Species --ignore-columns Id --test-fraction 0.2 --no-plots --out ids-ignored
expect 0 '^model: ids-ignored \(3 classes, 2 f32 features\)' -- eval --model ids-ignored
expect 0 '^ids.csv:0: ' -- predict --model ids-ignored ids.csv
expect 2 '^softreg: error: --ignore-columns applies to --train-csv' -- eval --model ids-ignored --ignore-columns Id
expect 0 '^columns: a, b; labels: Species$' -- data --train-csv ids.csv --label-column Species --ignore-columns Id --test-fraction 0.2
# Compressed as pandas writes them (.csv.gz): trained on and predicted from like the plain table.
gzip -c ids.csv >ids.csv.gz
expect 0 'test accuracy' -- train --train-csv ids.csv.gz --label-column Species --ignore-columns Id --test-fraction 0.2 --no-plots --out ids-gz
[ "$(cut -d, -f1-5 ids-gz/metrics.csv)" = "$(cut -d, -f1-5 ids-ignored/metrics.csv)" ] && ok || fail "ids.csv.gz trained otherwise than ids.csv"
expect 0 '^ids.csv.gz:0: ' -- predict --model ids-ignored ids.csv.gz
expect 1 "^softreg: error: ids.csv: --ignore-columns: there is no column 'id' in the first line$" -- \
  train --train-csv ids.csv --label-column Species --ignore-columns id --test-fraction 0.2 --no-plots --out ids-typo

# A batch larger than the training set is one batch of all of it, not an allocation failure.
"$softreg" train --batch-size 100000000000 --epochs 1 --no-check --quiet --no-plots --out huge && ok ||
  fail "train --batch-size 1e11"

# softreg bench: the JSON has the promised keys; the naive kernel trains to the same accuracy.
"$softreg" bench --epochs 1 --probe-seconds 0.05 --json >bench.json 2>err.txt && ok || fail "bench: $(cat err.txt)"
for key in train_seconds_per_epoch floor_seconds_per_epoch load_seconds seconds_load eval_seconds checkpoint_seconds \
  barrier_wait_fraction forward_seconds_per_epoch backward_seconds_per_epoch thread_busy_spread process_seconds probe_gflops probe_gflops_per_thread \
  probe_read_gbytes_per_second probe_read_megabytes peak_rss_mb threads; do
  grep -q "\"$key\": [0-9]" bench.json && ok || fail "bench --json lacks $key"
done
# One epoch: one checkpoint, written after it.
grep -q '"checkpoints": 1,' bench.json && ok || fail "bench --json: $(grep '"checkpoints"' bench.json)"
# Process start, timed by execs of softreg --version: positive (0 would mean they could not be run).
grep -Eq '"exec_seconds": (0\.[0-9]*[1-9]|[1-9])' bench.json && ok || fail "bench --json: no exec time: $(grep exec bench.json)"
# Per-epoch barrier waits (one epoch here) and the CPUs the team was kept on (an array, maybe empty).
grep -Eq '"barrier_wait_seconds_each_epoch": \[' bench.json && ok || fail "bench --json lacks barrier_wait_seconds_each_epoch"
grep -Eq '"thread_busy_seconds_per_epoch": \[' bench.json && ok || fail "bench --json lacks thread_busy_seconds_per_epoch"
grep -Eq '"pinned_cpus": \[' bench.json && ok || fail "bench --json lacks pinned_cpus"
# Two threads (the default on this 2-core kind): the cache line's round trip between them, after and
# before training, positive.
for key in core_round_trip_seconds core_round_trip_seconds_before; do
  grep -Eq "\"$key\": [0-9.]*[1-9]" bench.json && ok || fail "bench --json: no $key: $(grep round_trip bench.json)"
done
expect 2 'softreg: error: --simd NOPE: not available here' -- bench --simd NOPE
# The next batch's rows (learned per run, or forced) and, on AVX-512, the update's broadcasts (timed once
# per process, or forced): bench names the way it trained.
grep -Eq '"ask_ahead": "(learning|asking|not asking)"' bench.json && ok || fail "bench --json: $(grep ask_ahead bench.json)"
SOFTREG_ASK_AHEAD=no SOFTREG_UPDATE_BROADCASTS=folded "$softreg" bench --epochs 1 --rows 300 --probe-seconds 0.05 \
  --json >bench_forced.json 2>err.txt && ok || fail "bench forced: $(cat err.txt)"
grep -q '"ask_ahead": "not asking"' bench_forced.json && ok || fail "SOFTREG_ASK_AHEAD=no: $(grep ask_ahead bench_forced.json)"
if grep -q '"simd_target": "AVX3' bench.json; then
  grep -Eq '"update_broadcasts": "(folded|in registers)"' bench.json && ok || fail "bench --json: $(grep broadcasts bench.json)"
  grep -q '"update_broadcasts": "folded"' bench_forced.json && ok || fail "SOFTREG_UPDATE_BROADCASTS=folded: $(grep broadcasts bench_forced.json)"
else
  grep -q '"update_broadcasts"' bench.json && fail "update_broadcasts below AVX-512" || ok
fi

# cairo and libcurl are opened only when used (SOFTREG_LIBCAIRO, SOFTREG_LIBCURL name other builds):
# without them, a run that would draw stops before it trains, one that does not draw trains, and a
# download is a one-line error; nothing is left half-written.
export SOFTREG_LIBCAIRO=/nonexistent/libcairo.so.2 SOFTREG_LIBCURL=/nonexistent/libcurl.so.4
expect 1 '^softreg: error: cannot load /nonexistent/libcairo.so.2 to draw pictures \(.*\); install libcairo2 \(scripts/setup does\), or pass --no-plots$' -- \
  train --epochs 1 --no-check --out nocairo
[ ! -e nocairo/model.safetensors ] && ok || fail "a run that could not draw trained anyway"
expect 0 'test accuracy' -- train --epochs 1 --no-check --no-plots --out nocairo
expect 0 'accuracy' -- eval --model nocairo/model.safetensors
expect 1 '^softreg: error: cannot load /nonexistent/libcurl.so.4 to download \(.*\); install libcurl4' -- \
  data download fashion-mnist --to nocurl --mirror file:///nonexistent/
[ -z "$(ls nocurl 2>/dev/null)" ] && ok || fail "a download without libcurl left files: $(ls nocurl)"
unset SOFTREG_LIBCAIRO SOFTREG_LIBCURL
# Likewise the dashboard's server module (cpp-httplib, OpenSSL), libzip (.npz) and libcrypto (SHA-256):
# nothing is served, trained or deleted without them.
export SOFTREG_SERVE_MODULE=/nonexistent/libsoftreg-serve.so SOFTREG_LIBZIP=/nonexistent/libzip.so.4 \
  SOFTREG_LIBCRYPTO=/nonexistent/libcrypto.so.3
expect 1 '^softreg: error: cannot load /nonexistent/libsoftreg-serve.so to serve the dashboard \(.*\); it is built beside build/softreg' -- \
  serve --runs . --port 0
expect 1 '^softreg: error: cannot load /nonexistent/libsoftreg-serve.so to serve the dashboard' -- \
  train --serve --serve-port 0 --epochs 1 --no-plots --out nomodule
[ ! -e nomodule/model.safetensors ] && ok || fail "train --serve without the server module trained anyway"
echo 'not a zip' >nolib.npz
expect 1 '^softreg: error: cannot load /nonexistent/libzip.so.4 to read .npz files \(.*\); install libzip4' -- \
  train --data nolib.npz --epochs 1 --no-plots --out nozip
[ ! -e nozip ] && ok || fail "a run without libzip left a folder"
mkdir -p nocrypto && cp /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz nocrypto/
expect 1 '^softreg: error: cannot load /nonexistent/libcrypto.so.3 to check SHA-256 sums \(.*\); install libssl3' -- \
  data download fashion-mnist --to nocrypto --mirror file:///nonexistent/
cmp -s nocrypto/t10k-labels-idx1-ubyte.gz /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz && ok ||
  fail "a download without libcrypto touched the file already there"
SOFTREG_SERVE_MODULE=/lib/x86_64-linux-gnu/libz.so.1 expect 1 '^softreg: error: /lib/x86_64-linux-gnu/libz.so.1 has no softreg_serve_version: not softreg.s dashboard module$' -- \
  serve --runs . --port 0
unset SOFTREG_SERVE_MODULE SOFTREG_LIBZIP SOFTREG_LIBCRYPTO
"$softreg" train --epochs 1 --no-check --quiet --no-plots --kernel naive --out naive && ok || fail "train --kernel naive"
fast_acc=$(cut -d, -f4 run2/metrics.csv | tail -1)
naive_acc=$(cut -d, -f4 naive/metrics.csv | tail -1)
awk -v a="$fast_acc" -v b="$naive_acc" 'BEGIN { d = a - b; exit !(d < 0.002 && d > -0.002) }' && ok ||
  fail "fast and naive test accuracy differ: $fast_acc vs $naive_acc"

# bfloat16 products (--compute bf16): plain SGD only; where the CPU has AVX-512 BF16 the recipe learns
# what float32 does and the run records the mode, elsewhere it is a one-line error.
expect 2 '^softreg: error: --compute bf16 needs optimizer sgd$' -- train --compute bf16 --optimizer adam --out bf16-adam
expect 2 '^softreg: error: --compute: f16 not in \{f32,bf16\}' -- train --compute f16 --out bf16-f16
expect 2 '^softreg: error: --compute bf16 does not apply to tune' -- tune --optimizer sgd --compute bf16 --out bf16-tune
expect 1 '^softreg: error: compute bf16( needs the AVX-512 fast path \(restricted to AVX2\)|: this CPU has no AVX-512 BF16)' -- \
  bench --simd AVX2 --compute bf16 --epochs 1 --rows 300 --probe-seconds 0.1
[ ! -e bf16-adam ] && [ ! -e bf16-f16 ] && [ ! -e bf16-tune ] && ok || fail "a refused --compute left a run folder"
if "$softreg" train --epochs 1 --no-check --quiet --no-plots --threads 2 --compute bf16 --out bf16 2>bf16.err; then
  bf16_acc=$(cut -d, -f4 bf16/metrics.csv | tail -1)
  awk -v a="$fast_acc" -v b="$bf16_acc" 'BEGIN { d = a - b; exit !(d < 0.01 && d > -0.01) }' && ok ||
    fail "bf16 and f32 test accuracy differ: $bf16_acc vs $fast_acc"
  grep -q '"compute": *"bf16"' bf16/summary.json && ok || fail "bf16/summary.json does not record the mode"
else
  grep -qE '^softreg: error: compute bf16: this CPU has no AVX-512 BF16' bf16.err && ok ||
    fail "train --compute bf16: $(cat bf16.err)"
fi

# Own data: CSV tables with text labels train, evaluate and predict; bad tables and flags are clear errors.
{
  echo "species,x,y"
  for i in $(seq 1 60); do echo "ant,$((i % 5)).5,9"; echo "bee,9,$((i % 7)).25"; echo "cat,-9,-$((i % 3))"; done
} >own-train.csv
head -31 own-train.csv >own-test.csv
expect 0 'test accuracy 1\.0000' -- train --train-csv own-train.csv --test-csv own-test.csv --no-plots --out own
expect 0 '^model: own/model.safetensors \(3 classes, 2 f32 features\)' -- eval --model own/model.safetensors
# A class only in the test table: named once, the run goes on (its test rows count as wrong).
{ echo "kind,x"; echo "cat,1"; echo "dog,-1"; echo "cat,2"; } >pets-train.csv
{ echo "kind,x"; echo "cat,1"; echo "emu,0"; } >pets-test.csv
expect 0 '^softreg: warning: 1 class has no training rows, so the model cannot learn it: emu$' -- \
  train --train-csv pets-train.csv --test-csv pets-test.csv --no-plots --out pets
[ "$(grep -c warning err.txt)" -eq 1 ] && ok || fail "the unseen class warned of more than once: $(cat err.txt)"
# Labels counted from 1 leave class 0 empty: the warning says why.
awk -F, -v OFS=, 'NR == 1 { print; next } { $4 = $4 + 1; print }' ids.csv >ids-from-1.csv
expect 0 '^softreg: warning: 1 class has no training rows, so the model cannot learn it: 0 \(labels that are numbers are class numbers from 0: labels counted from 1 leave class 0 empty\)$' -- \
  train --train-csv ids-from-1.csv --label-column Species --ignore-columns Id --test-fraction 0.2 --no-plots --quiet --out ids-from-1
expect 0 'test accuracy 0\.5000' -- train --train-csv pets-train.csv --test-csv pets-test.csv --no-plots --out pets2 --epochs 30
# The seed's acceptance checks are for Fashion-MNIST: a table no model can learn (each row twice, once
# a class) trains to a loss of ln 2 > 0.5 and still exits 0; --check asks for them.
for i in $(seq 1 40); do echo "yes,1,$((i % 3))"; echo "no,1,$((i % 3))"; done >coin.csv
expect 0 'test accuracy 0\.5000' -- train --train-csv coin.csv --test-csv coin.csv --no-plots --out coin
# A model no better than always answering one class gets a note saying so, with what its losses suggest.
grep -qE '^note: test accuracy 0\.5000 is no better than always answering "no", the most common class of the test rows \(0\.5000 of them\); the train loss settled at 0\.693[0-9]: these features may not tell the classes apart, or their scale hides it: try --standardize$' out.txt &&
  grep -q '"note": *"test accuracy 0.5000 is no better' coin/summary.json && ok || fail "no note on the coin table: $(cat out.txt)"
expect 0 '^always answering "no", the most common class here, would score 0\.5000: this model does no better$' -- eval --model coin
expect 0 '"majority_class":0,"majority_share":0\.5,' -- eval --model coin --json
expect 0 '^note: test accuracy 0\.5000 is no better than always answering "no", .*; these features may not tell the classes apart' -- \
  tune --train-csv coin.csv --test-csv coin.csv --grid 1e-3 --no-plots --out coin-tune
grep -q '"note": "test accuracy 0.5000 is no better' coin-tune/tune.json && ok || fail "tune.json without the note"
# Features of a large scale at lr 0.1: the steps overshoot and the loss jumps; standardized, they learn.
awk 'BEGIN { for (i = 0; i < 60; i++) { printf "hi"; for (j = 0; j < 20; j++) printf ",%d", 8 + (i * 7 + j * 3) % 3
             printf "\nlo"; for (j = 0; j < 20; j++) printf ",%d", 1 + (i * 5 + j) % 3; print "" } }' >steep.csv
expect 0 '^note: test accuracy 0\.5000 is no better than always answering "hi", .*; the train loss rose in [1-9] of the 9 epochs after the first and ended at [0-9.]+, above a fresh model.s 0\.6931: the steps are too large for these features; try --standardize or a smaller --lr than 0\.1$' -- \
  train --train-csv steep.csv --test-csv steep.csv --no-plots --out steep
expect 0 'test accuracy 1\.0000' -- train --train-csv steep.csv --test-csv steep.csv --no-plots --out steep2 --standardize
! grep -q '^note:' out.txt && ok || fail "a note on a model that learned: $(grep note out.txt)"
! grep -q '"checks"' coin/summary.json && ok || fail "coin/summary.json records checks: $(grep -o '"checks".\{0,60\}' coin/summary.json)"
expect 1 '^softreg: acceptance check failed: train loss < 0\.5 \(got 0\.69[0-9]*\), train acc > 0\.7 \(got 0\.5000\), test acc > 0\.7 \(got 0\.5000\)$' -- \
  train --train-csv coin.csv --test-csv coin.csv --no-plots --out coin-checked --check
expect 2 '^softreg: error: --check excludes --no-check' -- train --train-csv coin.csv --test-csv coin.csv --check --no-check
printf '9,1\n-9,-1\n' >own-rows.csv
expect 0 'own-rows.csv:1: cat' -- predict --model own/model.safetensors own-rows.csv
expect 2 '^softreg: error: --invert applies to image files; this model was trained on feature rows$' -- \
  predict --model own/model.safetensors --invert own-rows.csv
# A file of the other kind is named as such, not read as a table (or an image) and found malformed.
printf 'P5 1 1 255 \200' >own-pixel.pgm
expect 1 '^softreg: error: own-pixel.pgm: is an image, but the model was trained on feature rows: give \.npy or \.csv files$' -- \
  predict --model own/model.safetensors own-pixel.pgm
expect 0 '"class_names": \[' -- data --train-csv own-train.csv --test-csv own-test.csv --json
expect 0 '^data: own-train.csv \(csv; every file passes the checks\)' -- data --train-csv own-train.csv --test-csv own-test.csv
# An image folder with an unreadable image: named with the flag that goes on without it; then counted.
mkdir -p shapes/train/dark shapes/train/light shapes/test/dark shapes/test/light
printf 'P5 1 1 255 \020' >shapes/train/dark/a.pgm && printf 'P5 1 1 255 \360' >shapes/train/light/a.pgm
cp shapes/train/dark/a.pgm shapes/test/dark/ && cp shapes/train/light/a.pgm shapes/test/light/
printf 'not an image' >shapes/train/dark/broken.png
expect 1 '^softreg: error: shapes/train/dark/broken.png: .* \(--skip-bad-images goes on without it\)$' -- data --data shapes
expect 0 '^data: shapes \(images; every other file passes the checks, 1 unreadable image skipped\)$' -- \
  data --data shapes --skip-bad-images
# A model trained on a clean folder that has since gained a broken image: the option alone, without
# --data, applies to the model's own data (it used to send eval and resume to the default Fashion-MNIST).
mkdir -p clean && cp -r shapes/test clean/test && cp -r shapes/test clean/train
"$softreg" train --data clean --epochs 1 --no-check --quiet --no-plots --out clean-run && ok || fail "train on clean/"
printf 'not an image' >clean/test/dark/broken.png
expect 1 '^softreg: error: .*clean/test/dark/broken.png: ' -- eval --model clean-run
expect 0 '^data: .*clean/test, test split, 2 examples' -- eval --model clean-run --skip-bad-images
expect 0 '^run folder: clean-run' -- train --resume clean-run --skip-bad-images --epochs 2 --no-plots
expect 0 '^clean-run has trained its 2 epochs: nothing to train \(--epochs N, more than 2, trains on\)$' -- \
  train --resume clean-run --skip-bad-images --no-plots
# --threads may change on resuming where the results do not depend on it (a run from a larger machine):
# one epoch on 1 thread, resumed on 2 to 3 epochs, is the 3 epochs trained at once on 2.
"$softreg" train --train-csv own-train.csv --test-csv own-test.csv --epochs 3 --threads 2 --no-plots --quiet --out threads-once &&
  "$softreg" train --train-csv own-train.csv --test-csv own-test.csv --epochs 1 --threads 1 --no-plots --quiet --out threads-resumed &&
  "$softreg" train --resume threads-resumed --epochs 3 --threads 2 --no-plots --quiet &&
  [ "$(cut -d, -f1-5 threads-once/metrics.csv)" = "$(cut -d, -f1-5 threads-resumed/metrics.csv)" ] && ok ||
  fail "resumed on another thread count: $(cat threads-once/metrics.csv threads-resumed/metrics.csv)"
expect 2 '^softreg: error: --kernel cannot be changed with --resume' -- train --resume threads-resumed --epochs 4 --kernel naive
expect 2 '^softreg: error: --compute cannot be changed with --resume' -- train --resume threads-resumed --epochs 4 --compute bf16
# More threads than cores (CI machines have 2 to 16): they take turns, which is said.
"$softreg" train --train-csv own-train.csv --test-csv own-test.csv --epochs 1 --threads 64 --no-plots --quiet --out crowded 2>err.txt &&
  grep -qE '^softreg: warning: --threads 64 is more than the [0-9]+ cores here: slower than --threads [0-9]+$' err.txt && ok ||
  fail "64 threads: $(cat err.txt)"
"$softreg" train --train-csv own-train.csv --test-csv own-test.csv --epochs 1 --kernel naive --no-plots --quiet --out naive-run
expect 2 '^softreg: error: --threads cannot be changed with --resume \(the checkpoint.s recipe is used; --epochs may be raised\)$' -- \
  train --resume naive-run --epochs 2 --threads 1
# A model trained at --image-size, given its folder again: read at the model's size (eval, plot and resume
# read the 2x2 images at their own size and found them the wrong size), and --image-size has no say there.
mkdir -p big/train/dark big/train/light big/test/dark big/test/light
printf 'P5 2 2 255 \020\020\020\020' >big/train/dark/a.pgm && printf 'P5 2 2 255 \360\360\360\360' >big/train/light/a.pgm
cp big/train/dark/a.pgm big/test/dark/ && cp big/train/light/a.pgm big/test/light/
"$softreg" train --data big --image-size 1x1 --epochs 1 --no-check --quiet --no-plots --out small-run && ok ||
  fail "train --image-size 1x1 on big/"
expect 0 '^data: big/test, test split, 2 examples' -- eval --model small-run --data big
expect 0 '^run folder: small-run' -- train --resume small-run --data big --epochs 2 --no-plots
expect 2 "^softreg: error: --image-size does not apply to a trained model's data: its images are read at the model's size, 1x1$" -- \
  eval --model small-run --image-size 2x2
# bench times any data train takes with --data (it read IDX folders only), or a synthetic shape, not both.
expect 0 '^  data load +[0-9.]+ s +\(big\)$' -- bench --data big --epochs 1 --probe-seconds 0.1
expect 2 '^softreg: error: --data and the synthetic data.s shape \(--classes, --features, --dtype, --rows\) exclude each other' -- \
  bench --data big --classes 3
expect 2 '^softreg: error: --test-fraction does not apply: there is a test set, own-test.csv$' -- \
  train --train-csv own-train.csv --test-csv own-test.csv --test-fraction 0.2
# A validation table of its own: scored every epoch, early stopping may use it; --val-fraction may not.
{ head -1 own-train.csv; sed -n '2,40p' own-train.csv | awk -F, -v OFS=, '{ print $1, $2, $3 }'; } >own-val.csv
expect 0 'early stop after epoch [0-9]+: no better validation accuracy for 2 epochs' -- \
  train --train-csv own-train.csv --test-csv own-test.csv --val-csv own-val.csv --early-stop 2 --epochs 30 --no-plots --no-check --out own-val
[ "$(head -1 own-val/metrics.csv)" = "epoch,train_loss,train_acc,test_acc,test_loss,seconds,val_loss,val_acc" ] && ok ||
  fail "metrics.csv with --val-csv: $(head -1 own-val/metrics.csv)"
expect 0 '^data: .*own-val.csv, val split, 39 examples' -- eval --model own-val/model.safetensors --split val
# A new run into a folder that holds one is refused before anything is loaded or written: it would replace
# that model and leave its best.safetensors and pictures beside the new run's files.
before=$(cat own-val/*.safetensors own-val/metrics.csv own-val/summary.json | cksum)
expect 2 '^softreg: error: own-val: holds a run already \(model.safetensors\); continue it with --resume own-val, or choose another --out' -- \
  train --train-csv own-train.csv --test-csv own-test.csv --no-plots --out own-val
expect 2 '^softreg: error: own-val: holds a run already' -- tune --train-csv own-train.csv --test-csv own-test.csv --out own-val
[ "$(cat own-val/*.safetensors own-val/metrics.csv own-val/summary.json | cksum)" = "$before" ] && ok ||
  fail "a refused run changed own-val"
expect 2 '^softreg: error: --test-csv and --val-csv need --train-csv$' -- train --val-csv own-val.csv --test-csv own-test.csv
expect 2 '^softreg: error: --val-csv needs --train-csv$' -- train --val-csv own-val.csv
expect 2 '^softreg: error: --val-fraction does not apply: there is a validation set, own-val.csv$' -- \
  train --train-csv own-train.csv --test-csv own-test.csv --val-csv own-val.csv --val-fraction 0.2
expect 2 '^softreg: error: --val-fraction does not apply: there is a validation set, own-val.csv$' -- \
  tune --train-csv own-train.csv --test-csv own-test.csv --val-csv own-val.csv --val-fraction 0.2 --no-plots
expect 0 'on the validation set own-val.csv \(39 rows\)' -- \
  tune --train-csv own-train.csv --test-csv own-test.csv --val-csv own-val.csv --grid 1e-3,1e-2 --no-plots --out own-tune
# New rows alone (one class of them here) evaluate a saved model with its classes and its label column,
# and predict reads them in the training layout.
awk -F, -v OFS=, '{ print $2, $3, $1 }' own-train.csv >own-last.csv
{ head -1 own-last.csv; grep ',bee$' own-last.csv | head -5; } >own-bees.csv
expect 0 'test accuracy 1\.0000' -- train --train-csv own-last.csv --label-column species --test-fraction 0.2 --no-plots --out own-last
expect 0 '^data: own-bees.csv, test split, 5 examples' -- eval --model own-last/model.safetensors --test-csv own-bees.csv
expect 0 '^own-bees.csv:4: bee' -- predict --model own-last/model.safetensors own-bees.csv
# Rows with their label column show the true class beside the prediction, as --index does.
[ "$(grep -c '  (true: bee\(, wrong\)\?)$' out.txt)" -eq 5 ] && ok || fail "predict with labels: $(cat out.txt)"
expect 2 'softreg: error: --split train needs training data, but only test rows were given' -- \
  eval --model own-last/model.safetensors --test-csv own-bees.csv --split train
# A table as pandas writes it by default (to_csv without index=False): its unnamed first column of row
# numbers is left out, said in a note, and the model has the two named features; predict reads such a
# table by the model's column names.
awk -F, -v OFS=, 'NR == 1 { print "", $0; next } { print NR - 2, $0 }' own-train.csv >own-indexed.csv
expect 0 '^softreg: note: own-indexed.csv: column 1 has no name in the first line: read as row names \(pandas. index' -- \
  train --train-csv own-indexed.csv --label-column species --test-fraction 0.2 --no-plots --out own-indexed
grep -q 'test accuracy 1\.0000' out.txt && ok || fail "train on own-indexed.csv: $(cat out.txt)"
expect 0 '^model: own-indexed \(3 classes, 2 f32 features\)' -- eval --model own-indexed
expect 0 '^own-indexed.csv:1: bee' -- predict --model own-indexed own-indexed.csv
expect 0 '^note: own-indexed.csv: column 1 has no name' -- data --train-csv own-indexed.csv --label-column species --test-fraction 0.2
# The labels kept last while the first column is taken by default: the error says which flag names them.
expect 1 "line 2, column 3: 'ant' is not a number \(if column 3 holds the labels, --label-column species says so" -- \
  train --train-csv own-last.csv --test-fraction 0.2 --no-plots --out own-last-default
printf 'species,x,y\nant,1,2\nbee,3\n' >ragged.csv
expect 1 'softreg: error: ragged.csv: line 3 has 2 cells, but the first line has 3' -- train --train-csv ragged.csv --test-fraction 0.5
printf 'species,x,y\nant,1,oops\n' >text.csv
expect 1 "softreg: error: text.csv: line 2, column 3: 'oops' is not a number" -- data --train-csv text.csv --test-csv text.csv
expect 2 'softreg: error: no test set: give --test-csv, or --test-fraction F' -- train --train-csv own-train.csv
expect 2 'softreg: error: --classes must be between 2 and 4096, got 1' -- train --classes 1
expect 2 "softreg: error: --image-size must be HxW" -- train --image-size 28 --train-csv own-train.csv --test-fraction 0.2
# Not ignored on other data: the user meant some size.
expect 2 "^softreg: error: --image-size applies to image folders only, not to CSV data$" -- \
  train --image-size 28x28 --train-csv own-train.csv --test-fraction 0.2
expect 2 "^softreg: error: --skip-bad-images applies to image folders only, not to CSV data$" -- \
  data --train-csv own-train.csv --test-csv own-test.csv --skip-bad-images
expect 2 "^softreg: error: --skip-bad-images applies to image folders only, not to CSV data$" -- \
  eval --model own/model.safetensors --skip-bad-images
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
train --optimizer momentum|--momentum|1|--momentum must be in \[0, 1\)|0
train --optimizer adam|--beta1|1|--beta1 must be in \[0, 1\)|0
train --optimizer adam|--beta2|-0.1|--beta2 must be in \[0, 1\)|0
train --optimizer adamw|--eps|0|--eps must be > 0|1e-30
train --optimizer adamw|--weight-decay|-1e-9|--weight-decay must be >= 0|0
train|--l2|-1e-9|--l2 must be >= 0|0
train|--warmup|-1|--warmup must be between 0 and the number of epochs|1
train --epochs 1|--warmup|2|--warmup must be between 0 and the number of epochs \(1\)|1
train --schedule step|--lr-step|0|--lr-step must be between 1 and 1000000|1
train --schedule step|--lr-gamma|0|--lr-gamma must be in \(0, 1\]|1
train --schedule step|--lr-gamma|1.01|--lr-gamma must be in \(0, 1\]|1
train|--val-fraction|0|--val-fraction must be in \(0, 1\)|0.5
train|--val-fraction|1|--val-fraction must be in \(0, 1\)|0.5
train --val-fraction 0.1|--early-stop|-1|--early-stop is out of range|0
train --optimizer lbfgs|--max-iter|0|--max-iter must be between 1 and 1000000|1
train --optimizer lbfgs|--tol|-1e-9|--tol must be >= 0|0
train --optimizer lbfgs|--history-size|0|--history-size must be between 1 and 10000|1
train --optimizer lbfgs|--history-size|10001|--history-size must be between 1 and 10000|1
train|--n|0|--n must be >= 1, got 0|1
train|--classes|0|--classes must be between 2 and 4096, got 0|10
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
bench --epochs 1 --probe-seconds 0.1 --rows 300 --features 8|--classes|0|--classes must be between 2 and 4096, got 0|2
bench --epochs 1 --probe-seconds 0.1 --classes 2 --features 8|--rows|0|--rows must be between 1 and 1e8|1
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
  # L-BFGS (tune's default optimizer too) for a few iterations: the edge is what is checked, and a
  # full solve at --tol 0 took 20-30 s under the sanitizers.
  { grep -q lbfgs <<<"$command" || { [ "${base[0]}" = tune ] && ! grep -q -- "--optimizer" <<<"$command"; }; } &&
    [ "$flag" != --max-iter ] && extra+=(--max-iter 3)
  "$softreg" "${base[@]}" "$flag" "$edge" "${extra[@]}" >edge.out 2>edge.err
  code=$?
  if [ "$code" -eq 2 ]; then fail "softreg ${base[*]} $flag $edge (the edge) is a usage error: $(cat edge.err)"; else ok; fi
done <<<"$range_table"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# The softreg command line as a user meets it: help and version, exit codes (0 ok, 1 error, 2 usage),
# one-line error messages, and the files a training run leaves behind. The second half (runaway and
# oversized runs, bench, own data, serve, every flag's range) is cli_test_more.sh: two CTest tests
# that run side by side.
# Usage: cli_test.sh path/to/softreg
source "$(dirname "${BASH_SOURCE[0]}")/cli_common.sh" "$1"

expect 0 '^softreg [0-9]+\.[0-9]+\.[0-9]+$' -- --version
expect 0 'train' -- --help
expect 0 '--batch-size' -- train --help
expect 2 'softreg: error: .*subcommand' --
expect 2 "softreg: error: unknown command 'frobnicate' \\(commands: train, tune, eval, predict, plot, bench, data, serve\\)" -- frobnicate
# Only the command named first is built (the rest cost a quarter of the start): help still lists them all.
for command in train tune eval predict plot bench data serve; do
  expect 0 "^  $command " -- --help
done
expect 2 'softreg: error: .*--wat' -- train --wat
expect 2 'softreg: error: --lr must be > 0, got 0' -- train --lr 0
expect 2 'softreg: error: --lr must be > 0, got -1' -- train --lr -1
expect 2 'softreg: error: .*--lr' -- train --lr abc
expect 2 'softreg: error: --batch-size must be >= 1, got 0' -- train --batch-size 0
expect 2 'softreg: error: --epochs must be between 1 and' -- train --epochs 0
expect 2 'softreg: error: --threads must be between 1 and' -- train --threads 0
expect 2 'softreg: error: .*--epochs' -- train --epochs 1.5
expect 2 'softreg: error: --save-every must be a number of seconds, 0 or more, got -1' -- train --save-every -1
expect 2 'softreg: error: --save-every must be a number of seconds, 0 or more, got nan' -- train --save-every nan
expect 1 'softreg: error: --data /nonexistent: no such folder' -- train --data /nonexistent
printf 'not data' >plain.txt
expect 1 'softreg: error: --data plain.txt: not a folder' -- train --data plain.txt
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
# A mirror of another data set: the mismatch says whose file it is (Debian's re-compressed Fashion-MNIST,
# known by its content), and no file is kept.
"$softreg" data download mnist --mirror file:///usr/share/datasets/fashion-mnist/ --retries 0 --to wrong-mirror 2>err.txt
[ $? -eq 1 ] && tail -1 err.txt | grep -qE "^softreg: error: could not download train-images-idx3-ubyte.gz; file:///usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz: checksum mismatch: SHA-256 [0-9a-f]{64} \(published: [0-9a-f]{64}\): this is fashion-mnist's train-images-idx3-ubyte.gz$" &&
  [ -z "$(ls wrong-mirror)" ] && ok || fail "download from another data set's mirror: $(cat err.txt; ls wrong-mirror)"
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
# A flag of another optimizer or schedule would change nothing: said, not ignored.
expect 2 'softreg: error: --momentum applies to --optimizer momentum and nesterov, not sgd' -- train --momentum 0.5
expect 2 'softreg: error: --beta2 applies to --optimizer adam and adamw, not nesterov' -- train --optimizer nesterov --beta2 0.9
expect 2 'softreg: error: --weight-decay applies to --optimizer adamw, not adam \(a penalty in the loss is --l2\)' -- \
  train --optimizer adam --weight-decay 0.1
expect 2 'softreg: error: --tol applies to --optimizer lbfgs, not momentum' -- train --optimizer momentum --tol 1e-3
expect 2 'softreg: error: --lr-gamma applies to --schedule step, not cosine' -- train --schedule cosine --lr-gamma 0.5
expect 2 'softreg: error: --batch-size does not apply to --optimizer lbfgs \(one full-batch fit' -- \
  train --optimizer lbfgs --batch-size 64
expect 2 'softreg: error: --lr does not apply to --optimizer lbfgs' -- tune --lr 0.5
expect 2 'softreg: error: --refit-tol applies to --optimizer lbfgs, not adam' -- tune --optimizer adam --refit-tol 1e-3

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
! grep -q '^note:' out.txt && ! grep -q '"note"' run2/summary.json && ok || fail "a note on a model that learned: $(grep note out.txt)"
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
expect 1 'softreg: error: nowhere: no model.safetensors there \(not a softreg run folder\?\)' -- plot nowhere

# A saved model: eval and predict.
[ -f run2/model.safetensors ] && ok || fail "train left no model.safetensors"
expect 0 'accuracy 0\.[0-9]+ ± 0\.00[0-9]+' -- eval --model run2/model.safetensors
grep -qE '^always answering "t-shirt", the most common class here, would score 0\.1000$' out.txt && ok ||
  fail "eval without the majority baseline (Fashion-MNIST's test classes are 1,000 each): $(cat out.txt)"
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
# --model may name the run folder: its model.safetensors, the same predictions.
cp out.txt by_file.txt
expect 0 '^test:0: [a-z -]+ 0\.[0-9]{3}, ' -- predict --model run2 --index 0..2
cmp -s out.txt by_file.txt && ok || fail "predict --model run2 differs from --model run2/model.safetensors"
expect 0 'accuracy 0\.[0-9]+ ± 0\.00[0-9]+' -- eval --model run2/
mkdir -p not-a-run
expect 1 'softreg: error: not-a-run: no model.safetensors there \(not a softreg run folder\?\)' -- eval --model not-a-run
expect 1 'softreg: error: not-a-run: no model.safetensors there \(not a softreg run folder\?\)' -- \
  predict --model not-a-run --index 0
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
# Flags that would change nothing are said to, not ignored: --invert on the data set's rows, data flags
# without --index (they choose its rows), --label-column with an image model.
expect 2 "^softreg: error: --invert applies to image files, not to --index's test rows$" -- \
  predict --model run2/model.safetensors --index 3 --invert
expect 2 "^softreg: error: --data chooses the data of --index's test rows; the files given to predict need none$" -- \
  predict --model run2/model.safetensors --data . block.pgm
expect 2 "^softreg: error: --skip-bad-images chooses the data of --index's test rows" -- \
  predict --model run2/model.safetensors --skip-bad-images block.pgm
expect 2 '^softreg: error: --label-column applies to CSV files of feature rows; this model was trained on images$' -- \
  predict --model run2/model.safetensors --label-column 0 block.pgm
expect 2 '^softreg: error: --skip-bad-images applies to image folders only, not to IDX data$' -- \
  predict --model run2/model.safetensors --index 0 --skip-bad-images
printf '1,2\n' >rows.csv
expect 1 '^softreg: error: rows.csv: holds feature rows, but the model was trained on images: give image files$' -- \
  predict --model run2/model.safetensors rows.csv
cp rows.csv ROWS.TSV
expect 1 '^softreg: error: ROWS.TSV: holds feature rows' -- predict --model run2/model.safetensors ROWS.TSV
# A folder of images: each one at any depth, in path order; files that are not images left out.
mkdir -p photos/2019 && cp block.pgm photos/b.pgm && cp block.pgm photos/2019/a.pgm && cp notes.txt photos/
expect 0 '^photos/2019/a.pgm: ' -- predict --model run2/model.safetensors photos
[ "$(sed -n 2p out.txt | cut -d: -f1)" = photos/b.pgm ] && [ "$(wc -l <out.txt)" -eq 2 ] && ok ||
  fail "predict on a folder: $(cat out.txt)"
mkdir -p no-photos
expect 1 'softreg: error: no-photos: holds no images' -- predict --model run2/model.safetensors no-photos
# A 21-byte PGM whose header claims 8 x 6,506,266 pixels: refused at once, no prediction.
printf 'P5\n 8\n6506266p000\n\n\n9' >lying.pgm
expect 1 'lying.pgm: the header claims 8x6506266 pixels, more than a 21-byte file can hold' -- \
  predict --model run2/model.safetensors lying.pgm
[ ! -s out.txt ] && ok || fail "predict printed a prediction for lying.pgm: $(cat out.txt)"

# Ctrl-C saves a checkpoint; --resume continues it to the same weights as an uninterrupted run. The
# stopped run writes its folder after every epoch (--save-every 0), so its metrics.csv says it trains.
"$softreg" train --epochs 40 --threads 2 --seed 4 --quiet --no-check --no-plots --out straight && ok || fail "straight run"
"$softreg" train --epochs 40 --threads 2 --seed 4 --quiet --no-check --no-plots --save-every 0 --out stopped 2>stop.txt &
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
# SIGTERM (a job scheduler, `docker stop`) stops the same way, at the next batch with its checkpoint: 143.
"$softreg" train --epochs 1000 --threads 2 --quiet --no-check --no-plots --save-every 0 --out termed 2>term.txt &
pid=$!
for _ in $(seq 100); do [ -f termed/metrics.csv ] && break; sleep 0.02; done
kill -TERM $pid
wait $pid
code=$?
[ $code -eq 143 ] && ok || fail "a run stopped by SIGTERM exited $code: $(cat term.txt)"
grep -qE '^softreg: interrupted .*; resume with: softreg train --resume termed$' term.txt && ok ||
  fail "SIGTERM message: $(cat term.txt)"
expect 0 '^model: termed ' -- eval --model termed
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
# A winner at either end of the grid is noted (a penalty past it may score better), not one inside it.
assert ("edge_note" in j) == (j["best"]["l2"] in (1e-2, 1e-4)), (j["best"], j.get("edge_note"))
PY
grep -q "\"l2\": $(/usr/bin/python3 -c 'import json; print(json.load(open("tune.json"))["best"]["l2"])')" tuned/summary.json &&
  grep -q '"val_fraction"' tuned/model.safetensors && ok || fail "the refit's recipe is not the winner's"
tuned_acc=$(/usr/bin/python3 -c 'import json; print(json.load(open("tune.json"))["test_acc"])')
"$softreg" eval --model tuned/model.safetensors --json | grep -q "\"accuracy\":$tuned_acc" && ok ||
  fail "eval of the refit does not give tune's test_acc $tuned_acc"
cmp -s tuned/tune.json tune.json && ok || fail "tuned/tune.json differs from what --json printed"
"$softreg" tune --optimizer sgd --epochs 1 --lrs 0.1,1e4 --grid 1e-4 --threads 2 --no-check --out tuned-sgd >tune.txt 2>&1 &&
  grep -qE '^ +0\.0001 +1e\+04 +nan +nan +nan +1 +[0-9.]+ +diverged$' tune.txt &&
  grep -q 'best validation loss: l2 0.0001, lr 0.1' tune.txt && [ -s tuned-sgd/tune.png ] &&
  grep -qx 'note: the chosen lr 0.1 is the smallest learning rate tried: smaller ones may score better; widen --lrs' tune.txt && ok ||
  fail "tune with a diverging learning rate: $(cat tune.txt)"
# plot draws a tune refit's chart again from tune.json, its diverged trial included: the same picture.
expect 0 '^wrote curves.png, .*, tune.png, tune.svg in tuned-pics$' -- plot tuned-sgd --out tuned-pics
cmp -s tuned-sgd/tune.png tuned-pics/tune.png && cmp -s tuned-sgd/tune.svg tuned-pics/tune.svg && ok ||
  fail "plot's tune chart differs from tune's"
mkdir -p tune-bad && cp tuned-sgd/model.safetensors tuned-sgd/metrics.csv tune-bad/
printf '{"best": {"l2": 1}, "trials": []}' >tune-bad/tune.json
expect 1 '^softreg: error: tune-bad/tune.json: its best setting is none of its trials$' -- plot tune-bad --out tune-bad-pics
sed 's/"l2": 0.0001/"l2": -1/' tuned-sgd/tune.json >tune-bad/tune.json
expect 1 '^softreg: error: tune-bad/tune.json: trial 1: l2 -1 is not in \[0, 1e\+300\]$' -- plot tune-bad --out tune-bad-pics
printf '{"best": 1}' >tune-bad/tune.json
expect 1 '^softreg: error: tune-bad/tune.json: not a tune.json of softreg tune' -- plot tune-bad --out tune-bad-pics

# softreg data: what was found and what is in it.
expect 0 '^data: /usr/share/datasets/fashion-mnist \(all four files pass the checks\)' -- data --data /usr/share/datasets/fashion-mnist
grep -qE '^  9  ankle boot     6000    1000$' out.txt && ok || fail "data: class table: $(cat out.txt)"
expect 0 '"per_class": \[' -- data --json
expect 1 'softreg: error: --data bad: missing t10k-labels-idx1-ubyte' -- data --data bad

# Validation and early stopping: the chosen epoch's model is kept, and eval sees it.
expect 2 'softreg: error: --val-fraction must be in \(0, 1\), got 1' -- train --val-fraction 1
expect 2 'softreg: error: --val-fraction must be in \(0, 1\), got 0' -- train --val-fraction 0
expect 2 'softreg: error: --early-stop needs a validation set' -- train --early-stop 3
expect 0 'early stop after epoch [0-9]+: no better validation accuracy for 1 epoch; kept epoch [0-9]+' -- \
  train --val-fraction 0.1 --early-stop 1 --optimizer momentum --lr 0.05 --epochs 40 --threads 2 --no-plots --out early
[ "$(head -1 early/metrics.csv)" = "epoch,train_loss,train_acc,test_acc,test_loss,seconds,val_loss,val_acc" ] && ok ||
  fail "metrics.csv header with validation: $(head -1 early/metrics.csv)"
kept_acc=$(grep -o '"test_acc": [0-9.]*' early/summary.json | head -1 | cut -d' ' -f2)
"$softreg" eval --model early/model.safetensors --json | grep -q "\"accuracy\":$kept_acc" && ok ||
  fail "eval of the kept model does not give summary.json's test_acc $kept_acc"
# --split val: the rows --val-fraction held out, drawn again from the recorded fraction and seed.
val_acc=$(grep -o '"best_val_acc": [0-9.]*' early/summary.json | head -1 | cut -d' ' -f2)
"$softreg" eval --model early/model.safetensors --split val --json | grep -q "\"accuracy\":$val_acc" && ok ||
  fail "eval --split val does not give summary.json's best_val_acc $val_acc"
expect 2 'softreg: error: --split val: .* has no validation set and the model was trained without --val-fraction' -- \
  eval --model run2/model.safetensors --split val

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
expect 2 '^softreg: error: --epochs does not apply to --optimizer lbfgs' -- train --resume lbfgs --epochs 3
expect 0 '^lbfgs holds a finished L-BFGS fit: nothing to train$' -- train --resume lbfgs --no-plots --no-check

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]

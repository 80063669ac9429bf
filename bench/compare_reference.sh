#!/usr/bin/env bash
# Runs softreg and the PyTorch references of ../shared/reference side by side, alternately, and prints a
# Markdown table of medians: whole-process wall time, training time per epoch, peak memory, test accuracy.
# Needs Debian's python3-torch python3-torchvision (and libopenblas0-pthread for the fastest PyTorch).
# Usage: bench/compare_reference.sh [ROUNDS]   (default 3; the d2l reference takes ~45 s a run)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
ref=${SOFTREG_REFERENCE:-../shared/reference}
softreg=build/softreg
[ -x "$softreg" ] || { echo "build softreg first: scripts/build" >&2; exit 1; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# name|command: each prints a JSON summary as its last stdout line.
runs=(
  "softreg (2 threads)|$softreg train --no-plots --quiet --json --threads 2 --out $out/run"
  "softreg (1 thread)|$softreg train --no-plots --quiet --json --threads 1 --out $out/run"
  "torch_resident, OpenBLAS 1 thread|env OPENBLAS_NUM_THREADS=1 /usr/bin/python3 $ref/torch_resident.py --threads 1 --seed 0"
  "d2l_scratch (DataLoader, 4 workers)|/usr/bin/python3 $ref/d2l_scratch.py --seed 0"
)

for ((round = 1; round <= rounds; ++round)); do
  for i in "${!runs[@]}"; do
    cmd=${runs[$i]#*|}
    /usr/bin/time -f "%e %M" -o "$out/time" bash -c "$cmd" >"$out/stdout.$round.$i" 2>/dev/null
    read -r wall rss_kb <"$out/time"
    echo "$i $wall $rss_kb $out/stdout.$round.$i" >>"$out/results"
    echo "round $round: ${runs[$i]%%|*}: ${wall}s" >&2
  done
done

python3 - "$out/results" "${#runs[@]}" "${runs[@]}" <<'PY'
import json, statistics, sys
path, n = sys.argv[1], int(sys.argv[2])
names = [r.split("|")[0] for r in sys.argv[3:3 + n]]
rows = {i: [] for i in range(n)}
for line in open(path):
    i, wall, rss, stdout = line.split()
    text = open(stdout).read()
    try:
        s = json.loads(text)  # softreg --json prints only the summary
    except json.JSONDecodeError:
        s = json.loads(text.strip().splitlines()[-1])  # the references end with a JSON line
    # Training time per epoch, test evaluation excluded, the median over the run's epochs.
    key = "train_seconds" if s.get("tool") == "softreg" else "train_s"
    epoch = statistics.median(e[key] for e in s["per_epoch"])
    rows[int(i)].append((float(wall), int(rss) / 1024, epoch, s["test_acc"]))
med = {i: [statistics.median(v[k] for v in rows[i]) for k in range(4)] for i in rows}
base = med[0]
print("| run | wall time (s) | per epoch (s) | peak memory (MB) | test acc | wall time vs softreg (2 threads) |")
print("|---|---|---|---|---|---|")
for i in range(n):
    w, m, e, a = med[i]
    print(f"| {names[i]} | {w:.2f} | {e:.4f} | {m:.0f} | {a:.4f} | {w / base[0]:.1f}x |")
PY

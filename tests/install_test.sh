#!/usr/bin/env bash
# The installed softreg as its users meet it: `cmake --install` into a prefix, a C++ program built
# against it with find_package(softreg CONFIG), the Python example run from it, and a virtual
# environment that imports the package installed into it.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR PYTHON
set -euo pipefail
build=$1 source=$2 python=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$work/prefix" >/dev/null
for f in bin/softreg lib/libsoftreg.a include/softreg/model_io.hpp lib/cmake/softreg/softregConfig.cmake; do
  [ -e "$work/prefix/$f" ] || fail "cmake --install left no $f"
done

# The installed CLI finds its dashboard module (PREFIX/LIBDIR/softreg/libsoftreg-serve.so), opened only
# when it serves.
[ -n "$(find "$work/prefix/lib" -path '*/softreg/libsoftreg-serve.so')" ] ||
  fail "cmake --install left no libsoftreg-serve.so under lib/softreg"
mkdir "$work/runs"
"$work/prefix/bin/softreg" serve --runs "$work/runs" --port 0 >"$work/serve.out" 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do grep -q 'http://' "$work/serve.out" && break; sleep 0.05; done
kill -INT "$serve_pid"
wait "$serve_pid" || fail "the installed softreg serve: $(cat "$work/serve.out")"
grep -q '^dashboard: http://127.0.0.1:' "$work/serve.out" || fail "the installed softreg serve: $(cat "$work/serve.out")"

# C++: a consumer project finds the package and links the library.
cmake -S "$source/examples/cpp" -B "$work/example" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$work/example" -j 2 >/dev/null
"$work/prefix/bin/softreg" train --epochs 2 --no-check --no-plots --out "$work/run" >/dev/null
out=$("$work/example/predict_idx" "$work/run/model.safetensors" /usr/share/datasets/fashion-mnist)
echo "$out"
acc=$(sed -n 's/^accuracy \([0-9.]*\) .*/\1/p' <<<"$out")
want=$("$python" -c "import json; print(json.load(open('$work/run/summary.json'))['test_acc'])")
"$python" -c "import sys; sys.exit(abs($acc - $want) > 1e-4)" || fail "C++ example accuracy $acc, the run's $want"
grep -q "^test:0: .* true ankle boot$" <<<"$out" || fail "C++ example's first prediction line"
if "$work/example/predict_idx" "$work/run/no-model" /usr/share/datasets/fashion-mnist 2>"$work/err"; then
  fail "a missing model should fail"
fi
grep -q "no-model" "$work/err" || fail "the error should name the missing file"

# Python: the package installed under the prefix, and the example script run from it.
site=$(echo "$work"/prefix/lib/python3*/site-packages)
[ -f "$site/softreg/__init__.py" ] || fail "no Python package under $work/prefix/lib"
where=$(cd "$work" && PYTHONPATH="$site" "$python" -c "import softreg; print(softreg.__file__)")
[[ "$where" == "$site"/* ]] || fail "imported softreg from $where, not the prefix"
out=$(cd "$work" && PYTHONPATH="$site" "$python" "$source/examples/python/fit_and_score.py")
echo "$out"
grep -q "^seed recipe: test accuracy 0.8267" <<<"$out" || fail "the Python example's seed-recipe accuracy"

# A virtual environment (with the system's NumPy and scikit-learn) gets the package by installing into it.
"$python" -m venv --without-pip --system-site-packages "$work/venv"
cmake --install "$build" --prefix "$work/venv" >/dev/null
where=$(cd "$work" && env -u PYTHONPATH "$work/venv/bin/python" -c "import softreg; print(softreg.__file__)")
[[ "$where" == "$work/venv/"* ]] || fail "the venv imported softreg from $where"
echo "install test: all checks passed"

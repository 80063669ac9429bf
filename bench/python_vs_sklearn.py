#!/usr/bin/python3
"""softreg's Python estimator against scikit-learn's LogisticRegression, side by side in one process.

Fits on Fashion-MNIST (softreg.datasets.load: 60,000 x 784 uint8, read in place):
  1. SoftmaxRegression() - the seed's recipe - three times (fit seconds, test accuracy);
  2. SoftmaxRegression(optimizer="lbfgs", l2=1/(C n), tol/(C n)) - the objective LogisticRegression(C)
     minimizes, to the same stopping point: scikit-learn's lbfgs stops when the largest entry of the
     gradient of C * sum(loss) + ||W||^2 / 2 is at most tol, which is C n times the gradient of softreg's
     mean loss + l2/2 ||W||^2;
  3. LogisticRegression(C, tol, lbfgs) on the same pixels / 255 as float64, once (minutes).
Prints one JSON line per fit. For BENCHMARKS.md, not a test.

Usage: PYTHONPATH=build/python /usr/bin/python3 bench/python_vs_sklearn.py [--C 0.1] [--tol 1e-4] [--skip-sklearn]
"""
import argparse
import json
import os
import platform
import time

import numpy as np

import softreg


def timed(fit):
    start = time.perf_counter()
    model = fit()
    return model, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--C", type=float, default=0.1)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sklearn", action="store_true")
    args = parser.parse_args()
    X_train, y_train, X_test, y_test = softreg.datasets.load("fashion-mnist")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(json.dumps({"cpu": cpu, "cores": os.cpu_count()}))
    for _ in range(args.repeats):
        model, seconds = timed(lambda: softreg.SoftmaxRegression().fit(X_train, y_train))
        print(json.dumps({"fit": "SoftmaxRegression()", "seconds": round(seconds, 3),
                          "test_acc": model.score(X_test, y_test)}))
    l2 = 1 / (args.C * len(X_train))
    tol = args.tol * l2
    for _ in range(args.repeats):
        model, seconds = timed(lambda: softreg.SoftmaxRegression(optimizer="lbfgs", l2=l2, tol=tol,
                                                                 max_iter=10000).fit(X_train, y_train))
        print(json.dumps({"fit": f"SoftmaxRegression(optimizer='lbfgs', l2={l2:.5g}, tol={tol:.3g})",
                          "seconds": round(seconds, 3), "iterations": model.n_iter_,
                          "test_acc": model.score(X_test, y_test)}))
    if args.skip_sklearn:
        return
    from sklearn.linear_model import LogisticRegression

    X = X_train.astype(np.float64) / 255
    Xt = X_test.astype(np.float64) / 255
    model, seconds = timed(lambda: LogisticRegression(C=args.C, tol=args.tol, max_iter=10000).fit(X, y_train))
    print(json.dumps({"fit": f"LogisticRegression(C={args.C:g}, tol={args.tol:g})", "seconds": round(seconds, 2),
                      "iterations": int(np.max(model.n_iter_)), "test_acc": model.score(Xt, y_test)}))


if __name__ == "__main__":
    main()

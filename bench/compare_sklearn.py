#!/usr/bin/python3
"""scikit-learn's anchors of issue 10, run the way the issue measured them, for BENCHMARKS.md.

Fits LogisticRegression on Fashion-MNIST's raw pixels / 255 (Debian's dataset-fashion-mnist) and prints one
JSON line: solver, C, seconds of fit (wall), iterations, test accuracy, and the objective in softreg's
terms (mean cross-entropy + LAMBDA/2 ||W||^2 with LAMBDA = 1 / (C n)).

Usage: /usr/bin/python3 bench/compare_sklearn.py [--solver lbfgs|liblinear] [--C 0.1] [--tol 1e-4]
Needs Debian's python3-sklearn (not a setup dependency: only this comparison uses it).
"""
import argparse
import json
import os
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

sys.path.insert(0, os.environ.get("SOFTREG_REFERENCE", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference")))
from fmnist_data import load_idx_arrays  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--solver", default="lbfgs")
    parser.add_argument("--C", type=float, default=0.1)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--max-iter", type=int, default=10000)
    args = parser.parse_args()
    x_train, y_train, x_test, y_test = load_idx_arrays()
    X = x_train.reshape(len(x_train), -1).astype(np.float64) / 255
    Xt = x_test.reshape(len(x_test), -1).astype(np.float64) / 255
    clf = LogisticRegression(solver=args.solver, C=args.C, tol=args.tol, max_iter=args.max_iter)
    start = time.perf_counter()
    clf.fit(X, y_train)
    seconds = time.perf_counter() - start
    n = len(X)
    logits = X @ clf.coef_.T + clf.intercept_
    logits -= logits.max(axis=1, keepdims=True)
    log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    mean_ce = -log_p[np.arange(n), y_train].mean()
    lam = 1.0 / (args.C * n)
    print(json.dumps({"solver": args.solver, "C": args.C, "tol": args.tol, "seconds": round(seconds, 2),
                      "iterations": int(np.max(clf.n_iter_)), "test_acc": float(clf.score(Xt, y_test)),
                      "objective": float(mean_ce + lam / 2 * (clf.coef_ ** 2).sum())}))


if __name__ == "__main__":
    main()

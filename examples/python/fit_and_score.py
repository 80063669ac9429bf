#!/usr/bin/python3
"""Fits the seed's recipe on Fashion-MNIST from Python and scores it; then a tuned L-BFGS fit.

    PYTHONPATH=build/python /usr/bin/python3 examples/python/fit_and_score.py
"""
import time

import softreg

X_train, y_train, X_test, y_test = softreg.datasets.load("fashion-mnist")
names = softreg.datasets.class_names("fashion-mnist")

start = time.perf_counter()
model = softreg.SoftmaxRegression().fit(X_train, y_train)
print(f"seed recipe: test accuracy {model.score(X_test, y_test):.4f}, fit in {time.perf_counter() - start:.2f} s")
print("first test image:", names[model.predict(X_test[:1])[0]], "- true:", names[y_test[0]])

start = time.perf_counter()
best = softreg.SoftmaxRegression(optimizer="lbfgs", l2=2.15e-4, tol=1e-5, max_iter=1000).fit(X_train, y_train)
print(f"L-BFGS, l2 2.15e-4: test accuracy {best.score(X_test, y_test):.4f}, fit in {time.perf_counter() - start:.2f} s")

#!/usr/bin/python3
"""Writes tests/fixtures/sklearn_lbfgs.json: scikit-learn's optimum of the L2-regularized multinomial
logistic regression on the first 5,000 Fashion-MNIST training images (pixels / 255).

scikit-learn's LogisticRegression(C) minimizes C * summed cross-entropy + 1/2 ||W||^2 (intercept not
penalized), which is softreg's objective, mean cross-entropy + l2/2 ||W||^2, with l2 = 1 / (C n). The
fixture holds C, n, l2, scikit-learn's coef_ and intercept_, and softreg's objective at that point
computed here in float64, so the C++ test can check both the objective's definition and that softreg's
L-BFGS reaches the same optimum.

Run with Debian's python3-sklearn and dataset-fashion-mnist: /usr/bin/python3 tools/make_sklearn_fixture.py
"""
import gzip
import json
import pathlib
import time

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

N, C = 5000, 0.1
folder = pathlib.Path("/usr/share/datasets/fashion-mnist")
with gzip.open(folder / "train-images-idx3-ubyte.gz") as f:
    X = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:N].astype(np.float64) / 255
with gzip.open(folder / "train-labels-idx1-ubyte.gz") as f:
    y = np.frombuffer(f.read(), np.uint8, offset=8)[:N].astype(np.int64)

start = time.time()
model = LogisticRegression(C=C, solver="lbfgs", tol=1e-10, max_iter=10000, multi_class="multinomial")
model.fit(X, y)
seconds = time.time() - start
W, b = model.coef_, model.intercept_  # [K, D], [K]
logits = X @ W.T + b
logits -= logits.max(axis=1, keepdims=True)
log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
l2 = 1 / (C * N)
objective = -log_probs[np.arange(N), y].mean() + 0.5 * l2 * (W ** 2).sum()
fixture = {
    "about": f"scikit-learn {sklearn.__version__} LogisticRegression(C={C}, lbfgs, tol 1e-10), "
             f"first {N} Fashion-MNIST training images; made by tools/make_sklearn_fixture.py",
    "rows": N, "C": C, "l2": l2, "objective": objective, "iterations": int(model.n_iter_[0]),
    "seconds": seconds, "train_acc": float((model.predict(X) == y).mean()),
    "coef": W.flatten().tolist(), "intercept": b.tolist(),
}
path = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/sklearn_lbfgs.json"
path.write_text(json.dumps(fixture) + "\n")
print("wrote", path, "objective", objective, "iterations", model.n_iter_, "seconds", round(seconds, 1))

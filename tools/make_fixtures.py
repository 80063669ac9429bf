#!/usr/bin/python3
"""Writes tests/fixtures/torch_reference.json: the seed's math computed by PyTorch in float64.

A tiny problem (N=10 images of 3x4 bytes, K=4 classes) with seeded inputs and initial weights, and:
  - logits, summed cross-entropy loss, dW and db from autograd on the summed batch loss;
  - three SGD steps (lr 0.1) over batches of 4, 4 and 2 rows (the last one partial), each step
    param -= lr * grad / actual_batch_size as d2l.sgd does, with the loss of each batch before its step
    and W, b at the end.
Run with Debian's python3-torch:  /usr/bin/python3 tools/make_fixtures.py
The C++ tests read the JSON; they never need Python.
"""
import json
import os

import torch

torch.manual_seed(20261124)
N, H, Wd, K = 10, 3, 4, 4
D = H * Wd
pixels = torch.randint(0, 256, (N, D), dtype=torch.uint8)
labels = torch.randint(0, K, (N,), dtype=torch.int64)
W0 = torch.normal(0.0, 0.5, size=(D, K), dtype=torch.float64)
b0 = torch.normal(0.0, 0.1, size=(K,), dtype=torch.float64)
X = pixels.to(torch.float64) / 255.0  # the seed's ToTensor scaling


def batch_loss(X, y, W, b):
    # Stable log-softmax; the seed's naive exp would give the same values on these small logits.
    return -torch.log_softmax(X @ W + b, dim=1).gather(1, y.unsqueeze(1)).squeeze(1)


W = W0.clone().requires_grad_(True)
b = b0.clone().requires_grad_(True)
logits = (X @ W + b).detach()
loss = batch_loss(X, labels, W, b)
loss.sum().backward()
grad = {"loss_rows": loss.detach().tolist(), "loss_sum": float(loss.sum()), "dW": W.grad.tolist(),
        "db": b.grad.tolist(), "logits": logits.tolist(),
        "correct": int((logits.argmax(1) == labels).sum())}

lr = 0.1
batches = [(0, 4), (4, 8), (8, 10)]
W = W0.clone().requires_grad_(True)
b = b0.clone().requires_grad_(True)
step_losses = []
for lo, hi in batches:
    l = batch_loss(X[lo:hi], labels[lo:hi], W, b)
    l.sum().backward()
    with torch.no_grad():
        bs = hi - lo
        W -= lr * W.grad / bs
        b -= lr * b.grad / bs
        W.grad.zero_()
        b.grad.zero_()
    step_losses.append(float(l.sum()))
with torch.no_grad():
    final_mean_loss = float(batch_loss(X, labels, W, b).mean())

fixture = {
    "about": "made by tools/make_fixtures.py with torch " + torch.__version__ + " in float64",
    "height": H, "width": Wd, "classes": K,
    "pixels": pixels.flatten().tolist(), "labels": labels.tolist(),
    "W0": W0.tolist(), "b0": b0.tolist(),
    **grad,
    "sgd": {"lr": lr, "batches": batches, "batch_loss_sums": step_losses,
            "W": W.detach().tolist(), "b": b.detach().tolist(), "final_mean_loss": final_mean_loss},
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "torch_reference.json")
with open(out + ".tmp", "w") as f:
    json.dump(fixture, f, indent=1)
    f.write("\n")
os.replace(out + ".tmp", out)
print("wrote", os.path.normpath(out))

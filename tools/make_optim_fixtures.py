#!/usr/bin/python3
"""Writes tests/fixtures/torch_optim.json: torch.optim's updates on a fixed sequence of gradients.

For each case: an optimizer of torch.optim with its settings, the learning rate of each step (a
schedule may change it), and the weight and bias after each step. The L2 penalty of softreg's
objective (lambda/2 * ||W||^2, bias not penalized) is torch's coupled weight_decay on a parameter group
holding the weight alone; AdamW's decoupled decay likewise applies to the weight only.

Run with Debian's python3-torch: /usr/bin/python3 tools/make_optim_fixtures.py
The C++ tests only read the JSON (tests/test_optim.cpp).
"""
import json
import pathlib

import torch

K, D, STEPS = 4, 3, 6
torch.manual_seed(20261124)
W0 = torch.randn(K, D, dtype=torch.float32) * 0.5  # torch.nn.Linear's [K, D] = softreg's (D,K) column-major
b0 = torch.randn(K, dtype=torch.float32) * 0.5
GRADS = [(torch.randn(K, D, dtype=torch.float32), torch.randn(K, dtype=torch.float32)) for _ in range(STEPS)]

CASES = [
    dict(optimizer="sgd", lr=0.1),
    dict(optimizer="sgd", lr=0.1, l2=0.1),
    dict(optimizer="momentum", lr=0.05, momentum=0.9),
    dict(optimizer="momentum", lr=0.05, momentum=0.5, l2=0.01),
    dict(optimizer="nesterov", lr=0.05, momentum=0.9),
    dict(optimizer="adam", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8),
    dict(optimizer="adam", lr=0.01, beta1=0.8, beta2=0.99, eps=1e-6, l2=0.05,
         lrs=[0.01, 0.02, 0.005, 0.01, 0.0, 0.03]),
    dict(optimizer="adamw", lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1),
]


def make(case, W, b):
    l2 = case.get("l2", 0.0)
    name, lr = case["optimizer"], case["lr"]
    if name in ("sgd", "momentum", "nesterov"):
        momentum = case.get("momentum", 0.0)
        return torch.optim.SGD([{"params": [W], "weight_decay": l2}, {"params": [b], "weight_decay": 0.0}],
                               lr=lr, momentum=momentum, nesterov=name == "nesterov")
    betas = (case["beta1"], case["beta2"])
    if name == "adam":
        return torch.optim.Adam([{"params": [W], "weight_decay": l2}, {"params": [b], "weight_decay": 0.0}],
                                lr=lr, betas=betas, eps=case["eps"], foreach=False)
    return torch.optim.AdamW([{"params": [W], "weight_decay": case["weight_decay"]},
                              {"params": [b], "weight_decay": 0.0}],
                             lr=lr, betas=betas, eps=case["eps"], foreach=False)


def run(case):
    W = W0.clone().requires_grad_(True)
    b = b0.clone().requires_grad_(True)
    opt = make(case, W, b)
    lrs = case.get("lrs", [case["lr"]] * STEPS)
    out = {"W": [], "b": []}
    for (gW, gb), lr in zip(GRADS, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        W.grad = gW.clone()  # the mean gradient of the batch loss
        b.grad = gb.clone()
        opt.step()
        out["W"].append(W.detach().flatten().tolist())
        out["b"].append(b.detach().tolist())
    return dict(case, lrs=lrs, **out)


fixture = {
    "about": "torch.optim updates from tools/make_optim_fixtures.py, torch " + torch.__version__,
    "classes": K, "inputs": D,
    "W0": W0.flatten().tolist(), "b0": b0.tolist(),
    "grads": [{"dW": gW.flatten().tolist(), "db": gb.tolist()} for gW, gb in GRADS],
    "cases": [run(c) for c in CASES],
}
path = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/torch_optim.json"
path.write_text(json.dumps(fixture, indent=1) + "\n")
print("wrote", path)

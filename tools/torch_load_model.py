#!/usr/bin/python3
"""Loads a softreg model.safetensors into torch.nn.Linear and prints test accuracy and the first logits.

Uses safetensors.torch.load_file when the safetensors package is installed, otherwise an equivalent
reader of the format (8-byte little-endian header length, JSON header, raw tensors), so it runs with
Debian's python3-torch alone:  /usr/bin/python3 tools/torch_load_model.py runs/latest/model.safetensors
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "reference"))


def load_file(path):
    try:
        from safetensors.torch import load_file as st_load
        return st_load(path)
    except ImportError:
        raw = open(path, "rb").read()
        n = struct.unpack("<Q", raw[:8])[0]
        header = json.loads(raw[8:8 + n])
        data = raw[8 + n:]
        return {k: torch.frombuffer(bytearray(data[v["data_offsets"][0]:v["data_offsets"][1]]),
                                    dtype=torch.float32).reshape(v["shape"])
                for k, v in header.items() if k != "__metadata__"}


tensors = load_file(sys.argv[1] if len(sys.argv) > 1 else "runs/latest/model.safetensors")
classes, inputs = tensors["weight"].shape
linear = torch.nn.Linear(inputs, classes)
# A checkpoint may also hold the optimizer's buffers ("optimizer.*"); the model is weight and bias.
linear.load_state_dict({"weight": tensors["weight"], "bias": tensors["bias"]})
from fmnist_data import load_idx_arrays  # noqa: E402

_, _, Xte, yte = load_idx_arrays()
x = torch.from_numpy(Xte.astype("float32")) / 255  # the model's pixel_scale: x/255
with torch.no_grad():
    logits = linear(x)
print("logits of test:0:", [round(v, 4) for v in logits[0].tolist()])
print("test accuracy:", float((logits.argmax(1) == torch.from_numpy(yte.astype("int64"))).float().mean()))

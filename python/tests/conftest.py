"""Shared fixtures. CTest runs these with PYTHONPATH=build/python and SOFTREG_CLI=build/softreg."""
import os
import pathlib

import pytest


@pytest.fixture(scope="session")
def cli():
    path = os.environ.get("SOFTREG_CLI")
    if not path:
        path = str(pathlib.Path(__file__).resolve().parents[2] / "build" / "softreg")
    assert os.access(path, os.X_OK), f"the softreg CLI is not at {path} (set SOFTREG_CLI)"
    return path


@pytest.fixture(scope="session")
def fashion_mnist():
    import softreg

    return softreg.datasets.load("fashion-mnist")

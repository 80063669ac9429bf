"""Data sets by name, found where the CLI finds them, as NumPy views of the decoded, memory-mapped data."""
from . import _core

# The data sets softreg knows by name (more come with `softreg data download`).
KNOWN = ("fashion-mnist",)


def load(name="fashion-mnist", *, data=None):
    """(X_train, y_train, X_test, y_test) of a data set.

    `name` is a known data set, found as `softreg train` finds it ($SOFTREG_DATA, ./data/fashion-mnist,
    ~/.cache/softreg/fashion-mnist, Debian's /usr/share/datasets/fashion-mnist). `data` is a folder
    instead (IDX files, an image folder or an .npz), as `softreg train --data` takes it.

    X is (n, height*width) uint8 pixels (or float32 features) and y uint16 class indices; both are
    read-only views of softreg's decoded cache, mapped into memory: nothing is copied. Class names:
    class_names(...).
    """
    return _load(name, data)[:4]


def class_names(name="fashion-mnist", *, data=None):
    """The class names of a data set, in label order."""
    return _load(name, data)[4]


def _load(name, data):
    if data is None and name not in KNOWN:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(KNOWN)} (or pass data=FOLDER)")
    loaded = _core.load_data_folder(None if data is None else str(data))
    return (loaded["X_train"], loaded["y_train"], loaded["X_test"], loaded["y_test"], loaded["class_names"])

"""Data sets by name, found where the CLI finds them, as NumPy views of the decoded, memory-mapped data."""
from . import _core


def names():
    """The data sets softreg knows by name."""
    return [d["name"] for d in _core.datasets()]


def load(name="fashion-mnist", *, data=None, download=False, mirrors=(), skip_bad_images=False):
    """(X_train, y_train, X_test, y_test) of a data set.

    `name` is a known data set (names()), looked for as `softreg train --dataset NAME` does:
    ~/.cache/softreg/NAME, $SOFTREG_DATA/NAME, and for Fashion-MNIST Debian's
    /usr/share/datasets/fashion-mnist. With download=True a data set found nowhere is downloaded
    first (as `softreg data download NAME`, from `mirrors` when given), every file verified against
    its pinned SHA-256. `data` is a folder instead (IDX files, an image folder or an .npz), as
    `softreg train --data` takes it. An unreadable image in an image folder is an error naming it;
    skip_bad_images=True leaves such images out instead (`--skip-bad-images`).

    X is (n, height*width) uint8 pixels (or float32 features) and y uint16 class indices; both are
    read-only views of softreg's decoded cache, mapped into memory: nothing is copied. Class names:
    class_names(...).
    """
    return _load(name, data, download, mirrors, skip_bad_images)[:4]


def class_names(name="fashion-mnist", *, data=None, skip_bad_images=False):
    """The class names of a data set, in label order."""
    return _load(name, data, False, (), skip_bad_images)[4]


def download(name, folder=None, *, mirrors=()):
    """Downloads a data set by name into `folder` (default: where `softreg data download` puts it) and
    returns that folder."""
    return _core.download(name, None if folder is None else str(folder), list(mirrors))


def _load(name, data, fetch, mirrors, skip_bad_images=False):
    if data is None and name not in names():
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(names())} (or pass data=FOLDER)")
    if data is not None:
        loaded = _core.load_data_folder(str(data), "", skip_bad_images)
    else:
        try:
            loaded = _core.load_data_folder(None, name)
        except ValueError:
            if not fetch:
                raise
            download(name, mirrors=mirrors)
            loaded = _core.load_data_folder(None, name)
    return (loaded["X_train"], loaded["y_train"], loaded["X_test"], loaded["y_test"], loaded["class_names"])

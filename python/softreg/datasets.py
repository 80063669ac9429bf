"""Data sets by name, found where the CLI finds them, as NumPy views of the decoded, memory-mapped data."""
import numbers

from . import _core


def names():
    """The data sets softreg knows by name."""
    return [d["name"] for d in _core.datasets()]


def load(name="fashion-mnist", *, data=None, download=False, mirrors=(), skip_bad_images=False, image_size=None):
    """(X_train, y_train, X_test, y_test) of a data set.

    `name` is a known data set (names()), looked for as `softreg train --dataset NAME` does:
    ~/.cache/softreg/NAME, $SOFTREG_DATA/NAME, and for Fashion-MNIST Debian's
    /usr/share/datasets/fashion-mnist. With download=True a data set found nowhere is downloaded
    first (as `softreg data download NAME`, from `mirrors` when given), every file verified against
    its pinned SHA-256. `data` is a folder instead (IDX files, an image folder or an .npz), as
    `softreg train --data` takes it. An unreadable image in an image folder is an error naming it;
    skip_bad_images=True leaves such images out instead (`--skip-bad-images`). An image folder's images
    are resized to image_size=(height, width) by area averaging (`--image-size HxW`; default: their own
    size, or 28x28 when they differ).

    X is (n, height*width) uint8 pixels (or float32 features) and y uint16 class indices; both are
    read-only views of softreg's decoded cache, mapped into memory: nothing is copied. Class names:
    class_names(...).
    """
    return _load(name, data, download, mirrors, skip_bad_images, image_size)[:4]


def class_names(name="fashion-mnist", *, data=None, skip_bad_images=False, image_size=None):
    """The class names of a data set, in label order."""
    return _load(name, data, False, (), skip_bad_images, image_size)[4]


def download(name, folder=None, *, mirrors=()):
    """Downloads a data set by name into `folder` (default: where `softreg data download` puts it) and
    returns that folder."""
    return _core.download(name, None if folder is None else str(folder), list(mirrors))


def _image_size(image_size):
    if image_size is None:
        return 0, 0
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    for side in (height, width):
        if not isinstance(side, numbers.Integral) or isinstance(side, bool) or not 1 <= side <= 4096:
            raise ValueError(f"image_size must be (height, width) with sides from 1 to 4096, got {image_size!r}")
    return int(height), int(width)


def _load(name, data, fetch, mirrors, skip_bad_images=False, image_size=None):
    if data is None and name not in names():
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(names())} (or pass data=FOLDER)")
    height, width = _image_size(image_size)
    if image_size is not None and data is None:
        raise ValueError("image_size applies to image folders (data=FOLDER), not to a data set by name")
    if skip_bad_images and data is None:
        raise ValueError("skip_bad_images applies to image folders (data=FOLDER), not to a data set by name")
    if data is not None:
        loaded = _core.load_data_folder(str(data), "", skip_bad_images, height, width)
    else:
        try:
            loaded = _core.load_data_folder(None, name)
        except ValueError:
            if not fetch:
                raise
            download(name, mirrors=mirrors)
            loaded = _core.load_data_folder(None, name)
    return (loaded["X_train"], loaded["y_train"], loaded["X_test"], loaded["y_test"], loaded["class_names"])

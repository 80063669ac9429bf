"""softreg.datasets: the CLI's data discovery, as read-only views of the mapped decoded cache."""
import numpy as np
import pytest

import softreg


def status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def anonymous_kb():
    return status_kb("RssAnon")


def peak_kb():
    return status_kb("VmHWM")


def test_fashion_mnist_by_name(fashion_mnist):
    X_train, y_train, X_test, y_test = fashion_mnist
    assert X_train.shape == (60000, 784) and X_test.shape == (10000, 784)
    assert X_train.dtype == np.uint8 and y_train.shape == (60000,)
    assert set(np.unique(y_train)) == set(range(10))
    assert softreg.datasets.class_names()[9] == "ankle boot"
    assert not X_train.flags.writeable and not y_train.flags.writeable
    with pytest.raises(ValueError):
        X_train[0, 0] = 1


def test_load_copies_nothing():
    softreg.datasets.load()  # warm the decoded cache
    before = anonymous_kb()
    arrays = softreg.datasets.load()
    total = sum(a.nbytes for a in arrays) // 1024
    grown = anonymous_kb() - before
    # 55 MB of data; a copy would add that much anonymous memory, a mapping adds none of it.
    assert total > 50_000
    assert grown < total // 10, f"anonymous memory grew by {grown} kB for {total} kB of data"


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_fit_reads_rows_in_place(fashion_mnist, dtype):
    X_train, y_train, _, _ = fashion_mnist
    X = np.array(X_train[:20000], dtype=dtype)  # owned, resident
    if dtype != np.uint8:
        X /= 255
    softreg.SoftmaxRegression(epochs=1).fit(X[:1000], y_train[:1000])  # warm up the code paths
    before = peak_kb()
    softreg.SoftmaxRegression(epochs=1).fit(X, y_train[:20000])
    grown = peak_kb() - before
    # Even a float32 copy of float64 rows would be half their size.
    assert grown < X.nbytes // 1024 // 4, f"peak memory grew by {grown} kB during a fit on {X.nbytes // 1024} kB"


def test_names_and_where_they_are_looked_for(tmp_path, monkeypatch):
    assert softreg.datasets.names() == ["fashion-mnist", "mnist", "kmnist"]
    monkeypatch.setenv("SOFTREG_DATA", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    with pytest.raises(ValueError, match="softreg data download mnist"):
        softreg.datasets.load("mnist")
    # A download from a local mirror (Debian's files, verified by their content) lands in $SOFTREG_DATA.
    folder = softreg.datasets.download("fashion-mnist", mirrors=["file:///usr/share/datasets/fashion-mnist/"])
    assert folder == str(tmp_path / "fashion-mnist")
    assert (tmp_path / "fashion-mnist" / "classes.txt").read_text().split("\n")[0] == "t-shirt"
    X_train, _, _, _ = softreg.datasets.load("fashion-mnist")
    assert X_train.shape == (60000, 784)
    with pytest.raises(ValueError, match="could not download"):
        softreg.datasets.load("mnist", download=True, mirrors=["file:///usr/share/datasets/fashion-mnist/"])


def test_unknown_name_and_bad_folder():
    with pytest.raises(ValueError, match="unknown data set 'cifar'"):
        softreg.datasets.load("cifar")
    with pytest.raises(ValueError, match="/no/such"):
        softreg.datasets.load(data="/no/such")


def test_an_image_folder_with_an_unreadable_image(tmp_path):
    for split in ("train", "test"):
        for name, value in (("dark", 16), ("light", 240)):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            (folder / "a.pgm").write_bytes(b"P5 2 1 255 " + bytes([value, value]))
    (tmp_path / "train" / "dark" / "broken.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="broken.png"):
        softreg.datasets.load(data=tmp_path)
    X_train, y_train, X_test, _ = softreg.datasets.load(data=tmp_path, skip_bad_images=True)
    assert X_train.shape == (2, 2) and X_test.shape == (2, 2)
    assert list(y_train) == [0, 1]
    assert softreg.datasets.class_names(data=tmp_path, skip_bad_images=True) == ["dark", "light"]


def test_an_image_folder_at_a_size_of_ones_choosing(tmp_path):
    for split in ("train", "test"):
        for name, value in (("dark", 16), ("light", 240)):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            (folder / "a.pgm").write_bytes(b"P5 4 2 255 " + bytes([value] * 8))
    assert softreg.datasets.load(data=tmp_path)[0].shape == (2, 8)  # the images' own size
    X_train, _, X_test, _ = softreg.datasets.load(data=tmp_path, image_size=(1, 2))  # as --image-size 1x2
    assert X_train.shape == (2, 2) and X_test.shape == (2, 2)
    assert list(X_train[1]) == [240, 240]  # area averaging keeps a flat image flat
    for bad in [(0, 2), (1,), "1x2", (1.5, 2)]:
        with pytest.raises(ValueError, match="image_size must be"):
            softreg.datasets.load(data=tmp_path, image_size=bad)
    with pytest.raises(ValueError, match="image_size applies to image folders"):
        softreg.datasets.load("fashion-mnist", image_size=(28, 28))
    with pytest.raises(ValueError, match="skip_bad_images applies to image folders"):
        softreg.datasets.load("fashion-mnist", skip_bad_images=True)

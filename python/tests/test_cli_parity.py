"""Python and `softreg train` on Fashion-MNIST: the same recipe gives the same weights, bit for bit, and
the same model files."""
import json
import os
import subprocess

import numpy as np
import pytest

import softreg


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    body = raw[8 + n :]
    tensors = {}
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        begin, end = spec["data_offsets"]
        tensors[name] = np.frombuffer(body[begin:end], dtype=np.float32).reshape(spec["shape"])
    return tensors, header.get("__metadata__", {})


@pytest.fixture(scope="module")
def cli_run(cli, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "seed"
    subprocess.run([cli, "train", "--out", str(out), "--no-plots", "--threads", "2"], check=True,
                   capture_output=True, text=True)
    return out


def test_seed_recipe_bit_for_bit(fashion_mnist, cli_run):
    X_train, y_train, X_test, y_test = fashion_mnist
    model = softreg.SoftmaxRegression(threads=2).fit(X_train, y_train)
    tensors, _ = read_safetensors(cli_run / "model.safetensors")
    assert model.coef_.dtype == np.float32
    np.testing.assert_array_equal(model.coef_, tensors["weight"])
    np.testing.assert_array_equal(model.intercept_, tensors["bias"])
    # The same per-epoch training figures as metrics.csv.
    rows = (cli_run / "metrics.csv").read_text().strip().split("\n")
    header = rows[0].split(",")
    last = dict(zip(header, rows[-1].split(",")))
    assert abs(float(last["train_loss"]) - model.history_[-1]["train_loss"]) < 1e-9
    summary = json.loads((cli_run / "summary.json").read_text())
    assert model.score(X_test, y_test) == pytest.approx(summary["test_acc"], abs=1e-9)


def test_python_reads_the_cli_model(fashion_mnist, cli_run):
    X_train, y_train, X_test, y_test = fashion_mnist
    model = softreg.load(cli_run / "model.safetensors")
    np.testing.assert_array_equal(model.classes_, np.arange(10))
    assert model.class_names_[0] == "t-shirt"
    assert model.get_params()["lr"] == 0.1 and model.get_params()["batch_size"] == 256
    assert model.score(X_test, y_test) > 0.8
    # It continues training like the run would: one more epoch from its state.
    assert model.n_iter_ == 10
    # The run folder itself, as eval and predict take it.
    np.testing.assert_array_equal(softreg.load(cli_run).coef_, model.coef_)


def test_cli_reads_the_python_model(cli, fashion_mnist, tmp_path):
    X_train, y_train, X_test, y_test = fashion_mnist
    model = softreg.SoftmaxRegression(epochs=2).fit(X_train, y_train)
    path = tmp_path / "model.safetensors"
    model.save(path)
    out = subprocess.run([cli, "eval", "--model", str(path), "--json"], check=True, capture_output=True, text=True)
    figures = json.loads(out.stdout)
    accuracy = model.score(X_test, y_test)
    assert figures["accuracy"] == pytest.approx(accuracy, abs=2e-4)
    tensors, meta = read_safetensors(path)
    np.testing.assert_array_equal(tensors["weight"], model.coef_)
    assert meta["height"] == "28" and meta["input"] == "images" and meta["dtype"] == "u8"
    again = softreg.load(path)
    np.testing.assert_array_equal(again.predict(X_test[:500]), model.predict(X_test[:500]))


def test_save_labels_of_any_kind_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5))
    y = np.array(["north", "south", "west"])[rng.integers(0, 3, 300)]
    model = softreg.SoftmaxRegression(epochs=3).fit(X, y)
    model.save(tmp_path / "m.safetensors")
    again = softreg.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(again.classes_, model.classes_)
    np.testing.assert_array_equal(again.predict(X), model.predict(X))
    _, meta = read_safetensors(tmp_path / "m.safetensors")
    assert meta["input"] == "features" and json.loads(meta["class_names"]) == ["north", "south", "west"]


def test_save_is_atomic_and_bad_paths_are_clear(tmp_path):
    model = softreg.SoftmaxRegression(epochs=1).fit(np.eye(4), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="no-such-folder"):
        model.save(tmp_path / "no-such-folder" / "m.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="bad.safetensors"):
        softreg.load(tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match="no model.safetensors there"):
        softreg.load(tmp_path)
    with pytest.raises(ValueError, match="is a folder, not a file name"):
        model.save(tmp_path)
    assert os.listdir(tmp_path) == ["bad.safetensors"]


def test_column_names_go_between_tables_and_data_frames(cli, tmp_path):
    """A model of a CSV table's columns loads with them as feature_names_in_ (a DataFrame in another
    order is refused, not misread); one fitted on a DataFrame saves them, and `softreg predict` then reads
    a table's columns by name, in any order."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = np.where(X[:, 0] - X[:, 2] > 0, "pos", "neg")
    table = pd.DataFrame(X, columns=["a", "b", "c"]).assign(label=y)
    table.to_csv(tmp_path / "t.csv", index=False)
    subprocess.run([cli, "train", "--train-csv", str(tmp_path / "t.csv"), "--label-column", "label",
                    "--test-fraction", "0.2", "--no-plots", "--quiet", "--out", str(tmp_path / "run")],
                   check=True, capture_output=True, text=True)
    model = softreg.load(tmp_path / "run")
    assert list(model.feature_names_in_) == ["a", "b", "c"]
    with pytest.warns(UserWarning, match="fitted with feature names"):
        unnamed = model.predict(X)
    assert (model.predict(table[["a", "b", "c"]]) == unnamed).all()
    with pytest.raises(ValueError, match="feature names"):
        model.predict(table[["c", "a", "b"]])

    fitted = softreg.SoftmaxRegression(epochs=3).fit(table[["a", "b", "c"]], y)
    fitted.save(tmp_path / "m.safetensors")
    _, meta = read_safetensors(tmp_path / "m.safetensors")
    assert json.loads(meta["feature_names"]) == ["a", "b", "c"]
    table[["c", "label", "a", "b"]].to_csv(tmp_path / "shuffled.csv", index=False)
    out = subprocess.run([cli, "predict", "--model", str(tmp_path / "m.safetensors"), "--top", "1",
                          str(tmp_path / "shuffled.csv")], check=True, capture_output=True, text=True)
    predicted = [line.split(": ")[1].split(" ")[0] for line in out.stdout.splitlines()]
    assert predicted == list(fitted.predict(table[["a", "b", "c"]]))

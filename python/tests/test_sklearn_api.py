"""SoftmaxRegression inside scikit-learn's machinery, and bad input raising what scikit-learn raises."""
import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import softreg
from softreg import SoftmaxRegression


def blobs(n=600, classes=4, features=6, seed=0):
    X, y = make_blobs(n_samples=n, centers=classes, n_features=features, random_state=seed)
    return StandardScaler().fit_transform(X), y


def test_fit_predict_shapes_and_probabilities():
    X, y = blobs()
    model = SoftmaxRegression(epochs=30).fit(X, y)
    assert model.coef_.shape == (4, 6) and model.intercept_.shape == (4,)
    assert model.n_features_in_ == 6 and model.n_iter_ == 30 and len(model.history_) == 30
    proba = model.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-12)
    np.testing.assert_allclose(model.predict_log_proba(X), np.log(proba), atol=1e-9)
    np.testing.assert_array_equal(model.predict(X), model.classes_[proba.argmax(axis=1)])
    assert model.score(X, y) > 0.95
    # decision_function is the logits of coef_ and intercept_ (as the model sees the rows).
    np.testing.assert_allclose(model.decision_function(X), X @ model.coef_.astype(np.float64).T + model.intercept_,
                               rtol=1e-5, atol=1e-5)


def test_any_labels_strings_negative_sparse():
    X, y = blobs(classes=3)
    for labels in (np.array(["cat", "dog", "emu"]), np.array([-7, 0, 1000]), np.array([1.0, 3.0, -7.0])):
        model = SoftmaxRegression(epochs=20).fit(X, labels[y])
        np.testing.assert_array_equal(model.classes_, np.sort(labels))
        assert set(model.predict(X)) <= set(labels)
        assert model.score(X, labels[y]) > 0.95


def test_binary_decision_function_is_the_margin():
    X, y = blobs(classes=2)
    model = SoftmaxRegression(epochs=20).fit(X, y)
    d = model.decision_function(X)
    assert d.shape == (len(X),)
    np.testing.assert_array_equal(model.predict(X), model.classes_[(d > 0).astype(int)])
    np.testing.assert_allclose(model.predict_proba(X)[:, 1], 1 / (1 + np.exp(-d)), atol=1e-12)


def test_pickle_round_trip_predicts_the_same():
    X, y = blobs()
    model = SoftmaxRegression(optimizer="adam", lr=0.01, epochs=5).fit(X, y)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))
    # The optimizer state travels too: partial_fit continues identically from both.
    np.testing.assert_array_equal(again.partial_fit(X, y).coef_, model.partial_fit(X, y).coef_)


def test_clone_keeps_parameters_drops_fit():
    model = SoftmaxRegression(lr=0.05, epochs=3, optimizer="momentum").fit(*blobs())
    copy = clone(model)
    assert copy.get_params() == model.get_params()
    assert not hasattr(copy, "coef_")
    with pytest.raises(NotFittedError):
        copy.predict(blobs()[0])


def test_grid_search_and_pipeline():
    X, y = make_blobs(n_samples=400, centers=3, n_features=5, random_state=1)
    X = X * 50 + 200  # unscaled: the pipeline's StandardScaler is what makes SGD work here
    pipe = make_pipeline(StandardScaler(), SoftmaxRegression(epochs=20))
    assert pipe.fit(X, y).score(X, y) > 0.95
    search = GridSearchCV(pipe, {"softmaxregression__lr": [0.01, 0.1, 0.5]}, cv=3).fit(X, y)
    assert search.best_params_["softmaxregression__lr"] in (0.01, 0.1, 0.5)
    assert search.score(X, y) > 0.95


def test_same_seed_same_weights_other_seed_other_weights():
    X, y = blobs()
    a = SoftmaxRegression(seed=3).fit(X, y).coef_
    b = SoftmaxRegression(seed=3).fit(X, y).coef_
    c = SoftmaxRegression(seed=4).fit(X, y).coef_
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_thread_count_does_not_change_the_weights():
    X, y = blobs(n=3000)
    one = SoftmaxRegression(threads=1).fit(X, y).coef_
    two = SoftmaxRegression(threads=2).fit(X, y).coef_
    np.testing.assert_array_equal(one, two)


def test_warm_start_continues_from_the_previous_fit():
    X, y = blobs()
    cold = SoftmaxRegression(epochs=2).fit(X, y)
    warm = SoftmaxRegression(epochs=2, warm_start=True).fit(X, y)
    first = warm.coef_.copy()
    np.testing.assert_array_equal(first, cold.coef_)
    warm.fit(X, y)
    assert not np.array_equal(warm.coef_, first)
    assert warm.score(X, y) >= cold.score(X, y) - 0.01


def test_partial_fit_needs_classes_then_continues():
    X, y = blobs()
    model = SoftmaxRegression()
    with pytest.raises(ValueError, match="classes"):
        model.partial_fit(X, y)
    model.partial_fit(X[:300], y[:300], classes=np.unique(y))
    assert model.n_iter_ == 1
    model.partial_fit(X[300:], y[300:])
    assert model.n_iter_ == 2
    # Epochs one call at a time are the epochs of one fit on the same rows.
    stepwise = SoftmaxRegression()
    for _ in range(3):
        stepwise.partial_fit(X, y, classes=np.unique(y))
    np.testing.assert_array_equal(stepwise.coef_, SoftmaxRegression(epochs=3).fit(X, y).coef_)
    with pytest.raises(ValueError, match="not in classes"):
        model.partial_fit(X[:10], np.full(10, 99))
    with pytest.raises(ValueError, match="features"):
        model.partial_fit(X[:, :3], y)


def test_float64_rows_train_as_their_float32_rounding():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(700, 37))  # 37 inputs: vector tails on every SIMD width
    y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)
    for params in ({}, {"standardize": True}, {"optimizer": "adam", "lr": 0.01}, {"kernel": "naive"}):
        wide = SoftmaxRegression(batch_size=64, **params).fit(X, y)
        narrow = SoftmaxRegression(batch_size=64, **params).fit(X.astype(np.float32), y)
        np.testing.assert_array_equal(wide.coef_, narrow.coef_, err_msg=str(params))
        np.testing.assert_array_equal(wide.intercept_, narrow.intercept_, err_msg=str(params))


def test_uint8_rows_are_pixels_seen_as_x_over_255():
    rng = np.random.default_rng(0)
    X8 = rng.integers(0, 256, size=(500, 16), dtype=np.uint8)
    y = (X8[:, 0] > 127).astype(int) + 2 * (X8[:, 1] > 127)
    as_bytes = SoftmaxRegression(epochs=5).fit(X8, y)
    as_floats = SoftmaxRegression(epochs=5).fit(X8.astype(np.float32) / np.float32(255), y)
    np.testing.assert_allclose(as_bytes.coef_, as_floats.coef_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(as_bytes.decision_function(X8),
                               as_floats.decision_function(X8.astype(np.float64) / 255), atol=1e-6)
    # The same pixels as floats in 0..255 would be seen 255 times too bright: a warning says so; floats
    # in 0..1 are the pixels' own scale and pass quietly.
    with pytest.warns(UserWarning, match="fitted on uint8 pixels, which it sees as x/255, but X is float32"):
        as_bytes.predict(X8.astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        as_bytes.predict(X8.astype(np.float32) / np.float32(255))
        as_bytes.predict(X8)
        as_floats.predict(X8.astype(np.float32))
    # partial_fit cannot learn from pixels in one call and other numbers in the next.
    stepwise = SoftmaxRegression().partial_fit(X8, y, classes=np.unique(y))
    with pytest.raises(ValueError, match="X is float32, but the earlier calls gave uint8 pixels"):
        stepwise.partial_fit(X8.astype(np.float32), y)
    assert stepwise.n_iter_ == 1


@pytest.mark.parametrize(
    "X, y, error, match",
    [
        (np.array([[1.0, np.nan], [0.0, 1.0]]), [0, 1], ValueError, "NaN"),
        (np.array([[1.0, np.inf], [0.0, 1.0]]), [0, 1], ValueError, "infinity"),
        (np.arange(4.0), [0, 1, 0, 1], ValueError, "2D array"),
        (np.empty((0, 3)), [], ValueError, "0 sample"),
        (np.empty((3, 0)), [0, 1, 0], ValueError, "0 feature"),
        (np.eye(3), [1, 1, 1], ValueError, "one class"),
        (np.eye(3), [0.1, 0.2, 0.3], ValueError, "Unknown label type"),
        (np.eye(3), [0, 1], ValueError, "inconsistent numbers of samples"),
        (np.array([["a", "b"], ["c", "d"]], dtype=object), [0, 1], ValueError, "could not convert"),
    ],
)
def test_bad_fit_input_raises_what_sklearn_raises(X, y, error, match):
    model = SoftmaxRegression()
    with pytest.raises(error, match=match):
        model.fit(X, y)
    assert not hasattr(model, "coef_")


def test_bad_predict_input():
    X, y = blobs()
    model = SoftmaxRegression().fit(X, y)
    before = model.coef_.copy()
    with pytest.raises(ValueError, match="features"):
        model.predict(X[:, :4])
    with pytest.raises(ValueError, match="2D array"):
        model.predict(X[0])
    with pytest.raises(ValueError, match="NaN"):
        model.predict(np.full((2, 6), np.nan))
    np.testing.assert_array_equal(model.coef_, before)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"lr": -1.0}, "lr must be > 0"),
        ({"lr": float("nan")}, "lr must be > 0"),
        ({"epochs": 0}, "epochs must be between 1"),
        ({"batch_size": 0}, "batch_size must be in"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of"),
        ({"init_std": 2.0}, "init_std must be between"),
        ({"threads": 0}, "threads must be None or an integer >= 1"),
        ({"kernel": "gpu"}, "kernel must be one of"),
        ({"on_runaway_loss": "ignore"}, "on_runaway_loss must be one of"),
        ({"seed": -1}, "seed must be in"),
    ],
)
def test_bad_parameters_fail_at_fit_naming_the_parameter(params, match):
    X, y = blobs()
    with pytest.raises(ValueError, match=match):
        SoftmaxRegression(**params).fit(X, y)


def test_wrong_parameter_types():
    X, y = blobs()
    with pytest.raises(TypeError, match="epochs"):
        SoftmaxRegression(epochs=2.5).fit(X, y)
    with pytest.raises(TypeError, match="lr"):
        SoftmaxRegression(lr="fast").fit(X, y)


def test_runaway_loss_warns_or_raises_and_nan_always_raises():
    rng = np.random.default_rng(1)
    X = rng.normal(100, 1, size=(200, 2))
    y = (X[:, 0] > 100).astype(int)
    with pytest.warns(ConvergenceWarning, match="learning rate is too large"):
        SoftmaxRegression().fit(X, y)
    with pytest.raises(softreg.TrainingDiverged, match="try a learning rate below"):
        SoftmaxRegression(on_runaway_loss="raise").fit(X, y)
    assert issubclass(softreg.TrainingDiverged, FloatingPointError)
    huge = np.full((4, 2), 3e38, dtype=np.float32)
    huge[::2] *= -1
    with pytest.raises(softreg.TrainingDiverged):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            SoftmaxRegression(lr=1e30).fit(huge, [0, 1, 0, 1])


def test_optimizers_and_lbfgs():
    X, y = blobs()
    for optimizer in ("sgd", "momentum", "nesterov", "adam", "adamw"):
        lr = 0.01 if optimizer.startswith("adam") else 0.1
        assert SoftmaxRegression(optimizer=optimizer, lr=lr, epochs=20).fit(X, y).score(X, y) > 0.95
    lbfgs = SoftmaxRegression(optimizer="lbfgs", l2=1e-3, tol=1e-6, max_iter=500).fit(X, y)
    assert 1 <= lbfgs.n_iter_ <= 500
    assert lbfgs.score(X, y) > 0.95
    # At the optimum the gradient of mean cross-entropy + l2/2 ||W||^2 vanishes.
    P = lbfgs.predict_proba(X)
    Y = np.eye(4)[y]
    grad_W = (P - Y).T @ X / len(X) + 1e-3 * lbfgs.coef_
    assert np.abs(grad_W).max() < 1e-4


def test_standardize_folds_the_scaling_into_coef():
    X, y = make_blobs(n_samples=500, centers=3, n_features=4, random_state=2)
    X = X * [1, 100, 0.01, 10] + 500
    model = SoftmaxRegression(standardize=True, epochs=20).fit(X, y)
    assert model.score(X, y) > 0.95
    # coef_ and intercept_ act on raw rows.
    np.testing.assert_allclose(model.decision_function(X), X @ model.coef_.astype(np.float64).T + model.intercept_,
                               rtol=1e-4, atol=1e-3)


def test_validation_and_early_stopping():
    X, y = blobs(n=2000)
    model = SoftmaxRegression(val_fraction=0.2, early_stop=2, epochs=200, lr=0.5).fit(X, y)
    assert "val_acc" in model.history_[0]
    assert model.n_iter_ < 200


def test_fit_and_predict_release_the_gil():
    import threading
    import time

    rng = np.random.default_rng(0)
    X = rng.random((40000, 300), dtype=np.float32)
    y = rng.integers(0, 10, size=40000)
    count = 0
    done = threading.Event()

    def spin():
        nonlocal count
        while not done.is_set():
            count += 1

    model = SoftmaxRegression(epochs=5, threads=1)
    thread = threading.Thread(target=spin)
    thread.start()
    try:
        time.sleep(0.05)
        start_count, start = count, time.perf_counter()
        model.fit(X, y)
        model.predict_proba(X)
        during, seconds = count - start_count, time.perf_counter() - start
    finally:
        done.set()
        thread.join()
    # A Python thread gets about 1e7 increments a second when it runs; holding the GIL for the whole
    # fit would leave it a few switch intervals' worth.
    assert seconds > 0.1
    assert during > 1e5 * seconds, f"{during} increments in {seconds:.2f} s"


def test_bfloat16_products_where_the_cpu_has_them():
    X, y = blobs(n=900, classes=5, features=40)
    with pytest.raises(ValueError, match="compute bf16 needs optimizer sgd"):
        SoftmaxRegression(compute="bf16", optimizer="adam").fit(X, y)
    with pytest.raises(ValueError, match="compute must be f32 or bf16"):
        SoftmaxRegression(compute="f16").fit(X, y)
    model = SoftmaxRegression(compute="bf16", epochs=5, batch_size=64)
    if not softreg.bf16_supported():
        with pytest.raises(softreg.Error, match="AVX-512 BF16"):
            model.fit(X, y)
        return
    model.fit(X, y)
    exact = SoftmaxRegression(epochs=5, batch_size=64).fit(X, y)
    assert model.score(X, y) > 0.95
    assert not np.array_equal(model.coef_, exact.coef_)  # the products were rounded
    np.testing.assert_allclose(model.coef_, exact.coef_, atol=0.02 * np.abs(exact.coef_).max())
    # The parameters survive clone and the model file.
    assert clone(model).get_params()["compute"] == "bf16"
